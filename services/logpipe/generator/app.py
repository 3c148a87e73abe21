"""generator: produces realistic logs to raw-logs, controlled over REST."""

from __future__ import annotations


from fastapi import FastAPI

from logpipe.core.health import Health
from logpipe.core.http import create_service_app
from logpipe.core.kafka import new_producer, reachable
from logpipe.core.topics import Topics
from logpipe.generator import handlers
from logpipe.generator.settings import Settings
from logpipe.tokens import ServiceGuard


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    health = Health("generator")

    async def lifespan(app: FastAPI):
        producer = new_producer(settings.kafka_bootstrap_servers)
        await producer.start()
        generator = handlers.Generator(settings, producer, Topics(settings.topic_prefix).raw_logs)
        app.state.generator = generator
        health.add("kafka", lambda: reachable(producer))
        if settings.autostart:
            generator.start()
        try:
            yield
        finally:
            await generator.stop()
            await producer.stop()

    app = create_service_app("generator", health, lifespan, guard=ServiceGuard(settings))
    app.include_router(handlers.router)
    return app

