import { useQuery } from "@tanstack/react-query";
import { apiGet } from "../../api/client";

export const SPARKLINE_BUCKETS = 24;

export interface PatternFilters {
  service: string;
  level: string[];
  contains: string;
  sort: "count" | "growth";
}

export function usePatterns(filters: PatternFilters, range: { start: Date; end: Date }) {
  const query = {
    start: range.start.toISOString(),
    end: range.end.toISOString(),
    service: filters.service || undefined,
    level: filters.level,
    contains: filters.contains || undefined,
    sort: filters.sort,
    sparkline_buckets: SPARKLINE_BUCKETS,
    limit: 200,
  };
  return useQuery({
    queryKey: ["patterns", query],
    queryFn: ({ signal }) => apiGet("/api/patterns", query, { signal }),
    placeholderData: (previous) => previous,
  });
}
