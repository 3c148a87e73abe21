// Time ranges as the URL keeps them: `since=1h` (relative to now) or `start`/`end` (ISO).
export const RELATIVE_RANGES = ["5m", "15m", "1h", "6h", "24h", "7d"] as const;
export const DEFAULT_SINCE = "1h";

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

export function parseDuration(text: string): number | null {
  const match = /^(\d+)([smhd])$/.exec(text.trim());
  if (!match) return null;
  const seconds = Number(match[1]) * (UNIT_SECONDS[match[2] ?? "s"] ?? 1);
  return seconds > 0 ? seconds * 1000 : null;
}

export interface TimeRange {
  start: Date;
  end: Date;
  /** "since" when relative to now, else "absolute". */
  kind: "since" | "absolute";
  since?: string;
}

function validDate(text: string | null): Date | null {
  if (!text) return null;
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** The range a URL names, resolved against `now`; bad or missing values fall back to the last hour. */
export function resolveRange(params: URLSearchParams, now: number, fallbackSince = DEFAULT_SINCE): TimeRange {
  const start = validDate(params.get("start"));
  const end = validDate(params.get("end"));
  if (start && end && start < end) return { start, end, kind: "absolute" };
  const since = params.get("since") ?? fallbackSince;
  const duration = parseDuration(since) ?? parseDuration(fallbackSince) ?? 3600_000;
  // Whole seconds, so two queries of the same view ask for the same range.
  const anchor = Math.floor(now / 1000) * 1000;
  return { start: new Date(anchor - duration), end: new Date(anchor), kind: "since", since };
}

export function iso(date: Date): string {
  return date.toISOString();
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hour12: false,
});

export function formatTime(value: string | Date | null | undefined): string {
  if (!value) return "—";
  const date = typeof value === "string" ? new Date(value) : value;
  if (Number.isNaN(date.getTime())) return String(value);
  return timeFormat.format(date);
}

export function formatTimestamp(value: string): string {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(
    date.getMinutes(),
  )}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

export function formatAgo(value: string | null | undefined, now: number = Date.now()): string {
  if (!value) return "never";
  const seconds = Math.round((now - new Date(value).getTime()) / 1000);
  if (Number.isNaN(seconds)) return String(value);
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ago`;
  return `${Math.floor(seconds / 86400)}d ago`;
}

export function formatCount(value: number | null | undefined): string {
  if (value === null || value === undefined) return "—";
  return new Intl.NumberFormat("en-US").format(value);
}

export function formatPercent(value: number | null | undefined, digits = 1): string {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return `${(value * 100).toFixed(digits)}%`;
}
