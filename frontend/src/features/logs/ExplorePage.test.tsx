import { fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { logEntry, mockFetch, renderWithProviders } from "../../test/utils";
import type { Histogram, LogsPage } from "../../api/types";

// uPlot needs a real canvas; the chart's own behaviour is checked in the browser tests.
vi.mock("./LogHistogram", () => ({
  LogHistogram: ({ histogram }: { histogram: Histogram }) => <div data-testid="histogram">{histogram.buckets.length} buckets</div>,
}));

const { ExplorePage } = await import("./ExplorePage");

afterEach(() => vi.unstubAllGlobals());

const page: LogsPage = {
  logs: [
    logEntry({ timestamp: "2026-12-06T12:00:01Z", level: "ERROR", message: "card declined", record_id: "a" }),
    logEntry({ timestamp: "2026-12-06T12:00:00Z", level: "ERROR", message: "card expired", record_id: "b" }),
  ],
  next_cursor: null,
  total: 2,
  limit: 200,
};
const histogram: Histogram = {
  start: "2026-12-06T11:00:00Z",
  end: "2026-12-06T12:00:00Z",
  step_seconds: 60,
  levels: ["ERROR"],
  total: 2,
  buckets: [{ start: "2026-12-06T11:59:00Z", total: 2, counts: { ERROR: 2 } }],
};

describe("ExplorePage", () => {
  it("asks for the URL's filters and range, and shows the same total from both queries", async () => {
    const route = "/explore?level=ERROR&service=checkout&start=2026-12-06T11:00:00.000Z&end=2026-12-06T12:00:00.000Z";
    const calls = mockFetch({
      "/api/logs": () => ({ body: page }),
      "/api/logs/histogram": () => ({ body: histogram }),
      "/api/services": () => ({ body: { window_minutes: 1440, pipeline: null, services: [] } }),
    });
    render(renderWithProviders(<ExplorePage />, { route }));
    expect(await screen.findByText("card declined")).toBeTruthy();
    expect(screen.getByTestId("logs-total").textContent).toBe("2");
    expect(screen.getByTestId("histogram-total").textContent).toBe("2");
    const logsCall = calls.find((call) => call.url.pathname === "/api/logs")!.url.searchParams;
    const histogramCall = calls.find((call) => call.url.pathname === "/api/logs/histogram")!.url.searchParams;
    for (const params of [logsCall, histogramCall]) {
      expect(params.get("level")).toBe("ERROR");
      expect(params.get("service")).toBe("checkout");
      expect(params.get("start")).toBe("2026-12-06T11:00:00.000Z");
      expect(params.get("end")).toBe("2026-12-06T12:00:00.000Z");
    }
  });

  it("names the pattern it is filtered by", async () => {
    const calls = mockFetch({
      "/api/logs": () => ({ body: page }),
      "/api/logs/histogram": () => ({ body: histogram }),
      "/api/services": () => ({ body: { window_minutes: 1440, pipeline: null, services: [] } }),
      "/api/patterns": () => ({ body: { total: 2, patterns: [{ pattern_id: 42, template: "card <*> declined", count: 2 }] } }),
    });
    render(renderWithProviders(<ExplorePage />, { route: "/explore?pattern_id=42&since=1h" }));
    expect((await screen.findByTestId("pattern-template")).textContent).toBe("card <*> declined");
    const logsCall = calls.find((call) => call.url.pathname === "/api/logs")!.url.searchParams;
    expect(logsCall.get("pattern_id")).toBe("42");
    expect(calls.find((call) => call.url.pathname === "/api/patterns")!.url.searchParams.get("pattern_id")).toBe("42");
  });

  it("keeps a new text filter in the URL", async () => {
    mockFetch({
      "/api/logs": () => ({ body: { ...page, logs: [], total: 0 } }),
      "/api/logs/histogram": () => ({ body: { ...histogram, total: 0, buckets: [] } }),
      "/api/services": () => ({ body: { window_minutes: 1440, pipeline: null, services: [] } }),
    });
    render(renderWithProviders(<ExplorePage />, { route: "/explore?since=15m" }));
    expect(await screen.findByText("No logs match")).toBeTruthy();
    const input = screen.getByLabelText("Text");
    fireEvent.change(input, { target: { value: "timeout" } });
    fireEvent.submit(input.closest("form")!);
    await waitFor(() => expect(screen.getByTestId("location").textContent).toBe("/explore?since=15m&contains=timeout"));
  });

  it("filters by several services at once, and clears back to all", async () => {
    const calls = mockFetch({
      "/api/logs": () => ({ body: page }),
      "/api/logs/histogram": () => ({ body: histogram }),
      "/api/services": () => ({
        body: { window_minutes: 1440, pipeline: null, services: ["payments", "checkout", "cart"].map((service) => ({ service })) },
      }),
    });
    render(renderWithProviders(<ExplorePage />, { route: "/explore?service=checkout&since=15m" }));
    expect(await screen.findByText("card declined")).toBeTruthy();
    expect(screen.getByText("Service: checkout")).toBeTruthy();
    fireEvent.click(await screen.findByRole("checkbox", { name: "payments" }));
    await waitFor(() => expect(screen.getByTestId("location").textContent).toBe("/explore?service=checkout%2Cpayments&since=15m"));
    await waitFor(() =>
      expect(calls.filter((call) => call.url.pathname === "/api/logs").at(-1)!.url.searchParams.get("service")).toBe("checkout,payments"),
    );
    expect(screen.getByText("Service: checkout, payments")).toBeTruthy();
    expect((screen.getByRole("checkbox", { name: "cart" }) as HTMLInputElement).checked).toBe(false);
    const menu = screen.getByText("Service: checkout, payments").closest("details")!;
    menu.open = true;
    fireEvent.keyDown(document, { key: "Escape" });
    expect(menu.open).toBe(false);
    fireEvent.click(screen.getByRole("button", { name: "Clear: all services" }));
    await waitFor(() => expect(screen.getByTestId("location").textContent).toBe("/explore?since=15m"));
    expect(screen.getByText("Service: All services")).toBeTruthy();
  });

  it("shows the API's message, not a stack trace, when a query fails", async () => {
    mockFetch({
      "/api/logs": () => ({ status: 400, body: { detail: "start must be before end" } }),
      "/api/logs/histogram": () => ({ status: 500, body: { detail: "Traceback (most recent call last): boom" } }),
      "/api/services": () => ({ body: { window_minutes: 1440, pipeline: null, services: [] } }),
    });
    render(renderWithProviders(<ExplorePage />, { route: "/explore" }));
    expect(await screen.findByText("start must be before end")).toBeTruthy();
    expect(await screen.findByText("The server failed (HTTP 500).")).toBeTruthy();
    expect(document.body.textContent).not.toContain("Traceback");
  });
});
