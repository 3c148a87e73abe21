"""HTTP side of API tokens: the request and WebSocket checks and the scope dependency.

Tokens themselves (hashing, creation, verification) live in `logpipe.tokens`.
"""

from __future__ import annotations

import asyncio
import base64
import math
import threading
import time

from fastapi import HTTPException, Request, WebSocket
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from logpipe.core.circuit import CircuitBreaker

from logpipe.tokens import (  # noqa: F401  (re-exported: the routers and tests use auth.*)
    SCOPES,
    TOKEN_PREFIX,
    CreatedToken,
    Principal,
    create_token,
    ensure_bootstrap_token,
    hash_token,
    list_tokens,
    open_engine,
    parse_scopes,
    revoke_token,
    verify_token,
)


class Authenticator:
    """Checks a request's token and scope; caches verified tokens for `cache_s` seconds.

    While the token database (PostgreSQL in production) is away, a token this process verified
    within the last `stale_s` seconds still works (log shippers keep shipping; no token can be
    revoked meanwhile, since revoking writes to that database); any other answers 503 with
    `Retry-After`, never 401 or 500. `circuit` (core/circuit.py) shows the outage on /health.
    """

    def __init__(self, engine: Engine, cache_s: float = 5.0, stale_s: float = 300.0,
                 circuit: CircuitBreaker | None = None) -> None:
        self.engine = engine
        self.cache_s = cache_s
        self.stale_s = stale_s
        self.circuit = circuit
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        # Valid tokens by hash, with when the database last said so (for its outages).
        self._verified: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> tuple[bool, Principal | None]:
        with self._lock:
            entry = self._cache.get(hash_token(token))
        if entry and entry[0] > time.monotonic():
            return True, entry[1]
        return False, None

    def verify(self, token: str) -> Principal | None:
        found, principal = self.cached(token)
        if found:
            return principal
        principal = verify_token(self.engine, token)
        key = hash_token(token)
        with self._lock:
            if self.cache_s > 0:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key] = (time.monotonic() + self.cache_s, principal)
            if principal is None:
                self._verified.pop(key, None)
            elif self.stale_s > 0:
                if len(self._verified) > 10_000:
                    self._verified.clear()
                self._verified[key] = (time.monotonic(), principal)
        return principal

    def _database_away(self, token: str, exc: Exception) -> Principal:
        """The principal this token had when last verified, if recent enough; else 503."""
        delay = 1.0
        if self.circuit is not None:
            self.circuit.record_failure(exc)
            delay = max(1.0, self.circuit.delay())
        with self._lock:
            known = self._verified.get(hash_token(token))
        if known is not None and time.monotonic() - known[0] <= self.stale_s:
            return known[1]
        raise HTTPException(503, "the token database is unavailable; retry later",
                            headers={"Retry-After": str(math.ceil(delay))}) from exc

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()

    async def authenticate(self, token: str | None, scope: str) -> Principal:
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
            raise HTTPException(401, "invalid or revoked API token", headers={"WWW-Authenticate": "Bearer"})
        if not principal.allows(scope):
            raise HTTPException(403, f"this token lacks the {scope!r} scope")
        return principal


def token_from_headers(headers) -> str | None:
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


def require(scope: str):
    """A FastAPI dependency: the caller's Principal, or 401/403."""

    async def dependency(request: Request) -> Principal:
        authenticator: Authenticator = request.app.state.authenticator
        return await authenticator.authenticate(token_from_headers(request.headers), scope)

    dependency.__name__ = f"require_{scope}"
    return dependency


async def authenticate_websocket(websocket: WebSocket, scope: str) -> Principal | None:
    """The caller of a WebSocket, or None after refusing the handshake with 401/403.

    Browsers cannot set headers on a WebSocket, so the token may also come as `?token=`.
    """
    authenticator: Authenticator = websocket.app.state.authenticator
    token = token_from_headers(websocket.headers) or websocket.query_params.get("token")
    try:
        return await authenticator.authenticate(token, scope)
    except HTTPException as exc:
        await deny_websocket(websocket, exc.status_code, str(exc.detail))
        return None


async def deny_websocket(websocket: WebSocket, status: int, detail: str) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse({"detail": detail}, status_code=status))
    else:
        # Closing before accept makes the server answer the handshake with 403.
        await websocket.close(code=4000 + status, reason=detail[:120])
