"""Ingest as shipped: throughput and freshness.

Throughput: logs/s from a filled `raw-logs` topic until all are queryable in ClickHouse,
against the fastest plain consumer on the client library ingest uses (confluent-kafka's
`consume` loop from bench/consume.py, every record read once, all N of them), in the same run.

Freshness: what a user of `/api/logs` sees. A producer in a separate process (an application
elsewhere) sends generated logs stamped with the time it handed each to Kafka (their
`timestamp`), at a steady `--steady-rate` logs/s and then as fast as it can; meanwhile the
bench asks, in process, the function `/api/logs` runs (`logpipe.gateway.query.search_logs`,
the store ingest writes to) how many logs of each 200 ms of produce time are queryable. A log
counts as fresh at the start of the first query that saw it; within a slot the earliest
produced logs are taken to be the ones seen first (so freshness is never understated).
p50/p95/max over every log.

Ingest runs with the shipped defaults (adaptive batching) unless `--tuned` (fixed 50,000-record
batches, the setting this bench used before adaptive batching shipped) or `--batch-size`.

    .venv/bin/python bench/ingest.py [--records 1000000] [--partitions 4]
    .venv/bin/python bench/ingest.py --tuned            # what a tuned fixed batch size adds
    .venv/bin/python bench/ingest.py --no-freshness     # throughput only
    .venv/bin/python bench/ingest.py --tracing-rounds 3 --records 100000   # tracing off vs on

Prints one JSON line: e2e_logs_per_s, bare_consume_per_s, ratio (= e2e / bare), freshness.

`--tracing-rounds N` measures only what OpenTelemetry costs ingest: N rounds with tracing off and
N with it on, alternating in this process, each ingesting its own topic of `--records` logs (every
500 records carry one W3C `traceparent`, as the gateway's ingest route produces them with tracing
on) into a fresh store. On means the SDK with an in-memory exporter (a synchronous span
processor, no network); off means no OTEL_* variable, the shipped default. Prints the logs/s and
the process's CPU seconds of every round, the medians' ratios `on_vs_off` (logs/s, = median on /
median off) and `cpu_on_vs_off` (CPU seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from consume import consume_confluent, fill  # noqa: E402 - bench/ is not a package

from logpipe.core import tracing  # noqa: E402
from logpipe.core.broker import EmbeddedBroker, free_port  # noqa: E402
from logpipe.core.kafka import new_producer, send_values  # noqa: E402
from logpipe.core.topics import Topics, ensure_topics  # noqa: E402

# The setting this bench measured before adaptive batching shipped (no byte bound then).
TUNED = dict(batch_mode="fixed", batch_size=50_000, batch_max_bytes=0, batch_timeout_seconds=1.0)
FRESHNESS_SERVICE = "freshness-bench"
SLOT_MS = 200


async def bare_consume(bootstrap: str, topic: str, records: int) -> float:
    """The same loop bench/consume.py chose the library with."""
    return await asyncio.to_thread(consume_confluent, bootstrap, topic, records, 600.0)


def ingest_settings(bootstrap: str, prefix: str, data_dir: str, batching: dict):
    from logpipe.ingest.settings import Settings

    return Settings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix, data_dir=data_dir,
                    session_timeout_ms=2000, heartbeat_interval_ms=500, group_id=f"bench-{uuid.uuid4().hex[:6]}",
                    **batching)


async def e2e(bootstrap: str, prefix: str, records: int, batching: dict, data_dir: str) -> dict:
    from logpipe.ingest.app import create_app

    settings = ingest_settings(bootstrap, prefix, data_dir, batching)
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
            "settings": batching_of(settings), "cuts": stats["cuts"], "fast_batches": stats["fast_batches"],
            "stage_seconds": {k: round(v, 2) for k, v in stats["stage_seconds"].items()}}


def batching_of(settings) -> dict:
    return {"batch_mode": settings.batch_mode, "batch_size": settings.batch_size,
            "batch_max_bytes": settings.batch_max_bytes, "batch_timeout_seconds": settings.batch_timeout_seconds}


# -- tracing off vs on --------------------------------------------------------------------------

TRACED_REQUEST_RECORDS = 500


async def fill_traced(bootstrap: str, topic: str, records: int) -> None:
    """`records` generated logs; every TRACED_REQUEST_RECORDS of them carry their own trace
    context in the `traceparent` header (one gateway request each)."""
    from logpipe.generator.service import LogFactory, encode

    pool = LogFactory(error_rate=0.1, seed=1).batch(50_000)
    producer = new_producer(bootstrap, linger_ms=20)
    await producer.start()
    try:
        for start in range(0, records, TRACED_REQUEST_RECORDS):
            values = []
            for i in range(start, min(records, start + TRACED_REQUEST_RECORDS)):
                record = dict(pool[i % len(pool)])
                record["record_id"] = str(uuid.UUID(int=i + 1, version=4))
                values.append(encode(record))
            traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01".encode()
            await send_values(producer, topic, values, headers=[("traceparent", traceparent)])
    finally:
        await producer.stop()


async def tracing_overhead(bootstrap: str, records: int, rounds: int, partitions: int, batching: dict) -> dict:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    runs: dict[str, list[float]] = {"off": [], "on": []}
    # This process's CPU seconds per round (ingest and the embedded ClickHouse run here; the
    # broker is another process): steadier than logs/s while other work shares the machine.
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    spans_per_on_round = []
    for index in range(-1, 2 * rounds):
        # Round -1 warms up (the embedded ClickHouse's first start, the pattern tagger) and is
        # not counted; then alternating, starting with off, so a slow spell of this shared
        # machine hits both.
        mode = "warm-up" if index < 0 else "off" if index % 2 == 0 else "on"
        prefix = f"trace-{index + 1}-"
        await ensure_topics(bootstrap, Topics(prefix), partitions=partitions)
        await fill_traced(bootstrap, Topics(prefix).raw_logs, records)
        if mode == "on":
            assert tracing.configure("ingest", environ={}, exporter=exporter)
        cpu_started = time.process_time()
        try:
            with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as data_dir:
                result = await e2e(bootstrap, prefix, records, batching, data_dir)
        finally:
            tracing.reset()
        if mode == "warm-up":
            continue
        runs[mode].append(round(result["e2e_logs_per_s"]))
        cpu[mode].append(round(time.process_time() - cpu_started, 2))
        if mode == "on":
            finished = exporter.get_finished_spans()
            # Proof that tracing was on: one `ingest batch` span per batch, linked to the records' traces.
            batch_spans = [s for s in finished if s.name == "ingest batch"]
            assert batch_spans and any(s.links for s in batch_spans), [s.name for s in finished][:20]
            spans_per_on_round.append({"spans": len(finished), "ingest_batch_spans": len(batch_spans)})
            exporter.clear()
    median_off, median_on = statistics.median(runs["off"]), statistics.median(runs["on"])
    return {"records_per_round": records, "rounds_each": rounds, "logs_per_s": runs,
            "median_off": round(median_off), "median_on": round(median_on),
            "on_vs_off": round(median_on / median_off, 3), "cpu_s": cpu,
            "cpu_on_vs_off": round(statistics.median(cpu["on"]) / statistics.median(cpu["off"]), 3),
            "spans_on": spans_per_on_round,
            "exporter": "opentelemetry-sdk InMemorySpanExporter via SimpleSpanProcessor"}


# -- freshness -----------------------------------------------------------------------------------

def produce_stamped(bootstrap: str, topic: str, rate: float, total: int, slots: multiprocessing.Queue) -> None:
    """A separate process: sends `total` logs at `rate` per second (0: as fast as it can), each
    stamped with the time it was handed to the producer; reports the stamps per slot as it goes."""
    asyncio.run(_produce_stamped(bootstrap, topic, rate, total, slots))


async def _produce_stamped(bootstrap: str, topic: str, rate: float, total: int, slots) -> None:
    from logpipe.core.kafka import new_producer, send_values
    from logpipe.core.record import format_timestamp
    from logpipe.generator.service import LogFactory, encode

    # Encoded once with placeholders, so a steady 10,000/s costs the producer little CPU.
    templates = []
    for record in LogFactory(error_rate=0.05, seed=11).batch(10_000):
        record.update(timestamp="@@STAMP@@", service=FRESHNESS_SERVICE, record_id="@@ID@@")
        templates.append(encode(record))
    run = uuid.uuid4().hex
    id_prefix = f"{run[:8]}-{run[8:12]}-4{run[13:16]}-8{run[17:20]}-"
    producer = new_producer(bootstrap)
    await producer.start()
    sent, began = 0, time.time()
    in_flight: set[asyncio.Task] = set()
    try:
        while sent < total:
            if rate:
                count = min(int((time.time() - began) * rate) - sent, total - sent)
                if count <= 0:
                    await asyncio.sleep(0.002)
                    continue
            else:
                count = min(5_000, total - sent)
            now = time.time()
            stamp_ms = int(now * 1000)
            stamp = format_timestamp(datetime.fromtimestamp(stamp_ms / 1000, timezone.utc)).encode()
            values = [templates[i % len(templates)].replace(b"@@STAMP@@", stamp)
                      .replace(b"@@ID@@", f"{id_prefix}{i:012x}".encode()) for i in range(sent, sent + count)]
            # Sends overlap (a few in flight), as a producing application's do: one at a time,
            # the broker's acknowledgement held the rate far below the target.
            while len(in_flight) >= 4:
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.create_task(send_values(producer, topic, values))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            slots.put((stamp_ms, count))
            sent += count
        await asyncio.gather(*in_flight)
    finally:
        await producer.stop()
        slots.put(None)


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


async def freshness(bootstrap: str, prefix: str, rate: float, total: int, batching: dict, data_dir: str,
                    partitions: int, deadline_s: float) -> dict:
    """Produce -> queryable through search_logs (what /api/logs runs), per log."""
    from logpipe.gateway.query import LogFilter, search_logs
    from logpipe.ingest.app import create_app

    topics = Topics(prefix)
    await ensure_topics(bootstrap, topics, partitions=partitions)
    settings = ingest_settings(bootstrap, prefix, data_dir, batching)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        ingestor, store = app.state.ingestor, app.state.store
        while len(ingestor.consumer.stats.assigned_partitions) < partitions:
            await asyncio.sleep(0.05)
        slots_queue = multiprocessing.get_context("spawn").Queue()
        producer = multiprocessing.get_context("spawn").Process(
            target=produce_stamped, args=(bootstrap, topics.raw_logs, rate, total, slots_queue), daemon=True)
        producer.start()
        stamps: dict[int, list[int]] = {}  # slot -> produce stamps (ms), in order
        seen: dict[int, int] = {}
        ages: list[float] = []
        produced, producing, began, finished = 0, True, time.time(), None
        deadline = time.monotonic() + deadline_s
        rounds, query_seconds = 0, 0.0
        while time.monotonic() < deadline:
            while True:
                try:
                    item = slots_queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    producing, finished = False, time.time()
                    continue
                stamp_ms, count = item
                stamps.setdefault(stamp_ms // SLOT_MS, []).extend([stamp_ms] * count)
                produced += count
            if not producing and len(ages) >= produced:
                break
            if not producing and producer.exitcode:
                raise RuntimeError(f"the producer failed (exit code {producer.exitcode}); see its traceback above")
            # Oldest slot first, and on to the next only once it is wholly queryable: logs become
            # queryable in about the order they were produced, and one query per round keeps the
            # bench's own load off ingest (a newer slot seen a round late only overstates).
            waiting = [slot for slot in sorted(stamps) if seen.get(slot, 0) < len(stamps[slot])][:20]
            if not waiting:
                await asyncio.sleep(0.01)
                continue
            rounds += 1
            round_began = time.time()
            for slot in waiting:
                asked_ms = time.time() * 1000
                page = await search_logs(store, LogFilter(
                    services=[FRESHNESS_SERVICE],
                    start=datetime.fromtimestamp(slot * SLOT_MS / 1000, timezone.utc),
                    end=datetime.fromtimestamp((slot + 1) * SLOT_MS / 1000, timezone.utc)), limit=1)
                visible = min(page.total or 0, len(stamps[slot]))
                before = seen.get(slot, 0)
                if visible > before:
                    ages.extend((asked_ms - stamp) / 1000 for stamp in stamps[slot][before:visible])
                    seen[slot] = visible
                if visible < len(stamps[slot]):
                    break
            query_seconds += time.time() - round_began
            await asyncio.sleep(0.02)  # the polling cadence of an eager dashboard, not 100 % of a core
        producer.join(timeout=10)
        stats = ingestor.stats_view()
    ages.sort()
    produce_seconds = (finished or time.time()) - began
    return {
        "target_rate": rate or "full speed",
        "produced": produced,
        "produce_rate": round(produced / max(produce_seconds, 1e-9)),
        "queryable": len(ages),
        "p50_s": round(percentile(ages, 0.50), 3) if ages else None,
        "p95_s": round(percentile(ages, 0.95), 3) if ages else None,
        "max_s": round(ages[-1], 3) if ages else None,
        "query_rounds": rounds,
        "query_round_mean_s": round(query_seconds / max(1, rounds), 3),
        "batches": stats["batches"],
        "cuts": stats["cuts"],
        "mean_batch_records": round(stats["written"] / max(1, stats["batches"])),
    }


async def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--tuned", action="store_true",
                        help="fixed 50,000-record batches (1 s timeout) instead of the shipped defaults")
    parser.add_argument("--batch-size", type=int, help="fixed batches of this many records")
    parser.add_argument("--shipped-defaults", action="store_true", help=argparse.SUPPRESS)  # now the default
    parser.add_argument("--no-patterns", action="store_true", help="measure without pattern tagging")
    parser.add_argument("--no-freshness", action="store_true", help="measure throughput only")
    parser.add_argument("--no-throughput", action="store_true", help="measure freshness only")
    parser.add_argument("--tracing-rounds", type=int, default=0,
                        help="measure only ingest with tracing off vs on, this many rounds of each")
    parser.add_argument("--steady-rate", type=float, default=10_000, help="logs/s of the steady freshness run")
    parser.add_argument("--steady-seconds", type=float, default=20)
    parser.add_argument("--full-speed-records", type=int, default=300_000,
                        help="logs of the full-speed freshness run (0: skip it)")
    args = parser.parse_args()
    if args.no_patterns:
        os.environ["INGEST_TAG_PATTERNS"] = "false"
    if args.batch_size:
        batching, label = dict(TUNED, batch_size=args.batch_size), f"fixed {args.batch_size}"
    elif args.tuned:
        batching, label = dict(TUNED), "tuned (fixed 50,000)"
    else:
        batching, label = {}, "shipped defaults"

    result: dict = {"bench": "ingest", "batching": label, "partitions": args.partitions,
                    "pattern_tagging": not args.no_patterns, "cpus": os.cpu_count()}
    broker = EmbeddedBroker(port=free_port()).start()
    # The in-process ClickHouse may still be merging in the directory when it is removed.
    try:
        if args.tracing_rounds:
            result["tracing"] = await tracing_overhead(broker.bootstrap_servers, args.records, args.tracing_rounds,
                                                       args.partitions, batching)
            return result
        if not args.no_throughput:
            topics = Topics("bench-")
            await ensure_topics(broker.bootstrap_servers, topics, partitions=args.partitions)
            fill_started = time.perf_counter()
            record_bytes = await fill(broker.bootstrap_servers, topics.raw_logs, args.records)
            fill_s = time.perf_counter() - fill_started
            bare = await bare_consume(broker.bootstrap_servers, topics.raw_logs, args.records)
            with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as data_dir:
                e2e_result = await e2e(broker.bootstrap_servers, "bench-", args.records, batching, data_dir)
            result.update({
                "records": args.records,
                "record_bytes": record_bytes,
                **e2e_result["settings"],
                "e2e_logs_per_s": round(e2e_result["e2e_logs_per_s"]),
                "bare_consume_per_s": round(bare),
                "bare_consume": "confluent-kafka consume loop (bench/consume.py)",
                "ratio": round(e2e_result["e2e_logs_per_s"] / bare, 3),
                "e2e_elapsed_s": round(e2e_result["elapsed_s"], 2),
                "batches": e2e_result["batches"],
                "cuts": e2e_result["cuts"],
                "fast_path_batches": e2e_result["fast_batches"],
                "stage_seconds": e2e_result["stage_seconds"],
                "produce_per_s": round(args.records / fill_s),
            })
        if not args.no_freshness:
            runs = {}
            steady_total = int(args.steady_rate * args.steady_seconds)
            plans = [(f"steady_{int(args.steady_rate)}", args.steady_rate, steady_total)]
            if args.full_speed_records:
                plans.append(("full_speed", 0.0, args.full_speed_records))
            for name, rate, total in plans:
                with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as data_dir:
                    runs[name] = await freshness(broker.bootstrap_servers, f"fresh-{name}-", rate, total, batching,
                                                 data_dir, args.partitions,
                                                 deadline_s=max(120.0, 3 * total / (rate or 10_000)))
            result["freshness"] = runs
            result["freshness_query"] = ("logpipe.gateway.query.search_logs (what GET /api/logs runs), in process "
                                         "on ingest's store; produced from a separate process")
    finally:
        broker.stop()
    return result


if __name__ == "__main__":
    result = asyncio.run(main())
    # Printed once the event loop is closed: clients log while shutting down, and the result
    # must be the last line.
    print(json.dumps(result), flush=True)
