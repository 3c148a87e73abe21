import { useQuery } from "@tanstack/react-query";
import { Link } from "react-router-dom";
import { apiGet } from "../../api/client";
import type { ServiceStats } from "../../api/types";
import { Badge } from "../../components/Badge";
import { Sparkline } from "../../components/Sparkline";
import { QueryState } from "../../components/States";
import { formatAgo, formatCount, formatPercent, formatTime } from "../../lib/time";
import { linkTo, useUrlState } from "../../lib/url";

const WINDOWS: [string, string][] = [
  ["15", "Last 15 minutes"],
  ["60", "Last hour"],
  ["360", "Last 6 hours"],
  ["1440", "Last 24 hours"],
];
const SERIES_BUCKETS = 30;

const STATUS_TONE: Record<string, "good" | "warn" | "bad" | "neutral"> = {
  healthy: "good",
  degraded: "warn",
  failing: "bad",
  silent: "neutral",
};

export function ServiceCard({ service, windowMinutes }: { service: ServiceStats; windowMinutes: number }) {
  const series = service.series ?? [];
  return (
    <li className={`card service-card${service.quiet ? " quiet" : ""}`} data-testid="service-card">
      <div className="card-head">
        <h2 className="card-title">{service.service}</h2>
        <Badge tone={STATUS_TONE[service.status] ?? "neutral"}>{service.status}</Badge>
        {service.quiet ? <Badge tone="bad">went quiet</Badge> : null}
      </div>
      {series.length ? (
        <Sparkline
          width={260}
          height={48}
          values={series.map((point) => point.logs)}
          secondary={series.map((point) => point.errors)}
          label={`Logs (line) and errors (red line) of ${service.service} over the last ${windowMinutes} minutes`}
        />
      ) : null}
      <dl className="stats">
        <div>
          <dt>logs/s</dt>
          <dd>{service.logs_per_second.toFixed(2)}</dd>
        </div>
        <div>
          <dt>errors</dt>
          <dd>{formatCount(service.errors)}</dd>
        </div>
        <div>
          <dt>error ratio</dt>
          <dd>{formatPercent(service.error_ratio)}</dd>
        </div>
        <div>
          <dt>last seen</dt>
          <dd title={formatTime(service.last_seen)}>{formatAgo(service.last_seen)}</dd>
        </div>
      </dl>
      <div className="card-links">
        <Link to={linkTo("/explore", { service: service.service, since: `${windowMinutes}m` })}>Logs</Link>
        <Link to={linkTo("/explore", { service: service.service, level: "ERROR,FATAL", since: `${windowMinutes}m` })}>Errors</Link>
        <Link to={linkTo("/patterns", { service: service.service })}>Patterns</Link>
      </div>
    </li>
  );
}

export function ServicesPage() {
  const [params, update] = useUrlState();
  const windowMinutes = Number(params.get("window") ?? "60") || 60;
  const query = useQuery({
    queryKey: ["services", windowMinutes],
    queryFn: ({ signal }) =>
      apiGet(
        "/api/services",
        { window_minutes: windowMinutes, series_buckets: SERIES_BUCKETS },
        { signal },
      ),
    placeholderData: (previous) => previous,
    refetchInterval: 15_000,
  });
  return (
    <div className="page">
      <div className="page-head">
        <h1>Services</h1>
        <div className="page-actions">
          <div className="field-inline">
            <label htmlFor="window-select">Window</label>
            <select id="window-select" value={String(windowMinutes)} onChange={(event) => update({ window: event.target.value })}>
              {WINDOWS.map(([value, label]) => (
                <option key={value} value={value}>
                  {label}
                </option>
              ))}
            </select>
          </div>
        </div>
      </div>
      <QueryState
        query={query}
        label="Loading services"
        isEmpty={(data) => data.services.length === 0}
        empty={
          <div className="state state-empty" role="status">
            <strong>No service logged in this window</strong>
            <div className="state-hint">Widen the window, or check the Pipeline page for ingest.</div>
          </div>
        }
      >
        {(data) => (
          <ul className="card-grid">
            {[...data.services]
              .sort((a, b) => Number(Boolean(b.quiet)) - Number(Boolean(a.quiet)) || b.error_ratio - a.error_ratio)
              .map((service) => (
                <ServiceCard key={service.service} service={service} windowMinutes={windowMinutes} />
              ))}
          </ul>
        )}
      </QueryState>
    </div>
  );
}
