"""Reports, anomalies, patterns, semantic search, and starting an analysis."""

from __future__ import annotations

import asyncio
import importlib
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import httpx
from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse

from logpipe.core.query import QueryError
from logpipe.core.record import to_utc_ms
from logpipe.gateway import insights
from logpipe.gateway.auth import Principal, require
from logpipe.gateway.schemas import SemanticSearchRequest
from logpipe.gateway.service import effective_pipeline, split_values

router = APIRouter(tags=["insights"])


def _range(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    start = to_utc_ms(start) if start else None
    end = to_utc_ms(end) if end else None
    if start and end and start >= end:
        raise QueryError("start must be before end")
    return start, end


@router.get("/api/reports", summary="Analysis reports, newest first")
async def list_reports(
    request: Request,
    principal: Principal = Depends(require("read")),
    start: datetime | None = Query(None, description="reports whose window ends at or after this time"),
    end: datetime | None = Query(None, description="reports whose window ends before this time"),
    status: str | None = Query(None, pattern="^(pending|running|completed|failed)$"),
    pipeline: str | None = Query(None, max_length=200),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=100_000),
) -> dict[str, Any]:
    start, end = _range(start, end)
    return await asyncio.to_thread(
        insights.list_reports, request.app.state.sql_engine, pipeline=effective_pipeline(principal.pipeline, pipeline),
        start=start, end=end, status=status, limit=limit, offset=offset)


@router.get("/api/reports/{report_id}", summary="One report with its patterns and anomalies")
async def get_report(
    request: Request,
    report_id: str = Path(max_length=64),
    principal: Principal = Depends(require("read")),
) -> dict[str, Any]:
    report = await asyncio.to_thread(insights.get_report, request.app.state.sql_engine, report_id,
                                     principal.pipeline)
    if report is None:
        raise HTTPException(404, f"no report {report_id!r}")
    return report


@router.get("/api/anomalies", summary="Anomalies found by analysis runs, newest first")
async def list_anomalies(
    request: Request,
    principal: Principal = Depends(require("read")),
    severity: list[str] = Query([], description="low, medium, high, critical (repeat or comma-separate)"),
    service: list[str] = Query([]),
    start: datetime | None = None,
    end: datetime | None = None,
    pipeline: str | None = Query(None, max_length=200),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=100_000),
) -> dict[str, Any]:
    severities = [value.lower() for value in split_values(severity)]
    unknown = [value for value in severities if value not in insights.SEVERITIES]
    if unknown:
        raise QueryError(f"unknown severity {unknown[0]!r}; use {', '.join(insights.SEVERITIES)}")
    start, end = _range(start, end)
    return await asyncio.to_thread(
        insights.list_anomalies, request.app.state.sql_engine,
        pipeline=effective_pipeline(principal.pipeline, pipeline), severities=severities,
        services=split_values(service), start=start, end=end, limit=limit, offset=offset)


@router.post("/api/analyze", status_code=202, summary="Start an analysis run now (admin)")
async def analyze(
    request: Request,
    principal: Principal = Depends(require("admin")),
    body: dict[str, Any] = Body(default_factory=dict,
                                examples=[{"window_hours": 24, "services": ["checkout"]}]),
) -> JSONResponse:
    """Forwarded to the analyzer service (`GATEWAY_ANALYZER_URL`), which answers with the run."""
    settings = request.app.state.settings
    url = settings.analyzer_url.rstrip("/") + "/analyze"
    try:
        async with httpx.AsyncClient(timeout=30.0) as client:
            response = await client.post(url, json=body)
    except httpx.HTTPError as exc:
        return JSONResponse({"detail": f"the analyzer at {settings.analyzer_url} is not reachable: {exc}"},
                            status_code=503, headers={"Retry-After": "10"})
    try:
        payload = response.json()
    except ValueError:
        payload = {"detail": response.text[:2000]}
    if response.status_code >= 500:
        return JSONResponse({"detail": "the analyzer failed", "analyzer": payload}, status_code=502)
    return JSONResponse(payload, status_code=response.status_code)


def _optional(module: str, name: str):
    """A function another part of logpipe provides, or None when this build lacks it."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


@router.post("/api/search/semantic", summary="Logs nearest in meaning to a query")
async def semantic_search(
    request: Request,
    body: SemanticSearchRequest,
    principal: Principal = Depends(require("read")),
) -> dict[str, Any]:
    search = _optional("logpipe.ai.search", "semantic_search")
    if search is None:
        raise HTTPException(503, "semantic search is not available in this build")
    filters = dict(body.filters)
    filters["pipeline"] = effective_pipeline(principal.pipeline, filters.get("pipeline"))
    results = await search_adapter(request, search, body.query, body.top_k, filters)
    return {"query": body.query, "results": results}


async def search_adapter(request: Request, search, query: str, top_k: int, filters: dict[str, Any]):
    settings = request.app.state.settings
    result = search(settings, query, top_k=top_k, filters=filters)
    if asyncio.iscoroutine(result):
        result = await result
    return result


@router.get("/api/patterns", summary="Log patterns (templates) with counts and growth")
async def list_patterns(
    request: Request,
    principal: Principal = Depends(require("read")),
    start: datetime | None = Query(None, description="default: end minus 1 hour"),
    end: datetime | None = Query(None, description="exclusive; default: now"),
    service: list[str] = Query([]),
    level: list[str] = Query([]),
    min_count: int = Query(1, ge=0, le=2**31),
    sort: Literal["count", "growth"] = Query("count", description="count, or growth vs the window before"),
    group_by: list[str] = Query([], description="split counts by service and/or level"),
    pipeline: str | None = Query(None, max_length=200),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    try:
        from logpipe.core.patterns.query import PatternQueryError, pattern_counts
    except ImportError:
        raise HTTPException(503, "pattern mining is not available in this build") from None
    start, end = _range(start, end)
    end = end or datetime.now(timezone.utc)
    start = start or end - timedelta(hours=1)
    try:
        return await asyncio.to_thread(
            pattern_counts, request.app.state.store, start, end, service=split_values(service) or None,
            level=split_values(level) or None, min_count=min_count, sort=sort, limit=limit,
            group_by=split_values(group_by), pipeline=effective_pipeline(principal.pipeline, pipeline))
    except PatternQueryError as exc:
        raise QueryError(str(exc)) from None
