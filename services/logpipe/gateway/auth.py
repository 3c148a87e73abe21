"""HTTP side of API tokens: the request and WebSocket checks and the scope dependency.

Tokens themselves (hashing, creation, verification) live in `logpipe.tokens`.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time

from fastapi import HTTPException, Request, WebSocket
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from logpipe.core.circuit import CircuitBreaker
from logpipe.core.http import bearer_token as token_from_headers
from logpipe.gateway.limits import RateLimiter, client_address, too_many
from logpipe.tokens import (  # noqa: F401  (re-exported: the routers and tests use auth.*)
    SCOPES,
    TOKEN_PREFIX,
    CreatedToken,
    Principal,
    TokenVerifier,
    create_token,
    ensure_bootstrap_token,
    hash_token,
    list_tokens,
    open_engine,
    parse_scopes,
    revoke_token,
    token_id,
    verify_token,
)


class Authenticator(TokenVerifier):
    """Checks a request's token and scope (verified tokens are cached, see `TokenVerifier`).

    `failures` limits how often one client address may present a wrong token (a guess costs a
    store lookup); `ingest` gives each verified token its own request budget on the ingest routes.

    While the token database (PostgreSQL in production) is away, a token this process verified
    within the last `stale_s` seconds still works (log shippers keep shipping; no token can be
    revoked meanwhile, since revoking writes to that database); any other answers 503 with
    `Retry-After`, never 401 or 500. `circuit` (core/circuit.py) shows the outage on /health.
    """

    def __init__(self, engine: Engine, cache_s: float = 5.0, failures: RateLimiter | None = None,
                 ingest: RateLimiter | None = None, stale_s: float = 300.0,
                 circuit: CircuitBreaker | None = None) -> None:
        super().__init__(engine, cache_s)
        self.failures = failures or RateLimiter(0, 0)
        self.ingest = ingest or RateLimiter(0, 0)
        self.stale_s = stale_s
        self.circuit = circuit
        # Valid tokens by public id: when the database last said so, the hash it said it of, and
        # the principal (only ever matched by hash in constant time, as the cache is).
        self._verified: dict[str, tuple[float, str, Principal]] = {}

    def verify(self, token: str) -> Principal | None:
        principal = super().verify(token)
        key = token_id(token)
        if key is None or self.stale_s <= 0:
            return principal
        with self._lock:
            if principal is None:
                known = self._verified.get(key)
                if known is not None and hmac.compare_digest(known[1], hash_token(token)):
                    self._verified.pop(key, None)  # revoked since
            else:
                if len(self._verified) >= self.max_entries:
                    self._verified.clear()
                self._verified[key] = (time.monotonic(), hash_token(token), principal)
        return principal

    def _database_away(self, token: str, exc: Exception) -> Principal:
        """The principal this token had when last verified, if recent enough; else 503."""
        delay = 1.0
        if self.circuit is not None:
            self.circuit.record_failure(exc)
            delay = max(1.0, self.circuit.delay())
        key = token_id(token)
        with self._lock:
            known = self._verified.get(key) if key is not None else None
        if (known is not None and time.monotonic() - known[0] <= self.stale_s
                and hmac.compare_digest(known[1], hash_token(token))):
            return known[2]
        raise HTTPException(503, "the token database is unavailable; retry later",
                            headers={"Retry-After": str(math.ceil(delay))}) from exc

    async def authenticate(self, token: str | None, scope: str, client: str = "") -> Principal:
        if not token:
            raise HTTPException(401, "missing API token: send `Authorization: Bearer <token>`",
                                headers={"WWW-Authenticate": "Bearer"})
        found, principal = self.cached(token)
        if not found:
            # A database round trip (PostgreSQL in production) stays off the event loop.
            try:
                principal = await asyncio.to_thread(self.verify, token)
            except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
                principal = self._database_away(token, exc)
            else:
                if self.circuit is not None:
                    self.circuit.record_success()
        if principal is None:
            wait = self.failures.take(client)
            if wait:
                raise too_many(wait, "too many requests with an invalid token from this address")
            raise HTTPException(401, "invalid or revoked API token", headers={"WWW-Authenticate": "Bearer"})
        if not principal.allows(scope):
            raise HTTPException(403, f"this token lacks the {scope!r} scope")
        # The ingest scope guards exactly the ingest routes: each token has its own budget there.
        if scope == "ingest":
            wait = self.ingest.take(principal.token_id)
            if wait:
                raise too_many(wait, "this token is over its ingest request rate")
        return principal


def require(scope: str):
    """A FastAPI dependency: the caller's Principal, or 401/403 (429 over a rate limit)."""

    async def dependency(request: Request) -> Principal:
        authenticator: Authenticator = request.app.state.authenticator
        return await authenticator.authenticate(token_from_headers(request.headers), scope,
                                                client_address(request.scope))

    dependency.__name__ = f"require_{scope}"
    return dependency


async def authenticate_websocket(websocket: WebSocket, scope: str) -> Principal | None:
    """The caller of a WebSocket, or None after refusing the handshake with 401/403/429.

    Browsers cannot set headers on a WebSocket, so the token may also come as `?token=`.
    """
    authenticator: Authenticator = websocket.app.state.authenticator
    token = token_from_headers(websocket.headers) or websocket.query_params.get("token")
    try:
        return await authenticator.authenticate(token, scope, client_address(websocket.scope))
    except HTTPException as exc:
        await deny_websocket(websocket, exc.status_code, str(exc.detail), exc.headers)
        return None


async def deny_websocket(websocket: WebSocket, status: int, detail: str, headers: dict | None = None) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse({"detail": detail}, status_code=status, headers=headers))
    else:
        # Closing before accept makes the server answer the handshake with 403.
        await websocket.close(code=4000 + status, reason=detail[:120])
