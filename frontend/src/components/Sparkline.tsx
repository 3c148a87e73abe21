/** A small inline chart of counts per slice (SVG: dozens of them on a page stay cheap). */
export function Sparkline({
  values,
  secondary,
  label,
  width = 120,
  height = 28,
}: {
  values: number[];
  secondary?: number[];
  label: string;
  width?: number;
  height?: number;
}) {
  const max = Math.max(1, ...values, ...(secondary ?? []));
  const points = (series: number[]) =>
    series
      .map((value, index) => {
        const x = series.length > 1 ? (index / (series.length - 1)) * width : width / 2;
        const y = height - 2 - (value / max) * (height - 4);
        return `${x.toFixed(1)},${y.toFixed(1)}`;
      })
      .join(" ");
  return (
    <svg className="sparkline" width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img" aria-label={label}>
      {values.length ? <polyline className="sparkline-main" fill="none" points={points(values)} /> : null}
      {secondary?.length ? <polyline className="sparkline-secondary" fill="none" points={points(secondary)} /> : null}
    </svg>
  );
}
