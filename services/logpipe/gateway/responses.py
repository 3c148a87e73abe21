"""Response bodies of the endpoints the dashboard reads (they are the OpenAPI schema the
frontend's TypeScript client is generated from and checked against)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Open(BaseModel):
    """A body that may carry more fields than documented (added later, never renamed)."""

    model_config = ConfigDict(extra="allow")


class WhoAmI(BaseModel):
    name: str
    scopes: list[str]
    pipeline: str | None = Field(description="the pipeline the token is bound to; null when it sees every pipeline")


class HistogramBucket(BaseModel):
    start: str = Field(description="ISO 8601, UTC; the bucket is [start, start + step_seconds)")
    total: int
    counts: dict[str, int] = Field(description="logs per level; every level of `levels`, zeros included")


class LogHistogram(BaseModel):
    start: str = Field(description="the range counted, inclusive")
    end: str = Field(description="exclusive")
    step_seconds: int
    levels: list[str] = Field(description="levels found (and those filtered on), most verbose first")
    total: int = Field(description="sum of the buckets' totals: GET /api/logs `total` for the same filter")
    buckets: list[HistogramBucket]


class PatternItem(Open):
    pattern_id: int
    template: str | None = Field(description="null for an id whose template is not stored (yet)")
    count: int
    share: float = Field(description="count / total (every log of the range and filter)")
    previous_count: int
    growth: float | None = Field(description="(count - previous) / previous; null when new")
    new: bool
    is_new: bool = Field(description="not seen in the window of equal length before the range")
    first_seen: str | None
    last_seen: str | None
    example: str
    sparkline: list[int] | None = Field(None, description="counts per equal slice of the range "
                                        "(with sparkline_buckets > 0)")
    service: str | None = Field(None, description="with group_by=service")
    level: str | None = Field(None, description="with group_by=level")


class PatternList(Open):
    from_: str = Field(alias="from")
    to: str
    previous_from: str
    service: list[str] | None = None
    level: list[str] | None = None
    sort: str
    min_count: int
    limit: int
    sparkline_buckets: int
    total: int
    other_count: int
    patterns: list[PatternItem]


class ServicePoint(BaseModel):
    start: str
    logs: int
    errors: int


class ServiceItem(Open):
    service: str
    status: str = Field(description="healthy, degraded, failing or silent")
    quiet: bool = Field(description="logged before the window's last quarter, nothing in it")
    logs: int
    errors: int
    warnings: int
    logs_per_second: float
    logs_per_second_1m: float
    error_ratio: float
    last_seen: str | None
    series: list[ServicePoint] | None = Field(None, description="with series_buckets > 0: equal slices of the window")


class ServiceList(BaseModel):
    window_minutes: int
    pipeline: str | None
    services: list[ServiceItem]


class PartitionEnd(BaseModel):
    partition: int
    end_offset: int


class TopicInfo(BaseModel):
    name: str
    partitions: list[PartitionEnd]


class GroupLag(BaseModel):
    group: str
    topic: str
    lag: int
    partitions: dict[str, int] = Field(description="lag per partition number")


class LagSample(BaseModel):
    time: str
    group: str
    topic: str
    lag: int


class Collection(BaseModel):
    name: str
    points: int | None
    available: bool
    error: str | None = None
    max_points: int | None = Field(None, description="the retention's cap on points, the oldest deleted first; "
                                                     "null: no cap (or not known)")
    retention_days: int | None = Field(None, description="days an embedded error stays searchable")
    expired: int | None = Field(None, description="points the retention deleted since the vectorizer started")


class PipelineView(BaseModel):
    pipeline: str | None
    available: bool = Field(description="false when Kafka did not answer (topics, groups and dlq are then empty)")
    error: str | None = None
    topics: list[TopicInfo]
    consumer_groups: list[GroupLag]
    lag_history: list[LagSample]
    rates: dict[str, dict[str, Any]] = Field(description="each service's /stats, with `available`; "
                                            "or {available: false, error}")
    dlq: dict[str, int]
    collection: Collection


class DeadLetter(BaseModel):
    partition: int
    offset: int
    time: str | None
    stage: str
    error: str
    original: str = Field(description="UTF-8, invalid bytes replaced, at most 2,000 characters")
    original_bytes: int


class DeadLetters(BaseModel):
    topic: str
    kafka_topic: str
    available: bool = True
    error: str | None = None
    records: list[DeadLetter]


# Reports, anomalies and semantic search. Times are ISO 8601 strings (UTC), as the SQL rows are
# written out by gateway/insights.py. Every body stays open (`Open`): a field the analyzer or
# the search adds later passes through untouched until it is declared here.

Severity = Literal["low", "medium", "high", "critical"]
AnomalyKind = Literal["pattern_spike", "volume_spike", "volume_drop", "pattern_drop", "service_quiet", "new_pattern"]


class AnomalyItem(Open):
    id: int
    report_id: str
    kind: AnomalyKind | str = Field(description="pattern_spike, volume_spike, volume_drop, pattern_drop, "
                                    "service_quiet or new_pattern")
    service: str
    pattern_id: str = Field(description='"" for a whole service')
    bucket: str | None = Field(description="the peak hour; the first silent hour of a silence")
    observed: float = Field(description="at the peak hour for spikes; the stretch's total for drops and silences")
    expected: float
    stddev: float
    z_score: float
    severity: Severity | str
    description: str
    created_at: str
    incident_id: str = Field(description="the same when a rerun finds the incident again")
    start: str | None = Field(description="first anomalous hour")
    end: str | None = Field(description="end of the last anomalous hour (the window's end when ongoing)")
    peak: str | None
    hours: int
    observed_total: float
    expected_total: float
    excess: float = Field(description="observed_total - expected_total; negative for drops and silences")
    ongoing: bool = Field(description="a silence lasting to the end of the window: the service stopped for good")
    related_group: str = Field(description='R1, ... shared by the anomalies of one candidate root cause; "" alone')
    pipeline: str | None = Field(None, description="in GET /api/anomalies (not inside a report)")


class AnomalyList(BaseModel):
    anomalies: list[AnomalyItem]
    total: int


class NovelError(Open):
    """An error unlike any earlier one, as the vectorizer published it on the novel-errors topic."""

    record_id: str
    timestamp: str | None = None
    service: str | None = None
    level: str | None = None
    message: str | None = None
    trace_id: str | None = None
    pattern_id: int | str | None = None
    similarity: float | None = Field(None, description="cosine similarity to the nearest earlier error")
    threshold: float | None = Field(None, description="novel when the similarity was below this")
    nearest: dict[str, Any] | None = Field(None, description="the nearest earlier error: record_id, score, "
                                           "message, service")
    detected_at: str | None = None


class NovelErrorList(BaseModel):
    novel_errors: list[NovelError] = Field(description="newest first")
    total: int = Field(description="how many the window holds (before the limit)")
    truncated: bool = Field(description="the window held more than the reader's bound; the oldest are missing")
    error: str = Field("", description="why the topic could not be read (the list is then empty)")


ReportStatus = Literal["pending", "running", "completed", "failed"]


class ReportSummary(Open):
    id: str
    report_id: str = Field(description="the same as id (the analyzer's own API names it so)")
    pipeline: str
    status: ReportStatus | str
    trigger: str = Field(description="api, schedule or cli")
    created_at: str
    started_at: str | None
    finished_at: str | None
    window_start: str
    window_end: str
    window_hours: float
    services: list[str]
    summary: str
    summary_model: str
    llm_model: str
    error: str
    total_logs: int
    total_errors: int
    anomaly_count: int
    analysis_seconds: float
    llm_seconds: float


class ReportList(BaseModel):
    reports: list[ReportSummary]
    total: int


class ReportPattern(Open):
    id: int
    report_id: str
    pattern_id: str
    template: str
    example: str
    level: str
    count: int
    services: list[str]
    first_seen: str | None
    last_seen: str | None
    expected: float | None
    trend: str = Field(description="new, rising, falling or stable")
    is_new: bool
    cluster_id: str


class ReportWindow(Open):
    start: str
    end: str
    hours: float


class ReportText(Open):
    text: str
    pattern_ids: list[str] = []
    model: str | None = None


class ReportBody(Open):
    """The structured report the analyzer wrote (analyzer/report.py): empty until the run completes."""

    report_id: str | None = None
    pipeline: str | None = None
    status: str | None = None
    generated_at: str | None = None
    window: ReportWindow | None = None
    services: list[str] | None = None
    totals: dict[str, Any] | None = None
    summary: ReportText | None = None
    top_patterns: list[dict[str, Any]] | None = None
    new_patterns: list[dict[str, Any]] | None = None
    gone_patterns: list[dict[str, Any]] | None = None
    clusters: list[dict[str, Any]] | None = None
    anomalies: list[dict[str, Any]] | None = None
    related: list[dict[str, Any]] | None = None
    novel_errors: dict[str, Any] | None = None
    co_occurrence: dict[str, Any] | None = None
    root_cause_candidates: list[dict[str, Any]] | None = None
    affected_services: list[dict[str, Any]] | None = None
    insights: list[dict[str, Any]] | None = None
    recommendations: list[dict[str, Any]] | None = None
    models: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    has_history: bool | None = None
    judged_from: str | None = Field(None, description="set when the pipeline had no logs before the window: "
                                    "hours before this time were not judged (a fresh platform)")
    llm: dict[str, Any] | None = None


class Report(ReportSummary):
    report: ReportBody
    markdown: str
    patterns: list[ReportPattern]
    anomalies: list[AnomalyItem]


class SearchPayload(Open):
    timestamp: str | None = None
    service: str | None = None
    level: str | None = None
    message: str | None = None
    trace_id: str | None = None
    pattern_id: int | str | None = None
    record_id: str | None = None


class SearchHit(Open):
    rank: int
    score: float | None = Field(description="cosine similarity (1 = same meaning); null for a keyword-only hit")
    record_id: str
    payload: SearchPayload
    match: Literal["vector", "keyword", "both"] | None = Field(None, description="how the hit was found, "
                                                               "when the search says")
    template: str | None = Field(None, description="the hit's pattern template, when known")
    pattern_id: int | str | None = Field(None, description="the hit's pattern, when known")


class SearchResponse(Open):
    query: str
    top_k: int
    results: list[SearchHit]
