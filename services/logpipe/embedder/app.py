"""embedder: the HTTP embedding service (model loaded once at start, cache in front)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from logpipe.core.health import Health
from logpipe.core.http import create_service_app
from logpipe.embedder import handlers
from logpipe.embedder.settings import Settings
from logpipe.tokens import ServiceGuard

log = logging.getLogger(__name__)

# Larger bodies are refused before parsing: 100 texts of 8192 characters fit well inside.
MAX_BODY_BYTES = 8 << 20


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    health = Health("embedder")

    async def lifespan(app: FastAPI):
        # Loading (and the first ONNX export) takes seconds: off the event loop.
        embedder = await asyncio.to_thread(settings.build_embedder)
        app.state.embedder = embedder
        health.add("model", lambda: embedder.dimension > 0)
        if embedder.cache is not None and embedder.cache.kind == "redis":
            # Without Redis embeddings still work, only slower: degraded, not unhealthy.
            health.add("redis", embedder.cache.ping, critical=False)
            embedder.cache.breaker = health.circuit("redis", settings.cache_breaker_threshold,
                                                    settings.cache_retry_base_seconds,
                                                    settings.cache_retry_max_seconds)
        log.info("embedder ready", extra={"model": embedder.model, "backend": embedder.backend.name,
                                          "dimension": embedder.dimension,
                                          "cache": getattr(embedder.cache, "kind", "none")})
        try:
            yield
        finally:
            await embedder.close()

    app = create_service_app("embedder", health, lifespan, guard=ServiceGuard(settings))
    app.state.settings = settings

    @app.middleware("http")
    async def _limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return JSONResponse({"error": f"request body is {length} bytes; the limit is {MAX_BODY_BYTES}"},
                                status_code=413)
        return await call_next(request)

    app.include_router(handlers.router)
    return app
