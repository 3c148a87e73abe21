import { useInfiniteQuery, useQuery } from "@tanstack/react-query";
import { apiGet } from "../../api/client";
import { filterQuery, type LogFilters } from "./filters";

export const PAGE_SIZE = 200;
export const HISTOGRAM_BUCKETS = 60;

/** Logs newest first, page by page (keyset cursor); `total` comes with the first page. */
export function useLogs(filters: LogFilters, range: { start: Date; end: Date }, enabled = true) {
  const query = filterQuery(filters, range);
  return useInfiniteQuery({
    queryKey: ["logs", query],
    queryFn: ({ pageParam, signal }) =>
      apiGet(
        "/api/logs",
        { ...query, limit: PAGE_SIZE, cursor: pageParam ?? undefined, total: pageParam ? false : true },
        { signal },
      ),
    initialPageParam: null as string | null,
    getNextPageParam: (last) => last.next_cursor,
    placeholderData: (previous) => previous,
    enabled,
  });
}

/** Log volume per aligned bucket, split by level, for exactly the table's filter and range. */
export function useHistogram(filters: LogFilters, range: { start: Date; end: Date }, enabled = true) {
  const query = filterQuery(filters, range);
  return useQuery({
    queryKey: ["histogram", query],
    queryFn: ({ signal }) =>
      apiGet("/api/logs/histogram", { ...query, buckets: HISTOGRAM_BUCKETS }, { signal }),
    placeholderData: (previous) => previous,
    enabled,
  });
}
