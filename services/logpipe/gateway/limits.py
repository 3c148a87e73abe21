"""Request rate limits: token buckets per API token (ingest routes) and per client address
(whatever answers without a token, and wrong tokens). Over a limit the answer is 429 with
`Retry-After`; the settings are `GATEWAY_RATE_LIMIT_*` (docs/api.md).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Callable
from urllib.parse import parse_qs

from fastapi import HTTPException
from fastapi.responses import JSONResponse

from logpipe.core import metrics

LIMITED = metrics.counter("logpipe_gateway_rate_limited_total", "Requests answered 429 by a rate limit",
                          ("limit",))


class RateLimiter:
    """One token bucket per key: `burst` requests at once, refilled at `rate_per_s`.

    At most `max_keys` buckets are kept (least recently used dropped first), so a flood of
    new addresses costs bounded memory; a dropped key starts again with a full bucket.
    A rate of 0 turns the limit off. Called from the event loop only (no lock needed).
    """

    def __init__(self, rate_per_s: float, burst: float, name: str = "", max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate_per_s)
        self.burst = max(float(burst), 1.0)
        self.name = name
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str) -> float:
        """0 when the request may go on (one token taken), else the seconds until it may."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1 - tokens) / self.rate
            LIMITED.labels(self.name).inc()
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


def retry_after(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))


def too_many(wait_s: float, detail: str) -> HTTPException:
    return HTTPException(429, f"{detail}; retry after {retry_after(wait_s)} s",
                         headers={"Retry-After": retry_after(wait_s)})


def client_address(scope) -> str:
    """The peer address (uvicorn puts the proxy's client there when FORWARDED_ALLOW_IPS trusts it)."""
    client = scope.get("client")
    return client[0] if client else "unknown"


def _has_credentials(scope) -> bool:
    for name, _ in scope.get("headers", ()):
        if name in (b"authorization", b"x-api-token"):
            return True
    query = scope.get("query_string", b"")
    return b"token=" in query and bool(parse_qs(query.decode("latin-1")).get("token"))


# Paths where a token is checked; everything else answers without one.
TOKEN_PATHS = ("/api/", "/ws/", "/v1/", "/loki/")


class AnonymousLimit:
    """ASGI middleware: what answers without a token (health, metrics, the OpenAPI document, the
    dashboard and its token prompt) takes from the client address' bucket whatever it is sent
    (a made-up token must not buy a way round), and so does an API call or WebSocket without
    any credential. An API call with a token is limited where the token is checked."""

    def __init__(self, app, limiter: RateLimiter) -> None:
        self.app, self.limiter = app, limiter

    async def __call__(self, scope, receive, send) -> None:
        if (scope["type"] not in ("http", "websocket") or not self.limiter.enabled
                or (scope["path"].startswith(TOKEN_PATHS) and _has_credentials(scope))):
            await self.app(scope, receive, send)
            return
        wait = self.limiter.take(client_address(scope))
        if not wait:
            await self.app(scope, receive, send)
            return
        response = JSONResponse({"detail": f"too many requests without a token from this address; retry after "
                                           f"{retry_after(wait)} s"},
                                status_code=429, headers={"Retry-After": retry_after(wait)})
        if scope["type"] == "http":
            await response(scope, receive, send)
        else:
            await receive()  # websocket.connect
            if "websocket.http.response" in scope.get("extensions", {}):
                # The handshake is refused with this HTTP response (Starlette prefixes `websocket.`).
                await response(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 4429, "reason": "rate limited"})
