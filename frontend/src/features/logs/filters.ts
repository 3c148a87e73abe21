import type { QueryValue } from "./types";

/** The log filters the URL carries, named as /api/logs names them. */
export interface LogFilters {
  level: string[];
  service: string[];
  contains: string;
  trace_id: string;
  pattern_id: string;
}

export function filtersFromParams(params: URLSearchParams): LogFilters {
  const list = (name: string) =>
    (params.get(name) ?? "")
      .split(",")
      .map((value) => value.trim())
      .filter(Boolean);
  return {
    level: list("level"),
    service: list("service"),
    contains: params.get("contains") ?? "",
    trace_id: params.get("trace_id") ?? "",
    pattern_id: params.get("pattern_id") ?? "",
  };
}

export function filterQuery(filters: LogFilters, range: { start: Date; end: Date }): Record<string, QueryValue> {
  return {
    level: filters.level,
    service: filters.service,
    contains: filters.contains || undefined,
    trace_id: filters.trace_id || undefined,
    pattern_id: filters.pattern_id || undefined,
    start: range.start.toISOString(),
    end: range.end.toISOString(),
  };
}
