"""GET /api/metrics, GET /api/services, and token administration over HTTP (admin)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response

from logpipe.gateway.dashboard import service_stats
from logpipe.gateway.query import log_rates, storage_used
from logpipe.gateway import auth
from logpipe.gateway.auth import Principal, require
from logpipe.gateway.responses import ServiceList
from logpipe.gateway.schemas import TokenCreated, TokenCreateRequest, TokenInfo
from logpipe.gateway.service import effective_pipeline, retained_counts, topic_lag

router = APIRouter(tags=["ops"])


async def kafka_metrics(request: Request) -> dict[str, Any]:
    state = request.app.state
    topics = state.topics
    watched = [topics.raw_logs, topics.vectorization_queue, topics.novel_errors]
    dlqs = [topics.raw_logs_dlq, topics.vectorization_dlq]
    try:
        snapshot = await asyncio.wait_for(
            state.offsets.snapshot(watched, dlqs, state.settings.consumer_group_list), 10)
    except Exception as exc:  # noqa: BLE001 - metrics report Kafka as unavailable, never 500
        return {"available": False, "error": f"{type(exc).__name__}: {exc}"}
    end = snapshot["end"]
    messages = retained_counts({}, {key: value for key, value in end.items() if key[0] in watched})
    return {
        "available": True,
        "consumer_lag": topic_lag(end, snapshot["committed"]),
        "dlq": {topic: retained_counts(snapshot["beginning"], {k: v for k, v in end.items() if k[0] == topic})
                .get(topic, 0) for topic in dlqs},
        "topic_end_offsets": messages,
    }


@router.get("/api/metrics", summary="Log and error rates, storage, consumer lag, DLQ sizes")
async def metrics(
    request: Request,
    principal: Principal = Depends(require("read")),
    pipeline: str | None = Query(None, max_length=200),
) -> dict[str, Any]:
    state = request.app.state
    scope = effective_pipeline(principal.pipeline, pipeline)
    rates, storage, kafka = await asyncio.gather(
        log_rates(state.store, scope), storage_used(state.store), kafka_metrics(request))
    body: dict[str, Any] = {"pipeline": scope, "logs": rates, "kafka": kafka,
                            "live_tail": {"clients": len(state.live_fanout.subscribers),
                                          "published": state.live_fanout.published,
                                          "dropped": state.live_fanout.dropped}}
    # Storage is shared by every pipeline; a token bound to one sees only its own rates.
    if principal.pipeline is None:
        body["storage"] = storage
    return body


@router.get("/api/services", response_model=ServiceList, response_model_exclude_unset=True,
            summary="Per-service log rates, error ratio, status and series")
async def services(
    request: Request,
    principal: Principal = Depends(require("read")),
    window_minutes: int = Query(15, ge=1, le=1440),
    pipeline: str | None = Query(None, max_length=200),
    series_buckets: int = Query(0, ge=0, le=96, description="logs and errors per equal slice of the window"),
) -> dict[str, Any]:
    scope = effective_pipeline(principal.pipeline, pipeline)
    rows = await service_stats(request.app.state.store, scope, window_minutes, series_buckets)
    return {"window_minutes": window_minutes, "pipeline": scope, "services": rows}


def _token_info(row: auth.ApiToken) -> dict[str, Any]:
    return TokenInfo(id=row.id, name=row.name, scopes=row.scopes.split(","), pipeline=row.pipeline,
                     created_at=row.created_at.isoformat(),
                     revoked_at=row.revoked_at.isoformat() if row.revoked_at else None).model_dump()


@router.get("/api/tokens", response_model=list[TokenInfo], summary="API tokens (never their secrets)")
async def list_tokens(request: Request, principal: Principal = Depends(require("admin"))):
    rows = await asyncio.to_thread(auth.list_tokens, request.app.state.sql_engine)
    return [_token_info(row) for row in rows]


@router.post("/api/tokens", response_model=TokenCreated, status_code=201, summary="Create an API token")
async def create_token(request: Request, response: Response, body: TokenCreateRequest,
                       principal: Principal = Depends(require("admin"))):
    # The body holds the new secret: no cache (browser or proxy) may keep a copy.
    response.headers["Cache-Control"] = "no-store"
    try:
        created = await asyncio.to_thread(auth.create_token, request.app.state.sql_engine, body.name,
                                          body.scopes, body.pipeline)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from exc
    rows = await asyncio.to_thread(auth.list_tokens, request.app.state.sql_engine)
    row = next(row for row in rows if row.id == created.id)
    return {**_token_info(row), "token": created.token}


@router.delete("/api/tokens/{token_id}", status_code=204, summary="Revoke an API token")
async def revoke_token(request: Request, token_id: str = Path(max_length=12),
                       principal: Principal = Depends(require("admin"))):
    revoked = await asyncio.to_thread(auth.revoke_token, request.app.state.sql_engine, token_id)
    if not revoked:
        raise HTTPException(404, f"no active token {token_id!r}")
    request.app.state.authenticator.forget()
