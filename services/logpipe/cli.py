"""`logpipe` command line: run services, start the embedded broker, one-shot tools."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from typing import Any

from logpipe import __version__
from logpipe.runner import SERVICES, run_services, service_available


def cmd_run(args: argparse.Namespace) -> None:
    if args.service == "all":
        names = [name for name in SERVICES if service_available(name)]
        overrides: dict[str, dict[str, Any]] = {}
        if args.generate:
            overrides["generator"] = {"autostart": True}
        run_services(names, overrides)
    else:
        if args.service not in SERVICES:
            raise SystemExit(f"unknown service {args.service!r}; choose one of: {', '.join(SERVICES)}, all")
        if not service_available(args.service):
            raise SystemExit(f"service {args.service!r} is not part of this build yet")
        overrides = {"generator": {"autostart": True}} if args.generate and args.service == "generator" else {}
        run_services([args.service], overrides)


def cmd_broker(args: argparse.Namespace) -> None:
    from logpipe.core.broker import run_broker_forever

    run_broker_forever(port=args.port, partitions=args.partitions)


def cmd_dev(args: argparse.Namespace) -> None:
    from logpipe.dev import run_dev

    run_dev(port=args.broker_port, partitions=args.partitions, generate=not args.no_generator)


def cmd_schema(args: argparse.Namespace) -> None:
    from logpipe.schemas import ensure_all

    import json

    done = asyncio.run(ensure_all(topics=not args.no_topics, reorder_logs=args.reorder_logs))
    print(json.dumps({"ready": True, **done}, default=str))


def cmd_dlq_replay(args: argparse.Namespace) -> None:
    import json

    from logpipe.core.dlq import REPLAY_TARGETS, replay_dead_letters
    from logpipe.core.settings import CommonSettings
    from logpipe.core.topics import Topics

    settings = CommonSettings()
    topics = Topics(settings.topic_prefix)
    report = replay_dead_letters(settings.kafka_bootstrap_servers, topics.name(args.topic),
                                 topics.name(REPLAY_TARGETS[args.topic]), idle_s=args.idle_seconds,
                                 timeout_s=args.timeout_seconds)
    print(json.dumps(report))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="logpipe", description="AI-powered log analysis")
    parser.add_argument("--version", action="version", version=f"logpipe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one service, or every service in one process (`all`)")
    run.add_argument("service", help=f"{' | '.join(SERVICES)} | all")
    run.add_argument("--generate", action="store_true", help="start the generator producing at once")
    run.set_defaults(func=cmd_run)

    broker = sub.add_parser("broker", help="start the embedded Kafka-compatible broker (Tansu) and create topics")
    broker.add_argument("--port", type=int, default=None, help="listen port (default from KAFKA_BOOTSTRAP_SERVERS, 9092)")
    broker.add_argument("--partitions", type=int, default=None, help="partitions per topic (default 4)")
    broker.set_defaults(func=cmd_broker)

    dev = sub.add_parser("dev", help="broker + every service + generator on one machine (what `make dev` runs)")
    dev.add_argument("--broker-port", type=int, default=None)
    dev.add_argument("--partitions", type=int, default=None)
    dev.add_argument("--no-generator", action="store_true")
    dev.set_defaults(func=cmd_dev)

    schema = sub.add_parser("schema", help="create topics, tables and collections (idempotent)")
    schema.add_argument("--no-topics", action="store_true")
    schema.add_argument("--reorder-logs", action="store_true",
                        help="rewrite a `logs` table made with an earlier version's sort key (copies every row; "
                             "inserts go on meanwhile)")
    schema.set_defaults(func=cmd_schema)

    dlq = sub.add_parser("dlq", help="dead-letter topics")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    replay = dlq_sub.add_parser(
        "replay", help="put dead-lettered records back on their topic once the cause is fixed (exactly once; "
                       "what still fails returns to the DLQ with the reason)")
    replay.add_argument("topic", choices=["raw-logs-dlq", "vectorization-dlq"],
                        help="the DLQ (TOPIC_PREFIX is added, as for the services)")
    replay.add_argument("--idle-seconds", type=float, default=2.0,
                        help="stop once no older dead letter arrived for this long (default 2)")
    replay.add_argument("--timeout-seconds", type=float, default=600.0, help="give up after this long (default 600)")
    replay.set_defaults(func=cmd_dlq_replay)

    for register in _EXTENSIONS:
        register(sub)
    return parser


def _register_patterns(sub) -> None:
    try:
        module = importlib.import_module("logpipe.patterns.cli")
    except ModuleNotFoundError:
        return
    module.register(sub)


def _register_analyze(sub) -> None:
    try:
        module = importlib.import_module("logpipe.analyzer.cli")
    except ModuleNotFoundError:
        return
    module.register(sub)


def _register_tokens(sub) -> None:
    try:
        module = importlib.import_module("logpipe.gateway.cli")
    except ModuleNotFoundError:
        return
    module.register(sub)


def _register_operator(sub) -> None:
    try:
        module = importlib.import_module("logpipe_operator.cli")
    except ModuleNotFoundError:
        return
    module.register(sub)


# Subcommands owned by a feature live next to it: `patterns`, `analyze`, `tokens`, `operator`.
_EXTENSIONS = (_register_patterns, _register_analyze, _register_tokens, _register_operator)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
