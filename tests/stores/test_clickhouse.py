"""The ClickHouse store: calls from several threads run at once, each on a handle of its own."""

from __future__ import annotations

import threading

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
        threads = [threading.Thread(target=store.query, args=(SLOW.replace("numbers(8)", "numbers(2)"),))
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
