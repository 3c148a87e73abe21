import { useEffect, useState, type FormEvent } from "react";
import { useQuery } from "@tanstack/react-query";
import { Link } from "react-router-dom";
import { apiPost } from "../../api/client";
import type { SearchResponse } from "../../api/types";
import { useServiceNames } from "../../api/useServiceNames";
import { LevelBadge } from "../../components/Badge";
import { LevelFilter, ServiceSelect } from "../../components/FilterBar";
import { Empty, QueryState } from "../../components/States";
import { formatTimestamp } from "../../lib/time";
import { linkTo, useUrlState } from "../../lib/url";

function aroundTime(timestamp: string) {
  const time = new Date(timestamp).getTime();
  if (Number.isNaN(time)) return {};
  return { start: new Date(time - 60_000).toISOString(), end: new Date(time + 60_000).toISOString() };
}

// Why a hit matched (the search fuses a vector ranking and a keyword ranking).
const MATCH_LABELS = { vector: "by meaning", keyword: "by words", both: "by meaning and words" } as const;
const MATCH_TITLES = {
  vector: "found by the embedding search (similar meaning)",
  keyword: "found by the keyword search (shared words, abbreviations spelled out)",
  both: "found by both the embedding and the keyword search",
} as const;

export function SearchPage() {
  const [params, update] = useUrlState();
  const q = params.get("q") ?? "";
  const service = params.get("service") ?? "";
  const level = (params.get("level") ?? "").split(",").filter(Boolean);
  const topK = Number(params.get("top_k") ?? "20") || 20;
  const services = useServiceNames();
  const [draft, setDraft] = useState(q);
  useEffect(() => setDraft(q), [q]);

  const filters: Record<string, unknown> = {};
  if (service) filters.service = service;
  if (level.length) filters.level = level;
  const search = useQuery({
    queryKey: ["semantic", q, filters, topK],
    queryFn: () => apiPost<SearchResponse>("/api/search/semantic", { query: q, top_k: topK, filters }),
    enabled: q.trim().length > 0,
    staleTime: 60_000,
  });

  function submit(event: FormEvent) {
    event.preventDefault();
    update({ q: draft.trim() });
  }

  return (
    <div className="page">
      <div className="page-head">
        <h1>Semantic search</h1>
      </div>
      <form className="search-form" role="search" aria-label="Semantic search" onSubmit={submit}>
        <label htmlFor="semantic-query" className="visually-hidden">
          Describe what you are looking for
        </label>
        <input
          id="semantic-query"
          type="search"
          value={draft}
          onChange={(event) => setDraft(event.target.value)}
          placeholder="e.g. database connection timed out"
        />
        <button type="submit" className="button button-primary">
          Search
        </button>
      </form>
      <div className="filters">
        <ServiceSelect value={service} services={services} onChange={(value) => update({ service: value })} />
        <LevelFilter selected={level} onChange={(levels) => update({ level: levels.join(",") })} />
        <div className="field-inline">
          <label htmlFor="top-k">Results</label>
          <select id="top-k" value={String(topK)} onChange={(event) => update({ top_k: event.target.value })}>
            {[10, 20, 50, 100].map((value) => (
              <option key={value} value={value}>
                {value}
              </option>
            ))}
          </select>
        </div>
      </div>
      <section className="panel" aria-label="Results">
        {!q ? (
          <Empty title="Search logs by meaning">
            Errors and warnings are embedded as they arrive: describe a problem in your own words and the nearest logs come back
            with their similarity.
          </Empty>
        ) : (
          <QueryState
            query={search}
            label="Searching"
            isEmpty={(data) => data.results.length === 0}
            empty={<Empty title="No similar logs">Try other words, or clear the filters.</Empty>}
          >
            {(data) => (
              <ol className="hit-list">
                {data.results.map((hit) => (
                  <li key={hit.record_id} className="card hit" data-testid="search-hit">
                    <div className="card-head">
                      <span className="score" title={hit.score === null ? "found by its words" : "cosine similarity"}>
                        {hit.score === null ? "text match" : `${(hit.score * 100).toFixed(1)}%`}
                      </span>
                      {hit.match ? (
                        <span className={`match match-${hit.match}`} title={MATCH_TITLES[hit.match]}>
                          {MATCH_LABELS[hit.match]}
                        </span>
                      ) : null}
                      <LevelBadge level={String(hit.payload.level ?? "")} />
                      <span>{String(hit.payload.service ?? "")}</span>
                      <span className="muted right">{hit.payload.timestamp ? formatTimestamp(String(hit.payload.timestamp)) : ""}</span>
                    </div>
                    <p className="mono">{String(hit.payload.message ?? "")}</p>
                    {hit.template ? (
                      <p className="muted hit-pattern">
                        Pattern: <span className="mono">{hit.template}</span>
                      </p>
                    ) : null}
                    <div className="card-links">
                      <Link
                        to={linkTo("/explore", { service: String(hit.payload.service ?? ""), ...aroundTime(String(hit.payload.timestamp ?? "")) })}
                      >
                        Logs around it
                      </Link>
                      {hit.payload.trace_id ? (
                        <Link to={linkTo("/explore", { trace_id: String(hit.payload.trace_id), since: "7d" })}>Its trace</Link>
                      ) : null}
                      {hit.payload.pattern_id ? (
                        <Link to={linkTo("/explore", { pattern_id: String(hit.payload.pattern_id), since: "24h" })}>Its pattern</Link>
                      ) : null}
                    </div>
                  </li>
                ))}
              </ol>
            )}
          </QueryState>
        )}
      </section>
    </div>
  );
}
