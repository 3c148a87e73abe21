// Response shapes of the gateway API, as docs/api.md and the dashboard contract describe them.
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

export interface LogsPage {
  logs: LogRecord[];
  next_cursor: string | null;
  total: number | null;
  limit: number;
}

export interface HistogramBucket {
  start: string;
  total: number;
  counts: Record<string, number>;
}

export interface Histogram {
  start: string;
  end: string;
  step_seconds: number;
  levels: string[];
  total: number;
  buckets: HistogramBucket[];
}

export interface Whoami {
  name: string;
  scopes: string[];
  pipeline: string | null;
}

export interface Pattern {
  pattern_id: number;
  template: string | null;
  count: number;
  previous_count?: number;
  share?: number;
  growth: number | null;
  is_new?: boolean;
  new?: boolean;
  first_seen: string | null;
  last_seen: string | null;
  example: string;
  sparkline?: number[];
  service?: string;
  level?: string;
}

export interface PatternList {
  total: number;
  other_count?: number;
  patterns: Pattern[];
}

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

export interface ServiceSeriesPoint {
  start: string;
  logs: number;
  errors: number;
}

export interface ServiceStats {
  service: string;
  logs: number;
  errors: number;
  warnings?: number;
  logs_per_second: number;
  error_ratio: number;
  last_seen: string | null;
  status: string;
  quiet?: boolean;
  series?: ServiceSeriesPoint[];
}

export interface ServiceList {
  window_minutes: number;
  pipeline: string | null;
  services: ServiceStats[];
}

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

export interface PipelineState {
  pipeline: string | null;
  available?: boolean;
  error?: string;
  topics: { name: string; partitions: { partition: number; end_offset: number }[] }[] | Unavailable;
  consumer_groups: { group: string; topic: string; lag: number; partitions: Record<string, number> }[] | Unavailable;
  lag_history: { time: string; group: string; topic: string; lag: number }[];
  rates: Record<string, Record<string, unknown>>;
  dlq: Record<string, number> | Unavailable;
  collection: { name: string; points: number | null; available: boolean; error?: string };
}

export interface DlqRecord {
  partition: number;
  offset: number;
  time: string;
  stage: string;
  error: string;
  original: string;
  original_bytes: number;
}

export interface DlqList {
  topic: string;
  records: DlqRecord[];
}

export function isUnavailable(value: unknown): value is Unavailable {
  return !!value && typeof value === "object" && !Array.isArray(value) && (value as { available?: unknown }).available === false;
}
