"""Decoding one message from any shipper into records (unit level; the e2e test covers Kafka)."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest

from logpipe.core.shippers import NotALogError, decode_message, parse_timestamp


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
    (b'{"message": "x", "timestamp": "1492-10-12T00:00:00Z"}', "outside"),
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
