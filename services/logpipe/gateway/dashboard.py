"""What the dashboard draws over ClickHouse: the log histogram and per-service series.

The histogram answers with exactly the filter of GET /api/logs (`query.where_clause`), so
its bucket totals add up to that endpoint's `total` for the same filter and range. Buckets
are aligned to multiples of their width since the epoch, so the same range asked twice (or
a range scrolled by a step) lands on the same bucket edges and a chart does not jitter.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from logpipe.core.record import Level, format_timestamp, to_utc_ms
from logpipe.gateway.query import LogFilter, QueryError, plan_hint, where_clause

MAX_BUCKETS = 500
DEFAULT_RANGE = timedelta(hours=1)
# Bucket widths a person reads at a glance; past a day, whole days that double.
NICE_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
ERROR_LEVELS = ("ERROR", "FATAL")
LEVEL_ORDER = {level.value: index for index, level in enumerate(Level)}
# A service is quiet when nothing came from it in the last quarter of the window.
QUIET_FRACTION = 4


def _ms(moment: datetime) -> int:
    return int(to_utc_ms(moment).timestamp() * 1000)


def _from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=timezone.utc)


def bucket_count(start_ms: int, end_ms: int, step_ms: int) -> int:
    """Aligned buckets of `step_ms` needed to cover [start_ms, end_ms)."""
    return -(-end_ms // step_ms) - start_ms // step_ms


def histogram_step(start_ms: int, end_ms: int, buckets: int) -> int:
    """The narrowest nice width (ms) whose aligned buckets cover [start, end) in at most `buckets`."""
    if not 1 <= buckets <= MAX_BUCKETS:
        raise QueryError(f"buckets must be between 1 and {MAX_BUCKETS}")
    for step_s in NICE_STEPS_S:
        if bucket_count(start_ms, end_ms, step_s * 1000) <= buckets:
            return step_s * 1000
    step_ms = 2 * 86_400_000
    # Stored time spans 1970..2200, so doubling ends within about 17 rounds.
    while bucket_count(start_ms, end_ms, step_ms) > buckets:
        step_ms *= 2
    return step_ms


def histogram_range(start: datetime | None, end: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """The filter's range with the dashboard's defaults: the last hour, or an hour either side."""
    if end is None:
        end = now if start is None or start < now else start + DEFAULT_RANGE
    if start is None:
        start = end - DEFAULT_RANGE
    return start, end


def histogram_sql(table: str, log_filter: LogFilter, step_ms: int) -> tuple[str, dict[str, Any]]:
    conditions, params = where_clause(log_filter)
    params["step_ms"] = step_ms
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = (f"SELECT intDiv(toUnixTimestamp64Milli(timestamp), {{step_ms:Int64}}) AS slot, level, count() AS logs "
           f"FROM {table} {where} GROUP BY slot, level" + plan_hint(log_filter))
    return sql, params


def build_histogram(rows: list[tuple[int, str, int]], start_ms: int, end_ms: int, step_ms: int,
                    wanted_levels: list[str]) -> dict[str, Any]:
    """Rows of (slot, level, count) into contiguous buckets, every level in every bucket."""
    first = start_ms // step_ms
    count = bucket_count(start_ms, end_ms, step_ms)
    levels = sorted({level for _, level, _ in rows} | set(wanted_levels),
                    key=lambda name: (LEVEL_ORDER.get(name, len(LEVEL_ORDER)), name))
    buckets = [{"start": format_timestamp(_from_ms((first + index) * step_ms)), "total": 0,
                "counts": dict.fromkeys(levels, 0)} for index in range(count)]
    for slot, level, logs in rows:
        index = int(slot) - first
        if not 0 <= index < count:
            # The filter keeps rows inside [start, end), which the buckets cover; this is a bug.
            raise RuntimeError(f"histogram slot {slot} outside buckets {first}..{first + count - 1}")
        bucket = buckets[index]
        bucket["counts"][level] += int(logs)
        bucket["total"] += int(logs)
    return {"start": format_timestamp(_from_ms(start_ms)), "end": format_timestamp(_from_ms(end_ms)),
            "step_seconds": step_ms // 1000, "levels": levels,
            "total": sum(bucket["total"] for bucket in buckets), "buckets": buckets}


async def log_histogram(store, log_filter: LogFilter, buckets: int) -> dict[str, Any]:
    """Counts per aligned time bucket and level of a filter with a start and an end."""
    log_filter = log_filter.validated()
    if log_filter.start is None or log_filter.end is None:
        raise QueryError("a histogram needs a start and an end")
    start_ms, end_ms = _ms(log_filter.start), _ms(log_filter.end)
    step_ms = histogram_step(start_ms, end_ms, buckets)
    sql, params = histogram_sql(store.table("logs"), log_filter, step_ms)
    rows = await store.aquery(sql, params)
    return build_histogram(rows, start_ms, end_ms, step_ms, log_filter.levels)


def equal_slot(column_ms: str, start_param: str, span_ms: int, slices: int) -> str:
    """SQL for the index of the equal slice of [start, start + span) a time falls in.

    Multiplying before dividing keeps every slice the same width to the millisecond, so the
    slices' counts add up to the range's count with no row lost to rounding.
    """
    return (f"least(intDiv(({column_ms} - {{{start_param}:Int64}}) * {int(slices)}, {int(span_ms)}), "
            f"{int(slices) - 1})")


def slice_starts(start: datetime, span_ms: int, slices: int) -> list[str]:
    start_ms = _ms(start)
    return [format_timestamp(_from_ms(start_ms + span_ms * index // slices)) for index in range(slices)]


def services_sql(table: str, pipeline: str | None, window_minutes: int, now: datetime) -> tuple[str, dict[str, Any]]:
    """Per service over the window and the one before it: the window's counts, and how much
    came before the last stretch and in it (to tell a service that went quiet)."""
    window_ms = int(window_minutes) * 60_000
    now_ms = _ms(now)
    params: dict[str, Any] = {"now_ms": now_ms, "window_start_ms": now_ms - window_ms,
                              "since_ms": now_ms - 2 * window_ms,
                              "stretch_ms": now_ms - window_ms // QUIET_FRACTION}
    extra = ""
    if pipeline:
        params["pipeline"] = pipeline
        extra = " AND pipeline = {pipeline:String}"
    at = "toUnixTimestamp64Milli(timestamp)"
    in_window = f"{at} >= {{window_start_ms:Int64}}"
    sql = (
        f"SELECT service, countIf({in_window}) AS logs, "
        f"countIf({in_window} AND level IN ('ERROR', 'FATAL')) AS errors, "
        f"countIf({in_window} AND level = 'WARN') AS warnings, max(timestamp) AS last_seen, "
        f"countIf({at} >= {{now_ms:Int64}} - 60000) AS logs_1m, "
        f"countIf({at} < {{stretch_ms:Int64}}) AS before_stretch, "
        f"countIf({at} >= {{stretch_ms:Int64}}) AS in_stretch "
        f"FROM {table} WHERE timestamp >= fromUnixTimestamp64Milli({{since_ms:Int64}}, 'UTC') "
        f"AND timestamp < fromUnixTimestamp64Milli({{now_ms:Int64}}, 'UTC'){extra} "
        "GROUP BY service ORDER BY service"
    )
    return sql, params


def service_series_sql(table: str, pipeline: str | None, window_minutes: int, now: datetime,
                       slices: int) -> tuple[str, dict[str, Any]]:
    window_ms = int(window_minutes) * 60_000
    now_ms = _ms(now)
    params: dict[str, Any] = {"now_ms": now_ms, "window_start_ms": now_ms - window_ms}
    extra = ""
    if pipeline:
        params["pipeline"] = pipeline
        extra = " AND pipeline = {pipeline:String}"
    slot = equal_slot("toUnixTimestamp64Milli(timestamp)", "window_start_ms", window_ms, slices)
    sql = (f"SELECT service, {slot} AS slot, count() AS logs, countIf(level IN ('ERROR', 'FATAL')) AS errors "
           f"FROM {table} WHERE timestamp >= fromUnixTimestamp64Milli({{window_start_ms:Int64}}, 'UTC') "
           f"AND timestamp < fromUnixTimestamp64Milli({{now_ms:Int64}}, 'UTC'){extra} GROUP BY service, slot")
    return sql, params


def service_status(logs: int, errors: int, last_seen_age_s: float | None, window_s: float) -> str:
    """healthy / degraded / failing from the error ratio; silent when nothing came lately."""
    if not logs or last_seen_age_s is None or last_seen_age_s > window_s:
        return "silent"
    ratio = errors / logs
    if ratio >= 0.25:
        return "failing"
    if ratio >= 0.05:
        return "degraded"
    return "healthy"


async def service_stats(store, pipeline: str | None = None, window_minutes: int = 15, series_buckets: int = 0,
                        now: datetime | None = None) -> list[dict[str, Any]]:
    """Every service that logged in the window or the one before it, with its status, whether
    it went quiet, and (with `series_buckets`) its logs and errors per equal slice of the window."""
    now = to_utc_ms(now or datetime.now(timezone.utc))
    table = store.table("logs")
    rows = await store.aquery_dicts(*services_sql(table, pipeline, window_minutes, now))
    series: dict[str, list[dict[str, Any]]] = {}
    if series_buckets:
        window_ms = window_minutes * 60_000
        starts = slice_starts(now - timedelta(minutes=window_minutes), window_ms, series_buckets)
        for row in rows:
            series[row["service"]] = [{"start": start, "logs": 0, "errors": 0} for start in starts]
        for service, slot, logs, errors in await store.aquery(
                *service_series_sql(table, pipeline, window_minutes, now, series_buckets)):
            if service in series:
                point = series[service][int(slot)]
                point["logs"], point["errors"] = int(logs), int(errors)
    out = []
    for row in rows:
        last_seen = to_utc_ms(row["last_seen"]) if row.get("last_seen") else None
        age = (now - last_seen).total_seconds() if last_seen else None
        logs, errors = int(row["logs"]), int(row["errors"])
        item = {
            "service": row["service"],
            "status": service_status(logs, errors, age, window_minutes * 60),
            "quiet": int(row["before_stretch"]) > 0 and int(row["in_stretch"]) == 0,
            "logs": logs,
            "errors": errors,
            "warnings": int(row["warnings"]),
            "logs_per_second": round(logs / (window_minutes * 60), 3),
            "logs_per_second_1m": round(int(row["logs_1m"]) / 60, 3),
            "error_ratio": round(errors / logs, 4) if logs else 0.0,
            "last_seen": format_timestamp(last_seen) if last_seen else None,
        }
        if series_buckets:
            item["series"] = series[row["service"]]
        out.append(item)
    return out

