"""The ClickHouse store: calls from several threads run at once, each on a handle of its own;
embedded Arrow inserts read the batch in place and store what the client's insert stores."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

# About 6 s: the insert and read below must finish while it runs, even on a loaded machine.
SLOW = "SELECT sleepEachRow(0.5) FROM numbers(12) SETTINGS max_block_size = 1"


def running(store) -> bool:
    rows = store.query("SELECT count() FROM system.processes WHERE query LIKE '%sleepEachRow(0.5)%' "
                       "AND query NOT LIKE '%system.processes%'")
    return rows[0][0] > 0


def test_a_query_does_not_wait_for_another_call(clickhouse):
    slow = threading.Thread(target=clickhouse.query, args=(SLOW,))
    slow.start()
    try:
        # Polling from this thread already runs beside the slow query; then an insert and a read.
        for _ in range(200):
            if running(clickhouse):
                break
        assert running(clickhouse)
        clickhouse.insert_rows("patterns", [[7, "user <*> logged in"]], ["pattern_id", "template"])
        assert clickhouse.query(f"SELECT template FROM {clickhouse.table('patterns')}") == [("user <*> logged in",)]
        assert slow.is_alive(), "the calls above should not have waited for the slow query"
    finally:
        slow.join()


def test_handles_are_bounded_and_reused(chdb_dsn):
    from logpipe.stores.clickhouse import ClickHouseStore

    store = ClickHouseStore(chdb_dsn, "default", handles=2)
    try:
        threads = [threading.Thread(target=store.query, args=(SLOW.replace("numbers(12)", "numbers(2)"),))
                   for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(store._idle) == 2  # the third call waited for a free handle instead of opening one
        assert store.query("SELECT 1") == [(1,)]
    finally:
        store.close()
    assert store._idle == []


def mixed_batch():
    """Rows of every kind ingest writes: generated logs, shipper shapes, a text line, Unicode,
    null status and duration, attributes of several entries and none."""
    from logpipe.generator.service import LogFactory, encode
    from logpipe.ingest.service import BatchBuilder, RawMessage

    values = [encode(record) for record in LogFactory(error_rate=0.3, seed=5).batch(400)]
    values += [
        "plain text line, naïve café ERROR: ünïcødé 💥".encode(),
        b'{"msg":"fluent","lvl":"warning","@timestamp":"2026-11-25T10:00:00.123+02:00",'
        b'"service.name":"edge","http_status":"503","extra":{"a":[1,2]},"ratio":1.5}',
        b'{"message":"no level","attributes":{"k":"v","empty":"","n":3}}',
        b'{"log":"tab\\there","severity":"critical","time":"2026-11-25T09:59:59Z","app":"x","duration_ms":0}',
    ]
    now_ms = int(time.time() * 1000)  # the Kafka time of the records without one: recent, inside the TTL
    messages = [RawMessage(value, now_ms + i, "raw-logs", i % 3, 1_000 + i) for i, value in enumerate(values)]
    return BatchBuilder().build(messages).rows


def stored(store) -> list[tuple]:
    return store.query(f"SELECT * EXCEPT ingested_at FROM {store.table('logs')} ORDER BY record_id")


def test_in_place_insert_stores_what_the_client_insert_stores(chdb_dsn):
    from logpipe.stores.clickhouse import ClickHouseStore

    rows = mixed_batch()
    in_place = ClickHouseStore(chdb_dsn, f"test_{uuid.uuid4().hex[:12]}")
    client = ClickHouseStore(chdb_dsn, f"test_{uuid.uuid4().hex[:12]}", insert_in_place=False)
    try:
        for store in (in_place, client):
            store.apply_schema(ttl_days=90)
            store.insert_arrow("logs", rows, settings={"optimize_on_insert": 0})
        assert in_place._idle_engines and not client._idle_engines  # each took its own path
        ours, theirs = stored(in_place), stored(client)
        assert len(ours) == rows.num_rows
        assert ours == theirs
        # The views fed by the insert saw the same rows.
        for view in ("ingest_offsets", "logs_hourly"):
            assert (in_place.query(f"SELECT * FROM {in_place.table(view)} FINAL ORDER BY ALL")
                    == client.query(f"SELECT * FROM {client.table(view)} FINAL ORDER BY ALL"))
        # Times are UTC whatever the process's time zone, to the millisecond.
        assert in_place.query(f"SELECT toString(timestamp) FROM {in_place.table('logs')} "
                              "WHERE message = 'fluent'") == [("2026-11-25 08:00:00.123",)]
        assert in_place.query(f"SELECT message, http_status, attributes['n'] FROM {in_place.table('logs')} "
                              "WHERE message LIKE 'plain text%' OR message = 'no level' ORDER BY message") == [
            ("no level", None, "3"), ("plain text line, naïve café ERROR: ünïcødé 💥", None, "")]
    finally:
        for store in (in_place, client):
            store.command(f"DROP DATABASE IF EXISTS {store.database} SYNC")
            store.close()
    assert in_place._idle_engines == []


def test_in_place_insert_applies_its_settings_and_reports_failures(clickhouse):
    import pyarrow as pa

    table = clickhouse.table("folded")
    clickhouse.command(f"CREATE TABLE {table} (k UInt64, v String) ENGINE = ReplacingMergeTree ORDER BY k")
    pair = pa.table({"k": pa.array([1, 1], pa.uint64()), "v": ["a", "b"]})
    clickhouse.insert_arrow("folded", pair, settings={"optimize_on_insert": 0})
    assert clickhouse.query(f"SELECT count() FROM {table}") == [(2,)]  # not folded: the setting reached it
    clickhouse.insert_arrow("folded", pair, settings={"optimize_on_insert": 1})
    assert clickhouse.query(f"SELECT count() FROM {table}") == [(3,)]
    clickhouse.insert_arrow("folded", pair.slice(0, 0))
    assert clickhouse.query(f"SELECT count() FROM {table}") == [(3,)]
    with pytest.raises(Exception, match="(?i)unknown table|doesn't exist|does not exist"):
        clickhouse.insert_arrow("missing", pair)
    with pytest.raises(ValueError, match="setting name"):
        clickhouse.insert_arrow("folded", pair, settings={"x = 1; DROP": 0})
    with pytest.raises(ValueError, match="table name"):
        clickhouse.insert_arrow("folded; DROP TABLE x", pair)
    assert clickhouse.query(f"SELECT count() FROM {table}") == [(3,)]


def test_in_place_inserts_run_beside_other_calls_on_bounded_connections(chdb_dsn):
    import pyarrow as pa

    from logpipe.stores.clickhouse import ClickHouseStore

    store = ClickHouseStore(chdb_dsn, f"test_{uuid.uuid4().hex[:12]}", handles=2)
    try:
        store.command(f"CREATE DATABASE IF NOT EXISTS {store.database}")
        store.command(f"CREATE TABLE {store.table('t')} (k UInt64) ENGINE = MergeTree ORDER BY k")
        threads = [threading.Thread(target=store.insert_arrow,
                                    args=("t", pa.table({"k": pa.array(range(i * 1000, (i + 1) * 1000), pa.uint64())})))
                   for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.query(f"SELECT count(), uniqExact(k) FROM {store.table('t')}") == [(6000, 6000)]
        assert 1 <= len(store._idle_engines) <= 2  # never more connections than handles
    finally:
        store.command(f"DROP DATABASE IF EXISTS {store.database} SYNC")
        store.close()
