"""One record definition, one set of rules: the field table (core/record.py), the Arrow schema
ingest writes, the ClickHouse DDL (read back from a real chdb table) and the API models agree;
and ingest's vectorised fast path stores the very rows its exact path stores for the same input,
whatever shipper wrote it."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone

import orjson
import pyarrow as pa
import pytest

from logpipe.core.record import FIELDS, RECORD_FIELDS, STORED_SPECS, Kind, LogRecord
from logpipe.gateway.protocols import jsonlines, loki, otlp
from logpipe.gateway.schemas import LogEntry
from logpipe.ingest.service import LOG_SCHEMA, BatchBuilder, RawBatch, RawMessage
from logpipe.stores.clickhouse import ClickHouseStore

# Columns of `logs` that are ingest's own bookkeeping, not part of the record.
BOOKKEEPING = {"kafka_topic", "kafka_partition", "kafka_offset", "ingested_at"}
ARROW_CLASS = {pa.types.is_timestamp: "DateTime64", pa.types.is_string: "String", pa.types.is_uint16: "UInt16",
               pa.types.is_uint32: "UInt32", pa.types.is_uint64: "UInt64", pa.types.is_float64: "Float64",
               pa.types.is_map: "Map"}


def clickhouse_class(type_name: str) -> tuple[str, bool]:
    """`LowCardinality(Nullable(String))` -> ("String", True)."""
    nullable = False
    while True:
        match = re.fullmatch(r"(LowCardinality|Nullable)\((.*)\)", type_name)
        if not match:
            break
        nullable = nullable or match.group(1) == "Nullable"
        type_name = match.group(2)
    return type_name.split("(", 1)[0], nullable


def arrow_class(arrow_type: pa.DataType) -> str:
    return next(name for check, name in ARROW_CLASS.items() if check(arrow_type))


def test_table_arrow_schema_ddl_and_models_agree_field_by_field(clickhouse):
    columns = clickhouse.query(f"DESCRIBE TABLE {clickhouse.database}.logs")
    described = {row[0]: clickhouse_class(row[1]) for row in columns}
    assert len(FIELDS) == 23 and RECORD_FIELDS == tuple(spec.name for spec in FIELDS)
    assert set(described) - BOOKKEEPING == {spec.name for spec in STORED_SPECS}
    assert set(LOG_SCHEMA.names) - BOOKKEEPING == {spec.name for spec in STORED_SPECS}
    for spec in STORED_SPECS:
        ddl_class, ddl_nullable = described[spec.name]
        field = LOG_SCHEMA.field(spec.name)
        assert (spec.storage_type, spec.nullable) == (ddl_class, ddl_nullable), spec.name
        assert (arrow_class(field.type), field.nullable) == (ddl_class, ddl_nullable), spec.name
        if spec.kind is Kind.TIME:
            assert field.type == pa.timestamp("ms", tz="UTC")
            assert re.search(r"DateTime64\(3, 'UTC'\)", dict((row[0], row[1]) for row in columns)[spec.name])
    # The API models carry the same fields, nullable exactly where storage is.
    assert list(LogRecord.model_fields) == [spec.name for spec in STORED_SPECS if spec.name not in
                                            ("pattern_id", "pipeline")]
    assert list(LogEntry.model_fields) == [spec.name for spec in STORED_SPECS]
    for spec in STORED_SPECS:
        schema = LogEntry.model_json_schema()["properties"][spec.name]
        allows_null = any(option.get("type") == "null" for option in schema.get("anyOf", []))
        assert allows_null == spec.nullable, spec.name
        assert schema["description"].startswith(spec.description)


KAFKA_MS = 1_764_064_800_000  # 2025-11-25T10:00:00Z
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)


def gateway_values() -> list[bytes]:
    """What the gateway's three protocols produce to raw-logs."""
    records = jsonlines.decode(
        '{"service": "jl", "level": "Err", "message": "Zahlung fehlgeschlagen: ü€", "http.status_code": 502}\n'
        'plain text WARNING from a jsonlines client\n'
        '{"msg": "pino style", "level": 50, "time": 1764064801000, "pid": 7, "hostname": "h1"}\n'.encode(),
        NOW, max_records=100, max_record_bytes=10_000)
    entries = [["1764064802000000000", "invoice slow"],
               ["1764064803000000000", '{"msg": "json line", "user": "u1"}']]
    records += loki.decode(orjson.dumps({"streams": [{"stream": {"job": "billing", "level": "warning"},
                                                      "values": entries}]}),
                           "application/json", None, NOW, max_body_bytes=100_000, max_records=100,
                           max_record_bytes=10_000)
    records += otlp.decode(orjson.dumps({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "otel-svc"}}]},
        "scopeLogs": [{"scope": {"name": "shop.payments"}, "logRecords": [{
            "timeUnixNano": "1764064804000000000", "severityNumber": 21, "body": {"stringValue": "fatal thing"},
            "traceId": "5b8efff798038103d269b633813fc60c", "attributes": [
                {"key": "retries", "value": {"intValue": "3"}}]}]}]}]}),
        "application/json", NOW, max_records=100, max_record_bytes=10_000)
    return [orjson.dumps(record) for record in records]


# Canonical records (our own shape) the fast path reads column-wise: odd level spellings,
# unicode, missing optional fields, empty and missing ids, time zones, attribute kinds.
CANONICAL = [
    {"timestamp": "2025-11-25T10:00:00.123456Z", "service": "checkout", "level": "warning",
     "message": "ünïcødé ✓ 日本", "attributes": {"region": "eu", "attempt": 3, "retried": True}},
    {"timestamp": "2025-11-25T12:00:00+02:00", "level": "Err", "message": "card declined", "record_id": ""},
    {"timestamp": "2025-11-25T10:00:00", "level": "fatal", "message": "naive time means UTC", "service": ""},
    {"level": "INFO", "message": "no time: Kafka's", "http_status": 204, "duration_ms": 1.5,
     "attributes": {"zone": None, "b": "x", "a": "y"}},
    {"timestamp": "2025-11-25T10:00:01Z", "level": " ERROR ", "message": "x", "record_id": "given-1",
     "trace_id": "abc", "user_id": "u-1", "stack_trace": "line 1\nline 2"},
    {"timestamp": "2025-11-25T10:00:02Z", "level": "crit", "message": "attributes in another order",
     "attributes": {"a": "1", "b": "2"}},
]

# Everything else a raw-logs topic carries: shipper shapes, numbers as levels, bad times,
# unknown fields, structured attributes. Each takes the exact path.
SHIPPERS = [
    {"msg": "pino", "level": 30, "time": 1764064800123, "pid": 1, "hostname": "web-1"},
    {"level": "warn", "ts": 1764064800.5, "caller": "main.go:12", "msg": "zap warn", "logger": "app"},
    {"level": "error", "msg": "logrus", "time": "2025-11-25T10:00:00+01:00", "error": "eof"},
    {"@t": "2025-11-25T10:00:00.1Z", "@mt": "Serilog {User}", "@l": "Warning", "User": "bob", "SourceContext": "A.B"},
    {"log": "fluent bit line", "date": 1764064800.25, "kubernetes": {"pod_name": "p-1", "namespace_name": "shop",
                                                                 "labels": {"app": "cart"}}},
    {"message": "vector", "timestamp": "2025-11-25T10:00:00Z", "host": "n1", "kubernetes": {"pod_name": "p-2"}},
    {"@timestamp": "2025-11-25T10:00:00Z", "log.level": "ERROR", "message": "ecs", "service.name": "pay",
     "error": {"type": "IOError", "stack_trace": "at x"}, "http": {"response": {"status_code": 503}},
     "url": {"path": "/pay"}, "event": {"duration": 2_500_000}},
    {"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "otelk"}}]},
                       "scopeLogs": [{"logRecords": [{"body": {"stringValue": "one"}, "severityText": "WARN"},
                                                     {"body": {"stringValue": "two"}, "severityNumber": 17}]}]}]},
    {"message": "level as number", "level": 50},
    {"message": "unknown level word ERROR inside", "level": "loud"},
    {"message": "bad time", "timestamp": "yesterday"},
    {"message": "epoch seconds", "timestamp": 1764064800},
    {"message": "unknown extra fields", "level": "info", "region": "eu", "tags": ["a", "b"]},
    {"message": "float and nested attributes", "attributes": {"ratio": 2.0, "nested": {"k": 1}}},
    {"message": "status as text", "http_status": "404"},
    "just a plain text line with ERROR in it",
]


def _value(item) -> bytes:
    return item.encode() if isinstance(item, str) else orjson.dumps(item)


def _batch(values: list[bytes], offsets: list[int]) -> RawBatch:
    return RawBatch.from_messages([RawMessage(value, KAFKA_MS, "raw-logs", 0, offset)
                                   for value, offset in zip(values, offsets)])


def assert_same_rows(got: pa.Table, want: pa.Table) -> None:
    """Whole rows, column by column, with the first difference in the message."""
    assert got.schema == want.schema
    for index, (a, b) in enumerate(zip(got.to_pylist(), want.to_pylist())):
        assert a == b, {key: (a[key], b[key]) for key in a if a[key] != b[key]} | {"row": index}
    assert got.num_rows == want.num_rows


def _stored(store: ClickHouseStore, table: pa.Table) -> list[dict]:
    store.insert_arrow("logs", table)
    return store.query_dicts(f"SELECT * EXCEPT ingested_at FROM {store.database}.logs FINAL ORDER BY kafka_offset")


@pytest.fixture
def two_stores(chdb_dsn):
    """Two `logs` tables (one per path: the sort key would fold rows of one into the other),
    with a TTL long enough that the fixed 2025 times below stay stored."""
    stores = [ClickHouseStore(chdb_dsn, database=f"test_{uuid.uuid4().hex[:12]}") for _ in range(2)]
    try:
        for store in stores:
            store.apply_schema(ttl_days=3650)
        yield stores
    finally:
        for store in stores:
            store.command(f"DROP DATABASE IF EXISTS {store.database} SYNC")
            store.close()


def test_fast_and_exact_paths_store_identical_rows(two_stores):
    builder = BatchBuilder(pipeline="team-a")
    canonical = [_value(item) for item in CANONICAL] + gateway_values()
    mixed = canonical + [_value(item) for item in SHIPPERS]
    offsets = list(range(len(mixed)))

    fast = builder.build(_batch(canonical, offsets[:len(canonical)]))
    assert fast.fast_path and fast.rows.num_rows == len(canonical)
    exact = builder._exact(_batch(canonical, offsets[:len(canonical)]))
    assert_same_rows(fast.rows, exact.rows)

    # The whole mixed input takes the exact path; its canonical part is stored as the fast path stores it.
    everything = builder.build(_batch(mixed, offsets))
    assert not everything.fast_path and not everything.dead_letters
    assert everything.rows.num_rows == len(mixed) + 1  # the OTLP message holds two records
    fast_rows = _stored(two_stores[0], fast.rows)
    mixed_rows = _stored(two_stores[1], everything.rows)
    assert len(mixed_rows) == everything.rows.num_rows
    assert fast_rows == mixed_rows[:len(canonical)]

    # Record by record: wherever the fast path accepts a value it agrees with the exact path.
    accepted = 0
    for offset, value in enumerate(mixed):
        alone = builder.build(_batch([value], [offset]))
        assert_same_rows(alone.rows, builder._exact(_batch([value], [offset])).rows)
        accepted += alone.fast_path
    assert accepted == len(canonical)

    rows = {row["kafka_offset"]: row for row in mixed_rows}
    assert rows[0]["level"] == "WARN" and rows[0]["message"] == "ünïcødé ✓ 日本"
    assert rows[0]["attributes"] == {"attempt": "3", "region": "eu", "retried": "true"}
    assert rows[1]["level"] == "ERROR" and len(rows[1]["record_id"]) == 36
    assert rows[1]["timestamp"] == datetime(2025, 11, 25, 10, 0)  # read back as naive UTC
    assert rows[2]["level"] == "FATAL" and rows[2]["service"] == "unknown"
    assert rows[3]["timestamp"] == datetime.fromtimestamp(KAFKA_MS / 1000, timezone.utc).replace(tzinfo=None)
    assert rows[3]["attributes"] == {"a": "y", "b": "x"} and rows[3]["http_status"] == 204
    assert all(row["pipeline"] == "team-a" for row in mixed_rows)
    by_message = {row["message"]: row for row in mixed_rows}
    assert by_message["level as number"]["level"] == "ERROR"
    assert by_message["unknown level word ERROR inside"]["attributes"]["level_original"] == "loud"
    assert by_message["bad time"]["attributes"]["timestamp_original"] == "yesterday"
    assert by_message["unknown extra fields"]["attributes"] == {"region": "eu", "tags": '["a","b"]'}
    assert by_message["float and nested attributes"]["attributes"] == {"nested": '{"k":1}', "ratio": "2.0"}
    assert by_message["ecs"]["duration_ms"] == 2.5 and by_message["ecs"]["http_status"] == 503
    assert by_message["fluent bit line"]["pod"] == "p-1" and by_message["fluent bit line"]["service"] == "cart"
    assert by_message["Zahlung fehlgeschlagen: ü€"]["http_status"] == 502


def test_records_the_fast_path_cannot_settle_go_exact_and_bad_ones_to_the_dlq():
    builder = BatchBuilder()
    good = _value(CANONICAL[0])
    for bad, reason in [({"message": "", "level": "INFO"}, "no message"),
                        ({"message": "x", "http_status": 42}, "outside 100..599"),
                        ({"message": "x", "duration_ms": -3.0}, "below 0"),
                        ({"message": "x", "record_id": "r" * 129}, "longer than 128"),
                        ({"message": "x", "timestamp": "1969-12-31T23:59:59Z"}, "before 1970")]:
        batch = builder.build(_batch([good, _value(bad)], [0, 1]))
        assert not batch.fast_path and batch.rows.num_rows == 1
        assert len(batch.dead_letters) == 1 and reason in batch.dead_letters[0].error
