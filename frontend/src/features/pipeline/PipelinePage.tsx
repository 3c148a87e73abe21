import { useMemo } from "react";
import { useQuery } from "@tanstack/react-query";
import type uPlot from "uplot";
import { apiGet } from "../../api/client";
import { isUnavailable, type PipelineState } from "../../api/types";
import { Chart, themeColor } from "../../components/Chart";
import { useTheme } from "../../components/theme";
import { Empty, ErrorState, Loading, QueryState } from "../../components/States";
import { formatCount, formatTimestamp } from "../../lib/time";
import { useUrlState } from "../../lib/url";

const DLQ_TOPICS = ["raw-logs-dlq", "vectorization-dlq"] as const;
const LINE_COLORS = ["#4f9cf9", "#f5a524", "#3fb950", "#d2a8ff", "#ff7b72", "#79c0ff"];

function Unavailable({ what, error }: { what: string; error: string }) {
  return (
    <div className="state state-error" role="status">
      <strong>{what} is not available.</strong>
      <div className="state-hint">{(error.split("\n")[0] ?? "").slice(0, 300)}</div>
    </div>
  );
}

/** What a semantic search covers: the retention the vectorizer applies to the collection. */
export function retentionText(collection: PipelineState["collection"]): string {
  const parts: string[] = [];
  if (collection.max_points != null) parts.push(`newest ${formatCount(collection.max_points)} kept`);
  if (collection.retention_days != null) parts.push(`${collection.retention_days}-day retention`);
  if (collection.expired != null) parts.push(`${formatCount(collection.expired)} expired`);
  return parts.length ? parts.join(" · ") : "no retention reported";
}

/** Consumer lag per group and topic over the gateway's sampled history. */
export function lagSeries(history: PipelineState["lag_history"]) {
  const keys = [...new Set(history.map((point) => `${point.group} · ${point.topic}`))].sort();
  const times = [...new Set(history.map((point) => Math.floor(new Date(point.time).getTime() / 1000)))].sort((a, b) => a - b);
  const index = new Map(times.map((time, position) => [time, position]));
  const series = keys.map(() => times.map(() => null as number | null));
  history.forEach((point) => {
    const row = series[keys.indexOf(`${point.group} · ${point.topic}`)];
    const column = index.get(Math.floor(new Date(point.time).getTime() / 1000));
    if (row && column !== undefined) row[column] = point.lag;
  });
  return { keys, times, series };
}

function LagChart({ history }: { history: PipelineState["lag_history"] }) {
  const { keys, times, series } = useMemo(() => lagSeries(history), [history]);
  const theme = useTheme();
  const options = useMemo<Omit<uPlot.Options, "width" | "height">>(() => {
    const axis = themeColor("--text-muted", "#999");
    const grid = themeColor("--grid", "rgba(128,128,128,0.15)");
    return {
      scales: { x: { time: true } },
      axes: [
        { stroke: axis, grid: { stroke: grid }, ticks: { stroke: grid } },
        { stroke: axis, grid: { stroke: grid }, ticks: { stroke: grid }, size: 60 },
      ],
      series: [{ label: "time" }, ...keys.map((key, i) => ({ label: key, stroke: LINE_COLORS[i % LINE_COLORS.length], width: 2, spanGaps: true }))],
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [keys, theme]);
  const data = useMemo<uPlot.AlignedData>(() => [times, ...series] as uPlot.AlignedData, [times, series]);
  if (!times.length) return <Empty title="No lag sampled yet">The gateway samples consumer lag every 10 seconds.</Empty>;
  return <Chart options={options} data={data} height={200} label="Consumer lag per group over time" />;
}

function Rates({ rates }: { rates: PipelineState["rates"] }) {
  return (
    <div className="rate-cards">
      {Object.entries(rates).map(([service, stats]) => (
        <div key={service} className="card">
          <h3 className="card-title">{service}</h3>
          {isUnavailable(stats) ? (
            <p className="muted">not reachable: {String(stats.error).split("\n")[0]?.slice(0, 200)}</p>
          ) : (
            <dl className="stats">
              {Object.entries(stats)
                .filter(([key, value]) => key !== "available" && (typeof value === "number" || typeof value === "string"))
                .slice(0, 10)
                .map(([key, value]) => (
                  <div key={key}>
                    <dt>{key.replace(/_/g, " ")}</dt>
                    <dd>{typeof value === "number" ? formatCount(Math.round(value * 100) / 100) : String(value)}</dd>
                  </div>
                ))}
            </dl>
          )}
        </div>
      ))}
    </div>
  );
}

function DeadLetters({ topic }: { topic: string }) {
  const query = useQuery({
    queryKey: ["dlq", topic],
    queryFn: ({ signal }) => apiGet("/api/pipeline/dlq", { topic, limit: 20 }, { signal }),
  });
  return (
    <QueryState
      query={query}
      label="Reading dead letters"
      isEmpty={(data) => data.available && data.records.length === 0}
      empty={<Empty title="Nothing dead-lettered">Every record of this stage was processed.</Empty>}
    >
      {(data) => !data.available ? (
        <Unavailable what="The dead-letter topic" error={data.error ?? "Kafka is not reachable"} />
      ) : (
        <ul className="card-list">
          {data.records.map((record) => (
            <li key={`${record.partition}-${record.offset}`} className="card" data-testid="dlq-record">
              <div className="card-head">
                <strong>{record.stage}</strong>
                <span className="muted">
                  partition {record.partition} · offset {record.offset} · {formatCount(record.original_bytes)} bytes
                </span>
                <span className="muted right">{record.time ? formatTimestamp(record.time) : ""}</span>
              </div>
              <p className="form-error">{record.error}</p>
              <pre className="field-pre">{record.original}</pre>
            </li>
          ))}
        </ul>
      )}
    </QueryState>
  );
}

export function PipelinePage() {
  const [params, update] = useUrlState();
  const dlqTopic = params.get("dlq") ?? DLQ_TOPICS[0];
  const query = useQuery({
    queryKey: ["pipeline"],
    queryFn: ({ signal }) => apiGet("/api/pipeline", {}, { signal }),
    refetchInterval: 10_000,
  });
  if (query.isPending) return <Loading label="Reading the pipeline" />;
  if (query.error || !query.data) return <ErrorState error={query.error} onRetry={() => query.refetch()} />;
  const state = query.data;
  return (
    <div className="page">
      <div className="page-head">
        <h1>Pipeline{state.pipeline ? `: ${state.pipeline}` : ""}</h1>
      </div>
      <div className="columns">
        <section className="panel" aria-label="Topics">
          <h2>Topics</h2>
          {!state.available ? (
            <Unavailable what="Kafka" error={state.error ?? "not reachable"} />
          ) : (
            <table className="data-table">
              <thead>
                <tr>
                  <th scope="col">Topic</th>
                  <th scope="col" className="num">Partitions</th>
                  <th scope="col" className="num">Records (end offsets)</th>
                </tr>
              </thead>
              <tbody>
                {state.topics.map((topic) => (
                  <tr key={topic.name}>
                    <td>
                      <details>
                        <summary>{topic.name}</summary>
                        <ul className="plain">
                          {topic.partitions.map((partition) => (
                            <li key={partition.partition}>
                              partition {partition.partition}: {formatCount(partition.end_offset)}
                            </li>
                          ))}
                        </ul>
                      </details>
                    </td>
                    <td className="num">{topic.partitions.length}</td>
                    <td className="num">{formatCount(topic.partitions.reduce((sum, p) => sum + p.end_offset, 0))}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>
        <section className="panel" aria-label="Storage and dead letters">
          <h2>Vectors and dead letters</h2>
          <dl className="figures">
            <div>
              <dt>collection {state.collection.name}</dt>
              <dd data-testid="collection-points">{state.collection.available ? formatCount(state.collection.points) : "unavailable"}</dd>
              {state.collection.available ? (
                <dd className="figure-note muted" data-testid="collection-retention">{retentionText(state.collection)}</dd>
              ) : null}
            </div>
            {Object.entries(state.dlq).map(([topic, count]) => (
                  <div key={topic}>
                    <dt>{topic}</dt>
                    <dd>{formatCount(count)}</dd>
                  </div>
            ))}
          </dl>
          {!state.available ? <Unavailable what="The DLQ counts" error={state.error ?? "Kafka is not reachable"} /> : null}
          {!state.collection.available ? <Unavailable what="The collection's size" error={state.collection.error ?? ""} /> : null}
        </section>
      </div>
      <section className="panel" aria-label="Consumer lag">
        <h2>Consumer lag</h2>
        {!state.available ? (
          <Unavailable what="Consumer lag" error={state.error ?? "Kafka is not reachable"} />
        ) : (
          <>
            <LagChart history={state.lag_history} />
            <table className="data-table">
              <thead>
                <tr>
                  <th scope="col">Group</th>
                  <th scope="col">Topic</th>
                  <th scope="col" className="num">Lag now</th>
                </tr>
              </thead>
              <tbody>
                {state.consumer_groups.map((group) => (
                  <tr key={`${group.group}-${group.topic}`}>
                    <td>{group.group}</td>
                    <td>{group.topic}</td>
                    <td className="num">{formatCount(group.lag)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </>
        )}
      </section>
      <section className="panel" aria-label="Rates">
        <h2>Ingest and vectorizer</h2>
        <Rates rates={state.rates} />
      </section>
      <section className="panel" aria-label="Dead-lettered records">
        <div className="panel-head">
          <h2>Latest dead letters</h2>
          <div className="field-inline">
            <label htmlFor="dlq-topic">Topic</label>
            <select id="dlq-topic" value={dlqTopic} onChange={(event) => update({ dlq: event.target.value })}>
              {DLQ_TOPICS.map((topic) => (
                <option key={topic} value={topic}>
                  {topic}
                </option>
              ))}
            </select>
          </div>
        </div>
        <DeadLetters topic={dlqTopic} />
      </section>
    </div>
  );
}
