import { useMemo } from "react";
import { Link } from "react-router-dom";
import type { Pattern } from "../../api/types";
import { useServiceNames } from "../../api/useServiceNames";
import { Badge } from "../../components/Badge";
import { LevelFilter, ServiceSelect, TextFilter } from "../../components/FilterBar";
import { Sparkline } from "../../components/Sparkline";
import { QueryState } from "../../components/States";
import { TimeRangePicker } from "../../components/TimeRangePicker";
import { formatAgo, formatCount, formatPercent, formatTime } from "../../lib/time";
import { linkTo, useUrlState } from "../../lib/url";
import { useTimeRange } from "../../lib/useTimeRange";
import { usePatterns, type PatternFilters } from "./hooks";

type SortKey = "count" | "growth" | "share" | "first_seen" | "last_seen";
const SORTS: [SortKey, string][] = [
  ["count", "Count"],
  ["growth", "Growth"],
  ["first_seen", "First seen"],
  ["last_seen", "Last seen"],
];

export function sortPatterns(patterns: Pattern[], key: SortKey): Pattern[] {
  const value = (pattern: Pattern): number => {
    switch (key) {
      case "growth":
        // New patterns grow from nothing: they lead.
        return isNew(pattern) ? Number.POSITIVE_INFINITY : (pattern.growth ?? Number.NEGATIVE_INFINITY);
      case "first_seen":
        return pattern.first_seen ? new Date(pattern.first_seen).getTime() : 0;
      case "last_seen":
        return pattern.last_seen ? new Date(pattern.last_seen).getTime() : 0;
      case "share":
      case "count":
        return pattern.count;
    }
  };
  return [...patterns].sort((a, b) => value(b) - value(a));
}

export function isNew(pattern: Pattern): boolean {
  return Boolean(pattern.is_new ?? pattern.new);
}

export function formatGrowth(pattern: Pattern): string {
  if (isNew(pattern) || pattern.growth === null) return "new";
  const sign = pattern.growth > 0 ? "+" : "";
  return `${sign}${(pattern.growth * 100).toFixed(0)}%`;
}

export function PatternsPage() {
  const [params, update] = useUrlState();
  const { range, refresh, setSince } = useTimeRange();
  const services = useServiceNames();
  const filters: PatternFilters = {
    service: params.get("service") ?? "",
    level: (params.get("level") ?? "").split(",").filter(Boolean),
    contains: params.get("contains") ?? "",
    sort: params.get("sort") === "growth" ? "growth" : "count",
  };
  const sortKey = (params.get("order") as SortKey | null) ?? filters.sort;
  const query = usePatterns(filters, range);
  const total = query.data?.total ?? 0;
  const rows = useMemo(() => sortPatterns(query.data?.patterns ?? [], sortKey), [query.data, sortKey]);
  const rangeParams = range.kind === "since" ? { since: range.since } : { start: range.start.toISOString(), end: range.end.toISOString() };

  return (
    <div className="page">
      <div className="page-head">
        <h1>Patterns</h1>
        <div className="page-actions">
          <TimeRangePicker range={range} onSince={setSince} onRefresh={refresh} />
        </div>
      </div>
      <div className="filters">
        <ServiceSelect value={filters.service} services={services} onChange={(service) => update({ service })} />
        <LevelFilter selected={filters.level} onChange={(level) => update({ level: level.join(",") })} />
        <TextFilter
          id="template-filter"
          label="Template"
          value={filters.contains}
          placeholder="text in the template"
          onApply={(contains) => update({ contains })}
          wide
        />
        <div className="field-inline">
          <label htmlFor="pattern-sort">Sort by</label>
          <select
            id="pattern-sort"
            value={sortKey}
            onChange={(event) => {
              const value = event.target.value as SortKey;
              // Count and growth are ranked by the server (so the top N is right); the rest sort here.
              update({ order: value, sort: value === "growth" ? "growth" : "count" });
            }}
          >
            {SORTS.map(([key, label]) => (
              <option key={key} value={key}>
                {label}
              </option>
            ))}
          </select>
        </div>
      </div>
      <section className="panel" aria-label="Patterns">
        <QueryState
          query={query}
          label="Counting patterns"
          isEmpty={(data) => data.patterns.length === 0}
          empty={
            <div className="state state-empty" role="status">
              <strong>No patterns in this range</strong>
              <div className="state-hint">Widen the time range or clear a filter.</div>
            </div>
          }
        >
          {() => (
            <div className="table-scroll">
              <table className="data-table patterns-table">
                <caption className="visually-hidden">Patterns in the range, {formatCount(total)} logs in all</caption>
                <thead>
                  <tr>
                    <th scope="col">Template</th>
                    <th scope="col" className="num">Count</th>
                    <th scope="col" className="num">Share</th>
                    <th scope="col">Volume</th>
                    <th scope="col">First seen</th>
                    <th scope="col">Last seen</th>
                    <th scope="col" className="num">Growth</th>
                  </tr>
                </thead>
                <tbody>
                  {rows.map((pattern) => (
                    <tr key={`${pattern.pattern_id}-${pattern.service ?? ""}-${pattern.level ?? ""}`} data-testid="pattern-row">
                      <td className="template-cell">
                        <Link
                          className="template-link"
                          to={linkTo("/explore", { pattern_id: pattern.pattern_id, ...rangeParams })}
                          title="Open these logs in Explore"
                        >
                          <code>{pattern.template ?? `pattern ${pattern.pattern_id}`}</code>
                        </Link>
                        {isNew(pattern) ? <Badge tone="new">new</Badge> : null}
                        {pattern.example ? <div className="example">e.g. {pattern.example}</div> : null}
                      </td>
                      <td className="num">{formatCount(pattern.count)}</td>
                      <td className="num">{formatPercent(pattern.share ?? (total ? pattern.count / total : null))}</td>
                      <td>
                        {pattern.sparkline ? (
                          <Sparkline values={pattern.sparkline} label={`Volume of pattern ${pattern.pattern_id} over the range`} />
                        ) : (
                          <span className="muted">—</span>
                        )}
                      </td>
                      <td title={formatTime(pattern.first_seen)}>{formatAgo(pattern.first_seen)}</td>
                      <td title={formatTime(pattern.last_seen)}>{formatAgo(pattern.last_seen)}</td>
                      <td className={`num growth ${pattern.growth && pattern.growth > 0 ? "up" : "down"}`}>{formatGrowth(pattern)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </QueryState>
      </section>
    </div>
  );
}
