import { act, render, screen, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { mockFetch, renderWithProviders } from "../../test/utils";
import type { Anomaly, Histogram } from "../../api/types";
import type { TimelineMark } from "../logs/LogHistogram";
import { formatTime } from "../../lib/time";

// uPlot needs a real canvas: the stand-in shows the marks the page hands the chart.
vi.mock("../logs/LogHistogram", () => ({
  LogHistogram: ({ markers }: { histogram: Histogram; markers: TimelineMark[] }) => (
    <output data-testid="marks">{JSON.stringify(markers)}</output>
  ),
}));

const { AnomaliesPage } = await import("./AnomaliesPage");

class SilentSocket {
  onopen: (() => void) | null = null;
  onclose: (() => void) | null = null;
  onmessage: ((event: MessageEvent) => void) | null = null;
  close() {}
}

afterEach(() => vi.unstubAllGlobals());

function anomaly(fields: Partial<Anomaly> & Pick<Anomaly, "id" | "kind" | "service" | "severity">): Anomaly {
  return {
    report_id: "r1", pattern_id: "", bucket: "2026-12-06T09:00:00.000Z", observed: 0, expected: 0, stddev: 1, z_score: 4,
    description: "", created_at: "2026-12-06T13:00:00.000Z", incident_id: `i${fields.id}`, start: null, end: null, peak: null,
    hours: 1, observed_total: 0, expected_total: 0, excess: 0, ongoing: false, related_group: "", pipeline: "default",
    ...fields,
  };
}

const anomalies: Anomaly[] = [
  anomaly({ id: 1, kind: "pattern_spike", service: "checkout", severity: "high", pattern_id: "42", related_group: "R1",
            start: "2026-12-06T08:00:00.000Z", end: "2026-12-06T10:00:00.000Z", peak: "2026-12-06T09:00:00.000Z",
            hours: 2, observed_total: 500, expected_total: 100, excess: 400 }),
  anomaly({ id: 2, kind: "service_quiet", service: "billing", severity: "critical", related_group: "R1", ongoing: true,
            start: "2026-12-06T10:00:00.000Z", end: "2026-12-06T13:00:00.000Z", peak: "2026-12-06T10:00:00.000Z",
            bucket: "2026-12-06T10:00:00.000Z", hours: 3, observed_total: 0, expected_total: 360, excess: -360 }),
  anomaly({ id: 3, kind: "volume_drop", service: "search", severity: "medium",
            start: "2026-12-06T05:00:00.000Z", end: "2026-12-06T07:00:00.000Z", peak: "2026-12-06T06:00:00.000Z",
            hours: 2, observed_total: 20, expected_total: 200, excess: -180 }),
  // Written before incidents had a span: shown at its bucket.
  anomaly({ id: 4, kind: "pattern_spike", service: "legacy", severity: "low", bucket: "2026-12-06T04:00:00.000Z" }),
];

const histogram: Histogram = { start: "2026-12-05T14:00:00Z", end: "2026-12-06T14:00:00Z", step_seconds: 900, levels: [], total: 0, buckets: [] };

describe("AnomaliesPage", () => {
  it("shows incidents with their span, totals and excess, related ones together, and drops as spans", async () => {
    vi.stubGlobal("WebSocket", SilentSocket);
    mockFetch({
      "/api/anomalies": () => ({ body: { anomalies, total: anomalies.length } }),
      "/api/logs/histogram": () => ({ body: histogram }),
      "/api/novel-errors": () => ({ body: { novel_errors: [], total: 0, truncated: false, error: "" } }),
    });
    render(renderWithProviders(<AnomaliesPage />, { route: "/anomalies?since=24h" }));

    const root = await screen.findByTestId("root-cause");
    expect(within(root).getByRole("heading").textContent).toContain("Candidate root cause R1");
    const related = within(root).getAllByTestId("anomaly");
    expect(related.map((card) => within(card).getByText(/billing|checkout/).textContent)).toEqual(["billing", "checkout"]);
    const quiet = related[0]!;
    expect(within(quiet).getByText("ongoing: stopped for good")).toBeTruthy();
    // In the reader's own time zone, as every time on the dashboard.
    expect(within(quiet).getByTestId("incident-span").textContent).toBe(
      `${formatTime("2026-12-06T10:00:00.000Z")} – ${formatTime("2026-12-06T13:00:00.000Z")} (3 h)`);
    expect(within(quiet).getByTestId("incident-totals").textContent).toBe("0 / 360");
    expect(within(quiet).getByTestId("incident-excess").textContent).toBe("−360");
    expect(within(related[1]!).getByTestId("incident-excess").textContent).toBe("+400");
    expect(within(related[1]!).queryByText(/ongoing/)).toBeNull();

    const cards = screen.getAllByTestId("anomaly");
    expect(cards).toHaveLength(4);
    const alone = cards.filter((card) => !root.contains(card));
    expect(alone.map((card) => within(card).getByText(/search|legacy/).textContent)).toEqual(["search", "legacy"]);
    expect(within(alone[1]!).getByTestId("incident-span").textContent).toBe(formatTime("2026-12-06T04:00:00.000Z"));

    const marks = JSON.parse((await screen.findByTestId("marks")).textContent ?? "[]") as TimelineMark[];
    const at = (iso: string) => new Date(iso).getTime() / 1000;
    // Sorted by severity: billing (silence), checkout (spike), search (drop), legacy (spike).
    expect(marks.map(({ time, end }) => ({ time, end }))).toEqual([
      { time: at("2026-12-06T10:00:00Z"), end: at("2026-12-06T13:00:00Z") },
      { time: at("2026-12-06T09:00:00Z"), end: undefined },
      { time: at("2026-12-06T05:00:00Z"), end: at("2026-12-06T07:00:00Z") },
      { time: at("2026-12-06T04:00:00Z"), end: undefined },
    ]);
  });

  it("lists the range's earlier novel errors under the live ones, each once, with how unlike they were", async () => {
    const sockets: LiveSocket[] = [];
    class LiveSocket extends SilentSocket {
      constructor() {
        super();
        sockets.push(this);
      }
    }
    vi.stubGlobal("WebSocket", LiveSocket);
    const novel = (record_id: string, service: string, timestamp: string) => ({
      type: "novel_error", record_id, service, level: "ERROR", timestamp, message: `unlike anything ${record_id}`,
      similarity: 0.41, threshold: 0.75, nearest: { record_id: "old", score: 0.41 },
    });
    const calls = mockFetch({
      "/api/anomalies": () => ({ body: { anomalies: [], total: 0 } }),
      "/api/logs/histogram": () => ({ body: histogram }),
      "/api/novel-errors": () => ({
        body: { novel_errors: [novel("n-2", "payments", "2026-12-06T12:00:00Z"), novel("n-1", "checkout", "2026-12-06T11:00:00Z")],
                total: 2, truncated: false, error: "" },
      }),
    });
    render(renderWithProviders(<AnomaliesPage />, { route: "/anomalies?since=24h" }));
    expect(await screen.findByText("unlike anything n-1")).toBeTruthy();
    const range = calls.find((call) => call.url.pathname === "/api/novel-errors")!.url.searchParams;
    expect(range.get("start")).toBeTruthy();
    expect(range.get("end")).toBeTruthy();
    // The live stream brings n-2 again (it was read back as well) and a new n-3.
    await act(async () => {
      for (const id of ["n-2", "n-3"]) {
        sockets[0]!.onmessage?.({ data: JSON.stringify({ type: "novel_error", data: novel(id, "cart", "2026-12-06T13:00:00Z") }) } as MessageEvent);
      }
    });
    const cards = screen.getAllByTestId("novel-error");
    expect(cards.map((card) => within(card).getByText(/unlike anything/).textContent)).toEqual([
      "unlike anything n-3", "unlike anything n-2", "unlike anything n-1"]);
    expect(within(cards[0]!).getByText("new")).toBeTruthy();
    expect(within(cards[2]!).queryByText("new")).toBeNull();
    expect(within(cards[2]!).getByTestId("novel-similarity").textContent).toBe(
      "Closest earlier error 0.41 similar (novel below 0.75)");
  });
});
