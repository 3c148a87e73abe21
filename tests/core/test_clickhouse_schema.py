"""The ClickHouse schema: idempotent, TTL follows the setting, the indexes the issue asks for."""

from __future__ import annotations


def test_schema_is_idempotent_and_ttl_follows_setting(clickhouse):
    clickhouse.apply_schema(ttl_days=90)
    clickhouse.apply_schema(ttl_days=7)
    ddl = clickhouse.query(f"SHOW CREATE TABLE {clickhouse.table('logs')}")[0][0]
    assert "toIntervalDay(7)" in ddl
    assert "PARTITION BY toDate(timestamp)" in ddl
    assert "ORDER BY (service, level, timestamp, record_id)" in ddl
    assert "INDEX idx_trace_id trace_id TYPE bloom_filter" in ddl
    assert "INDEX idx_message message TYPE tokenbf_v1" in ddl
    assert "`service` LowCardinality(String)" in ddl


def test_replay_offsets_are_tracked_by_the_insert_itself(clickhouse):
    import pyarrow as pa

    from logpipe.generator.service import LogFactory, encode
    from logpipe.ingest.service import BatchBuilder, RawMessage

    records = LogFactory(seed=1).batch(10)
    batch = BatchBuilder().build([RawMessage(encode(r), None, "raw-logs", i % 2, 100 + i) for i, r in enumerate(records)])
    clickhouse.insert_arrow("logs", batch.rows)
    assert clickhouse.stored_offsets("raw-logs") == {0: 108, 1: 109}
    assert clickhouse.stored_offsets("raw-logs", [1, 5]) == {1: 109}
    assert clickhouse.stored_offsets("other") == {}
    assert isinstance(batch.rows, pa.Table)
