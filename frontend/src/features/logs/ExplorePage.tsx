import { useCallback, useMemo } from "react";
import { useQuery } from "@tanstack/react-query";
import { apiGet } from "../../api/client";
import { useServiceNames } from "../../api/useServiceNames";
import { LevelFilter, ServiceMultiSelect, TextFilter } from "../../components/FilterBar";
import { Empty, ErrorState, Loading } from "../../components/States";
import { TimeRangePicker } from "../../components/TimeRangePicker";
import { formatCount } from "../../lib/time";
import { useUrlState } from "../../lib/url";
import { useTimeRange } from "../../lib/useTimeRange";
import { filtersFromParams } from "./filters";
import { useHistogram, useLogs } from "./hooks";
import { LiveTail } from "./LiveTail";
import { LogHistogram } from "./LogHistogram";
import { LogTable } from "./LogTable";

export function ExplorePage() {
  const [params, update] = useUrlState();
  const { range, refresh, setSince, setAbsolute } = useTimeRange();
  const filters = useMemo(() => filtersFromParams(params), [params]);
  const live = params.get("live") === "1";
  const services = useServiceNames();
  const histogram = useHistogram(filters, range, !live);
  const logs = useLogs(filters, range, !live);
  const rows = useMemo(() => logs.data?.pages.flatMap((page) => page.logs) ?? [], [logs.data]);
  const total = logs.data?.pages[0]?.total ?? null;
  const { hasNextPage, isFetchingNextPage, fetchNextPage } = logs;
  const loadMore = useCallback(() => {
    if (hasNextPage && !isFetchingNextPage) void fetchNextPage();
  }, [hasNextPage, isFetchingNextPage, fetchNextPage]);

  const active = [filters.trace_id && "trace", filters.pattern_id && "pattern"].filter(Boolean);
  const patternId = /^\d+$/.test(filters.pattern_id) ? Number(filters.pattern_id) : null;
  // The template of the pattern the view is filtered by, so the filter reads as words.
  const pattern = useQuery({
    queryKey: ["pattern-template", patternId, range.start.toISOString(), range.end.toISOString()],
    queryFn: ({ signal }) =>
      apiGet(
        "/api/patterns",
        { pattern_id: patternId, start: range.start.toISOString(), end: range.end.toISOString(), limit: 1 },
        { signal },
      ),
    enabled: patternId !== null,
    staleTime: 300_000,
  });
  const template = pattern.data?.patterns[0]?.template;

  return (
    <div className="page">
      <div className="page-head">
        <h1>Explore logs</h1>
        <div className="page-actions">
          {!live ? <TimeRangePicker range={range} onSince={setSince} onRefresh={refresh} /> : null}
          <button
            type="button"
            className={`button${live ? " button-primary" : ""}`}
            aria-pressed={live}
            onClick={() => update({ live: live ? null : "1" })}
          >
            {live ? "Stop live" : "Live"}
          </button>
        </div>
      </div>
      <div className="filters">
        <ServiceMultiSelect
          selected={filters.service}
          services={services}
          onChange={(service) => update({ service: service.join(",") })}
        />
        <LevelFilter selected={filters.level} onChange={(level) => update({ level: level.join(",") })} />
        <TextFilter
          id="contains-filter"
          label="Text"
          value={filters.contains}
          placeholder="text in the message"
          onApply={(contains) => update({ contains })}
          wide
        />
        <TextFilter id="trace-filter" label="Trace id" value={filters.trace_id} onApply={(trace_id) => update({ trace_id })} />
        <TextFilter id="pattern-filter" label="Pattern id" value={filters.pattern_id} onApply={(pattern_id) => update({ pattern_id })} />
        {active.length ? (
          <button type="button" className="button button-ghost" onClick={() => update({ trace_id: null, pattern_id: null })}>
            Clear {active.join(" and ")} filter
          </button>
        ) : null}
      </div>

      {template ? (
        <p className="pattern-context">
          Pattern <code data-testid="pattern-template">{template}</code>
        </p>
      ) : null}
      {live ? (
        <LiveTail filters={filters} />
      ) : (
        <>
          <section className="panel" aria-label="Log volume">
            <div className="panel-head">
              <h2>Volume</h2>
              <span className="muted">
                {histogram.data ? (
                  <>
                    <span data-testid="histogram-total">{formatCount(histogram.data.total)}</span> logs, by level · drag to
                    zoom
                  </>
                ) : null}
              </span>
            </div>
            {histogram.isPending ? (
              <Loading label="Loading the volume" />
            ) : histogram.error || !histogram.data ? (
              <ErrorState error={histogram.error} onRetry={() => histogram.refetch()} />
            ) : (
              <LogHistogram histogram={histogram.data} onZoom={setAbsolute} />
            )}
          </section>
          <section className="panel" aria-label="Log table">
            <div className="panel-head">
              <h2>Logs</h2>
              <span className="muted">
                {total !== null ? (
                  <>
                    <span data-testid="logs-total">{formatCount(total)}</span> matching · {formatCount(rows.length)} loaded
                    {logs.isFetching ? " · updating…" : ""}
                  </>
                ) : null}
              </span>
            </div>
            {logs.isPending ? (
              <Loading label="Loading logs" />
            ) : logs.error ? (
              <ErrorState error={logs.error} onRetry={() => logs.refetch()} />
            ) : rows.length === 0 ? (
              <Empty title="No logs match">Widen the time range or clear a filter.</Empty>
            ) : (
              <LogTable logs={rows} onNearEnd={loadMore} />
            )}
          </section>
        </>
      )}
    </div>
  );
}
