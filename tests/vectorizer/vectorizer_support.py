"""The vectorizer app running against the test broker (importable: pytest puts this folder on sys.path)."""

from __future__ import annotations

import contextlib

import httpx

from logpipe.vectorizer.app import create_app
from logpipe.vectorizer.settings import Settings


@contextlib.asynccontextmanager
async def running_vectorizer(kafka_bootstrap, topics, data_dir, **overrides):
    options = dict(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topics.prefix, data_dir=data_dir,
                   batch_size=10, batch_timeout_seconds=0.5, session_timeout_ms=2000, heartbeat_interval_ms=500,
                   group_id=f"vectorizer-{topics.prefix}", retry_base_seconds=0.05, qdrant_collection="e2e_logs")
    options.update(overrides)
    settings = Settings(**options)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vectorizer") as http:
            yield app, http, settings
