"""The HTTP side every service shares: `/health`, `/metrics`, request metrics, JSON errors."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from logpipe import __version__
from logpipe.core import tracing
from logpipe.core.health import Health
from logpipe.core.metrics import HTTP_REQUESTS, HTTP_SECONDS

# Probes and scrapes are not requests anyone made; they stay out of request metrics.
UNMETERED_PATHS = frozenset({"/health", "/metrics"})

Lifespan = Callable[[FastAPI], "AsyncIterator[None]"]


class _Meter:
    """Request counts and latency per route (plain ASGI: Starlette's `BaseHTTPMiddleware`
    costs about half a millisecond a request in task and stream plumbing)."""

    def __init__(self, app, service: str, health: Health) -> None:
        self.app, self.service, self.health = app, service, health

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in UNMETERED_PATHS:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception becomes a 500 further out

        async def send_meter(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_meter)
        finally:
            # The router records the matched route in the shared scope.
            route_path = getattr(scope.get("route"), "path", "unmatched")
            self.health.requests_total += 1
            if status >= 500:
                self.health.errors_total += 1
            HTTP_REQUESTS.labels(self.service, scope["method"], route_path, str(status)).inc()
            HTTP_SECONDS.labels(self.service, route_path).observe(time.perf_counter() - started)


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

    app.add_middleware(_Meter, service=service, health=health)
    tracing.instrument_app(app)

    @app.get("/health", tags=["ops"])
    async def health_endpoint() -> JSONResponse:
        body, status = await health.report()
        return JSONResponse(body, status_code=status)

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app
