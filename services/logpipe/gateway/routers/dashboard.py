"""GET /api/whoami and GET /api/logs/histogram: what the dashboard asks before and beside /api/logs."""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Query, Request

from logpipe.gateway.auth import Principal, require
from logpipe.gateway.dashboard import MAX_BUCKETS, histogram_range, log_histogram
from logpipe.gateway.query import LogFilter
from logpipe.gateway.responses import LogHistogram, WhoAmI
from logpipe.gateway.routers.logs import parse_since
from logpipe.gateway.service import effective_pipeline, split_values

router = APIRouter(tags=["dashboard"])


@router.get("/api/whoami", response_model=WhoAmI, summary="The calling token: its name, scopes and pipeline")
async def whoami(principal: Principal = Depends(require("read"))) -> WhoAmI:
    return WhoAmI(name=principal.name, scopes=sorted(principal.scopes), pipeline=principal.pipeline)


@router.get("/api/logs/histogram", response_model=LogHistogram,
            summary="Log counts per time bucket and level, with the filters of /api/logs")
async def histogram(
    request: Request,
    principal: Principal = Depends(require("read")),
    level: list[str] = Query([], description="ERROR, WARN, ... (repeat or comma-separate)"),
    service: list[str] = Query([], description="service names (repeat or comma-separate)"),
    start: datetime | None = Query(None, description="inclusive, ISO 8601 (default: end minus 1 hour)"),
    end: datetime | None = Query(None, description="exclusive, ISO 8601 (default: now)"),
    since: str | None = Query(None, description="relative start: 30s, 15m, 6h, 7d (ignored when start is given)"),
    contains: str | None = Query(None, max_length=500, description="case-insensitive text in the message"),
    trace_id: str | None = Query(None, max_length=128),
    pattern_id: int | None = Query(None, ge=0, le=2**64 - 1),
    pipeline: str | None = Query(None, max_length=200),
    buckets: int = Query(60, ge=1, le=MAX_BUCKETS, description="at most this many aligned buckets"),
) -> dict:
    now = datetime.now(timezone.utc)
    first, last = histogram_range(start or parse_since(since, now), end, now)
    log_filter = LogFilter(
        levels=split_values(level), services=split_values(service), start=first, end=last, contains=contains,
        trace_id=trace_id, pattern_id=pattern_id, pipeline=effective_pipeline(principal.pipeline, pipeline))
    return await log_histogram(request.app.state.store, log_filter, buckets)
