"""Response bodies of the endpoints the dashboard reads (they are the OpenAPI schema the
frontend's TypeScript client is generated from and checked against)."""

from __future__ import annotations

from typing import Any

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
