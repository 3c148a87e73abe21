"""REST routes of the analyzer: start a run, read reports, export them."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, time, timedelta, timezone
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field, field_validator

from logpipe.core.http import requires_token
from logpipe.stores.sql import NightlyReport

router = APIRouter()
# Reports hold every pipeline's findings and a run costs minutes of compute: on a port beyond
# loopback both take a token (logpipe.tokens.ServiceGuard).
READ = [Depends(requires_token("read"))]
ADMIN = [Depends(requires_token("admin"))]


class AnalyzeRequest(BaseModel):
    window_hours: float = Field(24.0, gt=0, le=24 * 31, description="how many hours before `end` to analyse")
    services: list[str] | None = Field(None, max_length=200, description="only these services (default: all)")
    end: datetime | None = Field(None, description="end of the window (default: now)")

    @field_validator("services")
    @classmethod
    def _services(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        cleaned = [name.strip() for name in value]
        if any(not name or len(name) > 200 for name in cleaned):
            raise ValueError("service names must be 1..200 characters")
        return cleaned or None


class AnalyzeAccepted(BaseModel):
    report_id: str
    status: str


def _summary(row: NightlyReport) -> dict[str, Any]:
    return {
        "report_id": row.id, "status": row.status, "pipeline": row.pipeline, "trigger": row.trigger,
        "created_at": _iso(row.created_at), "started_at": _iso(row.started_at), "finished_at": _iso(row.finished_at),
        "window_start": _iso(row.window_start), "window_end": _iso(row.window_end), "window_hours": row.window_hours,
        "services": row.services, "summary": row.summary, "summary_model": row.summary_model,
        "llm_model": row.llm_model or None, "total_logs": row.total_logs, "total_errors": row.total_errors,
        "anomaly_count": row.anomaly_count, "analysis_seconds": row.analysis_seconds,
        "llm_seconds": row.llm_seconds, "error": row.error or None,
    }


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _body(row: NightlyReport) -> dict[str, Any]:
    body = _summary(row)
    body["report"] = row.report if row.status == "completed" else None
    return body


async def _found(request: Request, report_id: str) -> NightlyReport:
    row = await asyncio.to_thread(request.app.state.analyzer.get, report_id)
    if row is None:
        raise HTTPException(404, f"no report {report_id}")
    return row


def _completed(row: NightlyReport) -> NightlyReport:
    if row.status != "completed":
        raise HTTPException(409, f"report {row.id} is {row.status}" + (f": {row.error}" if row.error else ""))
    return row


@router.post("/analyze", status_code=202, response_model=AnalyzeAccepted, tags=["analysis"], dependencies=ADMIN)
async def analyze(request: Request, body: AnalyzeRequest | None = None) -> AnalyzeAccepted:
    """Start an analysis run in the background; poll GET /reports/{report_id}."""
    body = body or AnalyzeRequest()
    row = await request.app.state.start_run(body.window_hours, body.services, body.end, "api")
    return AnalyzeAccepted(report_id=row.id, status=row.status)


@router.get("/reports/latest", tags=["analysis"], dependencies=READ)
async def latest_report(request: Request) -> dict[str, Any]:
    row = await asyncio.to_thread(request.app.state.analyzer.latest)
    if row is None:
        raise HTTPException(404, "no completed report yet; POST /analyze starts one")
    return _body(row)


@router.get("/reports", tags=["analysis"], dependencies=READ)
async def list_reports(request: Request,
                       date_from: Annotated[date | None, Query(description="first day (UTC) the window ends on, inclusive")] = None,
                       date_to: Annotated[date | None, Query(description="last day (UTC) the window ends on, inclusive")] = None,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    if date_from and date_to and date_from > date_to:
        raise HTTPException(422, "date_from is after date_to")
    start = datetime.combine(date_from, time.min, timezone.utc) if date_from else None
    end = datetime.combine(date_to + timedelta(days=1), time.min, timezone.utc) if date_to else None
    rows = await asyncio.to_thread(request.app.state.analyzer.list, start, end, limit)
    return {"reports": [_summary(row) for row in rows], "count": len(rows)}


@router.get("/reports/{report_id}.md", tags=["analysis"], response_class=PlainTextResponse, dependencies=READ)
async def report_markdown(request: Request, report_id: str) -> Response:
    row = _completed(await _found(request, report_id))
    return Response(row.markdown, media_type="text/markdown; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="logpipe-report-{row.id}.md"'})


@router.get("/reports/{report_id}.json", tags=["analysis"], dependencies=READ)
async def report_json(request: Request, report_id: str) -> Response:
    row = _completed(await _found(request, report_id))
    return Response(orjson.dumps(row.report, option=orjson.OPT_INDENT_2), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="logpipe-report-{row.id}.json"'})


@router.get("/reports/{report_id}", tags=["analysis"], dependencies=READ)
async def get_report(request: Request, report_id: str) -> dict[str, Any]:
    return _body(await _found(request, report_id))
