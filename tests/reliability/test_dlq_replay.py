"""`logpipe dlq replay <topic>`: dead-lettered records are re-processed once their cause is
fixed, exactly once; what still fails goes back to the DLQ with the reason."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from logpipe.core import dlq
from logpipe.core.record import derived_record_id
from logpipe.generator.service import LogFactory, encode
from support import produce, running_ingest, wait_for

SMALL_LIMIT = 2048


def replay_cli(kafka_bootstrap: str, topic_prefix: str, topic: str = "raw-logs-dlq") -> dict:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "TOPIC_PREFIX": topic_prefix}
    done = subprocess.run([sys.executable, "-m", "logpipe.cli", "dlq", "replay", topic, "--idle-seconds", "1.5"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def read_all(bootstrap: str, topic: str, partitions: int, idle_s: float = 1.5) -> list:
    """Every record of `topic` (until nothing new arrives for idle_s)."""
    import time

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reliability-reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    records, idle_since = [], time.monotonic()
    try:
        while time.monotonic() - idle_since < idle_s:
            batch = [m for m in consumer.consume(num_messages=1000, timeout=0.3) if not m.error()]
            if batch:
                idle_since = time.monotonic()
                records.extend(batch)
    finally:
        consumer.close()
    return records


def stored(clickhouse) -> tuple[int, int]:
    rows, distinct = clickhouse.query(f"SELECT count(), uniqExact(record_id) FROM {clickhouse.table('logs')}")[0]
    return int(rows), int(distinct)


@pytest.mark.timeout(240)
async def test_replay_after_the_cause_is_fixed_stores_each_dead_letter_once(kafka_bootstrap, topics, topic_prefix,
                                                                         clickhouse):
    start = datetime.now(timezone.utc) - timedelta(minutes=5)
    factory = LogFactory(seed=20)
    good = factory.batch(40, start=start)
    oversized = factory.batch(20, start=start)
    for index, record in enumerate(oversized):
        record["stack_trace"] = "at frame\n" * 400  # 3,600 bytes: over the small limit
        if index % 2:
            del record["record_id"]  # ingest derives one from where it was first delivered
    broken = [b'{"message": "cut short', b"\xff\xfe not utf-8"]
    await produce(kafka_bootstrap, topics.raw_logs, [encode(r) for r in good + oversized] + broken)

    async with running_ingest(kafka_bootstrap, topic_prefix, clickhouse, max_record_bytes=SMALL_LIMIT) as app:
        ingestor = app.state.ingestor
        await wait_for(lambda: ingestor.stats.written == 40 and ingestor.stats.dlq == 22, timeout=60,
                       message=lambda: ingestor.stats_view())
    assert stored(clickhouse) == (40, 40)
    letters = await asyncio.to_thread(read_all, kafka_bootstrap, topics.raw_logs_dlq, 1)
    assert len(letters) == 22
    reasons = [orjson.loads(m.value())["error"] for m in letters]
    assert sum(f"over the {SMALL_LIMIT}-byte limit" in r for r in reasons) == 20, reasons
    # The id each record without one got on first delivery (from the coordinates in its letter).
    first_ids = set()
    for message in letters:
        original, source = dlq.replay_value(message.value())
        record = orjson.loads(original) if original.startswith(b"{") and original.endswith(b"}") else None
        if record is not None and "record_id" not in record:
            first_ids.add(derived_record_id(source["topic"], source["partition"], source["offset"]))
    assert len(first_ids) == 10

    # The cause is fixed (the default limit, 1 MiB): replay, then replay again.
    async with running_ingest(kafka_bootstrap, topic_prefix, clickhouse) as app:
        ingestor = app.state.ingestor
        first = await asyncio.to_thread(replay_cli, kafka_bootstrap, topic_prefix)
        assert first["replayed"] == 22, first
        # The 20 oversized records are stored; the 2 broken ones fail again and go back.
        await wait_for(lambda: ingestor.stats.written == 20 and ingestor.stats.dlq == 2, timeout=60,
                       message=lambda: ingestor.stats_view())
        second = await asyncio.to_thread(replay_cli, kafka_bootstrap, topic_prefix)
        # Only what went back to the DLQ after the first run is replayed again, and fails again.
        assert second["replayed"] == 2, second
        await wait_for(lambda: ingestor.stats.dlq == 4, timeout=60, message=lambda: ingestor.stats_view())
        assert ingestor.stats.written == 20
    assert stored(clickhouse) == (60, 60)
    ids = {row[0] for row in clickhouse.query(f"SELECT record_id FROM {clickhouse.table('logs')}")}
    assert first_ids <= ids  # the same ids as on first delivery
    letters = await asyncio.to_thread(read_all, kafka_bootstrap, topics.raw_logs_dlq, 1)
    returned = [orjson.loads(m.value()) for m in letters[22:]]
    assert len(returned) == 4
    assert all(r["source"]["topic"] == topics.raw_logs and r["stage"] == "decode" for r in returned), returned
    assert sorted({r["error"].split(":")[0] for r in returned}) == ["invalid UTF-8 at byte 0", "malformed JSON"]


async def test_a_replay_interrupted_after_producing_is_not_produced_again(kafka_bootstrap, topics, monkeypatch):
    now = datetime.now(timezone.utc)
    letters = [dlq.dead_letter(encode(r), "ClickHouse was away", "write", now, topic=topics.raw_logs, partition=0,
                               offset=i, timestamp_ms=None)
               for i, r in enumerate(LogFactory(seed=21).batch(30))]
    await produce(kafka_bootstrap, topics.raw_logs_dlq, letters)

    def crash(_progress, _commits):
        raise KeyboardInterrupt("killed after producing, before committing")

    monkeypatch.setattr(dlq, "_commit_progress", crash)
    with pytest.raises(KeyboardInterrupt):
        await asyncio.to_thread(dlq.replay_dead_letters, kafka_bootstrap, topics.raw_logs_dlq, topics.raw_logs,
                                idle_s=1.5)
    monkeypatch.undo()
    assert len(await asyncio.to_thread(read_all, kafka_bootstrap, topics.raw_logs, 4)) == 30

    again = await asyncio.to_thread(dlq.replay_dead_letters, kafka_bootstrap, topics.raw_logs_dlq, topics.raw_logs,
                                    idle_s=1.5)
    assert again["already_replayed"] == 30 and again["replayed"] == 0, again
    third = await asyncio.to_thread(dlq.replay_dead_letters, kafka_bootstrap, topics.raw_logs_dlq, topics.raw_logs,
                                    idle_s=1.5)
    assert third["replayed"] == 0 and third["already_replayed"] == 0, third
    replayed = await asyncio.to_thread(read_all, kafka_bootstrap, topics.raw_logs, 4)
    assert len(replayed) == 30
    assert sorted(dict(m.headers())[dlq.REPLAY_HEADER].decode() for m in replayed) == sorted(
        f"{topics.raw_logs_dlq}/0/{i}" for i in range(30))


def test_a_letter_holding_only_part_of_its_original_is_not_replayed():
    letter = orjson.loads(dlq.dead_letter(b'{"message": "big"}', "too big", "decode", datetime.now(timezone.utc),
                                          topic="raw-logs", partition=0, offset=1, timestamp_ms=None))
    assert dlq.replay_value(orjson.dumps(letter))[0] == b'{"message": "big"}'
    letter["original_truncated"] = True
    with pytest.raises(dlq.TruncatedLetter):
        dlq.replay_value(orjson.dumps(letter))
    with pytest.raises(ValueError):
        dlq.replay_value(b"not a letter")
