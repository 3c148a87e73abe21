import { useEffect, useMemo, useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { Link } from "react-router-dom";
import { apiGet, socketUrl } from "../../api/client";
import type { Anomaly, AnomalyList, LogRecord } from "../../api/types";
import { SeverityBadge } from "../../components/Badge";
import { themeColor } from "../../components/Chart";
import { useTheme } from "../../components/theme";
import { ErrorState, Loading, QueryState } from "../../components/States";
import { TimeRangePicker } from "../../components/TimeRangePicker";
import { formatTime, formatTimestamp } from "../../lib/time";
import { linkTo, useUrlState } from "../../lib/url";
import { useTimeRange } from "../../lib/useTimeRange";
import { LogHistogram } from "../logs/LogHistogram";

export const SEVERITY_ORDER = ["critical", "high", "medium", "low"];

export function bySeverity(anomalies: Anomaly[]): Anomaly[] {
  const rank = (severity: string) => {
    const index = SEVERITY_ORDER.indexOf(severity.toLowerCase());
    return index === -1 ? SEVERITY_ORDER.length : index;
  };
  return [...anomalies].sort((a, b) => rank(a.severity) - rank(b.severity) || Math.abs(b.z_score) - Math.abs(a.z_score));
}

/** Explore at the anomaly's hour (its bucket), for its service and pattern. */
export function anomalyLogsLink(anomaly: Anomaly): string {
  const start = new Date(anomaly.bucket ?? anomaly.created_at);
  const range = Number.isNaN(start.getTime())
    ? { since: "24h" }
    : { start: start.toISOString(), end: new Date(start.getTime() + 3600_000).toISOString() };
  return linkTo("/explore", { service: anomaly.service, pattern_id: anomaly.pattern_id || null, ...range });
}

interface NovelError {
  key: string;
  received: number;
  data: Partial<LogRecord> & Record<string, unknown>;
}

function useNovelErrors() {
  const [events, setEvents] = useState<NovelError[]>([]);
  const [connected, setConnected] = useState(false);
  useEffect(() => {
    const socket = new WebSocket(socketUrl("/ws/events"));
    let sequence = 0;
    socket.onopen = () => setConnected(true);
    socket.onclose = () => setConnected(false);
    socket.onmessage = (event) => {
      let message: { type?: string; data?: Record<string, unknown> };
      try {
        message = JSON.parse(String(event.data));
      } catch {
        return;
      }
      if (message.type === "novel_error" && message.data) {
        const data = message.data;
        setEvents((current) => [{ key: `${Date.now()}-${sequence++}`, received: Date.now(), data }, ...current].slice(0, 100));
      }
    };
    return () => socket.close(1000);
  }, []);
  return { events, connected };
}

function text(value: unknown): string {
  return value === null || value === undefined ? "" : String(value);
}

export function AnomaliesPage() {
  const [params, update] = useUrlState();
  const { range, refresh, setSince, setAbsolute } = useTimeRange("24h");
  const severity = params.get("severity") ?? "";
  const window = { start: range.start.toISOString(), end: range.end.toISOString() };
  const anomalies = useQuery({
    queryKey: ["anomalies", window, severity],
    queryFn: ({ signal }) =>
      apiGet<"/api/anomalies", AnomalyList>("/api/anomalies", { ...window, severity: severity || undefined, limit: 500 }, { signal }),
    placeholderData: (previous) => previous,
  });
  const volume = useQuery({
    queryKey: ["histogram", "anomalies", window],
    queryFn: ({ signal }) => apiGet("/api/logs/histogram", { ...window, buckets: 96 }, { signal }),
    placeholderData: (previous) => previous,
  });
  const novel = useNovelErrors();
  const theme = useTheme();
  const sorted = useMemo(() => bySeverity(anomalies.data?.anomalies ?? []), [anomalies.data]);
  const markers = useMemo(
    () =>
      sorted
        .filter((anomaly) => anomaly.bucket ?? anomaly.created_at)
        .map((anomaly) => ({
          time: new Date(anomaly.bucket ?? anomaly.created_at).getTime() / 1000,
          color: themeColor(`--severity-${anomaly.severity.toLowerCase()}`, "#e5534b"),
        })),
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [sorted, theme],
  );

  return (
    <div className="page">
      <div className="page-head">
        <h1>Anomalies and novel errors</h1>
        <div className="page-actions">
          <div className="field-inline">
            <label htmlFor="severity-filter">Severity</label>
            <select id="severity-filter" value={severity} onChange={(event) => update({ severity: event.target.value })}>
              <option value="">All</option>
              <option value="critical">Critical</option>
              <option value="high,critical">High and above</option>
              <option value="medium,high,critical">Medium and above</option>
            </select>
          </div>
          <TimeRangePicker range={range} onSince={setSince} onRefresh={refresh} />
        </div>
      </div>
      <section className="panel" aria-label="Timeline">
        <div className="panel-head">
          <h2>Timeline</h2>
          <span className="muted">log volume with each anomaly marked where it happened · drag to zoom</span>
        </div>
        {volume.isPending ? (
          <Loading label="Loading the volume" />
        ) : volume.error || !volume.data ? (
          <ErrorState error={volume.error} onRetry={() => volume.refetch()} />
        ) : (
          <LogHistogram histogram={volume.data} markers={markers} onZoom={setAbsolute} height={140} />
        )}
      </section>
      <div className="columns">
        <section className="panel" aria-label="Anomalies by severity">
          <div className="panel-head">
            <h2>Anomalies</h2>
            <span className="muted">{anomalies.data ? `${anomalies.data.total} in range` : null}</span>
          </div>
          <QueryState
            query={anomalies}
            label="Loading anomalies"
            isEmpty={(data) => data.anomalies.length === 0}
            empty={
              <div className="state state-empty" role="status">
                <strong>No anomalies in this range</strong>
                <div className="state-hint">Anomalies come from analysis runs: start one on the Reports page.</div>
              </div>
            }
          >
            {() => (
              <ul className="card-list">
                {sorted.map((anomaly) => (
                  <li key={anomaly.id} className={`card anomaly severity-edge-${anomaly.severity.toLowerCase()}`} data-testid="anomaly">
                    <div className="card-head">
                      <SeverityBadge severity={anomaly.severity} />
                      <strong>{anomaly.kind.replace(/_/g, " ")}</strong>
                      <span className="muted">{anomaly.service}</span>
                      <span className="muted right">{formatTime(anomaly.bucket ?? anomaly.created_at)}</span>
                    </div>
                    {anomaly.description ? <p>{anomaly.description}</p> : null}
                    <dl className="evidence">
                      <div>
                        <dt>baseline</dt>
                        <dd>
                          {anomaly.expected.toFixed(1)} ± {anomaly.stddev.toFixed(1)}
                        </dd>
                      </div>
                      <div>
                        <dt>observed</dt>
                        <dd>{anomaly.observed.toFixed(0)}</dd>
                      </div>
                      <div>
                        <dt>z-score</dt>
                        <dd>{anomaly.z_score.toFixed(2)}</dd>
                      </div>
                      {anomaly.pattern_id ? (
                        <div>
                          <dt>pattern</dt>
                          <dd>
                            <Link to={linkTo("/explore", { pattern_id: anomaly.pattern_id, since: "24h" })}>{anomaly.pattern_id}</Link>
                          </dd>
                        </div>
                      ) : null}
                    </dl>
                    <div className="card-links">
                      <Link to={anomalyLogsLink(anomaly)}>Logs at that time</Link>
                      <Link to={`/reports/${encodeURIComponent(anomaly.report_id)}`}>Open its report</Link>
                    </div>
                  </li>
                ))}
              </ul>
            )}
          </QueryState>
        </section>
        <section className="panel" aria-label="Novel errors, live">
          <div className="panel-head">
            <h2>Novel errors</h2>
            <span className="muted">{novel.connected ? "live" : "connecting…"}</span>
          </div>
          {novel.events.length === 0 ? (
            <div className="state state-empty" role="status">
              <strong>No novel error since this page opened</strong>
              <div className="state-hint">An error unlike any seen before appears here the moment it is vectorized.</div>
            </div>
          ) : (
            <ul className="card-list">
              {novel.events.map((event) => (
                <li key={event.key} className="card" data-testid="novel-error">
                  <div className="card-head">
                    <strong>{text(event.data.service)}</strong>
                    <span className="muted right">{event.data.timestamp ? formatTimestamp(text(event.data.timestamp)) : ""}</span>
                  </div>
                  <p className="mono">{text(event.data.message)}</p>
                  {event.data.trace_id ? (
                    <Link to={linkTo("/explore", { trace_id: text(event.data.trace_id), since: "24h" })}>Logs of this trace</Link>
                  ) : null}
                </li>
              ))}
            </ul>
          )}
        </section>
      </div>
    </div>
  );
}
