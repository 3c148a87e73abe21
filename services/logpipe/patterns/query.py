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

    def validate(self) -> "PatternQuery":
        if self.end <= self.start:
            raise PatternQueryError("'from' must be before 'to'")
        if self.sort not in SORTS:
            raise PatternQueryError(f"sort must be one of {', '.join(SORTS)}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise PatternQueryError(f"limit must be between 1 and {MAX_LIMIT}")
        if self.min_count < 0:
            raise PatternQueryError("min_count must be 0 or more")
        bad_levels = [level for level in self.levels if normalize_level(level) is None]
        if bad_levels:
            raise PatternQueryError(f"unknown level {', '.join(bad_levels)}")
        unknown = [g for g in self.group_by if g not in GROUPS]
        if unknown:
            raise PatternQueryError(f"group_by accepts {', '.join(GROUPS)}, not {', '.join(unknown)}")
        return self


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
                   limit: int = 100, group_by: Sequence[str] = (), pipeline: str | None = None) -> dict:
    """Patterns seen in [start, end): count, first/last seen, an example, growth vs the window before.

    `growth` compares with the previous window of the same length: (count - previous) / previous,
    null when the pattern did not occur before (`new` is then true). `total` is the number of
    logs matching the filter; `other_count` the part of it in patterns not listed (below
    `min_count` or past `limit`), so `sum(count) + other_count == total`.
    """
    query = PatternQuery(
        start=utc(start), end=utc(end), services=_as_tuple(service), levels=_as_tuple(level),
        min_count=min_count, sort=sort, limit=limit, group_by=tuple(group_by), pipeline=pipeline,
    ).validate()
    previous_start = query.start - (query.end - query.start)
    params: dict = {"start": _fmt(query.start), "end": _fmt(query.end), "previous": _fmt(previous_start),
                    "min_count": max(query.min_count, 1)}
    where = _filters(query, params)
    inner_where = _filters(query, params, prefix="l.")
    logs, aliases = store.table("logs"), store.table("pattern_aliases")
    group_columns = "".join(f", {g}" for g in query.group_by)
    current = "l.timestamp >= {start:DateTime64(3, 'UTC')}"
    order = ("count DESC, pattern_id" if query.sort == "count" else
             "previous_count = 0 DESC, (count - previous_count) / greatest(previous_count, 1) DESC, count DESC, pattern_id")
    alias_map = (f"(SELECT alias_id, argMax(pattern_id, updated_at) AS target FROM {aliases} GROUP BY alias_id)")
    sql = f"""
        SELECT pattern_id{group_columns},
               countIf(in_window) AS count,
               countIf(NOT in_window) AS previous_count,
               minIf(timestamp, in_window) AS first_seen,
               maxIf(timestamp, in_window) AS last_seen,
               argMaxIf(message, timestamp, in_window) AS example
        FROM (
            SELECT l.timestamp AS timestamp, l.service AS service, l.level AS level, l.message AS message,
                   {current} AS in_window,
                   if(a2.target != 0, a2.target, if(a1.target != 0, a1.target, l.pattern_id)) AS pattern_id
            FROM {logs} AS l
            LEFT JOIN {alias_map} AS a1 ON l.pattern_id = a1.alias_id
            LEFT JOIN {alias_map} AS a2 ON a1.target = a2.alias_id
            WHERE l.timestamp >= {{previous:DateTime64(3, 'UTC')}} AND l.timestamp < {{end:DateTime64(3, 'UTC')}}{inner_where}
        )
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
            "previous_count": previous,
            "growth": None if previous == 0 else round((count - previous) / previous, 6),
            "new": previous == 0,
            "first_seen": _iso(row["first_seen"]),
            "last_seen": _iso(row["last_seen"]),
            "example": row["example"],
        }
        for group in query.group_by:
            item[group] = row[group]
        patterns.append(item)
    listed = sum(item["count"] for item in patterns)
    return {
        "from": _iso(query.start), "to": _iso(query.end),
        "previous_from": _iso(previous_start),
        "service": list(query.services) or None, "level": [str(normalize_level(lvl)) for lvl in query.levels] or None,
        "sort": query.sort, "min_count": query.min_count, "limit": query.limit,
        "total": total, "other_count": total - listed, "patterns": patterns,
    }


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
