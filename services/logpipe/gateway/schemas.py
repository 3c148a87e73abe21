"""Request and response bodies of the public API (they are the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, create_model

from logpipe.core.record import STORED_SPECS, FieldSpec, Kind


# A stored log as the API returns it, derived from the field table in core/record.py (the
# 23 fields, record_id, attributes, pattern_id, pipeline): a field added there appears here.
_API_TYPES: dict[Kind, Any] = {Kind.TIME: str, Kind.TEXT: str, Kind.LEVEL: str, Kind.INT: int,
                               Kind.FLOAT: float, Kind.MAP: dict[str, str]}
_ALWAYS_PRESENT = frozenset({"timestamp", "service", "level", "message", "record_id"})
_WIRE_FORMS = {Kind.TIME: " (ISO 8601, UTC, milliseconds)"}


def _entry_field(spec: FieldSpec) -> tuple[Any, Any]:
    annotation = _API_TYPES[spec.kind]
    if spec.nullable:
        annotation = annotation | None
    description = spec.description + _WIRE_FORMS.get(spec.kind, "")
    if spec.name in _ALWAYS_PRESENT:
        return annotation, Field(description=description)
    if spec.kind is Kind.MAP:
        return annotation, Field(default_factory=dict, description=description)
    return annotation, Field(spec.default, description=description)


LogEntry = create_model("LogEntry", __doc__="One stored log.",
                        **{spec.name: _entry_field(spec) for spec in STORED_SPECS})


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
