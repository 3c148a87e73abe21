"""GET /api/pipeline and GET /api/pipeline/dlq: the pipeline page (Kafka, services, DLQs)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from logpipe.gateway import pipeline as inspect
from logpipe.gateway.auth import Principal, require
from logpipe.gateway.responses import DeadLetters, PipelineView
from logpipe.gateway.service import check_pipeline_access

router = APIRouter(tags=["pipeline"])


@router.get("/api/pipeline", response_model=PipelineView,
            summary="Topics, consumer lag and its last hour, service rates, DLQ sizes, the vector collection")
async def pipeline_view(request: Request, principal: Principal = Depends(require("read"))) -> dict[str, Any]:
    """What this gateway's pipeline is doing. Each part Kafka or a service must answer says
    `available: false` with the error when it cannot: never a 5xx."""
    state = request.app.state
    settings = state.settings
    # Topics, groups and collections belong to the one pipeline this gateway serves.
    check_pipeline_access(principal.pipeline, settings.pipeline)
    inspector: inspect.PipelineInspector = state.pipeline

    async def kafka() -> dict[str, Any]:
        try:
            return {"snapshot": await inspector.snapshot()}
        except Exception as exc:  # noqa: BLE001 - Kafka down is an answer, not an error
            return {"error": inspect.error_text(exc)}

    found, services = await asyncio.gather(
        kafka(), inspect.rates(settings.ingest_url, settings.vectorizer_url, settings.pipeline_timeout_s))
    snapshot = found.get("snapshot")
    body: dict[str, Any] = {"pipeline": settings.pipeline, "available": snapshot is not None,
                            "error": found.get("error"), "lag_history": inspector.history.points(),
                            "rates": services,
                            "collection": inspect.collection_info(services["vectorizer"], settings.qdrant_collection)}
    if snapshot is None:
        body.update(topics=[], consumer_groups=[], dlq={})
    else:
        body.update(topics=inspect.topic_listing(inspector.topics.all(), snapshot["partitions"], snapshot["end"]),
                    consumer_groups=inspect.group_lags(snapshot["end"], snapshot["committed"]),
                    dlq=inspect.dlq_sizes(inspector.topics, snapshot["beginning"], snapshot["end"]))
    return body


@router.get("/api/pipeline/dlq", response_model=DeadLetters, summary="The newest records of a dead-letter topic")
async def dead_letters(
    request: Request,
    principal: Principal = Depends(require("read")),
    topic: Literal["raw-logs-dlq", "vectorization-dlq"] = Query(..., description="which DLQ"),
    limit: int = Query(20, ge=1, le=100),
) -> dict[str, Any]:
    """Newest first, each with its stage, error and the original (as UTF-8 text, at most
    2,000 characters; `original_bytes` is its full size)."""
    state = request.app.state
    settings = state.settings
    check_pipeline_access(principal.pipeline, settings.pipeline)
    name = state.topics.name(topic)
    body: dict[str, Any] = {"topic": topic, "kafka_topic": name, "available": True, "error": None, "records": []}
    try:
        body["records"] = await asyncio.wait_for(
            inspect.read_dead_letters(settings.kafka_bootstrap_servers, name, limit, settings.pipeline_timeout_s),
            settings.pipeline_timeout_s + 5)
    except Exception as exc:  # noqa: BLE001 - Kafka down is an answer, not an error
        body.update(available=False, error=inspect.error_text(exc))
    return body
