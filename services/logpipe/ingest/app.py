"""ingest: the batch consumer on raw-logs (`core/consumer.py`) plus its HTTP side."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI

from logpipe import patterns
from logpipe.core.gc_tuning import tuned_gc
from logpipe.core.health import Health
from logpipe.core.http import create_service_app
from logpipe.core.kafka import new_producer, reachable
from logpipe.ingest import handlers
from logpipe.ingest.settings import Settings
from logpipe.stores.clickhouse import ClickHouseStore
from logpipe.tokens import ServiceGuard

log = logging.getLogger(__name__)


def build_tagger(store: ClickHouseStore, settings: Settings):
    """The pattern tagger (INGEST_TAG_PATTERNS=false turns tagging off; pattern_id stays 0)."""
    return patterns.build_tagger(store, settings) if settings.tag_patterns else None


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    health = Health("ingest")

    async def lifespan(app: FastAPI):
        store = ClickHouseStore(settings.clickhouse_dsn, settings.clickhouse_database)
        if settings.apply_schema:
            await asyncio.to_thread(store.apply_schema, settings.log_ttl_days,
                                    settings.clickhouse_time_projection)
        producer = new_producer(settings.kafka_bootstrap_servers)
        await producer.start()
        tagger = await asyncio.to_thread(build_tagger, store, settings)
        breaker = health.circuit("clickhouse", settings.breaker_threshold, settings.retry_base_seconds,
                                 settings.retry_max_seconds)
        ingestor = handlers.Ingestor(settings, store, producer, tagger, breaker, health)
        app.state.ingestor = ingestor
        app.state.store = store
        health.add("clickhouse", store.aping)
        health.add("kafka", lambda: reachable(producer))
        ingestor.start()
        log.info("ingest consuming", extra={"topic": ingestor.topics.raw_logs, "group": settings.group_id})
        try:
            async with tuned_gc(settings.gc_gen0_threshold, settings.gc_full_collect_seconds):
                yield
        finally:
            await ingestor.close()
            await producer.stop()
            if tagger is not None and hasattr(tagger, "close"):
                await asyncio.to_thread(tagger.close)
            await asyncio.to_thread(store.close)

    app = create_service_app("ingest", health, lifespan, guard=ServiceGuard(settings))
    app.include_router(handlers.router)
    return app

