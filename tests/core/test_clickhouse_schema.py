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


def test_embedded_dsn_carries_engine_settings(clickhouse, chdb_dsn):
    from logpipe.stores.clickhouse import split_embedded_dsn

    assert split_embedded_dsn("chdb:///data/ch") == ("chdb:///data/ch", {})
    assert split_embedded_dsn("chdb:///data/ch?uncompressed_cache_size=1048576&mark_cache_size=2") == (
        "chdb:///data/ch", {"uncompressed_cache_size": "1048576", "mark_cache_size": "2"})
    # The session's engine opened with the DSN's setting, as the services' default DSN asks.
    expected = split_embedded_dsn(chdb_dsn)[1]["uncompressed_cache_size"]
    rows = clickhouse.query("SELECT value FROM system.server_settings WHERE name = 'uncompressed_cache_size'")
    assert rows == [(expected,)]


def test_an_unknown_engine_setting_in_the_dsn_is_named(chdb_dsn):
    import pytest

    from logpipe.stores.clickhouse import ClickHouseStore, split_embedded_dsn

    location, _ = split_embedded_dsn(chdb_dsn)
    with pytest.raises(ValueError, match="uncompressed_cache_sise"):
        ClickHouseStore(f"{location}?uncompressed_cache_sise=1048576")
    with pytest.raises(ValueError, match="bad query field"):
        ClickHouseStore(f"{location}?uncompressed_cache_size")


def test_default_dsn_sizes_the_uncompressed_cache(tmp_path):
    from logpipe.core.settings import CommonSettings

    embedded = CommonSettings(data_dir=tmp_path)
    assert embedded.clickhouse_dsn == f"chdb://{(tmp_path / 'clickhouse').resolve()}?uncompressed_cache_size={1024 ** 3}"
    off = CommonSettings(data_dir=tmp_path, clickhouse_uncompressed_cache_mb=0)
    assert off.clickhouse_dsn == f"chdb://{(tmp_path / 'clickhouse').resolve()}"
    server = CommonSettings(clickhouse_url="http://ch:8123")
    assert server.clickhouse_dsn == "http://ch:8123"

