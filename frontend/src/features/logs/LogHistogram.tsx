import { useMemo, useRef } from "react";
import uPlot from "uplot";
import { Chart, levelColor, themeColor } from "../../components/Chart";
import { useTheme } from "../../components/theme";
import type { Histogram } from "../../api/types";
import { LEVELS } from "../../api/types";

let histogramMarked = false;

/** A line at `time`, or a span [time, end) when `end` is given; times in seconds. */
export interface TimelineMark {
  time: number;
  end?: number;
  color: string;
}

/** Levels in stacking order: the most severe at the bottom, where the eye looks first. */
export function orderedLevels(levels: string[]): string[] {
  const known = LEVELS.filter((level) => levels.includes(level));
  return [...known, ...levels.filter((level) => !known.includes(level as never))];
}

/**
 * uPlot series for stacked bars: each level's series is the cumulative sum up to it, drawn
 * from the tallest down, so every level shows as its own band. `raw` keeps each level's
 * own counts for the legend.
 */
export function stackHistogram(histogram: Histogram) {
  const levels = orderedLevels(histogram.levels);
  const times = histogram.buckets.map((bucket) => new Date(bucket.start).getTime() / 1000);
  const raw = levels.map((level) => histogram.buckets.map((bucket) => bucket.counts[level] ?? 0));
  const stacked: number[][] = [];
  raw.forEach((series, index) => {
    stacked.push(series.map((value, bucket) => value + (index > 0 ? (stacked[index - 1]?.[bucket] ?? 0) : 0)));
  });
  return { levels, times, raw, stacked };
}

export function LogHistogram({
  histogram,
  onZoom,
  markers = [],
  height = 160,
}: {
  histogram: Histogram;
  onZoom?: (start: Date, end: Date) => void;
  /** Marks (anomalies): a line at `time`, or a shaded span to `end` (seconds), with a colour each. */
  markers?: TimelineMark[];
  height?: number;
}) {
  const { levels, times, raw, stacked } = useMemo(() => stackHistogram(histogram), [histogram]);
  const zoom = useRef(onZoom);
  zoom.current = onZoom;
  const rawRef = useRef(raw);
  rawRef.current = raw;
  const markerRef = useRef(markers);
  markerRef.current = markers;
  const step = histogram.step_seconds;
  const theme = useTheme();
  const totals = useMemo(() => raw.map((series) => series.reduce((sum, value) => sum + value, 0)), [raw]);
  const totalsRef = useRef(totals);
  totalsRef.current = totals;

  // Series are drawn in order, so the tallest (all levels) goes first and each lower band on top.
  const drawOrder = useMemo(() => levels.map((_, index) => levels.length - 1 - index), [levels]);
  const options = useMemo<Omit<uPlot.Options, "width" | "height">>(() => {
    const axisColor = themeColor("--text-muted", "#999");
    const gridColor = themeColor("--grid", "rgba(128,128,128,0.15)");
    const bars = uPlot.paths.bars?.({ size: [0.9, 64], align: 1 });
    return {
      padding: [8, 8, 0, 0],
      legend: { show: true, live: true },
      cursor: { drag: { x: true, y: false, setScale: false }, points: { show: false } },
      scales: { x: { time: true, range: () => [times[0] ?? 0, (times[times.length - 1] ?? 0) + step] } },
      axes: [
        { stroke: axisColor, grid: { stroke: gridColor }, ticks: { stroke: gridColor } },
        { stroke: axisColor, grid: { stroke: gridColor }, ticks: { stroke: gridColor }, size: 50 },
      ],
      series: [
        { label: "time" },
        ...drawOrder.map((index) => {
          const level = levels[index] ?? "";
          const color = levelColor(level);
          return {
            label: level,
            stroke: color,
            fill: color,
            width: 0,
            paths: bars,
            points: { show: false },
            // The legend shows the level's own count (in the range, or in the bucket under the
            // cursor), not the stacked height.
            value: (_chart: uPlot, _value: number | null, _series: number, idx: number | null) =>
              (idx === null ? (totalsRef.current[index] ?? 0) : (rawRef.current[index]?.[idx] ?? 0)).toLocaleString("en-US"),
          } satisfies uPlot.Series;
        }),
      ],
      hooks: {
        setSelect: [
          (chart: uPlot) => {
            const { left, width } = chart.select;
            if (width > 4 && zoom.current) {
              const from = chart.posToVal(left, "x");
              const to = chart.posToVal(left + width, "x");
              zoom.current(new Date(from * 1000), new Date(to * 1000));
            }
            chart.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          },
        ],
        draw: [
          (chart: uPlot) => {
            if (!histogramMarked) {
              histogramMarked = true;
              performance.mark("logpipe:histogram-drawn");
            }
            const context = chart.ctx;
            const left = chart.bbox.left;
            const right = chart.bbox.left + chart.bbox.width;
            for (const marker of markerRef.current) {
              if (marker.end !== undefined) {
                const from = Math.max(left, Math.round(chart.valToPos(marker.time, "x", true)));
                const to = Math.min(right, Math.round(chart.valToPos(marker.end, "x", true)));
                if (to <= from) continue;
                // A drop or silence lasts: shaded over its hours, edged so it reads on any bar colour.
                context.save();
                context.fillStyle = marker.color;
                context.globalAlpha = 0.18;
                context.fillRect(from, chart.bbox.top, to - from, chart.bbox.height);
                context.globalAlpha = 0.8;
                context.strokeStyle = marker.color;
                context.lineWidth = devicePixelRatio;
                context.strokeRect(from, chart.bbox.top, to - from, chart.bbox.height);
                context.restore();
                continue;
              }
              const x = Math.round(chart.valToPos(marker.time, "x", true));
              if (x < left || x > right) continue;
              context.save();
              context.strokeStyle = marker.color;
              context.lineWidth = 2 * devicePixelRatio;
              context.beginPath();
              context.moveTo(x, chart.bbox.top);
              context.lineTo(x, chart.bbox.top + chart.bbox.height);
              context.stroke();
              context.restore();
            }
          },
        ],
      },
    };
    // theme: the colours above are read from CSS variables when the chart is built.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [levels, drawOrder, times, step, theme]);

  const data = useMemo<uPlot.AlignedData>(
    () => [times, ...drawOrder.map((index) => stacked[index] ?? [])],
    [times, drawOrder, stacked],
  );

  return (
    <Chart
      options={options}
      data={data}
      height={height}
      label={`Log volume by level, ${histogram.total} logs; drag across the chart to zoom into a time range`}
    />
  );
}
