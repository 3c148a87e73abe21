// Response shapes of the gateway API: aliases of the types generated from its OpenAPI document
// (`make frontend-api`), so `tsc` checks every view against what the gateway declares. Only the
// log record (the socket's and /api/logs' item) and the `Unavailable` marker are written here.
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

export type Anomaly = Schemas["AnomalyItem"];

export type AnomalyList = Schemas["AnomalyList"];

export type ServiceSeriesPoint = Schemas["ServicePoint"];

export type ServiceStats = Schemas["ServiceItem"];

export type ServiceList = Schemas["ServiceList"];

export type SearchHit = Schemas["SearchHit"];

export type SearchResponse = Schemas["SearchResponse"];

export type ReportSummary = Schemas["ReportSummary"];

export type ReportPattern = Schemas["ReportPattern"];

export type Report = Schemas["Report"];

export type ReportList = Schemas["ReportList"];

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
