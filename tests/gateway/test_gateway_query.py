"""GET /api/logs over real ClickHouse: filters, totals, stable keyset pagination."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from gateway_support import insert_logs, make_rows
from logpipe.gateway.query import Cursor, LogFilter, QueryError, first_window_width, scan_windows, search_logs
from support import wait_until

LEVELS = ("INFO", "WARN", "ERROR", "DEBUG")


def test_scan_windows_cover_the_range_newest_first_without_gaps():
    now = datetime(2026, 1, 10, tzinfo=timezone.utc)
    start = now - timedelta(days=3)
    windows = scan_windows(LogFilter(start=start), None, now)
    assert windows[0][1] is None  # the newest window is open upwards (clock skew)
    assert windows[-1][0] == start
    for (low, _), (_, high) in zip(windows, windows[1:]):
        assert low == high  # contiguous, disjoint
    cursor = Cursor(int((now - timedelta(hours=1)).timestamp() * 1000), "x")
    bounded = scan_windows(LogFilter(), cursor, now)
    assert bounded[0][1] == now - timedelta(hours=1) + timedelta(milliseconds=1)
    assert bounded[-1][0] is None


def test_first_window_follows_the_filters_rate():
    now = datetime(2026, 1, 10, tzinfo=timezone.utc)
    week_ago = now - timedelta(days=7)
    # 300k errors a week: four pages of 101 arrive in about 13 minutes.
    width = first_window_width(LogFilter(levels=["ERROR"]), 300_000, 101, week_ago, now, now)
    assert timedelta(minutes=12) < width < timedelta(minutes=15)
    # 10M logs a week would fill four pages in 24 s; the first fixed step (2 min) is the least.
    assert first_window_width(LogFilter(), 10_000_000, 101, week_ago, now, now) == timedelta(minutes=2)
    # The filter's own start counts, and the newest stored log (not the clock) ends the range.
    width = first_window_width(LogFilter(start=now - timedelta(days=1)), 60_000, 101, week_ago,
                               now - timedelta(hours=12), now)
    assert timedelta(minutes=4.5) < width < timedelta(minutes=5)
    # Few matches: the whole range at once; nothing stored: no rate, the fixed steps.
    assert first_window_width(LogFilter(), 300, 101, week_ago, now, now) == timedelta(days=7)
    assert first_window_width(LogFilter(), 0, 101, None, None, now) is None


def test_sized_windows_widen_from_the_newest_stored_log():
    now = datetime(2026, 1, 10, tzinfo=timezone.utc)
    newest = now - timedelta(minutes=5)
    anchor = newest + timedelta(milliseconds=1)
    windows = scan_windows(LogFilter(), None, now, timedelta(seconds=30), newest)
    assert windows[0] == (anchor - timedelta(seconds=30), None)  # open upwards: logs stored since are seen
    lows = [low for low, _ in windows[:-1]]
    assert lows == [anchor - timedelta(seconds=30) * 8**k for k in range(len(lows))]
    assert windows[-1][0] is None
    for (low, _), (_, high) in zip(windows, windows[1:]):
        assert low == high
    start = now - timedelta(hours=1)
    windows = scan_windows(LogFilter(start=start), None, now, timedelta(minutes=1), newest)
    one, eight = anchor - timedelta(minutes=1), anchor - timedelta(minutes=8)
    assert windows == [(one, None), (eight, one), (start, eight)]


def test_cursor_round_trip_and_garbage():
    cursor = Cursor(1_700_000_000_123, "abc")
    assert Cursor.decode(cursor.encode()) == cursor
    for bad in ("nope", "W10", Cursor(-5, "x").encode()):
        with pytest.raises(QueryError):
            Cursor.decode(bad)


async def test_filters_and_totals(clickhouse):
    now = datetime.now(timezone.utc)
    rows = make_rows(
        200, start=now - timedelta(hours=3), step_ms=50_000,
        service=lambda i: "checkout" if i % 2 else "payments",
        level=lambda i: LEVELS[i % 4],
        trace_id=lambda i: "trace-7" if i in (7, 8) else "",
        pattern_id=lambda i: 42 if i % 10 == 0 else 0,
        message=lambda i: f"Payment TIMEOUT for order {i}" if i % 25 == 0 else f"event number {i}",
    )
    insert_logs(clickhouse, rows)

    page = await search_logs(clickhouse, LogFilter(), limit=10)
    assert page.total == 200
    assert [log["record_id"] for log in page.logs] == [f"r{i:06d}" for i in range(199, 189, -1)]

    page = await search_logs(clickhouse, LogFilter(levels=["error"], services=["payments"]), limit=500)
    expected = {r["record_id"] for r in rows if r["level"] == "ERROR" and r["service"] == "payments"}
    assert {log["record_id"] for log in page.logs} == expected and page.total == len(expected)
    assert all(log["level"] == "ERROR" and log["service"] == "payments" for log in page.logs)

    page = await search_logs(clickhouse, LogFilter(contains="payment timeout"), limit=500)
    assert {log["record_id"] for log in page.logs} == {f"r{i:06d}" for i in range(0, 200, 25)}

    page = await search_logs(clickhouse, LogFilter(trace_id="trace-7"), limit=500)
    assert sorted(log["record_id"] for log in page.logs) == ["r000007", "r000008"] and page.total == 2
    page = await search_logs(clickhouse, LogFilter(trace_id="trace-7"), limit=1)
    assert [log["record_id"] for log in page.logs] == ["r000008"] and page.total == 2 and page.next_cursor
    page = await search_logs(clickhouse, LogFilter(trace_id="trace-7"), limit=1, cursor=page.next_cursor)
    assert [log["record_id"] for log in page.logs] == ["r000007"] and page.total == 2 and not page.next_cursor

    page = await search_logs(clickhouse, LogFilter(pattern_id=42), limit=500)
    assert page.total == 20 and all(log["pattern_id"] == 42 for log in page.logs)

    start, end = rows[50]["timestamp"], rows[60]["timestamp"]
    page = await search_logs(clickhouse, LogFilter(start=start, end=end), limit=500)
    assert [log["record_id"] for log in page.logs] == [f"r{i:06d}" for i in range(59, 49, -1)]

    with pytest.raises(QueryError):
        await search_logs(clickhouse, LogFilter(levels=["LOUD"]))
    with pytest.raises(QueryError):
        await search_logs(clickhouse, LogFilter(start=end, end=start))


async def test_pagination_is_stable_while_logs_arrive(clickhouse):
    now = datetime.now(timezone.utc)
    # Many rows share a millisecond, so the record_id tie-break is what keeps pages exact.
    rows = make_rows(530, start=now - timedelta(days=5), step_ms=0, level="ERROR")
    rows += make_rows(270, start=now - timedelta(minutes=10), step_ms=1000, level="WARN")
    for index, row in enumerate(rows):
        row["record_id"] = f"id{index:05d}"
    insert_logs(clickhouse, rows)
    # The same record delivered twice (two unmerged parts) must still be seen once.
    insert_logs(clickhouse, [rows[3]])

    keys = [(r["timestamp"], r["record_id"]) for r in rows]
    expected = [record_id for _, record_id in sorted(keys, reverse=True)]
    # With a total the few matches are read in one query; without, over widening windows.
    for with_total, late_start, end in ((False, 1_000, None), (True, 100, now + timedelta(seconds=500))):
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            page = await search_logs(clickhouse, LogFilter(end=end), limit=75, cursor=cursor, with_total=with_total)
            seen.extend(log["record_id"] for log in page.logs)
            pages += 1
            if pages == 2:
                # New logs arriving (newer than every page) must not shift or repeat later pages.
                late = make_rows(30, start=now + timedelta(seconds=late_start), step_ms=10)
                insert_logs(clickhouse, [dict(row, record_id=f"late{late_start}-{i}") for i, row in enumerate(late)])
            cursor = page.next_cursor
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 800
        assert seen == expected


class CountingStore:
    """The store, counting the page reads (the queries that return whole rows)."""

    def __init__(self, store) -> None:
        self.store = store
        self.page_reads = 0

    def table(self, name: str) -> str:
        return self.store.table(name)

    async def aquery(self, sql, parameters=None):
        return await self.store.aquery(sql, parameters)

    async def aquery_dicts(self, sql, parameters=None):
        self.page_reads += 1
        return await self.store.aquery_dicts(sql, parameters)


class OverlapStore(CountingStore):
    """Tells whether a count was still running when a page read started."""

    def __init__(self, store) -> None:
        super().__init__(store)
        self.page_started = asyncio.Event()
        self.wait_for_page = False
        self.overlapped: bool | None = None

    async def aquery(self, sql, parameters=None):
        if sql.startswith(("SELECT count() FROM", "SELECT sum(logs) FROM")):  # a total
            if self.wait_for_page:
                try:
                    await asyncio.wait_for(self.page_started.wait(), 10)
                    self.overlapped = True
                except TimeoutError:
                    self.overlapped = False
        return await self.store.aquery(sql, parameters)

    async def aquery_dicts(self, sql, parameters=None):
        self.page_started.set()
        return await super().aquery_dicts(sql, parameters)


async def test_a_known_filter_is_counted_beside_its_page(clickhouse):
    now = datetime.now(timezone.utc)
    rows = make_rows(5_000, start=now - timedelta(days=2), step_ms=30_000,
                     level=lambda i: "ERROR" if i % 10 == 0 else "INFO")
    insert_logs(clickhouse, rows)
    errors = [r["record_id"] for r in reversed(rows) if r["level"] == "ERROR"]
    store = OverlapStore(clickhouse)
    first = await search_logs(store, LogFilter(levels=["ERROR"]), limit=20)  # counted first: no rate yet
    store.wait_for_page = True
    store.page_started.clear()
    second = await search_logs(store, LogFilter(levels=["ERROR"]), limit=20, cursor=first.next_cursor)
    assert store.overlapped is True
    assert [log["record_id"] for log in first.logs + second.logs] == errors[:40]
    assert first.total == second.total == len(errors)


async def test_a_stale_rate_never_costs_a_row_or_the_exact_total(clickhouse):
    from logpipe.gateway import query

    now = datetime.now(timezone.utc)
    table = clickhouse.table("logs")
    # Remembered: no errors at all. Errors arrive; the estimate must not hide them.
    query.remember_rate(table, LogFilter(levels=["ERROR"]).validated(), 0, 3600.0)
    rows = make_rows(300, start=now - timedelta(minutes=30), step_ms=1000, level="ERROR")
    insert_logs(clickhouse, rows)
    page = await search_logs(clickhouse, LogFilter(levels=["ERROR"]), limit=10)
    assert [log["record_id"] for log in page.logs] == [r["record_id"] for r in reversed(rows)][:10]
    assert page.total == 300


async def test_sized_windows_page_bursty_logs_exactly(clickhouse):
    now = datetime.now(timezone.utc)
    # Quiet for days, one burst, a trickle now: the mean rate misjudges the first window, so
    # the wider ones after it must go on exactly where it ended.
    rows = make_rows(300, start=now - timedelta(days=6), step_ms=1_500_000, level="INFO")
    rows += make_rows(250, start=now - timedelta(days=2), step_ms=3, level="ERROR")
    rows += make_rows(40, start=now - timedelta(minutes=3), step_ms=2_000, level="WARN")
    for index, row in enumerate(rows):
        row["record_id"] = f"b{index:05d}"
    insert_logs(clickhouse, rows)
    expected = [record_id for _, record_id in sorted(((r["timestamp"], r["record_id"]) for r in rows), reverse=True)]
    for with_total in (True, False):
        seen: list[str] = []
        cursor = None
        while True:
            page = await search_logs(clickhouse, LogFilter(), limit=7, cursor=cursor, with_total=with_total)
            assert page.total == (len(rows) if with_total else None)
            seen.extend(log["record_id"] for log in page.logs)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == expected
    # Logs newer than the (briefly cached) newest stored one still come first.
    fresh = make_rows(3, start=now + timedelta(seconds=30), step_ms=10, level="WARN")
    insert_logs(clickhouse, [dict(row, record_id=f"fresh{i}") for i, row in enumerate(fresh)])
    page = await search_logs(clickhouse, LogFilter(), limit=7)
    assert [log["record_id"] for log in page.logs] == ["fresh2", "fresh1", "fresh0", *expected[:4]]


async def test_a_rare_filter_is_read_in_one_window(clickhouse):
    now = datetime.now(timezone.utc)
    # A week of logs, one in fifty an error: the fixed 2-minute first window would hold none.
    rows = make_rows(10_000, start=now - timedelta(days=7), step_ms=60_000,
                     level=lambda i: "ERROR" if i % 50 == 0 else "INFO")
    insert_logs(clickhouse, rows)
    store = CountingStore(clickhouse)
    page = await search_logs(store, LogFilter(levels=["ERROR"]), limit=1)
    errors = [r["record_id"] for r in reversed(rows) if r["level"] == "ERROR"]
    assert [log["record_id"] for log in page.logs] == errors[:1] and page.total == len(errors)
    assert store.page_reads == 1


async def test_a_repeated_page_is_read_from_the_uncompressed_cache(clickhouse):
    now = datetime.now(timezone.utc)
    insert_logs(clickhouse, make_rows(2_000, start=now - timedelta(hours=1), step_ms=1_000))

    def hits() -> int:
        rows = clickhouse.query("SELECT value FROM system.events WHERE event = 'UncompressedCacheHits'")
        return int(rows[0][0]) if rows else 0

    first = await search_logs(clickhouse, LogFilter(), limit=20)
    before = hits()
    again = await search_logs(clickhouse, LogFilter(), limit=20)
    assert again.logs == first.logs and again.total == first.total
    # The second read found the blocks the first one decompressed.
    assert hits() > before


async def test_time_projection_serves_newest_first_pages_and_can_be_dropped(clickhouse):

    from logpipe.gateway.query import page_sql

    now = datetime.now(timezone.utc)
    services = lambda i: f"svc{i % 5}"  # noqa: E731
    insert_logs(clickhouse, make_rows(2_000, start=now - timedelta(hours=2), step_ms=1000, service=services))
    plain = await search_logs(clickhouse, LogFilter(), limit=50)

    clickhouse.apply_schema(ttl_days=90, time_projection=True)
    clickhouse.apply_schema(ttl_days=90, time_projection=True)  # idempotent
    # Rows stored before get the projection by a background mutation.
    def projected_rows() -> int:
        return clickhouse.query("SELECT sum(rows) FROM system.projection_parts WHERE database = {db:String} "
                                "AND table = 'logs' AND name = 'by_time' AND active", {"db": clickhouse.database})[0][0]

    wait_until(lambda: projected_rows() == 2_000, timeout=60, interval=0.05,
               message=lambda: f"{projected_rows()} of 2000 rows in the projection")
    insert_logs(clickhouse, make_rows(500, start=now - timedelta(minutes=5), step_ms=100, service=services))
    sql, params = page_sql(clickhouse.table("logs"), LogFilter(), 50, None)
    plan = "\n".join(row[0] for row in clickhouse.query("EXPLAIN " + sql, params))
    assert "ReadFromMergeTree (by_time)" in plan
    projected = await search_logs(clickhouse, LogFilter(), limit=50)
    expected = sorted(make_rows(2_000, start=now - timedelta(hours=2), step_ms=1000)
                      + make_rows(500, start=now - timedelta(minutes=5), step_ms=100),
                      key=lambda r: (r["timestamp"], r["record_id"]), reverse=True)
    assert [log["record_id"] for log in projected.logs] == [r["record_id"] for r in expected[:50]]
    assert projected.total == 2_500 and plain.total == 2_000

    clickhouse.apply_schema(ttl_days=90, time_projection=False)
    assert clickhouse.query("SELECT count() FROM system.projections WHERE database = {db:String}",
                            {"db": clickhouse.database}) == [(0,)]
    assert (await search_logs(clickhouse, LogFilter(), limit=50)).logs == projected.logs


async def test_http_logs_endpoint(gateway, clickhouse):
    now = datetime.now(timezone.utc)
    insert_logs(clickhouse, make_rows(40, start=now - timedelta(minutes=5), step_ms=100,
                                      level=lambda i: "ERROR" if i % 4 == 0 else "INFO",
                                      service="checkout", http_status=lambda i: 500 if i % 4 == 0 else 200))
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read")) as client:
        response = await client.get("/api/logs", params={"level": "ERROR", "service": "checkout", "limit": 4})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == 10 and len(body["logs"]) == 4 and body["next_cursor"]
        first = body["logs"][0]
        assert first["level"] == "ERROR" and first["service"] == "checkout" and first["http_status"] == 500
        assert first["timestamp"].endswith("Z")
        collected = [log["record_id"] for log in body["logs"]]
        cursor = body["next_cursor"]
        while cursor:
            body = (await client.get("/api/logs", params={"level": "ERROR", "service": "checkout",
                                                          "limit": 4, "cursor": cursor})).json()
            collected += [log["record_id"] for log in body["logs"]]
            cursor = body["next_cursor"]
        assert collected == [f"r{i:06d}" for i in range(36, -1, -4)]

        response = await client.get("/api/logs", params={"since": "2m", "total": "false"})
        assert response.status_code == 200 and response.json()["total"] is None
        # Ranges beyond what a datetime holds are clamped, not a server error.
        response = await client.get("/api/logs", params={"since": "999999d", "service": "checkout"})
        assert response.status_code == 200 and response.json()["total"] == 40
        response = await client.get("/api/reports", params={"date_from": "0001-01-01", "date_to": "9999-12-31"})
        assert response.status_code == 200

        for params, fragment in (({"cursor": "garbage"}, "cursor"), ({"level": "LOUD"}, "level"),
                                 ({"since": "yesterday"}, "since"), ({"limit": 5000}, "limit")):
            response = await client.get("/api/logs", params=params)
            assert response.status_code == 400, (params, response.text)
            assert fragment in response.json()["detail"]


def _matching(rows, log_filter: LogFilter) -> int:
    return sum(1 for row in rows
               if (not log_filter.levels or row["level"] in log_filter.levels)
               and (not log_filter.services or row["service"] in log_filter.services)
               and (log_filter.pattern_id is None or row["pattern_id"] == log_filter.pattern_id)
               and (not log_filter.pipeline or row["pipeline"] == log_filter.pipeline))


def _hour(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


async def test_whole_time_totals_come_from_the_hourly_counts_and_match_the_logs(clickhouse):
    from logpipe.gateway import query

    now = datetime.now(timezone.utc)
    rows = make_rows(3_000, start=now - timedelta(hours=30), step_ms=36_000,
                     level=lambda i: ("ERROR", "WARN", "INFO")[i % 3], service=lambda i: ("api", "db")[i % 2],
                     pattern_id=lambda i: i % 5, pipeline=lambda i: "team-a" if i % 7 == 0 else "default")
    for part in range(3):  # several inserts: several parts, several blocks counted by the view
        insert_logs(clickhouse, rows[part * 1000:(part + 1) * 1000])
    filters = [LogFilter(levels=["ERROR"]), LogFilter(services=["db"]), LogFilter(services=["api"], levels=["WARN", "ERROR"]),
               LogFilter(pattern_id=3), LogFilter(pipeline="team-a"), LogFilter(levels=["ERROR"], pipeline="team-a")]
    for log_filter in filters:
        assert (await search_logs(clickhouse, log_filter, limit=5)).total == _matching(rows, log_filter) > 0

    # They come from the hourly counts: a count there that no log backs shows in exactly those totals.
    hourly = ["hour", "pipeline", "service", "level", "pattern_id", "logs"]
    clickhouse.insert_rows("logs_hourly", [[_hour(rows[-1]["timestamp"]), "default", "db", "ERROR", 3, 1000]], hourly)
    db = _matching(rows, LogFilter(services=["db"]))
    assert (await search_logs(clickhouse, LogFilter(services=["db"]), limit=5)).total == db + 1000
    assert (await search_logs(clickhouse, LogFilter(services=["api"]), limit=5)).total == db
    # A time range, a text or no filter at all is counted in `logs` itself.
    assert (await search_logs(clickhouse, LogFilter(services=["db"], start=now - timedelta(days=2)), limit=5)).total == db
    assert (await search_logs(clickhouse, LogFilter(services=["db"], contains="event"), limit=5)).total == db
    assert (await search_logs(clickhouse, LogFilter(), limit=5)).total == len(rows)
    # Hours before the oldest stored log (the counts outlive the logs by a day) are left out.
    clickhouse.insert_rows("logs_hourly", [[_hour(rows[0]["timestamp"]) - timedelta(hours=1), "default", "db",
                                            "ERROR", 3, 50]], hourly)
    assert (await search_logs(clickhouse, LogFilter(services=["db"]), limit=5)).total == db + 1000
    assert query.counts_hourly(LogFilter(services=["db"]).validated(), None, now) is False  # no schema_state row
    # A hand-edited state row that is not an hour is not trusted: totals fall back to `logs`.
    clickhouse.command(f"INSERT INTO {clickhouse.table('schema_state')} (name, value) VALUES ('logs_hourly_since', 'x')")
    query._hourly_since.clear()
    assert (await search_logs(clickhouse, LogFilter(services=["db"]), limit=5)).total == db


async def test_a_table_stored_before_the_hourly_counts_is_counted_in_logs_until_they_hold_every_hour(clickhouse):
    from logpipe.gateway import query

    db = clickhouse.database
    # As an earlier version left it: stored logs, and no hourly counts.
    clickhouse.command(f"DROP VIEW {db}.logs_hourly_mv")
    clickhouse.command(f"DROP TABLE {db}.logs_hourly SYNC")
    clickhouse.command(f"TRUNCATE TABLE {db}.schema_state")
    now = datetime.now(timezone.utc)
    rows = make_rows(200, start=now - timedelta(hours=3), step_ms=60_000, level="ERROR")
    rows.append(dict(make_rows(1, start=now + timedelta(hours=5))[0], record_id="future", level="ERROR"))
    insert_logs(clickhouse, rows)

    before = int(_hour(datetime.now(timezone.utc) + timedelta(hours=5)).timestamp()) + 3600
    clickhouse.apply_schema(90)
    since = int(clickhouse.query(f"SELECT value FROM {db}.schema_state FINAL WHERE name = 'logs_hourly_since'")[0][0])
    # After both now and the newest stored row (here 5 h ahead): every row of those hours comes later.
    assert since in (before, before + 3600)
    assert clickhouse.query(f"SELECT sum(logs) FROM {db}.logs_hourly") == [(0,)]  # the view counts new rows only
    page = await search_logs(clickhouse, LogFilter(levels=["ERROR"]), limit=5)
    assert page.total == 201
    insert_logs(clickhouse, [dict(row, record_id=f"new{i}") for i, row in enumerate(make_rows(10, level="ERROR"))])
    assert (await search_logs(clickhouse, LogFilter(levels=["ERROR"]), limit=5)).total == 211
    assert clickhouse.query(f"SELECT sum(logs) FROM {db}.logs_hourly") == [(10,)]
    # A later start keeps the recorded hour.
    clickhouse.apply_schema(90)
    assert clickhouse.query(f"SELECT value FROM {db}.schema_state FINAL WHERE name = 'logs_hourly_since'") == [
        (str(since),)]
    oldest = rows[0]["timestamp"]
    assert not query.counts_hourly(LogFilter(levels=["ERROR"]).validated(), since, oldest)
    assert query.counts_hourly(LogFilter(levels=["ERROR"]).validated(), 0, oldest)


def test_a_time_bound_limits_a_read_to_the_hours_of_the_sort_key(clickhouse):
    """ClickHouse does not carry `timestamp >= t` over to the key's `toStartOfHour(timestamp)`
    by itself: without the hour bound, a window of minutes read every granule of its day."""
    from logpipe.gateway.query import page_sql

    day = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    day_ms = int(day.timestamp() * 1000)
    # Six hours of one day, 20,000 rows an hour: about 15 granules, 2-3 an hour.
    clickhouse.command(f"INSERT INTO {clickhouse.table('logs')} (timestamp, service, level, message, record_id) "
                       f"SELECT fromUnixTimestamp64Milli(toInt64({day_ms} + number * 180), 'UTC'), "
                       "['api', 'db', 'web'][number % 3 + 1], 'INFO', 'm', toString(number) FROM numbers(120000)")
    clickhouse.command(f"OPTIMIZE TABLE {clickhouse.table('logs')} FINAL")
    window = (day + timedelta(hours=5, minutes=50), None)
    sql, params = page_sql(clickhouse.table("logs"), LogFilter().validated(), 100, None, window)
    plan = [row[0] for row in clickhouse.query("EXPLAIN indexes = 1 " + sql, params)]
    key = next(index for index, line in enumerate(plan) if line.rstrip().endswith("PrimaryKey"))
    selected, total = next(line for line in plan[key:] if "Granules:" in line).split(":")[1].strip().split("/")
    assert int(total) >= 14 and int(selected) <= 4, plan
    assert len(clickhouse.query(sql, params)) == 100
