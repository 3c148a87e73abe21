import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

/**
 * A uPlot chart that follows its container's width. `options` without width/height;
 * the chart is rebuilt when `options` changes and only fed new data otherwise.
 */
export function Chart({
  options,
  data,
  height,
  label,
  onCreate,
}: {
  options: Omit<uPlot.Options, "width" | "height">;
  data: uPlot.AlignedData;
  height: number;
  label: string;
  onCreate?: (chart: uPlot) => void;
}) {
  const holder = useRef<HTMLDivElement>(null);
  const chart = useRef<uPlot | null>(null);
  const latestData = useRef(data);
  latestData.current = data;

  useEffect(() => {
    const element = holder.current;
    if (!element) return;
    const plot = new uPlot({ ...options, width: Math.max(200, element.clientWidth), height }, latestData.current, element);
    chart.current = plot;
    onCreate?.(plot);
    const observer = new ResizeObserver(() => {
      plot.setSize({ width: Math.max(200, element.clientWidth), height });
    });
    observer.observe(element);
    return () => {
      observer.disconnect();
      plot.destroy();
      chart.current = null;
    };
    // onCreate is read once per build on purpose.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [options, height]);

  useEffect(() => {
    chart.current?.setData(data);
  }, [data]);

  return <div className="chart" ref={holder} role="img" aria-label={label} />;
}

/** Colours by level, read from the theme's CSS variables. */
export function levelColor(level: string): string {
  const name = `--level-${level.toLowerCase()}`;
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || "#888";
}

export function themeColor(name: string, fallback: string): string {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}
