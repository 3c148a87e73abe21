"""Ingest protocols: OTLP/HTTP logs, Loki push, JSON lines. All produce to raw-logs.

A request is answered 2xx only after Kafka acknowledged every record it carried; a
malformed request is refused whole (400 with the reason), so nothing is half-accepted.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any, Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from logpipe.core.shippers import RecordLimits
from logpipe.gateway.auth import Principal, require
from logpipe.gateway.protocols import ProtocolError, decompress, jsonlines, loki, otlp
from logpipe.gateway.schemas import IngestResult
from logpipe.gateway.service import check_pipeline_access
from logpipe.gateway.streams import REJECTED, ProduceError

router = APIRouter(tags=["ingest"])
# Decoding a large body takes milliseconds of CPU; off the event loop so WebSockets keep flowing.
_THREAD_THRESHOLD = 64 * 1024

_BODY_DOC = {"description": "the request body is read raw; see docs/api.md for formats"}


async def read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ProtocolError(f"body is {declared} bytes, over the {max_bytes}-byte limit", 413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ProtocolError(f"body is over the {max_bytes}-byte limit", 413)
        chunks.append(chunk)
    return b"".join(chunks)


async def accept(request: Request, principal: Principal, protocol: str,
                 decode: Callable[[bytes, datetime], list[dict[str, Any]]], *, keep_encoding: bool = False) -> int:
    settings = request.app.state.settings
    check_pipeline_access(principal.pipeline, settings.pipeline)
    try:
        body = await read_body(request, settings.max_body_bytes)
        # Before decompressing: "empty" says more than "not valid snappy" about a blank body.
        if not body.strip():
            raise ProtocolError("empty body")
        if not keep_encoding:
            body = decompress(body, request.headers.get("content-encoding"), settings.max_body_bytes)
        if not body.strip():
            raise ProtocolError("empty body")
        now = datetime.now(timezone.utc)
        if len(body) > _THREAD_THRESHOLD:
            records = await asyncio.to_thread(decode, body, now)
        else:
            records = decode(body, now)
    except ProtocolError as exc:
        REJECTED.labels(protocol, "malformed" if exc.status == 400 else "limits").inc()
        raise
    await request.app.state.producer.produce(records, protocol)
    return len(records)


def _unavailable(exc: ProduceError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})


@router.post("/api/ingest", response_model=IngestResult, summary="JSON lines (or one JSON array) of logs",
             openapi_extra={"requestBody": {"content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                                            **_BODY_DOC}})
async def ingest_json_lines(request: Request, principal: Principal = Depends(require("ingest"))):
    settings = request.app.state.settings

    def decode(body: bytes, now: datetime) -> list[dict[str, Any]]:
        return jsonlines.decode(body, now, max_records=settings.max_records_per_request,
                                max_record_bytes=settings.max_record_bytes, limits=RecordLimits.from_settings(settings))

    try:
        accepted = await accept(request, principal, "jsonlines", decode)
    except ProduceError as exc:
        return _unavailable(exc)
    return IngestResult(accepted=accepted)


@router.post("/v1/logs", summary="OTLP/HTTP logs (protobuf or JSON)",
             openapi_extra={"requestBody": {"content": {"application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                                                        "application/json": {"schema": {"type": "object"}}},
                                            **_BODY_DOC}})
async def ingest_otlp(request: Request, principal: Principal = Depends(require("ingest"))):
    settings = request.app.state.settings
    content_type = request.headers.get("content-type")

    def decode(body: bytes, now: datetime) -> list[dict[str, Any]]:
        return otlp.decode(body, content_type, now, max_records=settings.max_records_per_request,
                           max_record_bytes=settings.max_record_bytes, limits=RecordLimits.from_settings(settings))

    try:
        await accept(request, principal, "otlp", decode)
    except ProduceError as exc:
        return _unavailable(exc)
    content, media_type = otlp.success_body(content_type)
    return Response(content, media_type=media_type)


@router.post("/loki/api/v1/push", status_code=204, summary="Loki push (snappy protobuf or JSON)",
             openapi_extra={"requestBody": {"content": {"application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                                                        "application/json": {"schema": {"type": "object"}}},
                                            **_BODY_DOC}})
async def ingest_loki(request: Request, principal: Principal = Depends(require("ingest"))):
    settings = request.app.state.settings
    content_type = request.headers.get("content-type")
    content_encoding = request.headers.get("content-encoding")

    def decode(body: bytes, now: datetime) -> list[dict[str, Any]]:
        return loki.decode(body, content_type, content_encoding, now, max_body_bytes=settings.max_body_bytes,
                           max_records=settings.max_records_per_request, max_record_bytes=settings.max_record_bytes,
                           max_labels=settings.max_labels_per_stream, limits=RecordLimits.from_settings(settings))

    try:
        await accept(request, principal, "loki", decode)
    except ProduceError as exc:
        return _unavailable(exc)
    return Response(status_code=204)
