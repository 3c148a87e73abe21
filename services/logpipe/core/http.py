"""The HTTP side every service shares: `/health`, `/metrics`, request metrics, JSON errors,
and the token check in front of a service's own state-changing routes."""

from __future__ import annotations

import base64
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from logpipe import __version__
from logpipe.core import tracing
from logpipe.core.health import Health
from logpipe.core.logging import protect_server_logs
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


def bearer_token(headers) -> str | None:
    """Bearer tokens, or HTTP Basic with the token as password (what Loki clients send)."""
    value = headers.get("authorization")
    if not value:
        return headers.get("x-api-token") or None
    kind, _, credentials = value.partition(" ")
    kind = kind.lower()
    credentials = credentials.strip()
    if kind == "bearer":
        return credentials or None
    if kind == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        user, _, password = decoded.partition(":")
        return password or user or None
    return None


def requires_token(scope: str):
    """A route dependency of a service's own port: the app's guard (`logpipe.tokens.ServiceGuard`,
    given to `create_service_app`) decides; a refusal is 401 or 403 with the reason."""

    async def dependency(request: Request) -> None:
        refused = await request.app.state.service_guard.authenticate(bearer_token(request.headers), scope)
        if refused is not None:
            status, detail = refused
            raise HTTPException(status, detail, headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)

    dependency.__name__ = f"requires_{scope}_token"
    return dependency


def create_service_app(service: str, health: Health, lifespan: Lifespan | None = None,
                       guard: Any = None, **fastapi_kwargs) -> FastAPI:
    """A FastAPI app with the shared endpoints; `lifespan` opens and closes the service's stores;
    `guard` checks the tokens of routes that depend on `requires_token`."""

    @asynccontextmanager
    async def _lifespan(app: FastAPI):
        if lifespan is None:
            yield
        else:
            async with asynccontextmanager(lifespan)(app):
                yield

    app = FastAPI(title=f"logpipe {service}", version=__version__, lifespan=_lifespan, **fastapi_kwargs)
    app.state.health = health
    app.state.service_guard = guard
    protect_server_logs()

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
