"""The ClickHouse side of a run: every aggregation happens in SQL, and what comes back is
one row per pattern, per (service, pattern, hour), per (service, hour), per (pattern, minute).

Pattern ids resolve through `pattern_aliases` (two hops, as logpipe.patterns.query
does): when the miner merges two patterns, logs tagged before the merge keep the old id and
must still count for the survivor. A log that ingest could not give a pattern
(`pattern_id = 0`) is grouped by a fingerprint of its digit-masked message, in the same
53-bit id space the miner uses, so it still counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

from logpipe.stores.clickhouse import ClickHouseStore

ERROR_LEVELS = ("WARN", "ERROR", "FATAL")
_ERRORS = "level IN ('WARN', 'ERROR', 'FATAL')"
PATTERN_ID = "pid"
_RESOLVED = ("if(a2.target != 0, a2.target, if(a1.target != 0, a1.target, l.pattern_id))")
_FINGERPRINT = "bitAnd(cityHash64(l.service, replaceRegexpAll(l.message, '[0-9]+', '0')), 9007199254740991)"


def _source(store: ClickHouseStore, where: str) -> str:
    """The logs matching `where` (columns prefixed `l.`), with their resolved pattern id `pid`."""
    aliases = f"(SELECT alias_id, argMax(pattern_id, updated_at) AS target FROM {store.table('pattern_aliases')} GROUP BY alias_id)"
    resolved = f"if({_RESOLVED} != 0, {_RESOLVED}, {_FINGERPRINT})"
    return (f"(SELECT l.timestamp AS timestamp, l.service AS service, l.level AS level, l.message AS message, "
            f"l.trace_id AS trace_id, l.version AS version, {resolved} AS pid "
            f"FROM {store.table('logs')} AS l "
            f"LEFT JOIN {aliases} AS a1 ON l.pattern_id = a1.alias_id "
            f"LEFT JOIN {aliases} AS a2 ON a1.target = a2.alias_id WHERE {where})")


def _ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(value.timestamp() * 1000)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


@dataclass
class WindowData:
    """Everything a run needs from ClickHouse, already aggregated."""

    totals: dict[str, int]
    patterns: dict[str, dict[str, Any]]
    hourly: dict[tuple[str, str], dict[datetime, int]]
    volume: dict[str, dict[datetime, int]]
    service_errors: dict[str, int]


class AnalysisQueries:
    def __init__(self, store: ClickHouseStore, pipeline: str, start: datetime, end: datetime,
                 services: Sequence[str] | None = None) -> None:
        self.store = store
        self.logs = store.table("logs")
        self.start, self.end = _utc(start), _utc(end)
        self.params: dict[str, Any] = {"pipeline": pipeline, "start_ms": _ms(start), "end_ms": _ms(end)}
        def where(prefix: str) -> str:
            clause = (f"{prefix}pipeline = {{pipeline:String}} "
                      f"AND {prefix}timestamp >= fromUnixTimestamp64Milli({{start_ms:Int64}}, 'UTC') "
                      f"AND {prefix}timestamp < fromUnixTimestamp64Milli({{end_ms:Int64}}, 'UTC')")
            if services:
                clause += f" AND {prefix}service IN {{services:Array(String)}}"
            return clause

        if services:
            self.params["services"] = list(services)
        self.errors = _source(store, f"{where('l.')} AND l.{_ERRORS}")
        # Plain counts need no pattern ids: they read the table, not the join.
        self.where = where("")

    def _query(self, sql: str, extra: dict[str, Any] | None = None) -> list[tuple]:
        return self.store.query(sql, {**self.params, **(extra or {})})

    def totals(self) -> dict[str, int]:
        row = self._query(
            f"SELECT count(), countIf({_ERRORS}), countIf(level = 'FATAL'), countIf(level = 'ERROR'), "
            f"countIf(level = 'WARN'), uniqExact(service), uniqExactIf(service, {_ERRORS}) "
            f"FROM {self.logs} WHERE {self.where}")[0]
        keys = ("logs", "errors", "fatal", "error", "warn", "services", "error_services")
        return {key: int(value) for key, value in zip(keys, row)}

    def patterns(self, limit: int) -> dict[str, dict[str, Any]]:
        rows = self._query(
            f"SELECT toString({PATTERN_ID}) AS spid, count() AS n, arraySort(groupUniqArray(service)), "
            # The example is the pattern's first message (not any()): a rerun of a window must
            # write the same report text.
            "min(timestamp), max(timestamp), countIf(level = 'FATAL'), countIf(level = 'ERROR'), "
            "argMin(message, (timestamp, message)), "
            "arraySort(groupUniqArray(5)(version)) "
            f"FROM {self.errors} GROUP BY spid ORDER BY n DESC, spid LIMIT {int(limit)}")
        patterns = {}
        for pid, count, services, first, last, fatal, error, example, versions in rows:
            level = "FATAL" if fatal else "ERROR" if error else "WARN"
            patterns[pid] = {"pattern_id": pid, "count": int(count), "services": list(services),
                             "first_seen": _utc(first), "last_seen": _utc(last), "level": level,
                             "example": example, "template": "", "versions": [v for v in versions if v]}
        return patterns

    def hourly_errors(self) -> dict[tuple[str, str], dict[datetime, int]]:
        rows = self._query(
            f"SELECT service, toString({PATTERN_ID}) AS spid, toStartOfHour(timestamp) AS hour, count() "
            f"FROM {self.errors} GROUP BY service, spid, hour")
        hourly: dict[tuple[str, str], dict[datetime, int]] = {}
        for service, pid, hour, count in rows:
            hourly.setdefault((service, pid), {})[_utc(hour)] = int(count)
        return hourly

    def hourly_volume(self) -> dict[str, dict[datetime, int]]:
        rows = self._query(
            f"SELECT service, toStartOfHour(timestamp) AS hour, count() FROM {self.logs} WHERE {self.where} "
            "GROUP BY service, hour")
        volume: dict[str, dict[datetime, int]] = {}
        for service, hour, count in rows:
            volume.setdefault(service, {})[_utc(hour)] = int(count)
        return volume

    def seen_before(self, pattern_ids: Sequence[str], lookback: timedelta) -> set[str]:
        """Which of these patterns occurred (as WARN or worse) in the `lookback` before the window."""
        if not pattern_ids:
            return set()
        where = ("l.pipeline = {pipeline:String} "
                 "AND l.timestamp >= fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC') "
                 f"AND l.timestamp < fromUnixTimestamp64Milli({{start_ms:Int64}}, 'UTC') AND l.{_ERRORS}")
        rows = self.store.query(
            f"SELECT DISTINCT toString(pid) AS spid FROM {_source(self.store, where)} "
            "WHERE spid IN {pids:Array(String)}",
            {"pipeline": self.params["pipeline"], "from_ms": _ms(self.start - lookback),
             "start_ms": self.params["start_ms"], "pids": list(pattern_ids)})
        return {row[0] for row in rows}

    def has_history(self, lookback: timedelta) -> bool:
        """Whether any log precedes the window: without history, everything would look new."""
        rows = self.store.query(
            f"SELECT 1 FROM {self.logs} WHERE pipeline = {{pipeline:String}} "
            "AND timestamp >= fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC') "
            "AND timestamp < fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC') LIMIT 1",
            {"pipeline": self.params["pipeline"], "from_ms": _ms(self.start - lookback),
             "start_ms": self.params["start_ms"]})
        return bool(rows)

    def history(self, days: int) -> tuple[dict[tuple[str, str], dict[datetime, int]], datetime | None]:
        """Hourly counts of the `days` before the window, per (service, error pattern) and per
        service's whole volume (pattern id ""), and the time of the first log they hold (hours
        before it are unknown, not zero)."""
        params = {"pipeline": self.params["pipeline"], "from_ms": _ms(self.start - timedelta(days=days)),
                  "start_ms": self.params["start_ms"]}
        where = ("{p}pipeline = {{pipeline:String}} "
                 "AND {p}timestamp >= fromUnixTimestamp64Milli({{from_ms:Int64}}, 'UTC') "
                 "AND {p}timestamp < fromUnixTimestamp64Milli({{start_ms:Int64}}, 'UTC')")
        if "services" in self.params:
            where += " AND {p}service IN {{services:Array(String)}}"
            params["services"] = self.params["services"]
        plain, prefixed = where.format(p=""), where.format(p="l.")
        counts: dict[tuple[str, str], dict[datetime, int]] = {}
        first: datetime | None = None
        rows = self.store.query(
            f"SELECT service, toStartOfHour(timestamp) AS hour, count(), min(timestamp) FROM {self.logs} "
            f"WHERE {plain} GROUP BY service, hour", params)
        for service, hour, count, earliest in rows:
            counts.setdefault((service, ""), {})[_utc(hour)] = int(count)
            first = _utc(earliest) if first is None else min(first, _utc(earliest))
        if first is None:
            return {}, None
        rows = self.store.query(
            f"SELECT service, toString({PATTERN_ID}) AS spid, toStartOfHour(timestamp) AS hour, count() "
            f"FROM {_source(self.store, f'{prefixed} AND l.{_ERRORS}')} GROUP BY service, spid, hour", params)
        for service, pid, hour, count in rows:
            counts.setdefault((service, pid), {})[_utc(hour)] = int(count)
        return counts, first

    def examples(self, pattern_ids: Sequence[str], days: int) -> dict[str, dict[str, Any]]:
        """An example message, level and last time of patterns seen before the window (for the
        patterns that went silent in it)."""
        if not pattern_ids:
            return {}
        where = ("l.pipeline = {pipeline:String} "
                 "AND l.timestamp >= fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC') "
                 f"AND l.timestamp < fromUnixTimestamp64Milli({{start_ms:Int64}}, 'UTC') AND l.{_ERRORS}")
        rows = self.store.query(
            f"SELECT toString(pid) AS spid, argMin(message, (timestamp, message)), countIf(level = 'FATAL'), "
            "countIf(level = 'ERROR'), "
            f"max(timestamp), min(timestamp) FROM {_source(self.store, where)} WHERE spid IN {{pids:Array(String)}} "
            "GROUP BY spid",
            {"pipeline": self.params["pipeline"], "from_ms": _ms(self.start - timedelta(days=days)),
             "start_ms": self.params["start_ms"], "pids": list(pattern_ids)})
        return {pid: {"example": example, "level": "FATAL" if fatal else "ERROR" if error else "WARN",
                      "last_seen": _utc(last), "first_seen": _utc(first)}
                for pid, example, fatal, error, last, first in rows}

    def minute_series(self, pattern_ids: Sequence[str]) -> list[tuple[str, datetime, int]]:
        if not pattern_ids:
            return []
        rows = self._query(
            f"SELECT toString({PATTERN_ID}) AS spid, toStartOfMinute(timestamp) AS minute, count() "
            f"FROM {self.errors} WHERE toString(pid) IN {{pids:Array(String)}} "
            "GROUP BY spid, minute", {"pids": list(pattern_ids)})
        return [(pid, _utc(minute), int(count)) for pid, minute, count in rows]

    def trace_pairs(self, limit: int = 200) -> list[dict[str, Any]]:
        """(first pattern of a trace, a later pattern of it, how many traces): errors that share
        a trace, with the earliest as the candidate cause."""
        rows = self._query(
            "SELECT seq[1].2 AS root, step.2 AS other, count() AS traces FROM ("
            "  SELECT arraySort(x -> x.1, groupArray((first, spid))) AS seq FROM ("
            f"    SELECT trace_id, toString({PATTERN_ID}) AS spid, min(timestamp) AS first FROM {self.errors} "
            "    WHERE trace_id != '' GROUP BY trace_id, spid)"
            "  GROUP BY trace_id HAVING length(seq) BETWEEN 2 AND 50"
            ") ARRAY JOIN arraySlice(seq, 2) AS step "
            f"WHERE root != other GROUP BY root, other ORDER BY traces DESC, root, other LIMIT {int(limit)}")
        return [{"kind": "trace", "root_pattern_id": root, "pattern_id": other, "traces": int(traces)}
                for root, other, traces in rows]

    def templates(self, pattern_ids: Sequence[str]) -> dict[str, str]:
        """Templates from the pattern miner's table when it exists; the caller falls back to
        an example message per pattern."""
        if not pattern_ids:
            return {}
        exists = self.store.query(
            "SELECT count() FROM system.tables WHERE database = {db:String} AND name = 'patterns'",
            {"db": self.store.database})[0][0]
        if not exists:
            return {}
        columns = {row[0] for row in self.store.query(
            "SELECT name FROM system.columns WHERE database = {db:String} AND table = 'patterns'",
            {"db": self.store.database})}
        if not {"pattern_id", "template"} <= columns:
            return {}
        rows = self.store.query(
            f"SELECT toString(pattern_id) AS pid, argMax(template, {'updated_at' if 'updated_at' in columns else 'pattern_id'}) "
            f"FROM {self.store.table('patterns')} WHERE pid IN {{pids:Array(String)}} GROUP BY pid",
            {"pids": list(pattern_ids)})
        return {pid: template for pid, template in rows if template}

    def window(self, max_patterns: int) -> WindowData:
        patterns = self.patterns(max_patterns)
        hourly = self.hourly_errors()
        service_errors: dict[str, int] = {}
        for (service, _), counts in hourly.items():
            service_errors[service] = service_errors.get(service, 0) + sum(counts.values())
        return WindowData(self.totals(), patterns, hourly, self.hourly_volume(), service_errors)
