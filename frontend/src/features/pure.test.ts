import { describe, expect, it } from "vitest";
import type { Anomaly, Histogram, Pattern } from "../api/types";
import { resolveRange } from "../lib/time";
import { anomalyLogsLink, bySeverity } from "./anomalies/AnomaliesPage";
import { stackHistogram } from "./logs/LogHistogram";
import { lagSeries } from "./pipeline/PipelinePage";
import { formatGrowth, sortPatterns } from "./patterns/PatternsPage";

describe("resolveRange", () => {
  it("pins a relative range to whole seconds and prefers start/end", () => {
    const now = Date.UTC(2026, 11, 6, 12, 0, 0, 750);
    const relative = resolveRange(new URLSearchParams("since=15m"), now);
    expect(relative.end.toISOString()).toBe("2026-12-06T12:00:00.000Z");
    expect(relative.start.toISOString()).toBe("2026-12-06T11:45:00.000Z");
    const absolute = resolveRange(new URLSearchParams("start=2026-12-01T00:00:00Z&end=2026-12-02T00:00:00Z&since=5m"), now);
    expect(absolute.kind).toBe("absolute");
    expect(absolute.start.toISOString()).toBe("2026-12-01T00:00:00.000Z");
    const broken = resolveRange(new URLSearchParams("since=forever&start=x"), now);
    expect(broken.end.getTime() - broken.start.getTime()).toBe(3600_000);
  });
});

describe("stackHistogram", () => {
  it("stacks levels most severe first and keeps each level's own counts", () => {
    const histogram: Histogram = {
      start: "2026-12-06T11:00:00Z",
      end: "2026-12-06T11:02:00Z",
      step_seconds: 60,
      levels: ["INFO", "ERROR"],
      total: 9,
      buckets: [
        { start: "2026-12-06T11:00:00Z", total: 5, counts: { INFO: 4, ERROR: 1 } },
        { start: "2026-12-06T11:01:00Z", total: 4, counts: { INFO: 1, ERROR: 3 } },
      ],
    };
    const { levels, raw, stacked, times } = stackHistogram(histogram);
    expect(levels).toEqual(["ERROR", "INFO"]);
    expect(raw).toEqual([[1, 3], [4, 1]]);
    expect(stacked).toEqual([[1, 3], [5, 4]]);
    expect(stacked[stacked.length - 1]).toEqual(histogram.buckets.map((bucket) => bucket.total));
    expect(times[1]! - times[0]!).toBe(60);
  });
});

describe("patterns", () => {
  const pattern = (id: number, count: number, growth: number | null, isNew = false): Pattern => ({
    pattern_id: id, template: `t${id}`, count, growth, is_new: isNew, new: isNew, previous_count: 0, share: 0,
    first_seen: null, last_seen: null, example: "",
  });
  it("sorts by growth with new patterns first, and formats growth", () => {
    const rows = [pattern(1, 10, 0.5), pattern(2, 5, null, true), pattern(3, 50, -0.2)];
    expect(sortPatterns(rows, "growth").map((row) => row.pattern_id)).toEqual([2, 1, 3]);
    expect(sortPatterns(rows, "count").map((row) => row.pattern_id)).toEqual([3, 1, 2]);
    expect(rows.map(formatGrowth)).toEqual(["+50%", "new", "-20%"]);
  });
});

describe("anomalies", () => {
  it("lists by severity, then by the size of the z-score", () => {
    const anomaly = (id: number, severity: string, z: number) => ({ id, severity, z_score: z }) as Anomaly;
    const sorted = bySeverity([anomaly(1, "low", 9), anomaly(2, "critical", 4), anomaly(3, "high", -7), anomaly(4, "high", 3)]);
    expect(sorted.map((item) => item.id)).toEqual([2, 3, 4, 1]);
  });
});

describe("anomalyLogsLink", () => {
  it("opens Explore at the anomaly's hour, for its service and pattern", () => {
    const anomaly = { service: "checkout", pattern_id: "77", bucket: "2026-12-06T11:00:00Z", created_at: "2026-12-06T12:00:00Z" } as Anomaly;
    expect(anomalyLogsLink(anomaly)).toBe(
      "/explore?service=checkout&pattern_id=77&start=2026-12-06T11%3A00%3A00.000Z&end=2026-12-06T12%3A00%3A00.000Z",
    );
    expect(anomalyLogsLink({ ...anomaly, pattern_id: "" })).not.toContain("pattern_id");
  });
});

describe("lagSeries", () => {
  it("aligns each group's samples on shared times", () => {
    const { keys, times, series } = lagSeries([
      { time: "2026-12-06T12:00:00Z", group: "ingest", topic: "raw-logs", lag: 5 },
      { time: "2026-12-06T12:00:10Z", group: "ingest", topic: "raw-logs", lag: 2 },
      { time: "2026-12-06T12:00:10Z", group: "vectorizer", topic: "vectorization-queue", lag: 9 },
    ]);
    expect(keys).toEqual(["ingest · raw-logs", "vectorizer · vectorization-queue"]);
    expect(times).toHaveLength(2);
    expect(series).toEqual([[5, 2], [null, 9]]);
  });
});
