"""The HTTP side every service shares: `/health`, `/metrics`, request metrics, JSON errors."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from logpipe import __version__
from logpipe.core.health import Health
from logpipe.core.metrics import HTTP_REQUESTS, HTTP_SECONDS

# Probes and scrapes are not requests anyone made; they stay out of request metrics.
UNMETERED_PATHS = frozenset({"/health", "/metrics"})

Lifespan = Callable[[FastAPI], "AsyncIterator[None]"]


def create_service_app(service: str, health: Health, lifespan: Lifespan | None = None,
                       **fastapi_kwargs) -> FastAPI:
    """A FastAPI app with the shared endpoints; `lifespan` opens and closes the service's stores."""

    @asynccontextmanager
    async def _lifespan(app: FastAPI):
        if lifespan is None:
            yield
        else:
            async with asynccontextmanager(lifespan)(app):
                yield

    app = FastAPI(title=f"logpipe {service}", version=__version__, lifespan=_lifespan, **fastapi_kwargs)
    app.state.health = health

    @app.middleware("http")
    async def _meter(request: Request, call_next):
        path = request.url.path
        if path in UNMETERED_PATHS:
            return await call_next(request)
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            route_path = getattr(route, "path", "unmatched")
            health.requests_total += 1
            if status >= 500:
                health.errors_total += 1
            HTTP_REQUESTS.labels(service, request.method, route_path, str(status)).inc()
            HTTP_SECONDS.labels(service, route_path).observe(time.perf_counter() - started)

    @app.get("/health", tags=["ops"])
    async def health_endpoint() -> JSONResponse:
        body, status = await health.report()
        return JSONResponse(body, status_code=status)

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app
