"""The ClickHouse schema: idempotent, TTL follows the setting, the indexes the issue asks for."""

from __future__ import annotations


def test_schema_is_idempotent_and_ttl_follows_setting(clickhouse):
    clickhouse.apply_schema(ttl_days=90)
    clickhouse.apply_schema(ttl_days=7)
    ddl = clickhouse.query(f"SHOW CREATE TABLE {clickhouse.table('logs')}")[0][0]
    assert "toIntervalDay(7)" in ddl
    assert "PARTITION BY toDate(timestamp)" in ddl
    assert "ORDER BY (toStartOfHour(timestamp), service, level, timestamp, record_id)" in ddl
    assert "INDEX idx_pattern pattern_id TYPE set(1000) GRANULARITY 1" in ddl
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



def test_a_table_of_an_earlier_sort_key_is_named_and_reordered_without_losing_a_row(chdb_dsn, caplog):
    import logging
    import uuid

    import pytest

    from logpipe.generator.service import LogFactory, encode
    from logpipe.ingest.service import BatchBuilder, RawMessage
    from logpipe.stores.clickhouse import LOGS_SORTING_KEY, ClickHouseStore, schema_statements

    store = ClickHouseStore(chdb_dsn, database=f"test_{uuid.uuid4().hex[:12]}")
    logs = store.table("logs")
    try:
        # The schema as an earlier version made it: ordered by (service, level, timestamp, record_id).
        for statement in schema_statements(store.database, 90):
            store.command(statement.replace("ORDER BY (toStartOfHour(timestamp), service, level, timestamp, record_id)",
                                            "ORDER BY (service, level, timestamp, record_id)"))
        records = LogFactory(seed=3).batch(500)
        builder = BatchBuilder()
        store.insert_arrow("logs", builder.build(
            [RawMessage(encode(r), None, "raw-logs", i % 2, i) for i, r in enumerate(records)]).rows)
        before = store.query(f"SELECT record_id, message, level, timestamp FROM {logs} ORDER BY record_id")

        with caplog.at_level(logging.WARNING, logger="logpipe.stores.clickhouse"):
            store.apply_schema(90)
            store.apply_schema(90)  # as every service of `logpipe run all` does: said once
        assert caplog.text.count("an earlier version's key") == 1 and "--reorder-logs" in caplog.text

        counted = store.query(f"SELECT toStartOfHour(timestamp) AS hour, pipeline, service, level, pattern_id, "
                              f"toInt64(count()) FROM {logs} GROUP BY ALL ORDER BY ALL")
        since = store.query(f"SELECT value FROM {store.table('schema_state')} FINAL WHERE name = 'logs_hourly_since'")
        assert store.reorder_logs(90) == 500
        key = store.query("SELECT sorting_key FROM system.tables WHERE database = {db:String} AND name = 'logs'",
                          {"db": store.database})
        assert key == [(LOGS_SORTING_KEY,)]
        assert store.query(f"SELECT record_id, message, level, timestamp FROM {logs} ORDER BY record_id") == before
        assert store.query(f"EXISTS TABLE {store.table('logs_before_reorder')}") == [(0,)]
        # The hourly counts (made with the table here, so they hold every row) count the
        # copied rows once, per hour and key as before, and go on counting new inserts.
        hourly = (f"SELECT hour, pipeline, service, level, pattern_id, sum(logs) FROM {store.table('logs_hourly')} "
                  "GROUP BY ALL HAVING sum(logs) != 0 ORDER BY ALL")
        assert store.query(hourly) == counted
        assert sum(row[-1] for row in counted) == 500
        assert store.query(f"SELECT value FROM {store.table('schema_state')} FINAL "
                           "WHERE name = 'logs_hourly_since'") == since
        # The replay guard follows the new table: its offsets survive and new inserts move them.
        assert store.stored_offsets("raw-logs") == {0: 498, 1: 499}
        store.insert_arrow("logs", builder.build([RawMessage(encode(records[0]), None, "raw-logs", 1, 900)]).rows)
        assert store.stored_offsets("raw-logs") == {0: 498, 1: 900}
        assert store.query(f"SELECT sum(logs) FROM {store.table('logs_hourly')}") == [(501,)]
        # Current already: nothing to do, and no warning.
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="logpipe.stores.clickhouse"):
            assert store.reorder_logs(90) is None
        assert "earlier version" not in caplog.text

        # A reorder that stopped after the exchange, before the copy, is not run over.
        source = store.table("logs_before_reorder")
        store.command(f"CREATE TABLE {source} (x UInt8) ENGINE = Memory")
        with pytest.raises(RuntimeError, match="stopped before it finished"):
            store.reorder_logs(90)
        # One that stopped before the exchange left an empty table: it is replaced.
        store.command(f"DROP TABLE {logs} SYNC")
        for statement in schema_statements(store.database, 90):
            if statement.startswith(f"CREATE TABLE IF NOT EXISTS {logs}\n"):
                store.command(statement.replace("toStartOfHour(timestamp), ", ""))
        store.insert_arrow("logs", builder.build([RawMessage(encode(records[1]), None, "raw-logs", 0, 901)]).rows)
        assert store.reorder_logs(90) == 1
        assert store.query(f"SELECT count() FROM {logs}") == [(1,)]
        assert store.query(f"EXISTS TABLE {source}") == [(0,)]
    finally:
        store.command(f"DROP DATABASE IF EXISTS {store.database} SYNC")
        store.close()
