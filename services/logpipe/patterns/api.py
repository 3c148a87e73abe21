"""GET /patterns: the query layer over HTTP (mounted by ingest; the gateway reuses pattern_counts)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable, Literal, Union

from fastapi import APIRouter, HTTPException, Query

from logpipe.patterns.query import MAX_LIMIT, PatternQueryError, pattern_counts, utc
from logpipe.stores.clickhouse import ClickHouseStore


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        return utc(datetime.fromisoformat(text))
    except ValueError:
        raise HTTPException(status_code=422, detail=f"'{name}' is not an ISO 8601 time: {value!r}") from None


StoreSource = Union[ClickHouseStore, Callable[[], ClickHouseStore]]


def build_router(store: StoreSource) -> APIRouter:
    """GET /patterns over `store`, or over `store()` when the store opens later (in a lifespan)."""
    router = APIRouter(tags=["patterns"])

    def current_store() -> ClickHouseStore:
        found = store if isinstance(store, ClickHouseStore) else store()
        if found is None:
            raise HTTPException(status_code=503, detail="the log store is not open yet")
        return found

    @router.get("/patterns")
    async def list_patterns(
        from_: str | None = Query(None, alias="from", description="start, ISO 8601 (default: `to` minus 1 hour)"),
        to: str | None = Query(None, description="end, ISO 8601, exclusive (default: now)"),
        service: str | None = Query(None, description="service name(s), comma-separated"),
        level: str | None = Query(None, description="level(s), comma-separated, e.g. ERROR,WARN"),
        min_count: int = Query(1, ge=0),
        sort: Literal["count", "growth"] = Query("count"),
        limit: int = Query(100, ge=1, le=MAX_LIMIT),
        group_by: str | None = Query(None, description="split counts by service and/or level, comma-separated"),
    ) -> dict:
        end = _parse_time(to, "to") or datetime.now(timezone.utc)
        start = _parse_time(from_, "from") or end - timedelta(hours=1)
        groups = [g.strip() for g in group_by.split(",") if g.strip()] if group_by else []
        try:
            return await _run(current_store(), start, end, service, level, min_count, sort, limit, groups)
        except PatternQueryError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None

    return router


async def _run(store, start, end, service, level, min_count, sort, limit, groups) -> dict:
    import asyncio

    return await asyncio.to_thread(pattern_counts, store, start, end, service=service, level=level,
                                   min_count=min_count, sort=sort, limit=limit, group_by=groups)
