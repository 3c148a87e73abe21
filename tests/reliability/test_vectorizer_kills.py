"""kill -9 of the vectorizer process three times at random points while ingest forwards errors:
every forwarded error ends up as exactly one point in the vector store, and every log once in
ClickHouse and the API."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest

from logpipe.core.broker import free_port
from logpipe.generator.service import LogFactory, encode
from reliability_support import (ServiceProcess, check_stored, elapsed, seeded_random, service_env, wait_answering,
                                 wait_committed)
from support import produce, wait_until

TOTAL = 8_000
ERROR_RATE = 0.3  # about a third of the logs are WARN/ERROR/FATAL: forwarded to the vectorizer
KILLS = 3
PARTITIONS = 4


@pytest.mark.timeout(420)
async def test_vectorizer_killed_three_times_stores_one_point_per_forwarded_error(kafka_bootstrap, topics,
                                                                                  topic_prefix, tmp_path,
                                                                                  embedding_backend):
    rng, seed = seeded_random("vectorizer kills")
    started = time.monotonic()
    window_start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=40)
    values = [encode(r) for r in LogFactory(error_rate=ERROR_RATE, seed=seed).batch(TOTAL, start=window_start,
                                                                                   span_s=30 * 60)]
    ingest_port, vectorizer_port = free_port(), free_port()
    ingest = ServiceProcess("ingest", service_env("ingest", kafka_bootstrap, topic_prefix, tmp_path, ingest_port,
                                                  INGEST_BATCH_SIZE="2000"), ingest_port, tmp_path).start()
    # Small batches, so three lives each store some and leave some uncommitted.
    # The session's exported ONNX model (the embedding_backend fixture), not an export per test.
    onnx = getattr(embedding_backend, "onnx_path", None)
    vectorizer = ServiceProcess("vectorizer", service_env(
        "vectorizer", kafka_bootstrap, topic_prefix, tmp_path, vectorizer_port, VECTORIZER_BATCH_SIZE="256",
        **({"LOGPIPE_ONNX_DIR": str(onnx.parent)} if onnx else {})), vectorizer_port, tmp_path).start()
    lives = []
    try:
        await produce(kafka_bootstrap, topics.raw_logs, values)
        for kill in range(KILLS):
            # A random point: once this life has upserted this many points, wherever the poll
            # lands in the next batch's cycle (embed, upsert, publish, commit).
            threshold = rng.randint(1, 600)
            await asyncio.to_thread(wait_answering, vectorizer, 180)

            def reached():
                vectorizer.check_alive()
                ingest.check_alive()
                stats = vectorizer.stats()
                return stats if stats and stats["vectorized"] >= threshold else None

            stats = await asyncio.to_thread(wait_until, reached, 180, 0.05,
                                            lambda: f"the vectorizer never stored {threshold}\n{vectorizer.tail()}")
            vectorizer.kill9()
            lives.append({"life": kill + 1, "threshold": threshold, "consumed": stats["consumed"],
                          "vectorized": stats["vectorized"], "committed": stats["committed"]})
            print(f"kill {kill + 1}: {lives[-1]} at {elapsed(started)}", flush=True)
            vectorizer.start()
        await asyncio.to_thread(wait_committed, kafka_bootstrap, f"ingest-{topic_prefix}", topics.raw_logs,
                                PARTITIONS, TOTAL, ingest, 180)
        forwarded = ingest.stats()["forwarded"]  # one life: each forwarded once
        await asyncio.to_thread(wait_committed, kafka_bootstrap, f"vectorizer-{topic_prefix}",
                                topics.vectorization_queue, PARTITIONS, forwarded, vectorizer, 240)
        final = vectorizer.stats()
        lives.append({"life": KILLS + 1, "consumed": final["consumed"], "vectorized": final["vectorized"],
                      "dlq": final["dlq"]})
        print(f"after the last restart: {lives[-1]}, forwarded {forwarded} at {elapsed(started)}", flush=True)
    finally:
        vectorizer.stop()
        ingest.stop()
    stored = await asyncio.to_thread(check_stored, tmp_path, kafka_bootstrap, topic_prefix, window_start.isoformat(),
                                     (window_start + timedelta(minutes=31)).isoformat(), True)
    print(f"stored: {stored} at {elapsed(started)}", flush=True)
    assert stored["rows"] == stored["distinct_record_ids"] == TOTAL, stored
    assert stored["api_logs_total"] == stored["api_patterns_total"] == stored["api_patterns_sum"] == TOTAL, stored
    assert stored["forwarded"] == forwarded, stored
    assert stored["points"] == forwarded, stored
    assert stored["forwarded_with_a_point"] == forwarded, stored
    assert final["dlq"] == 0, final
