import { render, screen, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { mockFetch, renderWithProviders } from "../../test/utils";
import { ServicesPage } from "./ServicesPage";

afterEach(() => vi.unstubAllGlobals());

const service = (name: string, quiet: boolean, status: string) => ({
  service: name, logs: 100, errors: 5, warnings: 1, logs_per_second: 0.5, logs_per_second_1m: 0, error_ratio: 0.05,
  last_seen: "2026-12-06T12:00:00Z", status, quiet,
  series: [{ start: "2026-12-06T11:00:00Z", logs: 60, errors: 2 }, { start: "2026-12-06T11:30:00Z", logs: 40, errors: 3 }],
});

describe("ServicesPage", () => {
  it("puts a service that went quiet first, flagged, with its rates over time", async () => {
    const calls = mockFetch({
      "/api/services": () => ({
        body: { window_minutes: 60, pipeline: null, services: [service("checkout", false, "healthy"), service("mailer", true, "silent")] },
      }),
    });
    render(renderWithProviders(<ServicesPage />, { route: "/services?window=60" }));
    const cards = await screen.findAllByTestId("service-card");
    expect(within(cards[0]!).getByRole("heading").textContent).toBe("mailer");
    expect(within(cards[0]!).getByText("went quiet")).toBeTruthy();
    expect(within(cards[1]!).queryByText("went quiet")).toBeNull();
    expect(cards[1]!.querySelector("svg.sparkline polyline")).not.toBeNull();
    const query = calls[0]!.url.searchParams;
    expect(query.get("window_minutes")).toBe("60");
    expect(Number(query.get("series_buckets"))).toBeGreaterThan(0);
  });

  it("has an empty state", async () => {
    mockFetch({ "/api/services": () => ({ body: { window_minutes: 60, pipeline: null, services: [] } }) });
    render(renderWithProviders(<ServicesPage />, { route: "/services" }));
    expect(await screen.findByText("No service logged in this window")).toBeTruthy();
  });
});
