import { render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { mockFetch, renderWithProviders } from "../../test/utils";
import { ReportPage } from "./ReportPage";

afterEach(() => vi.unstubAllGlobals());

const base = {
  id: "r1", report_id: "r1", pipeline: "default", trigger: "api", created_at: "2026-12-06T12:00:00Z", finished_at: null,
  window_start: "2026-12-06T11:00:00Z", window_end: "2026-12-06T12:00:00Z", window_hours: 1, summary: "", error: "",
  total_logs: 0, total_errors: 0, anomaly_count: 0, markdown: "", report: {}, patterns: [], anomalies: [],
};

describe("ReportPage", () => {
  it("shows progress while the run is pending, then the report with its figures, as text", async () => {
    let polls = 0;
    mockFetch({
      "/api/reports/r1": () => {
        polls += 1;
        return polls < 2
          ? { body: { ...base, status: "pending" } }
          : {
              body: {
                ...base, status: "completed", total_logs: 2000, total_errors: 50, anomaly_count: 1,
                summary: "Checkout errors doubled.",
                markdown: "# Nightly report\n\nA message said <script>alert(1)</script>.",
                anomalies: [{ id: 1, report_id: "r1", kind: "pattern_spike", service: "checkout", pattern_id: "12",
                  bucket: "2026-12-06T11:00:00Z", observed: 40, expected: 4, stddev: 2, z_score: 18, severity: "critical",
                  description: "", created_at: "2026-12-06T12:00:00Z" }],
              },
            };
      },
    });
    render(renderWithProviders(<ReportPage />, { route: "/reports/r1", path: "/reports/:reportId" }));
    expect(await screen.findByText("Waiting for the analyzer…")).toBeTruthy();
    // The page polls by itself until the run is done.
    expect(await screen.findByRole("heading", { name: "Nightly report" }, { timeout: 10_000 })).toBeTruthy();
    expect(screen.getByText("2,000")).toBeTruthy();
    expect(screen.getByText("2.50%")).toBeTruthy();
    expect(screen.getByText("pattern spike")).toBeTruthy();
    expect(screen.getByText("A message said <script>alert(1)</script>.")).toBeTruthy();
    expect(document.querySelector("main script, .markdown script")).toBeNull();
    expect(screen.getByRole("button", { name: "Download Markdown" })).toBeTruthy();
  });

  it("says why a run failed in one line", async () => {
    mockFetch({
      "/api/reports/r1": () => ({ body: { ...base, status: "failed", error: "LLM unreachable\nTraceback (most recent call last)" } }),
    });
    render(renderWithProviders(<ReportPage />, { route: "/reports/r1", path: "/reports/:reportId" }));
    expect(await screen.findByText("LLM unreachable")).toBeTruthy();
    expect(document.body.textContent).not.toContain("Traceback");
  });
});
