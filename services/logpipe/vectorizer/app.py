"""vectorizer: the batch consumer on vectorization-queue (`core/consumer.py`) plus its HTTP side."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI

from logpipe.ai.embeddings import HttpEmbedder
from logpipe.core.health import Health
from logpipe.core.http import create_service_app
from logpipe.core.kafka import new_producer, reachable
from logpipe.stores.vectors import open_vector_store
from logpipe.tokens import ServiceGuard
from logpipe.vectorizer import handlers
from logpipe.vectorizer.service import VectorizerPipeline
from logpipe.vectorizer.settings import Settings

log = logging.getLogger(__name__)


def _masker(settings: Settings):
    if not settings.mask_variables:
        return None
    from logpipe.patterns.masking import mask_many

    return mask_many


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    health = Health("vectorizer")

    async def lifespan(app: FastAPI):
        if settings.embedder_url:
            embedder = HttpEmbedder(settings.embedder_url, timeout_s=settings.embedder_timeout_seconds,
                                    headers=settings.service_headers())
            health.add("embedder", embedder.ping)
        else:
            # In one process (`run all`) this shares the model with the embedder service.
            embedder = await asyncio.to_thread(settings.build_embedder)
            health.add("embedder", lambda: embedder.dimension > 0)
            if getattr(embedder.cache, "kind", "") == "redis":
                # As in the embedder service: a Redis that is away costs speed, not data.
                health.add("redis", embedder.cache.ping, critical=False)
                embedder.cache.breaker = health.circuit("redis", settings.breaker_threshold,
                                                        max(settings.retry_base_seconds, 0.01),
                                                        settings.retry_max_seconds)
        store = open_vector_store(settings.qdrant_url, settings.qdrant_collection, settings.data_dir,
                                  settings.qdrant_api_key)
        pipeline = VectorizerPipeline(
            embedder.embed, store, novelty_enabled=settings.novelty_enabled,
            novelty_threshold=settings.novelty_threshold, retry_attempts=settings.retry_attempts,
            retry_base_seconds=settings.retry_base_seconds, mask=_masker(settings),
            embed_context=settings.embed_context, keywords=settings.keywords)
        if not settings.embedder_url:
            await store.aensure_collection(embedder.dimension)
            pipeline.collection_ready = True
        producer = new_producer(settings.kafka_bootstrap_servers)
        await producer.start()
        circuits = {name: health.circuit(name, settings.breaker_threshold, max(settings.retry_base_seconds, 0.01),
                                         settings.retry_max_seconds) for name in ("embedder", "qdrant")}
        vectorizer = handlers.Vectorizer(settings, pipeline, producer, store, circuits, health)
        app.state.vectorizer = vectorizer
        app.state.embedder = embedder
        app.state.vector_store = store
        health.add("qdrant", store.aping)
        health.add("kafka", lambda: reachable(producer))
        vectorizer.start()
        log.info("vectorizer consuming", extra={"topic": vectorizer.topics.vectorization_queue,
                                                "group": settings.group_id, "collection": store.collection,
                                                "vector_backend": store.backend})
        try:
            yield
        finally:
            # Process and commit what is buffered while the consumer can still commit.
            await vectorizer.close()
            await producer.stop()
            await embedder.close()
            await asyncio.to_thread(store.close)

    app = create_service_app("vectorizer", health, lifespan, guard=ServiceGuard(settings))
    app.include_router(handlers.router)
    return app
