"""The log record: level normalisation, timestamps, ids, unknown fields kept."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from logpipe.core.record import (
    RECORD_FIELDS,
    Level,
    LogRecord,
    derived_record_id,
    format_timestamp,
    infer_level,
    normalize_level,
    otel_severity_level,
)


@pytest.mark.parametrize("given,expected", [
    ("warning", Level.WARN), ("WARN", Level.WARN), ("Warning", Level.WARN), ("err", Level.ERROR),
    ("ERROR", Level.ERROR), ("critical", Level.FATAL), ("CRITICAL", Level.FATAL), ("fatal", Level.FATAL),
    ("emerg", Level.FATAL), ("notice", Level.INFO), ("info", Level.INFO), ("debug", Level.DEBUG),
    ("trace", Level.TRACE), (" Info ", Level.INFO), ("severe", Level.ERROR), ("fine", Level.DEBUG),
    (30, Level.INFO), (50, Level.ERROR), (60, Level.FATAL),  # pino/bunyan
    (3, Level.ERROR), (4, Level.WARN), (6, Level.INFO), (7, Level.DEBUG), ("3", Level.ERROR),  # syslog
])
def test_level_names_are_normalised(given, expected):
    assert normalize_level(given) == expected


@pytest.mark.parametrize("given", ["loud", "", None, True, {"a": 1}, 99])
def test_unknown_levels_are_not_guessed(given):
    assert normalize_level(given) is None


def test_otel_severity_numbers():
    assert [otel_severity_level(n) for n in (1, 5, 9, 13, 17, 21, 24)] == [
        Level.TRACE, Level.DEBUG, Level.INFO, Level.WARN, Level.ERROR, Level.FATAL, Level.FATAL]


@pytest.mark.parametrize("line,expected", [
    ("2025-01-01 ERROR something broke", Level.ERROR), ("[WARNING] disk at 90%", Level.WARN),
    ("java.lang.Exception: boom", Level.ERROR), ("Traceback: Exception raised", Level.ERROR),
    ("PANIC: kernel", Level.FATAL), ("all good", Level.INFO), ("debug: x=1", Level.DEBUG),
])
def test_level_inferred_from_text(line, expected):
    assert infer_level(line) == expected


def test_record_has_the_23_fields_plus_id_and_attributes():
    assert len(RECORD_FIELDS) == 23
    names = set(LogRecord.model_fields)
    assert set(RECORD_FIELDS) | {"record_id", "attributes"} == names


def test_record_normalises_and_keeps_unknown_fields():
    record = LogRecord(message="boom", level="Warning", timestamp="2026-03-01T12:00:00.123456+02:00",
                       service="api", region="eu", retries=3, tags=["a", "b"])
    assert record.level == Level.WARN
    assert record.timestamp == datetime(2026, 3, 1, 10, 0, 0, 123000, tzinfo=timezone.utc)
    assert record.attributes == {"region": "eu", "retries": "3", "tags": '["a","b"]'}
    assert len(record.record_id) == 36  # generated when absent
    assert record.to_json_dict()["timestamp"] == "2026-03-01T10:00:00.123Z"


def test_record_rejects_impossible_values():
    with pytest.raises(ValidationError):
        LogRecord(message="x", level="loud")
    with pytest.raises(ValidationError):
        LogRecord(message="x", http_status=42)
    with pytest.raises(ValidationError):
        LogRecord(message="x", timestamp="1800-01-01T00:00:00Z")
    with pytest.raises(ValidationError):
        LogRecord(level="INFO")  # no message


def test_derived_ids_are_stable_per_kafka_coordinate():
    assert derived_record_id("raw-logs", 1, 42) == derived_record_id("raw-logs", 1, 42)
    assert derived_record_id("raw-logs", 1, 42) != derived_record_id("raw-logs", 1, 43)
    assert derived_record_id("raw-logs", 1, 42, 0) != derived_record_id("raw-logs", 1, 42, 1)


@pytest.mark.parametrize("given, expected", [
    (datetime(2026, 11, 25, 10, 0, 5, 123999, tzinfo=timezone.utc), "2026-11-25T10:00:05.123Z"),  # truncated
    (datetime(2026, 11, 25, 10, 0, 5), "2026-11-25T10:00:05.000Z"),  # naive means UTC
    (datetime(2026, 11, 25, 12, 0, 5, 7000, tzinfo=timezone(timedelta(hours=2))), "2026-11-25T10:00:05.007Z"),
    (datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=-5))), "2026-01-01T05:30:00.000Z"),
    (datetime(1970, 1, 1, tzinfo=timezone.utc), "1970-01-01T00:00:00.000Z"),
])
def test_timestamps_are_written_in_utc_with_milliseconds(given, expected):
    assert format_timestamp(given) == expected


def test_record_without_a_level_reads_it_from_the_message_like_the_normaliser():
    from logpipe.core.shippers import normalize_object

    record = LogRecord(message="ERROR card processor down")
    normalized = normalize_object({"message": "ERROR card processor down"}, datetime.now(timezone.utc), "r")
    assert record.level == normalized["level"] == Level.ERROR


def test_the_documented_record_lists_every_field_of_the_table():
    from pathlib import Path

    from logpipe.core.record import STORED_SPECS

    text = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    section = text.split("## The log record", 1)[1].split("\n## ", 1)[0]
    missing = [spec.name for spec in STORED_SPECS if f"`{spec.name}`" not in section]
    assert not missing, f"docs/api.md 'The log record' does not describe {missing}"


def test_levels_that_look_numeric_but_are_not_are_not_levels():
    from logpipe.core.record import normalize_level

    # str.isdigit() is true for these; int() refuses them (a query with level=³ was a 500).
    assert normalize_level("³") is None
    assert normalize_level("٣") is None
    assert normalize_level(float("nan")) is None
    assert normalize_level(float("inf")) is None
    assert normalize_level("3").name == "ERROR"
