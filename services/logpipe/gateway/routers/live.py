"""WebSockets: /ws/logs (live tail of raw-logs) and /ws/events (novel errors, anomalies).

Messages are JSON: `{"type": "log", "data": {...record...}}` (the row ingest stores: the
record's fields, `pattern_id` and `pipeline`; see gateway/streams.py `LiveRecords`),
`{"type": "novel_error", ...}`, `{"type": "anomaly", ...}`, and `{"type": "dropped", "count": N}` when this client fell
behind and lost N items (the stream is sampled for it rather than slowing anyone down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from logpipe.gateway.auth import authenticate_websocket, deny_websocket
from logpipe.gateway.service import Fanout, ScopeError, Subscriber, TailFilter, check_pipeline_access

log = logging.getLogger(__name__)
router = APIRouter(tags=["live"])

# Close codes: 1008 policy (bad filter), 1011 server cannot follow the stream, 1013 client too slow.
CLOSE_TOO_SLOW = 1013


async def _pump(websocket: WebSocket, subscriber: Subscriber, limit_s: float, wrap) -> None:
    """Send queued items to one client; a send that blocks past `limit_s` ends the connection."""
    while True:
        item = await subscriber.queue.get()
        missed = subscriber.take_dropped()
        if missed:
            await asyncio.wait_for(websocket.send_text(orjson.dumps({"type": "dropped", "count": missed}).decode()),
                                   limit_s)
        await asyncio.wait_for(websocket.send_text(orjson.dumps(wrap(item)).decode()), limit_s)
        if subscriber.too_slow(time.monotonic(), limit_s):
            raise TimeoutError("client too slow")


async def _serve(websocket: WebSocket, fanout: Fanout, subscriber: Subscriber, limit_s: float, wrap,
                 hello: dict[str, Any]) -> None:
    fanout.subscribe(subscriber)
    try:
        await websocket.accept()
        await websocket.send_text(orjson.dumps(hello).decode())
        pump = asyncio.create_task(_pump(websocket, subscriber, limit_s, wrap))
        listen = asyncio.create_task(_drain_client(websocket))
        done, pending = await asyncio.wait({pump, listen}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for task in done:
            error = task.exception()
            if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
                log.info("closing a live client that could not keep up")
                fanout.unsubscribe(subscriber)
                if websocket.application_state == WebSocketState.CONNECTED:
                    # Its socket is full, so even the close frame may not go out: bounded wait.
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(websocket.close(CLOSE_TOO_SLOW, "client too slow"), 1.0)
    finally:
        fanout.unsubscribe(subscriber)


async def _drain_client(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, so a disconnect is noticed at once."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
    except WebSocketDisconnect:
        return


@router.websocket("/ws/logs")
async def live_logs(websocket: WebSocket) -> None:
    """Live tail: `?level=ERROR,WARN&service=checkout&contains=timeout` (all optional)."""
    principal = await authenticate_websocket(websocket, "read")
    if principal is None:
        return
    state = websocket.app.state
    settings = state.settings
    try:
        check_pipeline_access(principal.pipeline, settings.pipeline)
        params = websocket.query_params
        tail_filter = TailFilter.parse(params.getlist("level"), params.getlist("service"), params.get("contains"))
    except ScopeError as exc:
        await deny_websocket(websocket, 403, str(exc))
        return
    except ValueError as exc:
        await deny_websocket(websocket, 400, str(exc))
        return
    subscriber = Subscriber(tail_filter.matches, settings.ws_queue_size)
    try:
        await state.live_tail.ensure_started()
    except Exception as exc:  # noqa: BLE001 - the client is told, the gateway keeps serving
        await deny_websocket(websocket, 503, f"cannot follow the log stream: {exc}")
        return
    hello = {"type": "subscribed", "stream": "logs", "pipeline": settings.pipeline,
             "levels": sorted(tail_filter.levels), "services": sorted(tail_filter.services)}
    await _serve(websocket, state.live_fanout, subscriber, settings.ws_slow_client_s,
                 lambda record: {"type": "log", "data": record}, hello)


@router.websocket("/ws/events")
async def live_events(websocket: WebSocket) -> None:
    """Novel errors (from the novel-errors topic) and anomalies (from each analysis run)."""
    principal = await authenticate_websocket(websocket, "read")
    if principal is None:
        return
    state = websocket.app.state
    settings = state.settings
    try:
        check_pipeline_access(principal.pipeline, settings.pipeline)
    except ScopeError as exc:
        await deny_websocket(websocket, 403, str(exc))
        return
    subscriber = Subscriber(None, settings.ws_queue_size)
    try:
        await state.events_tail.ensure_started()
        ensure_anomaly_poller(websocket.app)
    except Exception as exc:  # noqa: BLE001
        await deny_websocket(websocket, 503, f"cannot follow the event stream: {exc}")
        return
    hello = {"type": "subscribed", "stream": "events", "pipeline": settings.pipeline}
    await _serve(websocket, state.events_fanout, subscriber, settings.ws_slow_client_s, lambda event: event, hello)


def ensure_anomaly_poller(app) -> None:
    state = app.state
    if state.anomaly_poller is None or state.anomaly_poller.done():
        from logpipe.gateway.insights import poll_anomalies

        state.anomaly_poller = asyncio.create_task(
            poll_anomalies(state.sql_engine, state.settings.pipeline, state.events_fanout,
                           state.settings.events_poll_s), name="anomaly-poller")
