import { RELATIVE_RANGES, formatTime, type TimeRange } from "../lib/time";

export function TimeRangePicker({
  range,
  onSince,
  onRefresh,
}: {
  range: TimeRange;
  onSince: (since: string) => void;
  onRefresh: () => void;
}) {
  return (
    <div className="range-picker" role="group" aria-label="Time range">
      <label className="visually-hidden" htmlFor="range-select">
        Time range
      </label>
      <select
        id="range-select"
        value={range.kind === "since" ? range.since : "absolute"}
        onChange={(event) => onSince(event.target.value)}
      >
        {range.kind === "absolute" ? (
          <option value="absolute">
            {formatTime(range.start)} → {formatTime(range.end)}
          </option>
        ) : null}
        {RELATIVE_RANGES.map((since) => (
          <option key={since} value={since}>
            Last {since}
          </option>
        ))}
      </select>
      <button type="button" className="button" onClick={onRefresh} title="Run the queries again now">
        Refresh
      </button>
    </div>
  );
}
