"""Speed of one analysis run over 1,000,000 logs spanning 24 hours (target: <= 30 s on 2 cores).

Generates the logs with numpy/pyarrow (logpipe.analyzer.synthetic: 8 services, about 480 error
and warning patterns with a daily rhythm, a cascading incident, a service going quiet), writes them
into an embedded ClickHouse (chdb) in a temporary directory of its own, then times one run:
ClickHouse aggregation, baselines, anomalies, template embeddings and clusters, co-occurrence,
the deterministic report and the SQL writes (SQLite). The LLM is timed separately
(`llm_seconds`, zero with `--llm none`); the embedding model is loaded before the clock starts
(`model_load_seconds`), as a long-lived analyzer holds it.

Prints one JSON line.

    .venv/bin/python bench/analyze.py                 # 1,000,000 logs, no LLM
    .venv/bin/python bench/analyze.py --logs 200000   # smaller, while developing
    .venv/bin/python bench/analyze.py --llm ollama --model llama3.1:8b --ollama-host http://127.0.0.1:11434
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))


WORDS = ("cache", "queue", "ledger", "invoice", "token", "session", "shard", "replica", "webhook", "quota",
         "schema", "bucket", "lease", "cursor", "socket", "tenant", "export", "report", "upload", "coupon",
         "refund", "catalog", "pricing", "search", "index", "profile", "avatar", "banner", "mailer", "scheduler")
VERBS = ("failed to refresh", "rejected", "timed out while loading", "could not parse", "lost connection to",
         "exceeded the limit of", "returned an empty", "could not lock", "gave up retrying", "found a stale")


def made_up_patterns(services: list[str], count: int, per_hour: float) -> list:
    """Distinct error wordings (`<service> <verb> <noun> <noun> ...`), as many as asked."""
    import random

    from logpipe.analyzer.synthetic import PatternSpec

    rng = random.Random(5)
    patterns, seen = [], set()
    while len(patterns) < count:
        service = rng.choice(services)
        text = f"{rng.choice(VERBS)} {rng.choice(WORDS)} {rng.choice(WORDS)} for request {{n}}"
        if (service, text) in seen:
            continue
        seen.add((service, text))
        patterns.append(PatternSpec(service, text[0].upper() + text[1:], rng.choice(("ERROR", "WARN")),
                                    per_hour * rng.uniform(0.2, 2.0)))
    return patterns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=int, default=1_000_000, help="how many logs in the 24 h (about)")
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--services", type=int, default=8)
    parser.add_argument("--patterns-per-service", type=int, default=12)
    parser.add_argument("--extra-patterns", type=int, default=400,
                        help="more distinct error patterns with made-up wording (a busy estate has hundreds)")
    parser.add_argument("--error-share", type=float, default=0.08, help="share of logs at WARN or worse")
    parser.add_argument("--llm", default="none", choices=("none", "auto", "ollama", "openai", "llamacpp"))
    parser.add_argument("--model", default="llama3.1:8b")
    parser.add_argument("--ollama-host", default="http://127.0.0.1:11434")
    parser.add_argument("--openai-base-url", default="")
    parser.add_argument("--embedding-runtime", default="onnx", choices=("onnx", "torch"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    from logpipe.analyzer import synthetic as syn
    from logpipe.analyzer.runner import Analyzer, embed_from
    from logpipe.analyzer.settings import Settings
    from logpipe.stores import sql
    from logpipe.stores.clickhouse import ClickHouseStore

    workdir = Path(tempfile.mkdtemp(prefix="logpipe-bench-analyze-"))
    try:
        started = time.perf_counter()
        services = [f"{name}-{i}" if i else name for i in range(args.services // 8 + 1)
                    for name in syn.default_services()][:args.services]
        # A little over, then exactly --logs of them: Poisson counts and the quiet service fall short.
        per_service_hour = args.logs * 1.05 / args.hours / len(services)
        error_rate = per_service_hour * args.error_share / args.patterns_per_service
        patterns = syn.default_patterns(services, per_service=args.patterns_per_service, per_hour=error_rate)
        patterns += made_up_patterns(services, args.extra_patterns, per_hour=error_rate / 5)
        end = syn.start_of_day()
        start = end - timedelta(hours=args.hours)
        scenario = syn.Scenario(
            start=start, hours=args.hours, patterns=patterns,
            volume_per_hour={s: per_service_hour for s in services},
            incidents=[syn.Incident(patterns[2], start_hour=args.hours - 10, hours=2, factor=15,
                                    cascade=patterns[args.patterns_per_service + 4])],
            quiet_from_hour={services[-1]: args.hours - 3})
        table = syn.build(scenario)
        if table.num_rows > args.logs:
            import numpy as np

            keep = np.sort(np.random.default_rng(1).choice(table.num_rows, args.logs, replace=False))
            table = table.take(keep)
        generate_seconds = time.perf_counter() - started

        store = ClickHouseStore(f"chdb://{workdir / 'clickhouse'}", "bench")
        store.apply_schema(ttl_days=3650)
        insert_started = time.perf_counter()
        for offset in range(0, table.num_rows, 250_000):
            store.insert_arrow("logs", table.slice(offset, 250_000))
        insert_seconds = time.perf_counter() - insert_started
        rows = store.query(f"SELECT count() FROM {store.table('logs')}")[0][0]

        settings = Settings(LOGPIPE_DATA_DIR=str(workdir), llm_backend=args.llm, llm_model=args.model,
                            ollama_host=args.ollama_host, openai_base_url=args.openai_base_url,
                            embedding_runtime=args.embedding_runtime, ANALYSIS_SCHEDULE_CRON="",
                            novel_errors_enabled=False)  # no broker here
        engine = sql.engine(settings)
        sql.init_db(engine)
        embed = embed_from(settings)
        load_started = time.perf_counter()
        embed(["warm up"])
        model_load_seconds = time.perf_counter() - load_started

        analyzer = Analyzer(settings, store, engine, embed)
        run_started = time.perf_counter()
        row = analyzer.run(args.hours, end=end)
        wall = time.perf_counter() - run_started
        # The next night: baselines exist, templates were embedded before.
        again_started = time.perf_counter()
        second = analyzer.run(args.hours, end=end)
        second_wall = time.perf_counter() - again_started - second.report["timings"]["llm_seconds"]
        if row.status != "completed":
            raise SystemExit(f"run failed: {row.error}")
        report = row.report
        timings = report["timings"]
        print(json.dumps({
            "bench": "analyze",
            "logs": int(rows),
            "hours": args.hours,
            "services": len(services),
            "patterns": report["totals"]["patterns"],
            "errors": report["totals"]["errors"],
            "anomalies": len(report["anomalies"]),
            "clusters": len(report["clusters"]),
            "root_cause_candidates": len(report["root_cause_candidates"]),
            "analysis_seconds": round(wall - timings["llm_seconds"], 3),
            "query_seconds": timings["query_seconds"],
            "embedding_seconds": timings["embedding_seconds"],
            "llm_seconds": timings["llm_seconds"],
            "llm_model": report["llm"].get("model"),
            "llm_generation_seconds": report["llm"].get("generation_seconds"),
            "run_wall_seconds": round(wall, 3),
            "second_run_analysis_seconds": round(second_wall, 3),
            "model_load_seconds": round(model_load_seconds, 3),
            "generate_seconds": round(generate_seconds, 3),
            "insert_seconds": round(insert_seconds, 3),
            "target_seconds": 30,
            "within_target": wall - timings["llm_seconds"] <= 30,
            "cpus": os.cpu_count(),
        }))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
