import { useEffect, useMemo, useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { Link } from "react-router-dom";
import { apiGet, socketUrl } from "../../api/client";
import type { Anomaly, AnomalyList, LogRecord } from "../../api/types";
import { Badge, SeverityBadge } from "../../components/Badge";
import { themeColor } from "../../components/Chart";
import { useTheme } from "../../components/theme";
import { ErrorState, Loading, QueryState } from "../../components/States";
import { TimeRangePicker } from "../../components/TimeRangePicker";
import { formatTime, formatTimestamp } from "../../lib/time";
import { linkTo, useUrlState } from "../../lib/url";
import { useTimeRange } from "../../lib/useTimeRange";
import { LogHistogram, type TimelineMark } from "../logs/LogHistogram";

export const SEVERITY_ORDER = ["critical", "high", "medium", "low"];

export function bySeverity(anomalies: Anomaly[]): Anomaly[] {
  const rank = (severity: string) => {
    const index = SEVERITY_ORDER.indexOf(severity.toLowerCase());
    return index === -1 ? SEVERITY_ORDER.length : index;
  };
  return [...anomalies].sort((a, b) => rank(a.severity) - rank(b.severity) || Math.abs(b.z_score) - Math.abs(a.z_score));
}

/** Drops and silences last for hours: the timeline shades their span instead of marking a point. */
const SPAN_KINDS = new Set(["volume_drop", "pattern_drop", "service_quiet"]);

export function isSpanKind(kind: string): boolean {
  return SPAN_KINDS.has(kind);
}

function seconds(value: string | null | undefined): number | null {
  if (!value) return null;
  const time = new Date(value).getTime();
  return Number.isNaN(time) ? null : time / 1000;
}

/** The peak hour (rows from before incidents only have `bucket`). */
export function peakOf(anomaly: Anomaly): string {
  return anomaly.peak ?? anomaly.bucket ?? anomaly.created_at;
}

/** Timeline marks: a span for each drop or silence, a line at the peak for the rest. */
export function timelineMarks(anomalies: Anomaly[], colorOf: (severity: string) => string): TimelineMark[] {
  const marks: TimelineMark[] = [];
  for (const anomaly of anomalies) {
    const color = colorOf(anomaly.severity.toLowerCase());
    const start = seconds(anomaly.start);
    const end = seconds(anomaly.end);
    if (isSpanKind(anomaly.kind) && start !== null && end !== null && end > start) {
      marks.push({ time: start, end, color });
      continue;
    }
    const peak = seconds(peakOf(anomaly));
    if (peak !== null) marks.push({ time: peak, color });
  }
  return marks;
}

export interface RootCauseGroup {
  key: string;
  group: string;
  anomalies: Anomaly[];
}

/**
 * Anomalies sharing a `related_group` (within one report: each run numbers its own) are shown
 * together, in the order of their most severe member; the rest stay alone, in the given order.
 */
export function groupByRootCause(sorted: Anomaly[]): { groups: RootCauseGroup[]; alone: Anomaly[] } {
  const groups = new Map<string, RootCauseGroup>();
  const alone: Anomaly[] = [];
  for (const anomaly of sorted) {
    if (!anomaly.related_group) {
      alone.push(anomaly);
      continue;
    }
    const key = `${anomaly.report_id}/${anomaly.related_group}`;
    const group = groups.get(key) ?? { key, group: anomaly.related_group, anomalies: [] };
    group.anomalies.push(anomaly);
    groups.set(key, group);
  }
  return { groups: [...groups.values()], alone };
}

function signed(value: number): string {
  const text = Math.abs(value).toLocaleString("en-US", { maximumFractionDigits: 1 });
  return value > 0 ? `+${text}` : value < 0 ? `−${text}` : text;
}

/** Explore over the incident's span (its peak hour for rows without one), for its service and pattern. */
export function anomalyLogsLink(anomaly: Anomaly): string {
  const start = new Date(anomaly.start ?? peakOf(anomaly));
  const end = anomaly.start && anomaly.end ? new Date(anomaly.end) : new Date(start.getTime() + 3600_000);
  const range =
    Number.isNaN(start.getTime()) || Number.isNaN(end.getTime())
      ? { since: "24h" }
      : { start: start.toISOString(), end: end.toISOString() };
  return linkTo("/explore", { service: anomaly.service, pattern_id: anomaly.pattern_id || null, ...range });
}

function IncidentCard({ anomaly }: { anomaly: Anomaly }) {
  const stoppedForGood = anomaly.ongoing && anomaly.kind === "service_quiet";
  return (
    <li className={`card anomaly severity-edge-${anomaly.severity.toLowerCase()}`} data-testid="anomaly">
      <div className="card-head">
        <SeverityBadge severity={anomaly.severity} />
        <strong>{anomaly.kind.replace(/_/g, " ")}</strong>
        <span className="muted">{anomaly.service}</span>
        {anomaly.ongoing ? <Badge tone="bad">{stoppedForGood ? "ongoing: stopped for good" : "ongoing"}</Badge> : null}
        <span className="muted right" data-testid="incident-span">
          {anomaly.start && anomaly.end
            ? `${formatTime(anomaly.start)} – ${formatTime(anomaly.end)} (${anomaly.hours} h)`
            : formatTime(peakOf(anomaly))}
        </span>
      </div>
      {anomaly.description ? <p>{anomaly.description}</p> : null}
      <dl className="evidence">
        <div>
          <dt>peak</dt>
          <dd>{formatTime(peakOf(anomaly))}</dd>
        </div>
        <div>
          <dt>observed / expected</dt>
          <dd data-testid="incident-totals">
            {anomaly.observed_total.toLocaleString("en-US", { maximumFractionDigits: 1 })} /{" "}
            {anomaly.expected_total.toLocaleString("en-US", { maximumFractionDigits: 1 })}
          </dd>
        </div>
        <div>
          <dt>excess</dt>
          <dd data-testid="incident-excess">{signed(anomaly.excess)}</dd>
        </div>
        <div>
          <dt>baseline</dt>
          <dd>
            {anomaly.expected.toFixed(1)} ± {anomaly.stddev.toFixed(1)}
          </dd>
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
  );
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

/** Live events first (newest on top), then the range's earlier ones the live stream did not bring. */
export function mergeNovel(live: NovelError[], past: ReadonlyArray<Record<string, unknown> & { record_id: string }>) {
  const seen = new Set(live.map((event) => text(event.data.record_id)));
  const earlier = past
    .filter((event) => !seen.has(event.record_id))
    .map((event) => ({ key: `past-${event.record_id}`, received: 0, data: event as NovelError["data"] }));
  return [...live, ...earlier];
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
  const past = useQuery({
    queryKey: ["novel-errors", window],
    queryFn: ({ signal }) => apiGet("/api/novel-errors", { ...window, limit: 100 }, { signal }),
    placeholderData: (previous) => previous,
  });
  const novelErrors = useMemo(() => mergeNovel(novel.events, past.data?.novel_errors ?? []), [novel.events, past.data]);
  const theme = useTheme();
  const sorted = useMemo(() => bySeverity(anomalies.data?.anomalies ?? []), [anomalies.data]);
  const grouped = useMemo(() => groupByRootCause(sorted), [sorted]);
  const markers = useMemo(
    () => timelineMarks(sorted, (severity) => themeColor(`--severity-${severity}`, "#e5534b")),
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
          <span className="muted">log volume: spikes marked at their peak, drops and silences shaded over their span · drag to zoom</span>
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
              <>
                {grouped.groups.map((group) => (
                  <section key={group.key} className="root-cause" aria-label={`Candidate root cause ${group.group}`} data-testid="root-cause">
                    <h3>
                      Candidate root cause {group.group}{" "}
                      <span className="muted">
                        {group.anomalies.length} related anomal{group.anomalies.length === 1 ? "y" : "ies"}
                      </span>
                    </h3>
                    <ul className="card-list">
                      {group.anomalies.map((anomaly) => (
                        <IncidentCard key={anomaly.id} anomaly={anomaly} />
                      ))}
                    </ul>
                  </section>
                ))}
                {grouped.alone.length > 0 ? (
                  <ul className="card-list">
                    {grouped.alone.map((anomaly) => (
                      <IncidentCard key={anomaly.id} anomaly={anomaly} />
                    ))}
                  </ul>
                ) : null}
              </>
            )}
          </QueryState>
        </section>
        <section className="panel" aria-label="Novel errors">
          <div className="panel-head">
            <h2>Novel errors</h2>
            <span className="muted">{novel.connected ? "live" : "connecting…"}</span>
          </div>
          {past.data?.error || past.isError ? (
            <p className="muted" role="status">
              Earlier novel errors could not be read: {past.data?.error || (past.error as Error | null)?.message}
            </p>
          ) : null}
          {past.data?.truncated ? <p className="muted">The range holds more novel errors than are read; the oldest are missing.</p> : null}
          {novelErrors.length === 0 ? (
            <div className="state state-empty" role="status">
              <strong>No novel error in this range</strong>
              <div className="state-hint">An error unlike any seen before appears here the moment it is vectorized.</div>
            </div>
          ) : (
            <ul className="card-list">
              {novelErrors.map((event) => (
                <li key={event.key} className="card" data-testid="novel-error">
                  <div className="card-head">
                    <strong>{text(event.data.service)}</strong>
                    {event.received ? <span className="badge badge-new">new</span> : null}
                    <span className="muted right">{event.data.timestamp ? formatTimestamp(text(event.data.timestamp)) : ""}</span>
                  </div>
                  <p className="mono">{text(event.data.message)}</p>
                  {typeof event.data.similarity === "number" ? (
                    <p className="muted" data-testid="novel-similarity">
                      {`Closest earlier error ${Number(event.data.similarity).toFixed(2)} similar (novel below ${Number(event.data.threshold ?? 0).toFixed(2)})`}
                    </p>
                  ) : null}
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
