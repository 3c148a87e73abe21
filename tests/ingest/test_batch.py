"""ingest's batch building without Kafka: offsets per partition, replay skipping, and forwarding."""

from __future__ import annotations

import numpy as np
import orjson

from logpipe.ingest.service import BatchBuilder, RawBatch, RawMessage, rows_to_json, with_pattern_ids
import pyarrow as pa


def _raw(values, topic="raw-logs", partitions=None, offsets=None, timestamps=None) -> RawBatch:
    count = len(values)
    partitions = partitions if partitions is not None else [i % 2 for i in range(count)]
    offsets = offsets if offsets is not None else [100 + i for i in range(count)]
    timestamps = timestamps if timestamps is not None else [1_764_000_000_000] * count
    topics = topic if isinstance(topic, list) else [topic] * count
    return RawBatch.from_messages([RawMessage(v, t, tp, p, o)
                                   for v, t, tp, p, o in zip(values, timestamps, topics, partitions, offsets)])


def test_next_offsets_per_topic_and_partition():
    batch = _raw([b"{}"] * 5, topic=["a", "b", "a", "b", "a"], partitions=[0, 0, 1, 0, 0], offsets=[7, 3, 9, 4, 2])
    assert batch.next_offsets() == {("a", 0): 8, ("a", 1): 10, ("b", 0): 5}


def test_skip_stored_drops_what_clickhouse_already_has():
    batch = _raw([b"a", b"b", b"c", b"d"], partitions=[0, 0, 1, 1], offsets=[10, 11, 10, 11])
    fresh = batch.skip_stored({("raw-logs", 0): 10, ("raw-logs", 1): 11})
    assert [fresh.message(i) for i in range(len(fresh))] == [
        RawMessage(b"b", 1_764_000_000_000, "raw-logs", 0, 11)]
    assert batch.skip_stored({}) is batch


def test_missing_kafka_timestamp_reads_as_none():
    batch = _raw([b"x"], timestamps=[None])
    assert batch.message(0).timestamp is None


def _record(i: int, level: str, **extra) -> bytes:
    record = {"timestamp": "2026-11-25T10:00:00.123Z", "service": "checkout", "level": level,
              "message": f"payment {i} failed", "record_id": f"r{i}", **extra}
    return orjson.dumps(record)


def test_forwarded_json_on_the_fast_path_equals_the_canonical_encoding():
    values = [_record(0, "ERROR"), _record(1, "INFO"), _record(2, "warning", attributes={"region": "eu"}),
              orjson.dumps({"level": "FATAL", "message": "disk \"full\"", "service": ""}) + b"  "]
    batch = BatchBuilder(pipeline="team-a").build(_raw(values))
    assert batch.fast_path and batch.raw_values is not None
    batch.rows = with_pattern_ids(batch.rows, pa.array(np.array([5, 6, 7, 8], dtype=np.uint64)))

    spliced = [orjson.loads(v) for v in batch.forwarded_json()]
    canonical = [orjson.loads(v) for v in rows_to_json(batch.forwarded())]
    assert [r["record_id"] for r in spliced] == [r["record_id"] for r in canonical]
    for got, want in zip(spliced, canonical):
        for key in ("timestamp", "level", "service", "record_id", "pattern_id", "pipeline", "message"):
            assert got[key] == want[key], key
    assert [r["level"] for r in spliced] == ["ERROR", "WARN", "FATAL"]
    assert spliced[1]["attributes"] == {"region": "eu"}
    assert spliced[2]["service"] == "unknown" and spliced[2]["record_id"]  # derived id, filled service
    assert spliced[0]["pattern_id"] == 5 and spliced[2]["pipeline"] == "team-a"


def test_a_record_twice_in_one_batch_is_stored_and_forwarded_once():
    values = [_record(0, "ERROR"), _record(0, "ERROR"), _record(1, "ERROR")]
    batch = BatchBuilder().build(_raw(values))
    assert batch.rows.num_rows == 2
    assert [orjson.loads(v)["record_id"] for v in batch.forwarded_json()] == ["r0", "r1"]


def test_exact_path_forwards_by_encoding_rows():
    values = [_record(0, "ERROR"), b"plain text line with an ERROR in it"]
    batch = BatchBuilder().build(_raw(values))
    assert not batch.fast_path and batch.raw_values is None
    forwarded = [orjson.loads(v) for v in batch.forwarded_json()]
    assert [r["level"] for r in forwarded] == ["ERROR", "ERROR"]


def test_a_value_spanning_lines_takes_the_exact_path():
    values = [_record(0, "INFO"), _record(1, "INFO") + b"\n" + _record(2, "INFO"), b'{"message": "a",\n "level": "INFO"}']
    batch = BatchBuilder().build(_raw(values))
    assert not batch.fast_path
    # One Kafka message is one log: two documents in one message are a dead letter, with why.
    assert sorted(batch.rows["message"].to_pylist()) == ["a", "payment 0 failed"]
    assert [d.error.split(":")[0] for d in batch.dead_letters] == ["malformed JSON"]


def test_times_with_offsets_stay_on_the_fast_path_and_odd_ones_take_the_exact_path():
    offset = orjson.dumps({"timestamp": "2026-11-25T12:00:00.5+02:00", "level": "INFO", "message": "m"})
    fast = BatchBuilder().build(_raw([offset]))
    assert fast.fast_path
    assert fast.rows["timestamp"][0].as_py().isoformat() == "2026-11-25T10:00:00.500000+00:00"

    odd = orjson.dumps({"timestamp": "yesterday", "level": "INFO", "message": "m"})
    exact = BatchBuilder().build(_raw([offset, odd], timestamps=[1_764_000_000_000] * 2))
    assert not exact.fast_path and exact.rows.num_rows == 2
    assert exact.rows["timestamp"][1].as_py().timestamp() == 1_764_000_000.0  # Kafka's time


def test_forwarded_levels_follow_the_builder_on_both_paths():
    values = [_record(0, "ERROR"), _record(1, "INFO"), _record(2, "warning"), _record(3, "fatal")]
    only_errors = BatchBuilder(forward_levels={"ERROR", "FATAL"})
    fast = only_errors.build(_raw(values))
    # A record the fast path cannot settle column by column sends the batch the exact way.
    exact = only_errors.build(_raw(values + [b"not json"]))
    assert fast.fast_path and not exact.fast_path
    for batch in (fast, exact):
        assert [orjson.loads(v)["record_id"] for v in batch.forwarded_json()] == ["r0", "r3"]
        assert batch.forwarded()["record_id"].to_pylist() == ["r0", "r3"]
    assert BatchBuilder(forward_levels=()).build(_raw(values)).forwarded_json() == []
    default = BatchBuilder().build(_raw(values))
    assert [orjson.loads(v)["record_id"] for v in default.forwarded_json()] == ["r0", "r2", "r3"]


def test_a_time_far_in_the_future_leaves_the_fast_path_and_is_clamped_to_the_kafka_time():
    import time

    now_ms = int(time.time()) * 1000
    ahead = orjson.dumps({"timestamp": "2999-01-01T00:00:00Z", "level": "INFO", "message": "clock bug"})
    today = orjson.dumps({"timestamp": "2026-11-25T10:00:00Z", "level": "INFO", "message": "fine"})
    assert BatchBuilder().build(_raw([today], timestamps=[now_ms])).fast_path
    batch = BatchBuilder().build(_raw([today, ahead], timestamps=[now_ms] * 2))
    assert not batch.fast_path and not batch.dead_letters
    rows = batch.rows.to_pylist()
    assert rows[1]["timestamp"].timestamp() * 1000 == now_ms
    assert dict(rows[1]["attributes"]) == {"timestamp_original": "2999-01-01T00:00:00Z"}


def test_a_time_older_than_the_retention_is_a_dead_letter_on_either_path():
    from logpipe.core.shippers import RecordLimits

    builder = BatchBuilder(limits=RecordLimits(max_age_days=90))
    old = orjson.dumps({"timestamp": "2016-01-01T00:00:00Z", "level": "INFO", "message": "too old"})
    today = orjson.dumps({"timestamp": "2026-11-25T10:00:00Z", "level": "INFO", "message": "fine"})
    batch = builder.build(_raw([today, old], timestamps=[1_796_000_000_000] * 2))
    assert not batch.fast_path and batch.rows["message"].to_pylist() == ["fine"]
    assert [d.message.value for d in batch.dead_letters] == [old]
    assert "older than the retention (90 days, LOG_TTL_DAYS)" in batch.dead_letters[0].error
