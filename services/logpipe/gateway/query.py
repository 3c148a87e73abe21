"""The ClickHouse log query layer: filters, keyset pagination, totals, rates.

Shared here (not in a service) because the gateway, the analyzer and tools all read logs.
SQL is built by pure functions (unit-tested without a database) and run by `search_logs`
and friends against a `ClickHouseStore`.

Pagination is keyset on (timestamp DESC, record_id DESC): a cursor names the last row
seen, so new logs arriving never shift or repeat a page. The newest-first scan runs over
widening time windows, so "the latest 100 logs" reads minutes of data, not months; with a
total, the first window is sized from the filter's rate so that it usually holds the page.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from logpipe.core.record import (
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    RECORD_FIELDS,
    Level,
    format_timestamp,
    normalize_level,
    to_utc_ms,
)
from logpipe.stores.clickhouse import hourly_since_sql

LOG_COLUMNS = (*RECORD_FIELDS, "record_id", "attributes", "pattern_id", "pipeline")
# Widths of the successive windows of a newest-first scan; the last one is unbounded.
WINDOW_STEPS = (timedelta(minutes=2), timedelta(minutes=30), timedelta(hours=6),
                timedelta(days=2), timedelta(days=16), timedelta(days=128))
MAX_CONTAINS_LENGTH = 500
# With at most this many matches per wanted row, a page is read in one query, not windows.
SELECTIVE_TOTAL_PER_ROW = 50
# With a total, the first window is sized to hold this many times the wanted rows at the
# filter's average rate, and each further one is this many times wider: logs come in bursts.
WINDOW_MARGIN = 4
WINDOW_GROWTH = 8
STORED_RANGE_TTL_S = 10.0
MAX_FILTER_VALUES = 50
# Per table: (monotonic time fetched, (oldest, newest)); see stored_range.
_stored_ranges: dict[str, tuple[float, tuple[datetime | None, datetime | None]]] = {}
# Per hourly table: (monotonic time fetched, the first hour it holds in full); see hourly_since.
_hourly_since: dict[str, tuple[float, int | None]] = {}
# A filter's rate (matches per second of its range), remembered from its last exact total so
# the next page of it, or a refresh, can size its windows while it is counted anew.
FILTER_RATE_TTL_S = 30.0
MAX_FILTER_RATES = 1000
_filter_rates: dict[tuple, tuple[float, float]] = {}


class QueryError(ValueError):
    """A filter or cursor that cannot be answered; the message says why (HTTP 400)."""


@dataclass
class LogFilter:
    levels: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive
    contains: str | None = None  # case-insensitive substring of the message
    trace_id: str | None = None
    pattern_id: int | None = None
    pipeline: str | None = None

    def validated(self) -> "LogFilter":
        levels = []
        for value in self.levels:
            level = _level(value)
            if level is None:
                raise QueryError(f"unknown level {value!r}; use one of {', '.join(Level)}")
            levels.append(level.value)
        if len(levels) > MAX_FILTER_VALUES or len(self.services) > MAX_FILTER_VALUES:
            raise QueryError(f"at most {MAX_FILTER_VALUES} values per filter")
        # Stored times lie in 1970..2200, so bounds outside it are clamped rather than refused.
        start = min(max(to_utc_ms(self.start), MIN_TIMESTAMP), MAX_TIMESTAMP) if self.start else None
        end = min(max(to_utc_ms(self.end), MIN_TIMESTAMP), MAX_TIMESTAMP) if self.end else None
        if start and end and start >= end:
            raise QueryError("start must be before end")
        if self.contains is not None and len(self.contains) > MAX_CONTAINS_LENGTH:
            raise QueryError(f"contains is longer than {MAX_CONTAINS_LENGTH} characters")
        if self.pattern_id is not None and not 0 <= self.pattern_id < 2**64:
            raise QueryError("pattern_id must be an unsigned 64-bit integer")
        return LogFilter(sorted(set(levels)), sorted({s for s in self.services if s}), start, end,
                         self.contains or None, self.trace_id or None, self.pattern_id, self.pipeline or None)


def _level(value: str) -> Level | None:
    # normalize_level calls int() on str.isdigit() text, which is also true of digits such as
    # '³' that int() refuses: such a value is no level, not a server error.
    try:
        return normalize_level(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class Cursor:
    timestamp_ms: int
    record_id: str

    def encode(self) -> str:
        raw = orjson.dumps([self.timestamp_ms, self.record_id])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> "Cursor":
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            timestamp_ms, record_id = orjson.loads(raw)
        except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError) as exc:
            raise QueryError("invalid cursor: pass back the next_cursor of a previous page") from exc
        if not isinstance(timestamp_ms, int) or isinstance(timestamp_ms, bool) or not isinstance(record_id, str):
            raise QueryError("invalid cursor: pass back the next_cursor of a previous page")
        if not 0 <= timestamp_ms < 7_258_118_400_000:
            raise QueryError("invalid cursor: timestamp out of range")
        return cls(timestamp_ms, record_id)


def _ms(value: datetime) -> int:
    value = to_utc_ms(value)
    return int(value.timestamp() * 1000)


# The sort key's first column (sql/clickhouse/001_logs.sql), spelled as the key spells it.
HOUR_KEY = "toStartOfHour(timestamp)"
_HOUR_OPERATORS = {">=": ">=", "<": "<=", "<=": "<="}


def time_bound(operator: str, param: str) -> list[str]:
    """`timestamp <operator> {param}`, and the same bound on the hour the sort key starts with.

    ClickHouse prunes partitions from a plain timestamp bound, but not primary-key ranges:
    its key analysis does not carry `timestamp >= t` over to `toStartOfHour(timestamp)`, so
    a window of minutes read every granule of its day (EXPLAIN indexes=1 shows it). The
    hour bound is implied by the plain one, so it never changes which rows match.
    """
    value = f"fromUnixTimestamp64Milli({{{param}:Int64}}, 'UTC')"
    return [f"timestamp {operator} {value}", f"{HOUR_KEY} {_HOUR_OPERATORS[operator]} toStartOfHour({value})"]


def where_clause(log_filter: LogFilter) -> tuple[list[str], dict[str, Any]]:
    """Conditions and parameters for a validated filter (server-side bound, never interpolated)."""
    conditions: list[str] = []
    params: dict[str, Any] = {}
    for column, values in (("service", log_filter.services), ("level", log_filter.levels)):
        if values:
            names = []
            for index, value in enumerate(values):
                params[f"{column}_{index}"] = value
                names.append(f"{{{column}_{index}:String}}")
            conditions.append(f"{column} IN ({', '.join(names)})")
    if log_filter.start:
        params["start_ms"] = _ms(log_filter.start)
        conditions.extend(time_bound(">=", "start_ms"))
    if log_filter.end:
        params["end_ms"] = _ms(log_filter.end)
        conditions.extend(time_bound("<", "end_ms"))
    if log_filter.contains:
        params["contains"] = log_filter.contains
        conditions.append("positionCaseInsensitiveUTF8(message, {contains:String}) > 0")
    if log_filter.trace_id:
        params["trace_id"] = log_filter.trace_id
        conditions.append("trace_id = {trace_id:String}")
    if log_filter.pattern_id is not None:
        params["pattern_id"] = log_filter.pattern_id
        conditions.append("pattern_id = {pattern_id:UInt64}")
    if log_filter.pipeline:
        params["pipeline"] = log_filter.pipeline
        conditions.append("pipeline = {pipeline:String}")
    return conditions, params


def page_sql(table: str, log_filter: LogFilter, limit: int, cursor: Cursor | None,
             window: tuple[datetime | None, datetime | None] = (None, None)) -> tuple[str, dict[str, Any]]:
    """One page, newest first, after `cursor`, inside `window` = [low, high)."""
    conditions, params = where_clause(log_filter)
    low, high = window
    if low is not None:
        params["window_low_ms"] = _ms(low)
        conditions.extend(time_bound(">=", "window_low_ms"))
    if high is not None:
        params["window_high_ms"] = _ms(high)
        conditions.extend(time_bound("<", "window_high_ms"))
    if cursor is not None:
        params["cursor_ms"] = cursor.timestamp_ms
        params["cursor_id"] = cursor.record_id
        # The plain bound lets ClickHouse prune parts and granules; the tuple makes it exact.
        conditions.extend(time_bound("<=", "cursor_ms"))
        conditions.append("(timestamp, record_id) < (fromUnixTimestamp64Milli({cursor_ms:Int64}, 'UTC'), "
                          "{cursor_id:String})")
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    params["limit"] = int(limit)
    sql = (f"SELECT {', '.join(LOG_COLUMNS)} FROM {table} {where} "
           "ORDER BY timestamp DESC, record_id DESC LIMIT {limit:UInt32}" + plan_hint(log_filter))
    return sql, params


def plan_hint(log_filter: LogFilter) -> str:
    """Keep ClickHouse on the table's own sort key and skip indexes where they fit best, and
    let it keep decompressed blocks for the next reader.

    Where a time-ordered projection of `logs` exists (docs/api.md), ClickHouse prefers it for
    newest-first reads; for a service (in the key right after the hour), a trace or a pattern
    (skip indexes the projection lacks) the table itself reads far less.

    A page reads the tail granules of the (service, level) runs of the hours it covers, and
    decompressing them is most of its cost; the next page or refresh reads the same granules.
    The uncompressed cache (sized by the server, or CLICKHOUSE_UNCOMPRESSED_CACHE_MB embedded)
    keeps them; ClickHouse bypasses it by itself for reads of over
    `merge_tree_max_rows_to_use_cache` rows.
    """
    settings = ["use_uncompressed_cache = 1"]
    if log_filter.services or log_filter.trace_id or log_filter.pattern_id is not None:
        settings.append("optimize_use_projections = 0")
    return " SETTINGS " + ", ".join(settings)


def count_sql(table: str, log_filter: LogFilter) -> tuple[str, dict[str, Any]]:
    conditions, params = where_clause(log_filter)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"SELECT count() FROM {table} {where}" + plan_hint(log_filter), params


def hourly_count_sql(hourly_table: str, log_filter: LogFilter, oldest: datetime) -> tuple[str, dict[str, Any]]:
    """A filter's total from the hourly counts (sql/clickhouse/003_logs_hourly.sql), from the
    oldest stored hour on: they are kept a day longer than the logs they count."""
    conditions, params = where_clause(log_filter)
    params["oldest_s"] = int(to_utc_ms(oldest).timestamp())
    conditions.append("hour >= toStartOfHour(toDateTime({oldest_s:Int64}, 'UTC'))")
    return f"SELECT sum(logs) FROM {hourly_table} WHERE {' AND '.join(conditions)}", params


def counts_hourly(log_filter: LogFilter, since: int | None, oldest: datetime | None) -> bool:
    """Whether the hourly counts answer a validated filter's total exactly.

    They hold the columns of the service, level, pattern and pipeline filters, and whole
    hours: a filter with a time range is counted in `logs`, where the hour-first sort key
    already limits it to the range's hours (splitting a range into whole hours and two
    edges cost more than it saved). With no filter at all, `count()` reads part metadata.
    `since`: the first hour they hold in full (schema_state); before it, `logs` counts.
    """
    if since is None or oldest is None or not _hourly_filter(log_filter):
        return False
    oldest_hour = int(to_utc_ms(oldest).timestamp()) // 3600 * 3600
    return since <= oldest_hour


def _hourly_filter(log_filter: LogFilter) -> bool:
    """A filter only by columns the hourly counts hold, over all stored time."""
    if log_filter.start or log_filter.end or log_filter.contains or log_filter.trace_id:
        return False
    return bool(log_filter.levels or log_filter.services or log_filter.pattern_id is not None or log_filter.pipeline)


async def hourly_since(store) -> int | None:
    """The first hour the hourly counts hold in full (ClickHouseStore._ensure_hourly_since),
    cached like the stored range; None where the schema predates them."""
    key = store.table("logs_hourly")
    clock = time.monotonic()
    cached = _hourly_since.get(key)
    if cached is not None and clock - cached[0] < STORED_RANGE_TTL_S:
        return cached[1]
    rows = await store.aquery(*hourly_since_sql(store.table("schema_state")))
    # Written by apply_schema only; anything else there (a hand edit) means: count in `logs`.
    since = int(rows[0][0]) if rows and str(rows[0][0]).isdigit() else None
    _hourly_since[key] = (clock, since)
    return since


async def total_sql(store, log_filter: LogFilter, oldest: datetime | None) -> tuple[str, dict[str, Any]]:
    """The query counting a validated filter's matches: the hourly counts where they answer it."""
    # The filter first: a text, trace or range total never needs the recorded hour.
    if _hourly_filter(log_filter) and counts_hourly(log_filter, await hourly_since(store), oldest):
        return hourly_count_sql(store.table("logs_hourly"), log_filter, oldest)
    return count_sql(store.table("logs"), log_filter)


async def stored_range(store, table: str) -> tuple[datetime | None, datetime | None]:
    """The oldest and newest stored timestamps, from part metadata (no scan), cached briefly.

    They only size and anchor the scan windows, whose first is open upwards, and never decide
    which rows match: a stale range costs at most another window, never a row.
    """
    clock = time.monotonic()
    cached = _stored_ranges.get(table)
    if cached is not None and clock - cached[0] < STORED_RANGE_TTL_S:
        return cached[1]
    # min/max of the partition key's column come from the implicit minmax projection.
    rows = await store.aquery(f"SELECT count(), toUnixTimestamp64Milli(min(timestamp)), "
                              f"toUnixTimestamp64Milli(max(timestamp)) FROM {table} "
                              "SETTINGS optimize_use_projections = 1")
    count, oldest_ms, newest_ms = rows[0]
    found = (None, None)
    if count:
        found = (datetime.fromtimestamp(oldest_ms / 1000, tz=timezone.utc),
                 datetime.fromtimestamp(newest_ms / 1000, tz=timezone.utc))
    _stored_ranges[table] = (clock, found)
    return found


def scan_windows(log_filter: LogFilter, cursor: Cursor | None, now: datetime,
                 first_step: timedelta | None = None,
                 newest: datetime | None = None) -> list[tuple[datetime | None, datetime | None]]:
    """Disjoint [low, high) windows, newest first, that together cover the filter's range.

    Their widths are WINDOW_STEPS, or with `first_step` that and WINDOW_GROWTH times more each,
    counted back from `newest` (the newest stored log) where that is older than now: the
    first window stays open upwards, so a log stored since is still seen.
    """
    high: datetime | None = log_filter.end
    if cursor is not None:
        cursor_time = datetime.fromtimestamp(cursor.timestamp_ms / 1000, tz=timezone.utc)
        # The cursor row itself is excluded by the tuple condition; the window must include its ms.
        cursor_high = cursor_time + timedelta(milliseconds=1)
        high = cursor_high if high is None else min(high, cursor_high)
    low_bound = log_filter.start
    anchor = high or now
    if newest is not None:
        anchor = min(anchor, newest + timedelta(milliseconds=1))
    steps = WINDOW_STEPS if first_step is None else _widening(first_step)
    windows: list[tuple[datetime | None, datetime | None]] = []
    upper = high
    for step in steps:
        lower = anchor - step
        if low_bound is not None and lower <= low_bound:
            break
        if upper is not None and lower >= upper:
            continue
        windows.append((lower, upper))
        upper = lower
    windows.append((low_bound, upper))
    return windows


def _widening(first_step: timedelta) -> tuple[timedelta, ...]:
    steps = []
    step = max(first_step, timedelta(seconds=1))
    while step < WINDOW_STEPS[-1]:
        steps.append(step)
        step *= WINDOW_GROWTH
    return tuple(steps)


def _counted_seconds(log_filter: LogFilter, oldest: datetime | None, newest: datetime | None,
                     now: datetime) -> float | None:
    """The seconds of stored time a filter's total covers (None: nothing stored)."""
    low = max(filter(None, (log_filter.start, oldest)), default=None)
    high = min(filter(None, (log_filter.end, newest, now)))
    if low is None or high <= low:
        return None
    return (high - low).total_seconds()


def first_window_width(log_filter: LogFilter, total: int, wanted: int, oldest: datetime | None,
                       newest: datetime | None, now: datetime) -> timedelta | None:
    """A width that holds about WINDOW_MARGIN times `wanted` matches at the filter's mean rate.

    The fixed WINDOW_STEPS suit "everything, newest first", but a rare level or a pattern
    needs far wider windows, and every window read decompresses the tail granules of the
    (service, level) runs of its hours again: one well-sized window is one such read.
    None where no rate can be told (no total, or no stored range); never below WINDOW_STEPS[0].
    """
    seconds = _counted_seconds(log_filter, oldest, newest, now)
    if seconds is None or total < 1:
        return None
    # Never narrower than the fixed first step: below it a read costs the same, and misses more.
    return max(timedelta(seconds=seconds * min(1.0, WINDOW_MARGIN * wanted / total)), WINDOW_STEPS[0])


def format_row(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["timestamp"] = format_timestamp(row["timestamp"])
    out["attributes"] = dict(row.get("attributes") or {})
    out["pattern_id"] = int(row.get("pattern_id") or 0)
    out["http_status"] = int(row["http_status"]) if row.get("http_status") is not None else None
    out["duration_ms"] = float(row["duration_ms"]) if row.get("duration_ms") is not None else None
    return out


@dataclass
class LogPage:
    logs: list[dict[str, Any]]
    next_cursor: str | None
    total: int | None


def _rate_key(table: str, log_filter: LogFilter) -> tuple:
    """A filter apart from its time range: the part a rate belongs to."""
    return (table, tuple(log_filter.levels), tuple(log_filter.services), log_filter.contains,
            log_filter.trace_id, log_filter.pattern_id, log_filter.pipeline)


def remember_rate(table: str, log_filter: LogFilter, total: int, seconds: float | None) -> None:
    if seconds is None:
        return
    if len(_filter_rates) >= MAX_FILTER_RATES:
        del _filter_rates[next(iter(_filter_rates))]
    _filter_rates[_rate_key(table, log_filter)] = (time.monotonic(), total / max(seconds, 1e-3))


def estimated_total(table: str, log_filter: LogFilter, seconds: float | None) -> int | None:
    """The filter's total over `seconds` at its remembered rate, if one is fresh."""
    remembered = _filter_rates.get(_rate_key(table, log_filter))
    if remembered is None or seconds is None or time.monotonic() - remembered[0] > FILTER_RATE_TTL_S:
        return None
    return round(remembered[1] * seconds)


async def search_logs(store, log_filter: LogFilter, limit: int = 100, cursor: str | None = None,
                      with_total: bool = True, now: datetime | None = None) -> LogPage:
    """A page of logs, newest first, with the cursor of the next page and the filter's total.

    The total is always counted exactly. When the filter's rate is known from a recent total
    (a next page, a refresh), the count runs beside the page reads on another ClickHouse
    handle and the windows are sized from that rate; otherwise the count comes first.
    """
    if limit < 1:
        raise QueryError("limit must be at least 1")
    log_filter = log_filter.validated()
    after = Cursor.decode(cursor) if cursor else None
    table = store.table("logs")
    total = None
    wanted = limit + 1  # one extra row tells whether a next page exists
    now = now or datetime.now(timezone.utc)
    # A trace holds a handful of logs: read them all at once, and their number is the total.
    whole_trace = bool(log_filter.trace_id) and after is None
    oldest = newest = seconds = None
    counting: asyncio.Future | None = None
    planned = None  # the total the windows are planned with: counted, or estimated
    if with_total and not whole_trace:
        oldest, newest = await stored_range(store, table)
        seconds = _counted_seconds(log_filter, oldest, newest, now)
        sql, params = await total_sql(store, log_filter, oldest)
        planned = estimated_total(table, log_filter, seconds)
        if planned is None:
            total = planned = int((await store.aquery(sql, params))[0][0])
        else:
            counting = asyncio.ensure_future(store.aquery(sql, params))
    rows: list[dict[str, Any]] = []
    try:
        if total == 0:
            windows = []
        elif whole_trace or (planned is not None and planned <= SELECTIVE_TOTAL_PER_ROW * wanted):
            # Few matches in all: they are spread over the whole range anyway, so one read
            # of the range beats a series of mostly empty windows. (An estimate of none reads
            # the range too: logs may have come since.)
            windows = [(None, None)]
        elif planned is None:
            windows = scan_windows(log_filter, after, now)
        else:
            first_step = first_window_width(log_filter, planned, wanted, oldest, newest, now)
            windows = scan_windows(log_filter, after, now, first_step, newest)
        for window in windows:
            sql, params = page_sql(table, log_filter, wanted - len(rows), after, window)
            rows.extend(await store.aquery_dicts(sql, params))
            if len(rows) >= wanted:
                break
        if counting is not None:
            total = int((await counting)[0][0])
    finally:
        if counting is not None and not counting.done():
            counting.cancel()
    if total is not None:
        remember_rate(table, log_filter, total, seconds)
    has_more = len(rows) > limit
    rows = rows[:limit]
    # A record delivered twice can sit in two unmerged parts until ClickHouse folds it;
    # the copies are adjacent in this order, so the reader sees it once.
    logs: list[dict[str, Any]] = []
    last_key = None
    for row in rows:
        key = (row["timestamp"], row["record_id"])
        if key == last_key:
            continue
        last_key = key
        logs.append(format_row(row))
    if with_total and whole_trace:
        if has_more:
            sql, params = count_sql(table, log_filter)
            total = int((await store.aquery(sql, params))[0][0])
        else:
            total = len(logs)
    next_cursor = None
    if has_more and rows:
        last = rows[-1]
        next_cursor = Cursor(_ms(last["timestamp"]), last["record_id"]).encode()
    return LogPage(logs, next_cursor, total)


def rates_sql(table: str, pipeline: str | None) -> tuple[str, dict[str, Any]]:
    """Logs and errors in the last 1 and 5 minutes, and the newest timestamp."""
    params: dict[str, Any] = {}
    extra = ""
    if pipeline:
        params["pipeline"] = pipeline
        extra = " AND pipeline = {pipeline:String}"
    sql = (
        "SELECT countIf(timestamp >= now64(3) - INTERVAL 1 MINUTE) AS logs_1m, "
        "countIf(timestamp >= now64(3) - INTERVAL 1 MINUTE AND level IN ('ERROR', 'FATAL')) AS errors_1m, "
        "count() AS logs_5m, countIf(level IN ('ERROR', 'FATAL')) AS errors_5m, "
        "max(timestamp) AS newest "
        f"FROM {table} WHERE timestamp >= now64(3) - INTERVAL 5 MINUTE{extra}"
    )
    return sql, params


async def log_rates(store, pipeline: str | None = None) -> dict[str, Any]:
    sql, params = rates_sql(store.table("logs"), pipeline)
    rows = await store.aquery_dicts(sql, params)
    row = rows[0] if rows else {}
    logs_1m, errors_1m = int(row.get("logs_1m") or 0), int(row.get("errors_1m") or 0)
    logs_5m, errors_5m = int(row.get("logs_5m") or 0), int(row.get("errors_5m") or 0)
    return {
        "logs_per_second_1m": round(logs_1m / 60, 3),
        "logs_per_second_5m": round(logs_5m / 300, 3),
        "errors_per_second_1m": round(errors_1m / 60, 3),
        "error_ratio_5m": round(errors_5m / logs_5m, 4) if logs_5m else 0.0,
        "logs_last_5m": logs_5m,
        "errors_last_5m": errors_5m,
    }


async def storage_used(store) -> dict[str, Any]:
    """Bytes on disk and rows of every logpipe table in the store's database."""
    rows = await store.aquery_dicts(
        "SELECT table, sum(bytes_on_disk) AS bytes, sum(data_uncompressed_bytes) AS uncompressed, "
        "sum(rows) AS rows FROM system.parts WHERE active AND database = {database:String} GROUP BY table",
        {"database": store.database})
    tables = {row["table"]: {"bytes_on_disk": int(row["bytes"]), "uncompressed_bytes": int(row["uncompressed"]),
                             "rows": int(row["rows"])} for row in rows}
    return {"bytes_on_disk": sum(t["bytes_on_disk"] for t in tables.values()),
            "logs_rows": tables.get("logs", {}).get("rows", 0), "tables": tables}

