"""`logpipe tokens create|list|revoke`: API tokens in the SQL store (DATABASE_URL or SQLite)."""

from __future__ import annotations

import argparse
import json
import sys


def _engine():
    from logpipe.core.settings import CommonSettings
    from logpipe.tokens import open_engine

    return open_engine(CommonSettings())


def cmd_create(args: argparse.Namespace) -> None:
    from logpipe.tokens import create_token

    scopes = [part for value in args.scope for part in value.split(",")]
    try:
        created = create_token(_engine(), args.name, scopes, args.pipeline)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from exc
    if args.json:
        print(json.dumps({"id": created.id, "name": created.name, "scopes": list(created.scopes),
                          "pipeline": created.pipeline, "token": created.token}))
        return
    print(created.token)
    pipeline = f", pipeline {created.pipeline}" if created.pipeline else ""
    print(f"token {created.id} ({created.name}: {', '.join(created.scopes)}{pipeline}). "
          "It is shown only now; store it safely.", file=sys.stderr)


def cmd_list(args: argparse.Namespace) -> None:
    from logpipe.tokens import list_tokens

    rows = list_tokens(_engine(), include_revoked=args.all)
    if args.json:
        print(json.dumps([{"id": r.id, "name": r.name, "scopes": r.scopes.split(","), "pipeline": r.pipeline,
                           "created_at": r.created_at.isoformat(),
                           "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None} for r in rows]))
        return
    if not rows:
        print("no tokens (create one with: logpipe tokens create --name NAME --scope read)")
        return
    print(f"{'ID':<13} {'NAME':<24} {'SCOPES':<20} {'PIPELINE':<14} {'CREATED':<20} STATE")
    for r in rows:
        state = f"revoked {r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "active"
        print(f"{r.id:<13} {r.name[:24]:<24} {r.scopes:<20} {(r.pipeline or '*'):<14} "
              f"{r.created_at:%Y-%m-%d %H:%M:%S}  {state}")


def cmd_revoke(args: argparse.Namespace) -> None:
    from logpipe.tokens import revoke_token

    if not revoke_token(_engine(), args.token_id):
        raise SystemExit(f"error: no active token {args.token_id!r} (see: logpipe tokens list)")
    print(f"revoked {args.token_id}; gateways stop accepting it within GATEWAY_TOKEN_CACHE_S seconds")


def register(subparsers) -> None:
    tokens = subparsers.add_parser("tokens", help="create, list and revoke API tokens")
    actions = tokens.add_subparsers(dest="tokens_command", required=True)

    create = actions.add_parser("create", help="create a token and print it once")
    create.add_argument("--name", required=True, help="who or what uses it, e.g. fluent-bit-prod")
    create.add_argument("--scope", "--scopes", dest="scope", action="append", required=True,
                        help="read, ingest or admin (repeat or comma-separate)")
    create.add_argument("--pipeline", default=None, help="bind the token to one pipeline's data")
    create.add_argument("--json", action="store_true", help="print JSON (id, scopes, token)")
    create.set_defaults(func=cmd_create)

    listing = actions.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked tokens")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)

    revoke = actions.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("token_id")
    revoke.set_defaults(func=cmd_revoke)
