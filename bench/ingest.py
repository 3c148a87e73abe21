"""Ingest throughput: logs/s from a filled `raw-logs` topic until all are queryable in ClickHouse,
against the fastest plain consumer on the client library ingest uses (confluent-kafka's
`consume` loop from bench/consume.py, every record read once, all N of them), in the same run.

    .venv/bin/python bench/ingest.py [--records 1000000] [--partitions 4] [--batch-size 50000]
    .venv/bin/python bench/ingest.py --shipped-defaults   # INGEST_BATCH_SIZE etc. as shipped

Prints one JSON line: e2e_logs_per_s, bare_consume_per_s, ratio (= e2e / bare).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from consume import consume_confluent, fill  # noqa: E402 - bench/ is not a package

from logpipe.core.broker import EmbeddedBroker, free_port  # noqa: E402
from logpipe.core.topics import Topics, ensure_topics  # noqa: E402


async def bare_consume(bootstrap: str, topic: str, records: int) -> float:
    """The same loop bench/consume.py chose the library with."""
    return await asyncio.to_thread(consume_confluent, bootstrap, topic, records, 600.0)


async def e2e(bootstrap: str, prefix: str, records: int, batch_size: int | None, data_dir: str) -> dict:
    from logpipe.ingest.app import create_app
    from logpipe.ingest.settings import Settings

    # batch_size None: the shipped INGEST_BATCH_SIZE and INGEST_BATCH_TIMEOUT_SECONDS.
    batching = {} if batch_size is None else dict(batch_size=batch_size, batch_timeout_seconds=1.0)
    settings = Settings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix, data_dir=data_dir,
                        session_timeout_ms=2000, heartbeat_interval_ms=500, group_id=f"bench-{uuid.uuid4().hex[:6]}",
                        **batching)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        ingestor = app.state.ingestor
        store = app.state.store
        started = None
        while True:
            if started is None and ingestor.consumer.stats.consumed:
                started = time.perf_counter()
            if ingestor.stats.written >= records:
                break
            await asyncio.sleep(0.02)
        # Queryable: the count a user would get from ClickHouse.
        while store.query(f"SELECT count() FROM {store.table('logs')}")[0][0] < records:
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        await ingestor.flush()  # the last commit done, so every batch is counted
        stats = ingestor.stats_view()
    return {"e2e_logs_per_s": records / elapsed, "elapsed_s": elapsed, "batches": stats["batches"],
            "batch_size": settings.batch_size, "batch_timeout_seconds": settings.batch_timeout_seconds,
            "fast_batches": stats["fast_batches"],
            "stage_seconds": {k: round(v, 2) for k, v in stats["stage_seconds"].items()}}


async def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=50_000)
    parser.add_argument("--shipped-defaults", action="store_true",
                        help="ingest with the shipped batch size and timeout instead of --batch-size")
    parser.add_argument("--no-patterns", action="store_true", help="measure without pattern tagging")
    args = parser.parse_args()
    if args.no_patterns:
        os.environ["INGEST_TAG_PATTERNS"] = "false"

    broker = EmbeddedBroker(port=free_port()).start()
    try:
        prefix = "bench-"
        topics = Topics(prefix)
        await ensure_topics(broker.bootstrap_servers, topics, partitions=args.partitions)
        fill_started = time.perf_counter()
        record_bytes = await fill(broker.bootstrap_servers, topics.raw_logs, args.records)
        fill_s = time.perf_counter() - fill_started
        bare = await bare_consume(broker.bootstrap_servers, topics.raw_logs, args.records)
        # The in-process ClickHouse may still be merging in the directory when it is removed.
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as data_dir:
            result = await e2e(broker.bootstrap_servers, prefix, args.records,
                               None if args.shipped_defaults else args.batch_size, data_dir)
    finally:
        broker.stop()
    return {
        "bench": "ingest",
        "records": args.records,
        "record_bytes": record_bytes,
        "partitions": args.partitions,
        "batching": "shipped defaults" if args.shipped_defaults else "bench",
        "batch_size": result["batch_size"],
        "batch_timeout_seconds": result["batch_timeout_seconds"],
        "pattern_tagging": not args.no_patterns,
        "e2e_logs_per_s": round(result["e2e_logs_per_s"]),
        "bare_consume_per_s": round(bare),
        "bare_consume": "confluent-kafka consume loop (bench/consume.py)",
        "ratio": round(result["e2e_logs_per_s"] / bare, 3),
        "e2e_elapsed_s": round(result["elapsed_s"], 2),
        "batches": result["batches"],
        "fast_path_batches": result["fast_batches"],
        "stage_seconds": result["stage_seconds"],
        "produce_per_s": round(args.records / fill_s),
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    result = asyncio.run(main())
    # Printed once the event loop is closed: clients log while shutting down, and the result
    # must be the last line.
    print(json.dumps(result), flush=True)
