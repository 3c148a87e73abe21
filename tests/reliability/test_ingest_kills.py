"""kill -9 of the ingest process three times at random points while 100,000 logs are produced:
every log is stored exactly once, and a user sees exactly 100,000 through the API."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest

from logpipe.core.broker import free_port
from logpipe.core.kafka import new_producer, send_values
from logpipe.generator.service import LogFactory, encode
from reliability_support import (ServiceProcess, check_stored, elapsed, seeded_random, service_env,
                                 wait_answering, wait_committed)
from support import wait_until

TOTAL = 100_000
KILLS = 3
PARTITIONS = 4
# Produced at this rate (a load, not a synchronisation), from when ingest first answers: about
# 33 s of production, so the kills (a restart takes 5-15 s here) land while logs still arrive.
RATE_PER_SECOND = 3_000
CHUNK = 1_000


async def produce_paced(bootstrap: str, topic: str, values: list[bytes], produced: list[int]) -> None:
    producer = new_producer(bootstrap)
    await producer.start()
    try:
        started = time.monotonic()
        for index in range(0, len(values), CHUNK):
            await send_values(producer, topic, values[index:index + CHUNK])
            produced[0] = index + len(values[index:index + CHUNK])
            ahead = started + produced[0] / RATE_PER_SECOND - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
    finally:
        await producer.stop()


@pytest.mark.timeout(420)
async def test_ingest_killed_three_times_stores_every_log_once(kafka_bootstrap, topics, topic_prefix, tmp_path):
    rng, seed = seeded_random("ingest kills")
    started = time.monotonic()
    window_start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=40)
    values = [encode(r) for r in LogFactory(seed=seed).batch(TOTAL, start=window_start, span_s=30 * 60)]
    port = free_port()
    # Batches of at most 5,000 (default 50,000): 100,000 logs make dozens of batches, so the kills
    # fall between many inserts and commits rather than inside the first two batches.
    env = service_env("ingest", kafka_bootstrap, topic_prefix, tmp_path, port, INGEST_BATCH_SIZE="5000")
    ingest = ServiceProcess("ingest", env, port, tmp_path).start()
    produced = [0]
    producing = None
    lives = []
    try:
        await asyncio.to_thread(wait_answering, ingest)
        producing = asyncio.create_task(produce_paced(kafka_bootstrap, topics.raw_logs, values, produced))
        for kill in range(KILLS):
            # A random point: once this life has handled this many records (stored, or skipped as
            # stored by an earlier life), at whatever moment of the next batch's cycle (parse,
            # insert, commit) the poll below lands.
            threshold = rng.randint(1, 20_000)
            await asyncio.to_thread(wait_answering, ingest)

            def reached():
                ingest.check_alive()
                stats = ingest.stats()
                return stats if stats and stats["written"] + stats["replay_skipped"] >= threshold else None

            stats = await asyncio.to_thread(wait_until, reached, 120, 0.05,
                                            lambda: f"ingest never handled {threshold} records\n{ingest.tail()}")
            ingest.kill9()
            lives.append({"life": kill + 1, "consumed": stats["consumed"], "threshold": threshold,
                          "written": stats["written"], "replay_skipped": stats["replay_skipped"],
                          "produced_so_far": produced[0]})
            print(f"kill {kill + 1}: {lives[-1]} at {elapsed(started)}", flush=True)
            ingest.start()
        await asyncio.wait_for(producing, 120)
        committed = await asyncio.to_thread(wait_committed, kafka_bootstrap, f"ingest-{topic_prefix}",
                                            topics.raw_logs, PARTITIONS, TOTAL, ingest, 180)
        assert sum(committed.values()) == TOTAL, committed
        final = ingest.stats()
        lives.append({"life": KILLS + 1, "consumed": final["consumed"], "written": final["written"],
                      "replay_skipped": final["replay_skipped"]})
        print(f"after the last restart: {lives[-1]} at {elapsed(started)}", flush=True)
    finally:
        if producing is not None:
            producing.cancel()
        ingest.stop()
    window_end = window_start + timedelta(minutes=31)
    stored = await asyncio.to_thread(check_stored, tmp_path, kafka_bootstrap, topic_prefix,
                                     window_start.isoformat(), window_end.isoformat())
    print(f"stored: {stored} at {elapsed(started)}", flush=True)
    assert stored["rows"] == TOTAL, stored
    assert stored["distinct_record_ids"] == TOTAL, stored
    assert stored["api_logs_total"] == TOTAL, stored
    assert stored["api_patterns_total"] == TOTAL, stored
    assert stored["api_patterns_sum"] == TOTAL, stored
    # Every kill really cut a life short (the restarts had something to replay or resume).
    assert all(life["written"] + life["replay_skipped"] < TOTAL for life in lives[:KILLS]), lives
