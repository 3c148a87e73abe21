"""API tokens: hashed at rest, scoped (read, ingest, admin), optionally bound to one pipeline.

A token reads `lpt_<id>_<secret>`. The id is public and finds the row; only the SHA-256 of
the whole token is stored, and it is compared in constant time. The secret has 256 bits of
entropy, so a fast hash is enough (no password stretching needed, unlike human passwords).

The token store is shared: the gateway checks tokens, `logpipe tokens` and `logpipe dev`
create them, and the operator will bind them to pipelines. HTTP concerns live in
`logpipe.gateway.auth`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

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
