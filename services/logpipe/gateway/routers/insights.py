"""Reports, anomalies, patterns, semantic search, and starting an analysis."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Literal

import httpx
import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from logpipe.gateway.query import QueryError
from logpipe.core.novel_errors import read_novel_errors
from logpipe.core.record import MAX_TIMESTAMP, MIN_TIMESTAMP, to_utc_ms
from logpipe.core.topics import Topics
from logpipe.gateway import insights
from logpipe.gateway.auth import Principal, require, token_from_headers
from logpipe.gateway.responses import (AnomalyList, NovelError, NovelErrorList, PatternList, Report, ReportList,
                                        SearchResponse)
from logpipe.gateway.schemas import AnalyzeRequest, SemanticSearchRequest
from logpipe.gateway.service import check_pipeline_access, effective_pipeline, split_values

log = logging.getLogger(__name__)
router = APIRouter(tags=["insights"])
# Novel errors are rare by design; a range holding more is read up to this many (flagged truncated).
NOVEL_ERRORS_READ = 5_000


def _clamp(moment: datetime | None) -> datetime | None:
    # Nothing is stored outside 1970..2200; clamping keeps date arithmetic (the window
    # before a pattern range, for one) inside what datetime can represent.
    return min(max(to_utc_ms(moment), MIN_TIMESTAMP), MAX_TIMESTAMP) if moment else None


def _range(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    start, end = _clamp(start), _clamp(end)
    if start and end and start >= end:
        raise QueryError("start must be before end")
    return start, end


def _day_range(start: datetime | None, end: datetime | None, date_from: date | None,
               date_to: date | None) -> tuple[datetime | None, datetime | None]:
    """Times win over days; `date_to` is inclusive (the whole day)."""
    if start is None and date_from is not None:
        start = datetime.combine(date_from, time.min, tzinfo=timezone.utc)
    if end is None and date_to is not None:
        end = datetime.combine(min(date_to, MAX_TIMESTAMP.date()), time.min, tzinfo=timezone.utc) + timedelta(days=1)
    return _range(start, end)


@router.get("/api/reports", response_model=ReportList, response_model_exclude_unset=True,
            summary="Analysis reports, newest first")
async def list_reports(
    request: Request,
    principal: Principal = Depends(require("read")),
    date_from: date | None = Query(None, description="first day (UTC) the report's window ends on, inclusive"),
    date_to: date | None = Query(None, description="last day (UTC), inclusive"),
    start: datetime | None = Query(None, description="reports whose window ends at or after this time"),
    end: datetime | None = Query(None, description="reports whose window ends before this time"),
    status: str | None = Query(None, pattern="^(pending|running|completed|failed)$"),
    pipeline: str | None = Query(None, max_length=200),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=100_000),
) -> dict[str, Any]:
    start, end = _day_range(start, end, date_from, date_to)
    return await asyncio.to_thread(
        insights.list_reports, request.app.state.sql_engine, pipeline=effective_pipeline(principal.pipeline, pipeline),
        start=start, end=end, status=status, limit=limit, offset=offset)


@router.get("/api/reports/latest", response_model=Report, response_model_exclude_unset=True,
            summary="The newest completed report, in full")
async def latest_report(request: Request, principal: Principal = Depends(require("read")),
                        pipeline: str | None = Query(None, max_length=200)) -> dict[str, Any]:
    scope = effective_pipeline(principal.pipeline, pipeline)
    listing = await asyncio.to_thread(insights.list_reports, request.app.state.sql_engine, pipeline=scope,
                                      start=None, end=None, status="completed", limit=1, offset=0)
    if not listing["reports"]:
        raise HTTPException(404, "no completed report yet; POST /api/analyze starts one")
    return await get_report(request, listing["reports"][0]["id"], principal)


@router.get("/api/reports/{report_id}", response_model=Report, response_model_exclude_unset=True,
            summary="One report with its patterns and anomalies")
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


@router.get("/api/reports/{report_id}/download", summary="One report as a Markdown or JSON attachment",
            response_class=Response,
            responses={200: {"content": {"text/markdown": {}, "application/json": {}},
                             "description": "the report file"}})
async def download_report(
    request: Request,
    report_id: str = Path(max_length=64),
    format: Literal["markdown", "json"] = Query("markdown", description="markdown (.md) or json (.json)"),
    principal: Principal = Depends(require("read")),
) -> Response:
    report = await get_report(request, report_id, principal)
    # The id names the file: keep it to characters safe in a header and a file name.
    safe_id = re.sub(r"[^A-Za-z0-9_-]", "_", report["id"])
    if format == "json":
        content, media_type, suffix = orjson.dumps(report, option=orjson.OPT_INDENT_2), "application/json", "json"
    else:
        content, media_type, suffix = insights.report_markdown(report).encode(), "text/markdown; charset=utf-8", "md"
    return Response(content, media_type=media_type, headers={
        "Content-Disposition": f'attachment; filename="logpipe-report-{safe_id}.{suffix}"'})


@router.get("/api/anomalies", response_model=AnomalyList, response_model_exclude_unset=True,
            summary="Anomalies found by analysis runs, newest first")
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


@router.get("/api/novel-errors", response_model=NovelErrorList, response_model_exclude_unset=True,
            summary="Novel errors of a time range (errors unlike any earlier one), newest first")
async def list_novel_errors(
    request: Request,
    principal: Principal = Depends(require("read")),
    service: list[str] = Query([], description="service names (repeat or comma-separate)"),
    start: datetime | None = Query(None, description="default: 24 hours before end"),
    end: datetime | None = Query(None, description="default: now"),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """What the live stream (`/ws/events`) showed while nobody watched: the vectorizer's
    novel-error events of the range, read back from the pipeline's novel-errors topic."""
    settings = request.app.state.settings
    check_pipeline_access(principal.pipeline, settings.pipeline)
    end = _clamp(end) or datetime.now(timezone.utc)
    start = _clamp(start) or end - timedelta(hours=24)
    if start >= end:
        raise QueryError("start must be before end")
    read = await read_novel_errors(settings.kafka_bootstrap_servers, Topics(settings.topic_prefix).novel_errors,
                                   start, end, max_events=NOVEL_ERRORS_READ, timeout_s=settings.pipeline_timeout_s)
    services = set(split_values(service))
    events = [event for event in read.events if not services or event.get("service") in services]
    # The topic is not ours alone: an event that is not a novel error is left out, never a 500.
    events = [event for event in events if _valid_novel_error(event)]
    events.sort(key=lambda event: str(event.get("timestamp") or ""), reverse=True)
    return {"novel_errors": events[:limit], "total": len(events), "truncated": read.truncated, "error": read.error}


def _valid_novel_error(event: dict[str, Any]) -> bool:
    try:
        NovelError.model_validate(event)
    except ValueError:
        return False
    return True


@router.post("/api/analyze", status_code=202, summary="Start an analysis run now (admin)")
async def analyze(
    request: Request,
    body: AnalyzeRequest | None = None,
    principal: Principal = Depends(require("admin")),
) -> JSONResponse:
    """Forwarded to the analyzer service (`GATEWAY_ANALYZER_URL`); poll GET /api/reports/{report_id}."""
    settings = request.app.state.settings
    check_pipeline_access(principal.pipeline, settings.pipeline)
    # Only what the caller set: the analyzer applies its own defaults (ANALYZER_WINDOW_HOURS).
    payload = body.model_dump(mode="json", exclude_unset=True) if body else {}
    url = settings.analyzer_url.rstrip("/") + "/analyze"
    # The analyzer asks for a token when it listens beyond loopback: the service token where one
    # is set, else the caller's own admin token (valid there when the token store is shared).
    headers = settings.service_headers() or {"Authorization": f"Bearer {token_from_headers(request.headers)}"}
    try:
        async with httpx.AsyncClient(timeout=30.0) as client:
            response = await client.post(url, json=payload, headers=headers)
    except httpx.HTTPError as exc:
        return JSONResponse({"detail": f"the analyzer at {settings.analyzer_url} is not reachable: {exc}"},
                            status_code=503, headers={"Retry-After": "10"})
    try:
        answer = response.json()
    except ValueError:
        answer = {"detail": response.text[:2000]}
    if response.status_code >= 500:
        return JSONResponse({"detail": "the analyzer failed", "analyzer": answer}, status_code=502)
    if response.status_code in (401, 403):
        # The caller's token was good here: the gateway itself is not let in (a 401 would say otherwise).
        return JSONResponse({"detail": "the analyzer refused the gateway's credentials: give both the same "
                                       "LOGPIPE_SERVICE_TOKEN", "analyzer": answer}, status_code=502)
    return JSONResponse(answer, status_code=response.status_code)


@router.post("/api/search/semantic", response_model=SearchResponse, response_model_exclude_unset=True,
             summary="Logs nearest in meaning to a query")
async def semantic_search(
    request: Request,
    body: SemanticSearchRequest,
    principal: Principal = Depends(require("read")),
) -> dict[str, Any]:
    """Filters: `service`, `level` (string or list), `start`/`end` (ISO 8601), `pattern_id`, `min_score`.

    Each pipeline has its own collection, so a token bound to another pipeline is refused.
    """
    from logpipe.ai.embeddings import EmbeddingError
    from logpipe.ai.search import SearchError

    state = request.app.state
    check_pipeline_access(principal.pipeline, state.settings.pipeline)
    filters = body.filters
    unknown = set(filters) - {"service", "level", "start", "end", "since", "until", "pattern_id", "min_score"}
    if unknown:
        raise QueryError(f"unknown filter(s) {', '.join(sorted(unknown))}; use service, level, start, end, "
                         "pattern_id, min_score")
    try:
        searcher = await state.semantic.get()
        results = await searcher.search(
            body.query, body.top_k, service=filters.get("service"), level=filters.get("level"),
            since=_filter_time(filters.get("start", filters.get("since")), "start"),
            until=_filter_time(filters.get("end", filters.get("until")), "end"),
            pattern_id=filters.get("pattern_id"), min_score=_min_score(filters.get("min_score")))
    except SearchError as exc:
        raise QueryError(str(exc)) from None
    except EmbeddingError as exc:
        raise HTTPException(503, f"the embedder is not available: {exc}") from None
    await _add_templates(request.app.state, results)
    return {"query": body.query, "top_k": body.top_k, "results": results}


async def _add_templates(state: Any, results: list[dict[str, Any]]) -> None:
    """Each hit's pattern template (null when unknown): what the dashboard shows beside `match`."""
    ids = sorted({int(hit["pattern_id"]) for hit in results if hit.get("pattern_id")})
    templates: dict[int, str] = {}
    store = getattr(state, "store", None)
    if ids and store is not None:
        try:
            from logpipe.patterns.query import _templates

            templates = await asyncio.to_thread(_templates, store, ids)
        except Exception:  # noqa: BLE001 - the hits stand without their templates
            log.warning("pattern templates unavailable for semantic search hits", exc_info=True)
    for hit in results:
        hit["template"] = templates.get(int(hit.get("pattern_id") or 0))


def _filter_time(value: Any, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise QueryError(f"filters.{name} must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"filters.{name} is not an ISO 8601 time: {value!r}") from None
    return _clamp(parsed)


def _min_score(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1 <= value <= 1:
        raise QueryError("filters.min_score must be a number between -1 and 1")
    return float(value)


@router.get("/api/patterns", response_model=PatternList, response_model_exclude_unset=True,
            summary="Log patterns (templates) with counts, share, growth and sparklines")
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
    pattern_id: int | None = Query(None, ge=0, le=2**64 - 1, description="only this pattern"),
    contains: str | None = Query(None, max_length=500, description="case-insensitive text in the template"),
    sparkline_buckets: int = Query(0, ge=0, le=96, description="counts per equal slice of the range, per pattern"),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    try:
        from logpipe.patterns.query import PatternQueryError, pattern_counts
    except ImportError:
        raise HTTPException(503, "pattern mining is not available in this build") from None
    start, end = _range(start, end)
    end = end or datetime.now(timezone.utc)
    start = start or end - timedelta(hours=1)
    try:
        return await asyncio.to_thread(
            pattern_counts, request.app.state.store, start, end, service=split_values(service) or None,
            level=split_values(level) or None, min_count=min_count, sort=sort, limit=limit,
            group_by=split_values(group_by), pipeline=effective_pipeline(principal.pipeline, pipeline),
            pattern_id=pattern_id, contains=contains, sparkline_buckets=sparkline_buckets)
    except PatternQueryError as exc:
        raise QueryError(str(exc)) from None
