import { useState } from "react";
import { Link, useParams } from "react-router-dom";
import { ApiError, apiDownload } from "../../api/client";
import type { Report } from "../../api/types";
import { Badge, SeverityBadge } from "../../components/Badge";
import { Markdown } from "../../components/Markdown";
import { QueryState } from "../../components/States";
import { formatCount, formatPercent, formatTime } from "../../lib/time";
import { linkTo } from "../../lib/url";
import { RUNNING, useReport } from "./hooks";
import { StatusBadge } from "./ReportsPage";

function DownloadButtons({ reportId }: { reportId: string }) {
  const [error, setError] = useState<string | null>(null);
  async function download(format: "markdown" | "json") {
    setError(null);
    try {
      const { blob, filename } = await apiDownload("/api/reports/{report_id}/download", { format }, { report_id: reportId });
      const url = URL.createObjectURL(blob);
      const anchor = document.createElement("a");
      anchor.href = url;
      anchor.download = filename;
      document.body.appendChild(anchor);
      anchor.click();
      anchor.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (caught) {
      setError(caught instanceof ApiError ? caught.message : "The download failed.");
    }
  }
  return (
    <div className="page-actions">
      <button type="button" className="button" onClick={() => download("markdown")}>
        Download Markdown
      </button>
      <button type="button" className="button" onClick={() => download("json")}>
        Download JSON
      </button>
      {error ? (
        <span className="form-error" role="alert">
          {error}
        </span>
      ) : null}
    </div>
  );
}

function Progress({ report }: { report: Report }) {
  return (
    <div className="state" role="status" aria-live="polite">
      <span className="spinner" aria-hidden="true" />
      <strong>{report.status === "pending" ? "Waiting for the analyzer…" : "Analyzing…"}</strong>
      <div className="state-hint">
        Window {formatTime(report.window_start)} → {formatTime(report.window_end)}. This page updates by itself when the report is ready.
      </div>
    </div>
  );
}

function ReportBody({ report }: { report: Report }) {
  const errorRatio = report.total_logs ? report.total_errors / report.total_logs : null;
  return (
    <>
      <dl className="figures" data-testid="report-figures">
        <div>
          <dt>logs</dt>
          <dd>{formatCount(report.total_logs)}</dd>
        </div>
        <div>
          <dt>errors</dt>
          <dd>{formatCount(report.total_errors)}</dd>
        </div>
        <div>
          <dt>error ratio</dt>
          <dd>{formatPercent(errorRatio, 2)}</dd>
        </div>
        <div>
          <dt>anomalies</dt>
          <dd>{formatCount(report.anomaly_count)}</dd>
        </div>
        <div>
          <dt>window</dt>
          <dd>{report.window_hours} h</dd>
        </div>
      </dl>
      {report.summary ? <p className="lead">{report.summary}</p> : null}
      <section className="panel" aria-label="Report text" data-testid="report-markdown">
        {report.markdown ? <Markdown source={report.markdown} /> : <p className="muted">This report has no text.</p>}
      </section>
      {report.anomalies.length ? (
        <section className="panel" aria-label="Anomalies of this report">
          <h2>Anomalies</h2>
          <div className="table-scroll">
            <table className="data-table">
              <thead>
                <tr>
                  <th scope="col">Severity</th>
                  <th scope="col">Kind</th>
                  <th scope="col">Service</th>
                  <th scope="col">When</th>
                  <th scope="col" className="num">Baseline</th>
                  <th scope="col" className="num">Observed</th>
                  <th scope="col" className="num">z</th>
                </tr>
              </thead>
              <tbody>
                {report.anomalies.map((anomaly) => (
                  <tr key={anomaly.id}>
                    <td>
                      <SeverityBadge severity={anomaly.severity} />
                    </td>
                    <td>{anomaly.kind.replace(/_/g, " ")}</td>
                    <td>{anomaly.service}</td>
                    <td>{formatTime(anomaly.bucket ?? anomaly.created_at)}</td>
                    <td className="num">{anomaly.expected.toFixed(1)}</td>
                    <td className="num">{anomaly.observed.toFixed(0)}</td>
                    <td className="num">{anomaly.z_score.toFixed(2)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </section>
      ) : null}
      {report.patterns.length ? (
        <section className="panel" aria-label="Error patterns of this report">
          <h2>Error patterns</h2>
          <div className="table-scroll">
            <table className="data-table">
              <thead>
                <tr>
                  <th scope="col">Template</th>
                  <th scope="col" className="num">Count</th>
                  <th scope="col">Trend</th>
                  <th scope="col">Services</th>
                </tr>
              </thead>
              <tbody>
                {report.patterns.map((pattern) => (
                  <tr key={pattern.pattern_id}>
                    <td className="template-cell">
                      <Link to={linkTo("/explore", { pattern_id: pattern.pattern_id, start: report.window_start, end: report.window_end })}>
                        <code>{pattern.template || pattern.example}</code>
                      </Link>
                      {pattern.is_new ? <Badge tone="new">new</Badge> : null}
                    </td>
                    <td className="num">{formatCount(pattern.count)}</td>
                    <td>{pattern.trend || "—"}</td>
                    <td>{pattern.services.join(", ")}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </section>
      ) : null}
    </>
  );
}

export function ReportPage() {
  const { reportId = "" } = useParams();
  const report = useReport(reportId);
  return (
    <div className="page">
      <div className="page-head">
        <h1>
          Report <code className="report-id">{reportId}</code>
        </h1>
        {report.data?.status === "completed" ? <DownloadButtons reportId={reportId} /> : null}
      </div>
      <p>
        <Link to="/reports">← All reports</Link>
      </p>
      <QueryState query={report} label="Loading the report">
        {(data) => (
          <>
            <div className="report-meta">
              <StatusBadge status={data.status} />
              <span className="muted">
                {formatTime(data.window_start)} → {formatTime(data.window_end)}
                {data.llm_model ? ` · written by ${data.llm_model}` : ""}
              </span>
            </div>
            {RUNNING.has(data.status) ? (
              <Progress report={data} />
            ) : data.status === "failed" ? (
              <div className="state state-error" role="alert">
                <strong>This analysis failed.</strong>
                <div className="state-hint">{(data.error.split("\n")[0] ?? "").slice(0, 300) || "No reason was recorded."}</div>
              </div>
            ) : (
              <ReportBody report={data} />
            )}
          </>
        )}
      </QueryState>
    </div>
  );
}
