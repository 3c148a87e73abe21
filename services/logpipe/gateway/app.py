"""The gateway app: REST + WebSocket API over ClickHouse, Kafka and SQL; serves the dashboard."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from logpipe.core.health import Health
from logpipe.core.http import create_service_app
from logpipe.gateway.query import QueryError
from logpipe import patterns
from logpipe.core.topics import Topics
from logpipe.gateway import routers
from logpipe.gateway.auth import Authenticator, open_engine
from logpipe.gateway.insights import LazySemanticSearcher
from logpipe.gateway.limits import AnonymousLimit, RateLimiter
from logpipe.gateway.pipeline import PipelineInspector
from logpipe.gateway.protocols import ProtocolError
from logpipe.gateway.service import Fanout, ScopeError
from logpipe.gateway.settings import Settings
from logpipe.gateway.streams import KafkaOffsets, LiveRecords, RecordProducer, TopicTail, decode_events
from logpipe.stores import sql
from logpipe.stores.clickhouse import ClickHouseStore

log = logging.getLogger(__name__)

API_DESCRIPTION = """\
The logpipe API. Every endpoint except `/health` and `/metrics` needs an API token:
`Authorization: Bearer lpt_...` (WebSockets may pass `?token=`). Scopes: `read` (queries,
live tail), `ingest` (the ingest protocols), `admin` (everything). Create tokens with
`logpipe tokens create`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    health = Health("gateway")
    topics = Topics(settings.topic_prefix)
    # One bucket per client address for everything without a valid token, one per token for ingest.
    anonymous = RateLimiter(settings.rate_limit_anonymous_per_s, settings.rate_limit_anonymous_burst, "anonymous")
    ingest = RateLimiter(settings.rate_limit_ingest_per_s, settings.rate_limit_ingest_burst, "ingest")

    async def lifespan(app: FastAPI):
        store = ClickHouseStore(settings.clickhouse_dsn, settings.clickhouse_database)
        if settings.apply_schema:
            await asyncio.to_thread(store.apply_schema, settings.log_ttl_days,
                                    settings.clickhouse_time_projection)
        engine = await asyncio.to_thread(open_engine, settings)
        await asyncio.to_thread(sql.init_db, engine)
        producer = RecordProducer(settings.kafka_bootstrap_servers, topics.raw_logs,
                                  max_request_size=settings.max_body_bytes,
                                  compression=settings.kafka_compression, timeout_s=settings.produce_timeout_s)
        live = Fanout()
        events = Fanout()
        state = app.state
        state.store, state.sql_engine, state.producer = store, engine, producer
        state.live_fanout, state.events_fanout = live, events
        live_records = LiveRecords(settings.pipeline, settings.max_record_bytes, lambda: patterns.build_tagger(store))
        state.live_tail = TopicTail(settings.kafka_bootstrap_servers, topics.raw_logs, live, live_records)
        state.events_tail = TopicTail(settings.kafka_bootstrap_servers, topics.novel_errors, events, decode_events)
        state.offsets = KafkaOffsets(settings.kafka_bootstrap_servers)
        state.pipeline = PipelineInspector(state.offsets, topics, settings.consumer_group_list,
                                           timeout_s=settings.pipeline_timeout_s, sample_s=settings.lag_sample_s,
                                           retention_s=settings.lag_history_s)
        state.pipeline.start()
        sql_circuit = health.circuit("sql")
        state.authenticator = Authenticator(engine, settings.token_cache_s, failures=anonymous, ingest=ingest,
                                            stale_s=settings.token_stale_s, circuit=sql_circuit)
        state.anomaly_poller = None
        state.semantic = LazySemanticSearcher(settings)
        health.add("clickhouse", store.aping)
        health.add("kafka", producer.ping, critical=False)

        def sql_ok() -> bool:
            ok = sql.ping(engine)
            if ok:
                sql_circuit.record_success()  # a probe that answers is a successful trial
            return ok

        health.add("sql", sql_ok, critical=False)
        try:
            await producer.start()
        except Exception as exc:  # noqa: BLE001 - queries work without Kafka; ingest retries
            log.warning("Kafka is not reachable yet (%s); ingest answers 503 until it is", exc)
        try:
            yield
        finally:
            poller = state.anomaly_poller
            if poller is not None:
                poller.cancel()
            await state.pipeline.stop()
            await state.live_tail.stop()
            await asyncio.to_thread(live_records.close)
            await state.events_tail.stop()
            await state.offsets.close()
            await state.semantic.close()
            await producer.stop()
            await asyncio.to_thread(store.close)

    app = create_service_app("gateway", health, lifespan, description=API_DESCRIPTION)
    app.state.settings = settings
    app.state.topics = topics

    if settings.cors_origin_list:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origin_list, allow_credentials=False,
                           allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                           allow_headers=["Authorization", "Content-Type", "Content-Encoding"])

    @app.exception_handler(ProtocolError)
    async def _protocol_error(_request: Request, exc: ProtocolError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(QueryError)
    async def _query_error(_request: Request, exc: QueryError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(ScopeError)
    async def _scope_error(_request: Request, exc: ScopeError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=403)

    for router in routers.ALL:
        app.include_router(router)
    app.add_middleware(AnonymousLimit, limiter=anonymous)

    mount_dashboard(app, Path(settings.frontend_dir))
    return app


# The dashboard runs only its own bundled scripts: no inline script, no eval, no framing.
# Styles may be inline (chart libraries set them); data is fetched from this origin only.
DASHBOARD_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
                                "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # No other site's window keeps a handle on the dashboard, nor embeds its files.
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}
# Vite names every built asset after its content hash, so a changed file is a new URL.
IMMUTABLE = "public, max-age=31536000, immutable"
# index.html names the current hashed assets: a browser must ask again each time.
NO_CACHE = "no-cache"
API_PREFIXES = ("api/", "ws/", "v1/", "loki/", "assets/")


def mount_dashboard(app: FastAPI, folder: Path) -> None:
    """Serve the built dashboard at / when it exists; client-side routes fall back to index.html.

    Hashed files under /assets/ are cached for good; index.html is revalidated on every load.
    A missing asset or API path is a 404, never index.html (a browser would parse HTML as a
    script). Every dashboard response carries the security headers.
    """
    index = folder / "index.html"
    if not index.is_file():
        @app.get("/", include_in_schema=False)
        async def no_dashboard() -> JSONResponse:
            # Nothing is built yet: point a browser at the API instead of a bare 404.
            return JSONResponse({"service": "logpipe gateway", "docs": "/docs", "openapi": "/openapi.json",
                                 "dashboard": f"not built (no {index})"}, headers=DASHBOARD_HEADERS)
        return
    assets = StaticFiles(directory=folder, html=True)
    root = folder.resolve()

    @app.get("/{path:path}", include_in_schema=False)
    async def dashboard(path: str, request: Request):
        candidate = (folder / path).resolve()
        if path and candidate.is_file() and root in candidate.parents:
            response = await assets.get_response(path, request.scope)
            cache = IMMUTABLE if path.startswith("assets/") else NO_CACHE
        elif path.startswith(API_PREFIXES):
            response, cache = JSONResponse({"detail": "Not Found"}, status_code=404), NO_CACHE
        else:
            response, cache = FileResponse(index), NO_CACHE
        response.headers.update(DASHBOARD_HEADERS)
        response.headers["Cache-Control"] = cache
        return response
