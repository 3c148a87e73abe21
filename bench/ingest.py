"""Ingest throughput: logs/s from a filled `raw-logs` topic until all are queryable in ClickHouse,
against a bare aiokafka consume + JSON decode of the same topic, in the same run.

    .venv/bin/python bench/ingest.py [--records 1000000] [--partitions 4] [--batch-size 50000]

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

import orjson
from aiokafka import AIOKafkaConsumer

from logpipe.core.broker import EmbeddedBroker, free_port
from logpipe.core.kafka import new_producer, send_values
from logpipe.core.topics import Topics, ensure_topics
from logpipe.generator.service import LogFactory, encode


async def fill(bootstrap: str, topic: str, records: int, seed: int = 1) -> int:
    """Produce `records` generated logs (a pool of distinct messages, each record with its own id)."""
    factory = LogFactory(error_rate=0.1, seed=seed)
    pool = factory.batch(50_000)
    producer = new_producer(bootstrap, linger_ms=20)
    await producer.start()
    size = 0
    try:
        chunk = 20_000
        for start in range(0, records, chunk):
            values = []
            for i in range(start, min(records, start + chunk)):
                record = dict(pool[i % len(pool)])
                record["record_id"] = str(uuid.UUID(int=i + 1, version=4))
                values.append(encode(record))
            size += sum(map(len, values))
            await send_values(producer, topic, values)
    finally:
        await producer.stop()
    return size // max(1, records)


async def bare_consume(bootstrap: str, topic: str, records: int) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bare-{uuid.uuid4().hex[:6]}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                session_timeout_ms=2000, heartbeat_interval_ms=500,
                                max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
    await consumer.start()
    seen = 0
    started = None
    try:
        while seen < records:
            batches = await consumer.getmany(timeout_ms=1000, max_records=20_000)
            if started is None and batches:
                started = time.perf_counter()
            for messages in batches.values():
                for message in messages:
                    orjson.loads(message.value)
                seen += sum(len(m) for m in batches.values())
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
    return records / elapsed


async def e2e(bootstrap: str, prefix: str, records: int, batch_size: int, data_dir: str) -> dict:
    from logpipe.ingest.app import create_app
    from logpipe.ingest.settings import Settings

    settings = Settings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix, data_dir=data_dir,
                        batch_size=batch_size, batch_timeout_seconds=1.0, session_timeout_ms=2000,
                        heartbeat_interval_ms=500, group_id=f"bench-{uuid.uuid4().hex[:6]}")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        ingestor = app.state.ingestor
        store = app.state.store
        started = None
        while True:
            if started is None and ingestor.stats.consumed:
                started = time.perf_counter()
            if ingestor.stats.written >= records:
                break
            await asyncio.sleep(0.02)
        # Queryable: the count a user would get from ClickHouse.
        while store.query(f"SELECT count() FROM {store.table('logs')}")[0][0] < records:
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        stats = dict(ingestor.stats.__dict__)
    return {"e2e_logs_per_s": records / elapsed, "elapsed_s": elapsed, "batches": stats["batches"],
            "fast_batches": stats["fast_batches"],
            "stage_seconds": {k: round(v, 2) for k, v in stats["stage_seconds"].items()}}


async def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=50_000)
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
            result = await e2e(broker.bootstrap_servers, prefix, args.records, args.batch_size, data_dir)
    finally:
        broker.stop()
    return {
        "bench": "ingest",
        "records": args.records,
        "record_bytes": record_bytes,
        "partitions": args.partitions,
        "batch_size": args.batch_size,
        "pattern_tagging": not args.no_patterns,
        "e2e_logs_per_s": round(result["e2e_logs_per_s"]),
        "bare_consume_per_s": round(bare),
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
