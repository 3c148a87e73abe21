"""API tokens: hashed at rest, scoped (read, ingest, admin), optionally bound to one pipeline.

A token reads `lpt_<id>_<secret>`. The id is public and finds the row; only the SHA-256 of
the whole token is stored, and it is compared in constant time. The secret has 256 bits of
entropy, so a fast hash is enough (no password stretching needed, unlike human passwords).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from fastapi import HTTPException, Request, WebSocket
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from logpipe.stores import sql
from logpipe.stores.sql import ApiToken

SCOPES = ("read", "ingest", "admin")
TOKEN_PREFIX = "lpt_"
_TOKEN_SHAPE = re.compile(r"^lpt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id, name, scopes and the pipeline it is bound to (if any)."""

    token_id: str
    name: str
    scopes: frozenset[str]
    pipeline: str | None

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


@dataclass(frozen=True)
class CreatedToken:
    token: str  # shown once, never stored
    id: str
    name: str
    scopes: tuple[str, ...]
    pipeline: str | None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    chosen = sorted({scope.strip().lower() for scope in scopes if scope.strip()})
    unknown = [scope for scope in chosen if scope not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; choose from {', '.join(SCOPES)}")
    if not chosen:
        raise ValueError(f"a token needs at least one scope ({', '.join(SCOPES)})")
    return tuple(chosen)


def open_engine(settings) -> Engine:
    engine = sql.engine(settings)
    ApiToken.metadata.create_all(engine, tables=[ApiToken.__table__])
    return engine


def create_token(engine: Engine, name: str, scopes: Iterable[str], pipeline: str | None = None) -> CreatedToken:
    name = name.strip()
    if not name:
        raise ValueError("a token needs a name")
    chosen = parse_scopes(scopes)
    token_id = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    row = ApiToken(id=token_id, name=name, scopes=",".join(chosen), pipeline=pipeline or None,
                   token_hash=hash_token(token))
    with Session(engine) as session:
        session.add(row)
        session.commit()
    return CreatedToken(token, token_id, name, chosen, pipeline or None)


def list_tokens(engine: Engine, include_revoked: bool = True) -> list[ApiToken]:
    with Session(engine) as session:
        statement = select(ApiToken).order_by(ApiToken.created_at)
        if not include_revoked:
            statement = statement.where(ApiToken.revoked_at.is_(None))
        return list(session.exec(statement))


def revoke_token(engine: Engine, token_id: str) -> bool:
    """Revoke by id (or by the whole token); False when no such active token exists."""
    match = _TOKEN_SHAPE.match(token_id)
    if match:
        token_id = match.group(1)
    with Session(engine) as session:
        row = session.get(ApiToken, token_id)
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = datetime.now(timezone.utc)
        session.add(row)
        session.commit()
        return True


def verify_token(engine: Engine, token: str) -> Principal | None:
    match = _TOKEN_SHAPE.match(token)
    if not match:
        return None
    with Session(engine) as session:
        row = session.get(ApiToken, match.group(1))
    # Compare even when the row is missing, so timing does not tell which ids exist.
    expected = row.token_hash if row is not None else "0" * 64
    if not hmac.compare_digest(hash_token(token), expected) or row is None or row.revoked_at is not None:
        return None
    return Principal(row.id, row.name, frozenset(row.scopes.split(",")), row.pipeline)


def ensure_bootstrap_token(settings) -> str | None:
    """Create and return an admin token only when no token exists yet (called by `logpipe dev`)."""
    engine = open_engine(settings)
    with Session(engine) as session:
        if session.exec(select(ApiToken.id).limit(1)).first() is not None:
            return None
    return create_token(engine, "bootstrap-admin", ["admin"]).token


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
