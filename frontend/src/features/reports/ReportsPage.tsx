import { useState } from "react";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { Link, useNavigate } from "react-router-dom";
import { ApiError, apiPost } from "../../api/client";
import { useAuth } from "../../api/auth";
import { Badge } from "../../components/Badge";
import { QueryState } from "../../components/States";
import { formatCount, formatTime } from "../../lib/time";
import { useReports } from "./hooks";

const STATUS_TONE: Record<string, "good" | "warn" | "bad" | "neutral"> = {
  completed: "good",
  running: "warn",
  pending: "warn",
  failed: "bad",
};

export function StatusBadge({ status }: { status: string }) {
  return <Badge tone={STATUS_TONE[status] ?? "neutral"}>{status}</Badge>;
}

export function AnalyzeButton() {
  const { hasScope } = useAuth();
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const [hours, setHours] = useState("24");
  const analyze = useMutation({
    mutationFn: () => apiPost<{ report_id: string; status: string }>("/api/analyze", { window_hours: Number(hours) }),
    onSuccess: (answer) => {
      void queryClient.invalidateQueries({ queryKey: ["reports"] });
      navigate(`/reports/${encodeURIComponent(answer.report_id)}`);
    },
  });
  const allowed = hasScope("admin");
  return (
    <div className="analyze">
      <div className="field-inline">
        <label htmlFor="analyze-window">Window</label>
        <select id="analyze-window" value={hours} onChange={(event) => setHours(event.target.value)}>
          <option value="1">Last hour</option>
          <option value="6">Last 6 hours</option>
          <option value="24">Last 24 hours</option>
        </select>
      </div>
      <button
        type="button"
        className="button button-primary"
        disabled={!allowed || analyze.isPending}
        title={allowed ? "Run an analysis of the window now" : "Needs a token with the admin scope"}
        onClick={() => analyze.mutate()}
      >
        {analyze.isPending ? "Starting…" : "Analyze now"}
      </button>
      {analyze.error ? (
        <span className="form-error" role="alert">
          {analyze.error instanceof ApiError ? analyze.error.message : "The analysis could not start."}
        </span>
      ) : null}
    </div>
  );
}

export function ReportsPage() {
  const reports = useReports();
  return (
    <div className="page">
      <div className="page-head">
        <h1>Reports</h1>
        <div className="page-actions">
          <AnalyzeButton />
        </div>
      </div>
      <section className="panel" aria-label="Reports">
        <QueryState
          query={reports}
          label="Loading reports"
          isEmpty={(data) => data.reports.length === 0}
          empty={
            <div className="state state-empty" role="status">
              <strong>No report yet</strong>
              <div className="state-hint">Analysis runs nightly; "Analyze now" starts one for the window you pick.</div>
            </div>
          }
        >
          {(data) => (
            <div className="table-scroll">
              <table className="data-table">
                <thead>
                  <tr>
                    <th scope="col">Window</th>
                    <th scope="col">Status</th>
                    <th scope="col" className="num">Logs</th>
                    <th scope="col" className="num">Errors</th>
                    <th scope="col" className="num">Anomalies</th>
                    <th scope="col">Summary</th>
                  </tr>
                </thead>
                <tbody>
                  {data.reports.map((report) => (
                    <tr key={report.id} data-testid="report-row">
                      <td>
                        <Link to={`/reports/${encodeURIComponent(report.id)}`}>
                          {formatTime(report.window_start)} → {formatTime(report.window_end)}
                        </Link>
                      </td>
                      <td>
                        <StatusBadge status={report.status} />
                      </td>
                      <td className="num">{formatCount(report.total_logs)}</td>
                      <td className="num">{formatCount(report.total_errors)}</td>
                      <td className="num">{formatCount(report.anomaly_count)}</td>
                      <td className="summary-cell">{report.summary || report.error}</td>
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
