// Response shapes of the gateway API. Where the gateway declares a response model they are the
// generated schema's types; the rest (reports, anomalies, search hits, socket messages, which
// the API returns as open objects) are written here from docs/api.md.
import type { components } from "./schema";

type Schemas = components["schemas"];
export type Level = "TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR" | "FATAL";
export const LEVELS: Level[] = ["FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"];

export interface LogRecord {
  timestamp: string;
  service: string;
  level: string;
  message: string;
  record_id: string;
  trace_id?: string;
  span_id?: string;
  pattern_id?: number | string | null;
  pipeline?: string;
  attributes?: Record<string, string>;
  [field: string]: unknown;
}

export type LogsPage = Schemas["LogPage"];

export type HistogramBucket = Schemas["HistogramBucket"];

export type Histogram = Schemas["LogHistogram"];

export type Whoami = Schemas["WhoAmI"];

export type Pattern = Schemas["PatternItem"];

export type PatternList = Schemas["PatternList"];

export interface Anomaly {
  id: number;
  report_id: string;
  kind: string;
  service: string;
  pattern_id: string;
  bucket: string | null;
  observed: number;
  expected: number;
  stddev: number;
  z_score: number;
  severity: "low" | "medium" | "high" | "critical" | string;
  description: string;
  created_at: string;
  pipeline?: string;
}

export interface AnomalyList {
  anomalies: Anomaly[];
  total: number;
}

export type ServiceSeriesPoint = Schemas["ServicePoint"];

export type ServiceStats = Schemas["ServiceItem"];

export type ServiceList = Schemas["ServiceList"];

export interface SearchHit {
  rank: number;
  score: number;
  record_id: string;
  payload: LogRecord;
}

export interface SearchResponse {
  query: string;
  top_k: number;
  results: SearchHit[];
}

export interface ReportSummary {
  id: string;
  report_id?: string;
  pipeline: string;
  status: "pending" | "running" | "completed" | "failed" | string;
  trigger: string;
  created_at: string;
  finished_at: string | null;
  window_start: string;
  window_end: string;
  window_hours: number;
  summary: string;
  error: string;
  total_logs: number;
  total_errors: number;
  anomaly_count: number;
  llm_model?: string;
  analysis_seconds?: number;
}

export interface ReportPattern {
  pattern_id: string;
  template: string;
  example: string;
  level: string;
  count: number;
  services: string[];
  first_seen: string | null;
  last_seen: string | null;
  expected: number | null;
  trend: string;
  is_new: boolean;
}

export interface Report extends ReportSummary {
  markdown: string;
  report: Record<string, unknown>;
  patterns: ReportPattern[];
  anomalies: Anomaly[];
}

export interface ReportList {
  reports: ReportSummary[];
  total: number;
}

export interface Unavailable {
  available: false;
  error: string;
}

export type PipelineState = Schemas["PipelineView"];

export type DlqRecord = Schemas["DeadLetter"];

export type DlqList = Schemas["DeadLetters"];

export function isUnavailable(value: unknown): value is Unavailable {
  return !!value && typeof value === "object" && !Array.isArray(value) && (value as { available?: unknown }).available === false;
}
