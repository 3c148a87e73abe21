"""Request and response bodies of the public API (they are the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class LogEntry(BaseModel):
    timestamp: str = Field(description="ISO 8601, UTC, milliseconds")
    service: str
    level: str
    message: str
    logger: str = ""
    host: str = ""
    pod: str = ""
    namespace: str = ""
    environment: str = ""
    version: str = ""
    trace_id: str = ""
    span_id: str = ""
    user_id: str = ""
    session_id: str = ""
    request_id: str = ""
    http_method: str = ""
    http_path: str = ""
    http_status: int | None = None
    duration_ms: float | None = None
    client_ip: str = ""
    user_agent: str = ""
    error_type: str = ""
    stack_trace: str = ""
    record_id: str
    attributes: dict[str, str] = Field(default_factory=dict)
    pattern_id: int = Field(0, description="0 until the pattern is known")
    pipeline: str = "default"


class LogPage(BaseModel):
    logs: list[LogEntry]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next (older) page; null on the last")
    total: int | None = Field(None, description="rows matching the filters (all pages); null when total=false")
    limit: int


class IngestResult(BaseModel):
    accepted: int = Field(description="records acknowledged by Kafka")


class SemanticSearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=2000)
    top_k: int = Field(10, ge=1, le=100)
    filters: dict[str, Any] = Field(default_factory=dict,
                                    description="service, level, start, end (ISO 8601) narrow the search")


class TokenCreateRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(min_length=1, description="read, ingest, admin")
    pipeline: str | None = Field(None, max_length=200, description="bind the token to one pipeline's data")


class TokenInfo(BaseModel):
    id: str
    name: str
    scopes: list[str]
    pipeline: str | None
    created_at: str
    revoked_at: str | None


class TokenCreated(TokenInfo):
    token: str = Field(description="shown once; store it now")


class AnalyzeRequest(BaseModel):
    window_hours: float | None = Field(None, gt=0, le=24 * 31, description="how many hours before `end` to analyse "
                                       "(default: the analyzer's ANALYZER_WINDOW_HOURS, 24)")
    services: list[str] | None = Field(None, max_length=200, description="only these services (default: all)")
    end: datetime | None = Field(None, description="end of the window (default: now)")
