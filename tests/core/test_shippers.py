"""Decoding one message from any shipper into records (unit level; the e2e test covers Kafka)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest

from logpipe.core.record import format_timestamp
from logpipe.core.shippers import NotALogError, RecordLimits, decode_message, parse_timestamp


def decode(value: bytes, **kwargs):
    options = dict(kafka_timestamp_ms=1764064800000, topic="raw-logs", partition=0, offset=7, max_bytes=10_000)
    options.update(kwargs)
    return decode_message(value, **options)


@pytest.mark.parametrize("value,expected", [
    (1764064800, datetime(2025, 11, 25, 10, 0, tzinfo=timezone.utc)),
    (1764064800123, datetime(2025, 11, 25, 10, 0, 0, 123000, tzinfo=timezone.utc)),
    (1764064800123456, datetime(2025, 11, 25, 10, 0, 0, 123000, tzinfo=timezone.utc)),
    (1764064800123456789, datetime(2025, 11, 25, 10, 0, 0, 123000, tzinfo=timezone.utc)),
    ("1764064800.5", datetime(2025, 11, 25, 10, 0, 0, 500000, tzinfo=timezone.utc)),
    ("2025-11-25T11:00:00+01:00", datetime(2025, 11, 25, 10, 0, tzinfo=timezone.utc)),
    ("2025-11-25 10:00:00", datetime(2025, 11, 25, 10, 0, tzinfo=timezone.utc)),
    ("not a time", None),
])
def test_timestamps_in_every_common_form(value, expected):
    assert parse_timestamp(value) == expected


def test_text_line_is_a_log_with_kafka_time():
    [record] = decode(b"WARN cache miss storm on shard 7")
    assert record["message"] == "WARN cache miss storm on shard 7"
    assert record["level"] == "WARN"
    assert record["timestamp"] == datetime(2025, 11, 25, 10, 0, tzinfo=timezone.utc)
    assert record["service"] == "unknown"


def test_unparseable_time_is_kept_and_kafka_time_used():
    [record] = decode(orjson.dumps({"msg": "x", "time": "yesterday-ish"}))
    assert record["timestamp"] == datetime(2025, 11, 25, 10, 0, tzinfo=timezone.utc)
    assert record["attributes"]["time_original"] == "yesterday-ish"


def test_unknown_level_falls_back_to_text_and_is_kept():
    [record] = decode(orjson.dumps({"msg": "ERROR x", "level": "loud"}))
    assert record["level"] == "ERROR" and record["attributes"]["level_original"] == "loud"


def test_given_record_id_wins_over_derived():
    [record] = decode(orjson.dumps({"message": "x", "record_id": "abc"}))
    assert record["record_id"] == "abc"
    [derived] = decode(orjson.dumps({"message": "x"}))
    assert len(derived["record_id"]) == 36


@pytest.mark.parametrize("value,reason", [
    (b"", "empty"), (b"\xff\xfe", "UTF-8"), (b"{", "malformed JSON"), (b"[1]", "array"),
    (b'{"message": "x", "http_status": 42}', "http_status 42 is outside 100..599"),
    (b'{"message": "x", "duration_ms": -1}', "duration_ms -1 is below 0"),
    (b'{"message": "x", "duration_ms": "NaN"}', "finite"),
    (b'{"message": "x", "timestamp": [1]}', "impossible type"),
    (b'{"message": "x", "user_id": [1, 2]}', "impossible type"),
    (b"binary\x00garbage", "NUL"),
    (b'{"message": "x", "timestamp": "1492-10-12T00:00:00Z"}', "before 1970"),
])
def test_not_a_log(value, reason):
    with pytest.raises(NotALogError, match=reason):
        decode(value)


def test_size_limit():
    with pytest.raises(NotALogError, match="over the 100-byte limit"):
        decode(b"x" * 101, max_bytes=100)


def test_our_attributes_object_is_the_map_itself_and_nulls_are_left_out():
    [record] = decode(orjson.dumps({"message": "x", "attributes": {"region": "eu", "n": 5, "gone": None,
                                                                   "nested": {"k": [1]}},
                                    "zone": None, "extra": {"deep": True}}))
    assert record["attributes"] == {"extra.deep": "true", "n": "5", "nested": '{"k":[1]}', "region": "eu"}
    assert list(record["attributes"]) == sorted(record["attributes"])  # key order, as both ingest paths store
    [empty] = decode(orjson.dumps({"message": "x", "attributes": {}}))
    assert empty["attributes"] == {}


def test_first_alias_with_a_value_wins_and_empty_field_keys_are_not_attributes():
    [record] = decode(orjson.dumps({"message": "kept", "msg": "an attribute now", "service": "", "app": "cart",
                                    "host": "", "hostname": "", "http.status_code": 503, "status_code": 500}))
    assert record["message"] == "kept" and record["service"] == "cart" and record["host"] == ""
    assert record["http_status"] == 503
    assert record["attributes"] == {"msg": "an attribute now", "status_code": "500"}


def _nested(depth: int) -> dict:
    value: object = "bottom"
    for _ in range(depth):
        value = {"d": value}
    return value  # type: ignore[return-value]


def test_nesting_deeper_than_the_limit_is_refused_with_the_limit_named():
    limits = RecordLimits(max_depth=20)
    # The record is level 1 and `attributes` level 2: 18 more levels fit, 19 do not.
    [record] = decode(orjson.dumps({"message": "x", "attributes": {"nest": _nested(17)}}), limits=limits)
    assert record["attributes"]["nest"].count("{") == 17
    with pytest.raises(NotALogError, match="nested deeper than 20 levels .LOGPIPE_MAX_NESTING_DEPTH."):
        decode(orjson.dumps({"message": "x", "attributes": {"nest": _nested(19)}}), limits=limits)
    # Lists count as levels too (they are kept whole, as JSON text, so depth is what costs).
    deep_list: object = 1
    for _ in range(30):
        deep_list = [deep_list]
    with pytest.raises(NotALogError, match="nested deeper"):
        decode(orjson.dumps({"message": "x", "payload": deep_list}), limits=limits)


def test_more_attributes_than_the_limit_are_refused_with_the_count():
    limits = RecordLimits(max_attributes=50)
    [record] = decode(orjson.dumps({"message": "x", **{f"k{i}": i for i in range(50)}}), limits=limits)
    assert len(record["attributes"]) == 50
    with pytest.raises(NotALogError, match="51 attributes, over the limit of 50"):
        decode(orjson.dumps({"message": "x", **{f"k{i}": i for i in range(51)}}), limits=limits)
    with pytest.raises(NotALogError, match="over the limit of 50 attributes"):
        decode(orjson.dumps({"message": "x", "attributes": {f"k{i}": "v" for i in range(100_000)}}), limits=limits,
               max_bytes=4 << 20)


def test_a_time_far_in_the_future_is_clamped_to_the_arrival_time_and_kept():
    arrival = datetime.now(timezone.utc).replace(microsecond=0)
    kafka_ms = int(arrival.timestamp() * 1000)
    for far in ("9999-12-31T23:59:59Z", "2999-01-01T00:00:00Z", format_timestamp(arrival + timedelta(days=1))):
        [record] = decode(orjson.dumps({"message": "x", "@timestamp": far}), kafka_timestamp_ms=kafka_ms)
        assert record["timestamp"] == arrival and record["attributes"] == {"@timestamp_original": far}
    near = arrival + timedelta(minutes=5)
    [record] = decode(orjson.dumps({"message": "x", "timestamp": format_timestamp(near)}), kafka_timestamp_ms=kafka_ms)
    assert record["timestamp"] == near and record["attributes"] == {}
    # Ten years ago is a real time (a backfill): kept as it is.
    old = arrival - timedelta(days=3650)
    [record] = decode(orjson.dumps({"message": "x", "timestamp": format_timestamp(old)}), kafka_timestamp_ms=kafka_ms)
    assert record["timestamp"] == old


def test_a_time_older_than_the_retention_is_refused_with_the_reason():
    # ClickHouse drops a row older than its TTL as it is inserted: accepting it would lose it.
    now = datetime.now(timezone.utc)
    limits = RecordLimits(max_age_days=90)
    [record] = decode(orjson.dumps({"message": "x", "timestamp": format_timestamp(now - timedelta(days=89))}),
                      limits=limits)
    assert record["timestamp"] < now
    with pytest.raises(NotALogError, match=r"older than the retention \(90 days, LOG_TTL_DAYS\)"):
        decode(orjson.dumps({"message": "x", "timestamp": format_timestamp(now - timedelta(days=91))}), limits=limits)
