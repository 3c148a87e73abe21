import { useQuery } from "@tanstack/react-query";
import { apiGet } from "../../api/client";
import type { Report, ReportList } from "../../api/types";

export const RUNNING = new Set(["pending", "running"]);

export function useReports() {
  return useQuery({
    queryKey: ["reports"],
    queryFn: ({ signal }) => apiGet<"/api/reports", ReportList>("/api/reports", { limit: 100 }, { signal }),
    // While a run is in progress the list keeps its status fresh.
    refetchInterval: (query) => (query.state.data?.reports.some((report) => RUNNING.has(report.status)) ? 2000 : false),
  });
}

export function useReport(reportId: string) {
  return useQuery({
    queryKey: ["report", reportId],
    queryFn: ({ signal }) =>
      apiGet<"/api/reports/{report_id}", Report>("/api/reports/{report_id}", {}, { pathParams: { report_id: reportId }, signal }),
    refetchInterval: (query) => (query.state.data && RUNNING.has(query.state.data.status) ? 1500 : false),
  });
}
