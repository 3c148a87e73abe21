import { render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { mockFetch, renderWithProviders } from "../../test/utils";
import { PipelinePage } from "./PipelinePage";

afterEach(() => vi.unstubAllGlobals());

const down = {
  pipeline: "default",
  available: false,
  error: "KafkaConnectionError: Unable to bootstrap from [('127.0.0.1', 9092)]\nTraceback (most recent call last): ...",
  topics: [],
  consumer_groups: [],
  lag_history: [],
  rates: { ingest: { available: false, error: "http://127.0.0.1:8002: ConnectError" }, vectorizer: { available: true, written: 42 } },
  dlq: {},
  collection: { name: "log_embeddings", points: 1234, available: true, max_points: 400000, retention_days: 90, expired: 5678 },
};

describe("PipelinePage", () => {
  it("says which parts are unavailable when Kafka is down, and shows the rest", async () => {
    mockFetch({
      "/api/pipeline": () => ({ body: down }),
      "/api/pipeline/dlq": () => ({
        body: { topic: "raw-logs-dlq", kafka_topic: "raw-logs-dlq", available: false, error: "Kafka is down", records: [] },
      }),
    });
    render(renderWithProviders(<PipelinePage />, { route: "/pipeline" }));
    expect(await screen.findByText("Kafka is not available.")).toBeTruthy();
    expect(screen.getByText("Consumer lag is not available.")).toBeTruthy();
    expect(await screen.findByText("The dead-letter topic is not available.")).toBeTruthy();
    expect(screen.queryByText("Nothing dead-lettered")).toBeNull();
    expect(screen.getByTestId("collection-points").textContent).toBe("1,234");
    // What a search covers: the vectors' retention.
    expect(screen.getByTestId("collection-retention").textContent).toBe("newest 400,000 kept · 90-day retention · 5,678 expired");
    expect(screen.getByText(/not reachable: http:\/\/127.0.0.1:8002/)).toBeTruthy();
    expect(document.body.textContent).not.toContain("Traceback");
  });

  it("lists dead-lettered records with their reason and the original as text", async () => {
    mockFetch({
      "/api/pipeline": () => ({ body: { ...down, available: true, error: null, dlq: { "raw-logs-dlq": 1, "vectorization-dlq": 0 } } }),
      "/api/pipeline/dlq": () => ({
        body: {
          topic: "raw-logs-dlq",
          kafka_topic: "raw-logs-dlq",
          available: true,
          records: [
            { partition: 0, offset: 7, time: "2026-12-06T12:00:00Z", stage: "ingest", error: "not JSON", original: "<b>oops", original_bytes: 7 },
          ],
        },
      }),
    });
    render(renderWithProviders(<PipelinePage />, { route: "/pipeline" }));
    expect(await screen.findByText("not JSON")).toBeTruthy();
    expect(screen.getByText("<b>oops")).toBeTruthy();
    expect(screen.getByText(/partition 0 · offset 7/)).toBeTruthy();
  });
});
