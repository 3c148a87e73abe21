"""API tokens: hashed at rest, scoped (read, ingest, admin), optionally bound to one pipeline.

A token reads `lpt_<id>_<secret>`. The id is public and finds the row; only the SHA-256 of
the whole token is stored, and it is compared in constant time. The secret has 256 bits of
entropy, so a fast hash is enough (no password stretching needed, unlike human passwords).

The token store is shared: the gateway checks tokens, `logpipe tokens` and `logpipe dev`
create them, and the operator will bind them to pipelines. HTTP concerns live in
`logpipe.gateway.auth` (the public API) and `logpipe.core.http` (the services' own ports,
checked by `ServiceGuard` below).

A presented token is never compared as text: its SHA-256 is compared with a stored or cached
SHA-256 by `hmac.compare_digest`, and caches are keyed by the public id, not by the secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from logpipe.stores import sql
from logpipe.stores.sql import ApiToken

log = logging.getLogger(__name__)

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


def token_id(token: str) -> str | None:
    """The public id of a well-formed token (what logs and rate limits may name), else None."""
    match = _TOKEN_SHAPE.match(token)
    return match.group(1) if match else None


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


class TokenVerifier:
    """`verify_token` with each answer cached for `cache_s` seconds (a revoke takes effect
    within that time).

    The cache is keyed by the token's public id and keeps the SHA-256 of the token that was
    checked; a later call is answered from it only when `hmac.compare_digest` finds the same
    hash, so a guessed secret for a known id always goes to the store.
    """

    max_entries = 10_000

    def __init__(self, engine: Engine, cache_s: float = 5.0) -> None:
        self.engine = engine
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, str, Principal | None]] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> tuple[bool, Principal | None]:
        key = token_id(token)
        if key is None:
            return True, None  # malformed: no store lookup can make it valid
        with self._lock:
            entry = self._cache.get(key)
        if entry and entry[0] > time.monotonic() and hmac.compare_digest(hash_token(token), entry[1]):
            return True, entry[2]
        return False, None

    def verify(self, token: str) -> Principal | None:
        found, principal = self.cached(token)
        if found:
            return principal
        principal = verify_token(self.engine, token)
        key = token_id(token)
        if self.cache_s > 0 and key is not None:
            with self._lock:
                if len(self._cache) >= self.max_entries:
                    self._cache.clear()
                current = self._cache.get(key)
                # A wrong secret for an id must not evict the right token's entry.
                if principal is not None or current is None or current[2] is None:
                    self._cache[key] = (time.monotonic() + self.cache_s, hash_token(token), principal)
        return principal

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()


SERVICE_AUTH_MODES = ("auto", "on", "off")


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServiceGuard:
    """The check in front of a service's own routes that change state or cost compute
    (the generator's `/control`, the analyzer's `/analyze`, the embedder's `/embed`, ...).

    `LOGPIPE_SERVICE_AUTH=auto` (the default) asks for a token only when the service listens
    on more than loopback; `on` always, `off` never. Two credentials pass: the service token
    (`LOGPIPE_SERVICE_TOKEN`, what services send each other; it stands for every scope), or an
    API token from the shared store with the route's scope, bound to no pipeline or to this one.
    Both are compared as SHA-256 hashes with `hmac.compare_digest`.
    """

    def __init__(self, settings) -> None:
        mode = getattr(settings, "service_auth", "auto")
        self.required = mode == "on" or (mode == "auto" and not is_loopback(settings.host))
        secret = settings.service_token.get_secret_value() if getattr(settings, "service_token", None) else ""
        self._service_hash = hash_token(secret) if secret else None
        self._settings = settings
        self._verifier: TokenVerifier | None = None
        self._lock = threading.Lock()
        if mode == "off" and not is_loopback(settings.host):
            log.warning("LOGPIPE_SERVICE_AUTH=off: state-changing routes answer anyone who reaches %s",
                        settings.host)

    def _verify_api_token(self, token: str) -> Principal | None:
        with self._lock:
            if self._verifier is None:
                self._verifier = TokenVerifier(open_engine(self._settings))
        return self._verifier.verify(token)

    async def authenticate(self, token: str | None, scope: str) -> tuple[int, str] | None:
        """None when the caller may go on, else the (status, reason) to answer."""
        if not self.required:
            return None
        if not token:
            return 401, "missing token: send `Authorization: Bearer <token>` (an API token or the service token)"
        if self._service_hash is not None and hmac.compare_digest(hash_token(token), self._service_hash):
            return None
        principal = await asyncio.to_thread(self._verify_api_token, token) if token_id(token) else None
        if principal is None:
            return 401, "invalid or revoked token"
        if not principal.allows(scope):
            return 403, f"this token lacks the {scope!r} scope"
        served = self._settings.pipeline
        if principal.pipeline and principal.pipeline != served:
            return 403, f"this token is bound to pipeline {principal.pipeline!r}; this service serves {served!r}"
        return None


def ensure_bootstrap_token(settings) -> str | None:
    """Create and return an admin token only when no token exists yet (called by `logpipe dev`)."""
    engine = open_engine(settings)
    with Session(engine) as session:
        if session.exec(select(ApiToken.id).limit(1)).first() is not None:
            return None
    return create_token(engine, "bootstrap-admin", ["admin"]).token
