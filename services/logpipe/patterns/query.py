"""Pattern counts over any time range, straight from the `logs` table.

Every log row carries the pattern id it was tagged with; ids merged later resolve through
`pattern_aliases` here, at query time. Each row lands in exactly one resolved pattern (0 for
untagged rows), so the counts add up to the number of logs in the same filter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Sequence

from logpipe.core.record import normalize_level
from logpipe.stores.clickhouse import ClickHouseStore

SORTS = ("count", "growth")
GROUPS = ("service", "level")
MAX_LIMIT = 10_000
MAX_SPARKLINE_BUCKETS = 96
MAX_CONTAINS_LENGTH = 500


class PatternQueryError(ValueError):
    """A request the query layer cannot answer (bad range, sort, limit)."""


@dataclass(frozen=True)
class PatternQuery:
    start: datetime
    end: datetime
    services: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    min_count: int = 1
    sort: str = "count"
    limit: int = 100
    group_by: tuple[str, ...] = ()
    pipeline: str | None = None
    pattern_id: int | None = None
    contains: str | None = None  # case-insensitive text in the template
    sparkline_buckets: int = 0

    def validate(self) -> "PatternQuery":
        if self.end <= self.start:
            raise PatternQueryError("'from' must be before 'to'")
        if self.sort not in SORTS:
            raise PatternQueryError(f"sort must be one of {', '.join(SORTS)}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise PatternQueryError(f"limit must be between 1 and {MAX_LIMIT}")
        if self.min_count < 0:
            raise PatternQueryError("min_count must be 0 or more")
        bad_levels = [level for level in self.levels if _known_level(level) is None]
        if bad_levels:
            raise PatternQueryError(f"unknown level {', '.join(bad_levels)}")
        if not 0 <= self.sparkline_buckets <= MAX_SPARKLINE_BUCKETS:
            raise PatternQueryError(f"sparkline_buckets must be between 0 and {MAX_SPARKLINE_BUCKETS}")
        if self.pattern_id is not None and not 0 <= self.pattern_id < 2**64:
            raise PatternQueryError("pattern_id must be an unsigned 64-bit integer")
        if self.contains is not None and len(self.contains) > MAX_CONTAINS_LENGTH:
            raise PatternQueryError(f"contains is longer than {MAX_CONTAINS_LENGTH} characters")
        unknown = [g for g in self.group_by if g not in GROUPS]
        if unknown:
            raise PatternQueryError(f"group_by accepts {', '.join(GROUPS)}, not {', '.join(unknown)}")
        return self


def _known_level(value: str):
    # normalize_level calls int() on any str.isdigit() text, '³' included: that is no level.
    try:
        return normalize_level(value)
    except ValueError:
        return None


def utc(moment: datetime) -> datetime:
    """Naive datetimes are UTC; aware ones are converted."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _fmt(moment: datetime) -> str:
    return utc(moment).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _iso(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return str(value)


def _filters(query: PatternQuery, params: dict, prefix: str = "") -> str:
    clauses = []
    if query.services:
        clauses.append(f"{prefix}service IN {{services:Array(String)}}")
        params["services"] = list(query.services)
    if query.levels:
        clauses.append(f"{prefix}level IN {{levels:Array(String)}}")
        params["levels"] = [str(normalize_level(level)) for level in query.levels]
    if query.pipeline:
        clauses.append(f"{prefix}pipeline = {{pipeline:String}}")
        params["pipeline"] = query.pipeline
    return "".join(f" AND {clause}" for clause in clauses)


def pattern_counts(store: ClickHouseStore, start: datetime, end: datetime, *, service: str | Sequence[str] | None = None,
                   level: str | Sequence[str] | None = None, min_count: int = 1, sort: str = "count",
                   limit: int = 100, group_by: Sequence[str] = (), pipeline: str | None = None,
                   pattern_id: int | None = None, contains: str | None = None,
                   sparkline_buckets: int = 0) -> dict:
    """Patterns seen in [start, end): count, share, first/last seen, an example, growth vs the window before.

    `growth` compares with the previous window of the same length: (count - previous) / previous,
    null when the pattern did not occur before (`new` and `is_new` are then true). `total` is the
    number of logs matching the service, level and pipeline filter; `other_count` the part of it
    in patterns not listed (below `min_count`, past `limit`, or left out by `pattern_id` or
    `contains`), so `sum(count) + other_count == total`, and `share` is `count / total`.
    `pattern_id` and `contains` (case-insensitive text in the template) pick patterns after ids
    merged later are resolved. With `sparkline_buckets` = n, each pattern's `sparkline` counts
    it in n equal slices of the range; the slices add up to its `count`.
    """
    query = PatternQuery(
        start=utc(start), end=utc(end), services=_as_tuple(service), levels=_as_tuple(level),
        min_count=min_count, sort=sort, limit=limit, group_by=tuple(group_by), pipeline=pipeline,
        pattern_id=pattern_id, contains=contains or None, sparkline_buckets=sparkline_buckets,
    ).validate()
    previous_start = query.start - (query.end - query.start)
    start_ms = int(query.start.timestamp() * 1000)
    span_ms = int(query.end.timestamp() * 1000) - start_ms
    params: dict = {"start": _fmt(query.start), "end": _fmt(query.end), "previous": _fmt(previous_start),
                    "min_count": max(query.min_count, 1), "start_ms": start_ms}
    where = _filters(query, params)
    inner_where = _filters(query, params, prefix="l.")
    logs, aliases = store.table("logs"), store.table("pattern_aliases")
    group_columns = "".join(f", {g}" for g in query.group_by)
    current = "l.timestamp >= {start:DateTime64(3, 'UTC')}"
    order = ("count DESC, pattern_id" if query.sort == "count" else
             "previous_count = 0 DESC, (count - previous_count) / greatest(previous_count, 1) DESC, count DESC, pattern_id")
    alias_map = (f"(SELECT alias_id, argMax(pattern_id, updated_at) AS target FROM {aliases} GROUP BY alias_id)")
    picked = []
    if query.pattern_id is not None:
        params["pattern_id"] = query.pattern_id
        picked.append("pattern_id = {pattern_id:UInt64}")
    if query.contains:
        params["contains"] = query.contains
        picked.append(f"pattern_id IN (SELECT pattern_id FROM {store.table('patterns')} FINAL "
                      "WHERE positionCaseInsensitiveUTF8(template, {contains:String}) > 0)")
    outer_where = f"WHERE {' AND '.join(picked)}" if picked else ""
    sparkline = ""
    if query.sparkline_buckets:
        # Multiplying before dividing keeps the slices equal to the millisecond: none loses a row.
        slot = (f"least(intDiv((toUnixTimestamp64Milli(timestamp) - {{start_ms:Int64}}) * {query.sparkline_buckets}, "
                f"{span_ms}), {query.sparkline_buckets - 1})")
        sparkline = f", sumMapIf([toUInt16({slot})], [toUInt64(1)], in_window) AS sparkline"
    sql = f"""
        SELECT pattern_id{group_columns},
               countIf(in_window) AS count,
               countIf(NOT in_window) AS previous_count,
               minIf(timestamp, in_window) AS first_seen,
               maxIf(timestamp, in_window) AS last_seen,
               argMaxIf(message, timestamp, in_window) AS example{sparkline}
        FROM (
            SELECT l.timestamp AS timestamp, l.service AS service, l.level AS level, l.message AS message,
                   {current} AS in_window,
                   if(a2.target != 0, a2.target, if(a1.target != 0, a1.target, l.pattern_id)) AS pattern_id
            FROM {logs} AS l
            LEFT JOIN {alias_map} AS a1 ON l.pattern_id = a1.alias_id
            LEFT JOIN {alias_map} AS a2 ON a1.target = a2.alias_id
            WHERE l.timestamp >= {{previous:DateTime64(3, 'UTC')}} AND l.timestamp < {{end:DateTime64(3, 'UTC')}}{inner_where}
        )
        {outer_where}
        GROUP BY pattern_id{group_columns}
        HAVING count >= {{min_count:UInt64}}
        ORDER BY {order}
        LIMIT {query.limit}
    """
    rows = store.query_dicts(sql, params)
    total_sql = (f"SELECT count() FROM {logs} WHERE timestamp >= {{start:DateTime64(3, 'UTC')}} "
                 f"AND timestamp < {{end:DateTime64(3, 'UTC')}}{where}")
    total = int(store.query(total_sql, params)[0][0])
    templates = _templates(store, [int(row["pattern_id"]) for row in rows])
    patterns = []
    for row in rows:
        pattern_id = int(row["pattern_id"])
        count, previous = int(row["count"]), int(row["previous_count"])
        item = {
            "pattern_id": pattern_id,
            "template": templates.get(pattern_id, "" if pattern_id == 0 else None),
            "count": count,
            "share": round(count / total, 6) if total else 0.0,
            "previous_count": previous,
            "growth": None if previous == 0 else round((count - previous) / previous, 6),
            "new": previous == 0,
            "is_new": previous == 0,
            "first_seen": _iso(row["first_seen"]),
            "last_seen": _iso(row["last_seen"]),
            "example": row["example"],
        }
        if query.sparkline_buckets:
            item["sparkline"] = _sparkline(row["sparkline"], query.sparkline_buckets)
        for group in query.group_by:
            item[group] = row[group]
        patterns.append(item)
    listed = sum(item["count"] for item in patterns)
    return {
        "from": _iso(query.start), "to": _iso(query.end),
        "previous_from": _iso(previous_start),
        "service": list(query.services) or None, "level": [str(normalize_level(lvl)) for lvl in query.levels] or None,
        "sort": query.sort, "min_count": query.min_count, "limit": query.limit,
        "sparkline_buckets": query.sparkline_buckets,
        "total": total, "other_count": total - listed, "patterns": patterns,
    }


def _sparkline(found, slices: int) -> list[int]:
    """sumMap's (slots, counts) into a dense list; slices without a row are 0."""
    out = [0] * slices
    slots, counts = found if isinstance(found, (tuple, list)) else (found.keys(), found.values())
    for slot, count in zip(slots, counts):
        out[int(slot)] += int(count)
    return out


def _templates(store: ClickHouseStore, ids: list[int]) -> dict[int, str]:
    ids = [i for i in ids if i]
    if not ids:
        return {}
    rows = store.query(
        f"SELECT pattern_id, argMax(template, updated_at) FROM {store.table('patterns')} "
        "WHERE pattern_id IN {ids:Array(UInt64)} GROUP BY pattern_id", {"ids": ids})
    return {int(p): t for p, t in rows}


def _as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    return tuple(v.strip() for v in value if v and v.strip())


def default_range(now: datetime | None = None, hours: float = 1.0) -> tuple[datetime, datetime]:
    end = utc(now or datetime.now(timezone.utc))
    return end - timedelta(hours=hours), end
