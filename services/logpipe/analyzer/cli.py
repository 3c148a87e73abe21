"""`logpipe analyze`: one analysis run now (what the Kubernetes CronJob calls)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone


def register(subparsers) -> None:
    parser = subparsers.add_parser("analyze", help="run one analysis now and print the report")
    parser.add_argument("--window-hours", type=float, default=None, help="hours to analyse (default 24)")
    parser.add_argument("--services", default="", help="comma-separated services (default: all)")
    parser.add_argument("--end", default=None, help="end of the window, ISO 8601 (default: now)")
    parser.add_argument("--format", choices=("summary", "md", "json"), default="summary",
                        help="what to print: a one-line summary (default), the Markdown or the JSON report")
    parser.add_argument("--llm", default=None, help="override ANALYZER_LLM_BACKEND (auto|ollama|openai|llamacpp|none)")
    parser.set_defaults(func=cmd_analyze)


def cmd_analyze(args: argparse.Namespace) -> None:
    import orjson

    from logpipe.analyzer.runner import Analyzer, embed_from
    from logpipe.analyzer.settings import Settings
    from logpipe.core.logging import configure_logging
    from logpipe.stores import sql
    from logpipe.stores.clickhouse import ClickHouseStore

    overrides = {"llm_backend": args.llm} if args.llm else {}
    settings = Settings(**overrides)
    configure_logging("analyzer", settings.log_level, settings.log_format)
    end = None
    if args.end:
        try:
            end = datetime.fromisoformat(args.end.replace("Z", "+00:00"))
        except ValueError:
            raise SystemExit(f"--end {args.end!r} is not an ISO 8601 time")
        if end.tzinfo is None:
            end = end.replace(tzinfo=timezone.utc)
    store = ClickHouseStore(settings.clickhouse_dsn, settings.clickhouse_database)
    store.apply_schema(settings.log_ttl_days, settings.clickhouse_time_projection)
    engine = sql.engine(settings)
    sql.init_db(engine)
    services = [s.strip() for s in args.services.split(",") if s.strip()]
    row = Analyzer(settings, store, engine, embed_from(settings)).run(args.window_hours, services, end, "cli")
    if row.status != "completed":
        print(f"analysis {row.id} failed: {row.error}", file=sys.stderr)
        raise SystemExit(1)
    if args.format == "md":
        print(row.markdown)
    elif args.format == "json":
        print(orjson.dumps(row.report, option=orjson.OPT_INDENT_2).decode())
    else:
        print(orjson.dumps({"report_id": row.id, "status": row.status, "anomalies": row.anomaly_count,
                            "summary_model": row.summary_model, "analysis_seconds": row.analysis_seconds,
                            "llm_seconds": row.llm_seconds, "summary": row.summary}).decode())
