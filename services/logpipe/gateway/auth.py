"""HTTP side of API tokens: the request and WebSocket checks and the scope dependency.

Tokens themselves (hashing, creation, verification) live in `logpipe.tokens`.
"""

from __future__ import annotations

import asyncio

from fastapi import HTTPException, Request, WebSocket
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine

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
    verify_token,
)


class Authenticator(TokenVerifier):
    """Checks a request's token and scope (verified tokens are cached, see `TokenVerifier`).

    `failures` limits how often one client address may present a wrong token (a guess costs a
    store lookup); `ingest` gives each verified token its own request budget on the ingest routes.
    """

    def __init__(self, engine: Engine, cache_s: float = 5.0, failures: RateLimiter | None = None,
                 ingest: RateLimiter | None = None) -> None:
        super().__init__(engine, cache_s)
        self.failures = failures or RateLimiter(0, 0)
        self.ingest = ingest or RateLimiter(0, 0)

    async def authenticate(self, token: str | None, scope: str, client: str = "") -> Principal:
        if not token:
            raise HTTPException(401, "missing API token: send `Authorization: Bearer <token>`",
                                headers={"WWW-Authenticate": "Bearer"})
        found, principal = self.cached(token)
        if not found:
            # A database round trip (PostgreSQL in production) stays off the event loop.
            principal = await asyncio.to_thread(self.verify, token)
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
