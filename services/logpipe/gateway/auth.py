"""HTTP side of API tokens: the request and WebSocket checks and the scope dependency.

Tokens themselves (hashing, creation, verification) live in `logpipe.tokens`.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time

from fastapi import HTTPException, Request, WebSocket
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine

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
    """Checks a request's token and scope; caches verified tokens for `cache_s` seconds."""

    def __init__(self, engine: Engine, cache_s: float = 5.0) -> None:
        self.engine = engine
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Principal | None]] = {}
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
        if self.cache_s > 0:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[hash_token(token)] = (time.monotonic() + self.cache_s, principal)
        return principal

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
            principal = await asyncio.to_thread(self.verify, token)
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
