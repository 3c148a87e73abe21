"""ClickHouse through `clickhouse-connect`: a server URL in production, `chdb://PATH` embedded.

Each store keeps a few client handles and runs a call on whichever is free, off the event
loop: a log page need not wait behind an insert or an analysis query, in its own service or
in another service of the same process. chdb allows one process per data directory; its
handles on the same directory share one engine and run queries at the same time.
An embedded DSN may carry engine (server) settings as its query string, such as
`chdb:///var/lib/logpipe/clickhouse?uncompressed_cache_size=1073741824`: chdb takes them when
the engine opens, as a ClickHouse server takes them from its config.

Arrow inserts into the embedded engine go through a chdb connection of their own, which reads
the Arrow columns where they lie (chdb's `Python()` table function). `clickhouse-connect`'s
chdb backend copies the batch into an Arrow file in the temporary directory and has the
engine read it back, about 2 µs of CPU per log at ingest (docs/ingest.md). Against a server,
`insert_arrow` sends Arrow over HTTP.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import re
import threading
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import parse_qsl, urlencode

import clickhouse_connect
import pyarrow as pa

from logpipe.core import tracing
from logpipe.stores import faults

log = logging.getLogger(__name__)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IDENTIFIER_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_clients: list[Any] = []
_clients_lock = threading.Lock()
_closes_at_exit = False
TIME_PROJECTION = "by_time"
# The sort key of `logs` in this version (sql/clickhouse/001_logs.sql), as system.tables writes it.
LOGS_SORTING_KEY = "toStartOfHour(timestamp), service, level, timestamp, record_id"
# Where reorder_logs keeps the rows of the table it replaces while it copies them.
_REORDER_SOURCE = "logs_before_reorder"
_warned_keys: set[tuple[str, str]] = set()
# schema_state's row naming the first hour logs_hourly holds in full (unix seconds).
HOURLY_SINCE = "logs_hourly_since"


def hourly_since_sql(state_table: str) -> tuple[str, dict[str, str]]:
    """The query reading schema_state's logs_hourly_since row (no row: not recorded yet)."""
    return f"SELECT value FROM {state_table} FINAL WHERE name = {{name:String}}", {"name": HOURLY_SINCE}


# The columns logs_hourly counts by besides the hour, and their defaults in `logs`.
_HOURLY_KEYS = (("pipeline", "'default'"), ("service", "''"), ("level", "''"), ("pattern_id", "0"))
# Handles per store: enough for a dashboard's parallel requests beside ingest and analysis.
DEFAULT_HANDLES = 4


def sql_dir() -> Path:
    """The schema files shipped inside the package (`logpipe/sql/clickhouse`), found through
    the installed package so that a wheel (the container image) finds them as a checkout does."""
    override = os.environ.get("LOGPIPE_SQL_DIR")
    if override:
        return Path(override)
    return Path(str(resources.files("logpipe") / "sql" / "clickhouse"))


def split_embedded_dsn(dsn: str) -> tuple[str, dict[str, str]]:
    """`chdb://PATH?name=value&...` -> (`chdb://PATH`, the engine settings)."""
    location, _, query = dsn.partition("?")
    return location, dict(parse_qsl(query, strict_parsing=bool(query)))


def connect(dsn: str):
    """A new client handle; closed by `close_all` if not before (chdb: on the shared engine,
    which opens with the DSN's engine settings when this process first opens its directory)."""
    with _clients_lock:
        if dsn.startswith("chdb://"):
            location, engine_settings = split_embedded_dsn(dsn)
            Path(location[len("chdb://"):]).mkdir(parents=True, exist_ok=True)
            client = clickhouse_connect.get_client(dsn=location, chdb_options=engine_settings or None)
            if engine_settings:
                _check_engine_settings(client, engine_settings)
        else:
            client = clickhouse_connect.get_client(dsn=dsn, compress="lz4")
        _clients.append(client)
        return client


def connect_engine(dsn: str):
    """A chdb connection on the embedded engine of `dsn` (`chdb://PATH?settings`), closed by
    `close_all` if not before. chdb compares engine paths literally, so the path is resolved
    as `clickhouse-connect` resolves it, and the DSN's engine settings go along in case this
    connection is the one that opens the engine."""
    import chdb

    global _closes_at_exit
    location, engine_settings = split_embedded_dsn(dsn)
    path = os.path.realpath(location[len("chdb://"):])
    with _clients_lock:
        if not _closes_at_exit:
            # Before chdb's own exit handlers (they run in reverse order of registration): an
            # engine connection still open when the engine shuts down makes it complain.
            atexit.register(close_all)
            _closes_at_exit = True
        Path(path).mkdir(parents=True, exist_ok=True)
        connection = chdb.connect(f"{path}?{urlencode(engine_settings)}" if engine_settings else path)
        _clients.append(connection)
        return connection


def insert_arrow_in_place(connection, table: str, rows: pa.Table, settings: dict | None = None) -> None:
    """Insert `rows` into `table` through a chdb connection, with no copy of the batch: chdb's
    `Python()` table function reads the Arrow columns in place, finding the table by the name of
    the local variable below. The columns are named, so the table's defaults fill the rest, as
    an Arrow insert does."""
    if not _IDENTIFIER_PATH.match(table):
        raise ValueError(f"invalid ClickHouse table name {table!r}")
    for name in rows.column_names:
        if not _IDENTIFIER.match(name):
            raise ValueError(f"invalid column name {name!r}")
    columns = ", ".join(f"`{name}`" for name in rows.column_names)
    clause = ""
    if settings:
        clause = " SETTINGS " + ", ".join(f"{_setting_name(name)} = {_setting_value(value)}"
                                          for name, value in settings.items())
    logpipe_insert_rows = rows  # noqa: F841 - read by chdb under this name
    connection.query(f"INSERT INTO {table} ({columns}){clause} SELECT {columns} FROM Python(logpipe_insert_rows)")


def _setting_name(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"invalid ClickHouse setting name {name!r}")
    return name


def _setting_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _check_engine_settings(client, wanted: dict[str, str]) -> None:
    """chdb ignores an engine setting it does not know, and one given after this process opened
    the engine: name the first, warn about the second."""
    rows = client.query("SELECT name, value FROM system.server_settings WHERE name IN {names:Array(String)}",
                        parameters={"names": list(wanted)}).result_rows
    found = dict(rows)
    unknown = sorted(set(wanted) - set(found))
    if unknown:
        client.close()
        raise ValueError(f"unknown ClickHouse engine setting(s) in the DSN: {', '.join(unknown)}")
    for name, value in wanted.items():
        if found[name] != value:
            log.warning("ClickHouse engine setting %s=%s not applied (the engine was opened with %s)",
                        name, value, found[name])


def _close(client) -> None:
    with _clients_lock:
        if client in _clients:
            _clients.remove(client)
    try:
        client.close()
    except Exception:  # noqa: BLE001 - best effort at shutdown
        pass


def close_all() -> None:
    with _clients_lock:
        clients = list(_clients)
    for client in clients:
        _close(client)


def schema_statements(database: str, ttl_days: int) -> list[str]:
    """Every statement of `sql/clickhouse/*.sql`, in file order, with names filled in."""
    if not _IDENTIFIER.match(database):
        raise ValueError(f"invalid ClickHouse database name {database!r}")
    statements = [f"CREATE DATABASE IF NOT EXISTS {database}"]
    for path in sorted(sql_dir().glob("*.sql")):
        text = "\n".join(line for line in path.read_text().splitlines() if not line.strip().startswith("--"))
        for statement in text.split(";"):
            statement = statement.strip()
            if statement:
                statements.append(statement.format(database=database, ttl_days=int(ttl_days)))
    return statements


class ClickHouseStore:
    """The log store. Sync methods for tools and tests; `a*` methods for services."""

    def __init__(self, dsn: str, database: str = "logpipe", handles: int = DEFAULT_HANDLES,
                 insert_in_place: bool = True) -> None:
        """`insert_in_place=False` makes an embedded store insert Arrow as it does against a
        server, through `clickhouse-connect` (tests of that path)."""
        if not _IDENTIFIER.match(database):
            raise ValueError(f"invalid ClickHouse database name {database!r}")
        if handles < 1:
            raise ValueError("a store needs at least one handle")
        self.dsn = dsn
        self.database = database
        self._idle = [connect(dsn)]  # the first opens now, so a bad DSN fails here
        self._idle_lock = threading.Lock()
        self._free = threading.BoundedSemaphore(handles)
        self._insert_in_place = insert_in_place and self.embedded
        self._idle_engines: list[Any] = []  # chdb connections for in-place Arrow inserts

    def _handle(self) -> contextlib.AbstractContextManager[Any]:
        """A handle no other call is using; a new one while fewer than `handles` exist."""
        return self._lease(self._idle, connect)

    def _engine(self) -> contextlib.AbstractContextManager[Any]:
        """A chdb connection no other call is using (it counts against `handles` too)."""
        return self._lease(self._idle_engines, connect_engine)

    @contextlib.contextmanager
    def _lease(self, idle: list[Any], open_one: Callable[[str], Any]) -> Iterator[Any]:
        faults.check("clickhouse")
        with self._free:
            with self._idle_lock:
                taken = idle.pop() if idle else None
            if taken is None:
                taken = open_one(self.dsn)
            try:
                yield taken
            finally:
                with self._idle_lock:
                    idle.append(taken)

    def close(self) -> None:
        """Close the idle handles (calls still running keep theirs until close_all)."""
        with self._idle_lock:
            idle = self._idle + self._idle_engines
            self._idle.clear()
            self._idle_engines.clear()
        for client in idle:
            _close(client)

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb://")

    def apply_schema(self, ttl_days: int = 90, time_projection: bool = False) -> None:
        """Create or update every table; safe to run on every start.

        `time_projection` (CLICKHOUSE_TIME_PROJECTION) keeps a copy of `logs` ordered by time
        beside the table's (hour, service, level, time) order, so "the newest logs" of every
        service are read from a few contiguous granules even where an hour holds millions of
        rows, for 2.5x the storage and 5-12 % of ingest throughput (docs/api.md).
        Turned on, parts written before get it by a background mutation; turned off, it is dropped.
        """
        with self._handle() as client:
            for statement in schema_statements(self.database, ttl_days):
                client.command(statement)
            logs = self.table("logs")
            present = client.query("SELECT count() FROM system.projections WHERE database = {db:String} "
                                   "AND table = 'logs' AND name = {name:String}",
                                   parameters={"db": self.database, "name": TIME_PROJECTION}).result_rows[0][0] > 0
            if time_projection and not present:
                # ReplacingMergeTree folds duplicates when merging: the projection is rebuilt then,
                # and after a lightweight delete, instead of refusing the merge or the delete.
                client.command(f"ALTER TABLE {logs} MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild', "
                               "lightweight_mutation_projection_mode = 'rebuild'")
                client.command(f"ALTER TABLE {logs} ADD PROJECTION IF NOT EXISTS {TIME_PROJECTION} "
                               "(SELECT * ORDER BY timestamp, record_id)")
                client.command(f"ALTER TABLE {logs} MATERIALIZE PROJECTION {TIME_PROJECTION}")
            elif present and not time_projection:
                client.command(f"ALTER TABLE {logs} DROP PROJECTION IF EXISTS {TIME_PROJECTION}")
            key = self._logs_sorting_key(client)
            self._ensure_hourly_since(client)
        if key != LOGS_SORTING_KEY and (self.dsn, logs) not in _warned_keys:
            _warned_keys.add((self.dsn, logs))  # once per process: every service applies the schema
            log.warning("%s is ordered by (%s), an earlier version's key: newest-first pages read more than "
                        "with (%s). `logpipe schema --reorder-logs` rewrites it (README: Troubleshooting).",
                        logs, key, LOGS_SORTING_KEY)

    def _ensure_hourly_since(self, client) -> None:
        """Record the first hour `logs_hourly` holds in full, once, after its view exists.

        The view counts only rows inserted after it was made. Made over an empty `logs` (a new
        install), it holds every hour. Made over stored rows (an upgrade), it holds in full
        only the hours after both now and the newest stored row: every row of those hours is
        inserted after this check, so after the view. Either value is true whenever it is
        taken, so services starting at once may each record theirs. (An insert already under
        way when the view is made is not counted by it: every logpipe service applies the
        schema before it writes, so only a writer of an earlier version, inserting into an
        empty table at that instant, could slip past.)
        """
        state = self.table("schema_state")
        sql, params = hourly_since_sql(state)
        if client.query(sql, parameters=params).result_rows:
            return
        count, newest = client.query(
            f"SELECT count(), toUInt32(toStartOfHour(max(timestamp))) FROM {self.table('logs')}").result_rows[0]
        since = 0
        if count:
            since = client.query("SELECT toUInt32(toStartOfHour(greatest(now(), toDateTime({newest:UInt32}, 'UTC')))"
                                 " + 3600)", parameters={"newest": newest}).result_rows[0][0]
            log.info("%s counts from %s on; totals over earlier hours are counted in %s",
                     self.table("logs_hourly"), datetime.fromtimestamp(since, tz=timezone.utc).isoformat(),
                     self.table("logs"))
        client.command(f"INSERT INTO {state} (name, value) VALUES ({{name:String}}, {{value:String}})",
                       parameters={"name": HOURLY_SINCE, "value": str(int(since))})

    def _logs_sorting_key(self, client) -> str:
        return client.query("SELECT sorting_key FROM system.tables WHERE database = {db:String} AND name = 'logs'",
                            parameters={"db": self.database}).result_rows[0][0]

    def reorder_logs(self, ttl_days: int = 90, time_projection: bool = False) -> int | None:
        """Rewrite a `logs` table made by an earlier version in this version's sort key; returns
        the rows copied, or None when it has that key already.

        ClickHouse cannot change a table's sort key in place: a new `logs` takes the old one's
        place at once (EXCHANGE TABLES), so inserts go on into it, and the old rows are copied
        over, then dropped. Queries see the older rows again as the copy proceeds. The replay
        guard's view is recreated on the new table; rows inserted in the instant between are
        folded by record id if replayed, never doubled.
        """
        self.apply_schema(ttl_days, time_projection)
        logs, source = self.table("logs"), self.table(_REORDER_SOURCE)
        with self._handle() as client:
            current = self._logs_sorting_key(client) == LOGS_SORTING_KEY
            left = client.query("EXISTS TABLE " + source).result_rows[0][0]
            if current and left:
                raise RuntimeError(f"{source} exists: an earlier reorder stopped before it finished. Copy its rows "
                                   f"into {logs} (INSERT INTO {logs} SELECT * FROM {source}) and drop it.")
            if current:
                return None
            if left:  # made empty by a reorder that stopped before the exchange
                client.command(f"DROP TABLE {source} SYNC")
            create = next(statement for statement in schema_statements(self.database, ttl_days)
                          if statement.startswith(f"CREATE TABLE IF NOT EXISTS {logs}\n"))
            client.command(create.replace(f"CREATE TABLE IF NOT EXISTS {logs}\n", f"CREATE TABLE {source}\n", 1))
            # Dropped and made again by apply_schema below (kept, it would still hold the
            # old table's highest offsets, which is harmless, but a fresh one is plainer).
            client.command(f"DROP VIEW IF EXISTS {self.table('ingest_offsets_mv')}")
            # One atomic step: the new, empty table is `logs`, the old rows are the source.
            client.command(f"EXCHANGE TABLES {logs} AND {source}")
        self.apply_schema(ttl_days, time_projection)
        with self._handle() as client:
            names = [row[0] for row in client.query(
                "SELECT name FROM system.columns WHERE database = {db:String} AND table = 'logs' "
                "AND default_kind NOT IN ('MATERIALIZED', 'ALIAS') ORDER BY position",
                parameters={"db": self.database}).result_rows]
            kept = {row[0] for row in client.query(
                "SELECT name FROM system.columns WHERE database = {db:String} AND table = {source:String}",
                parameters={"db": self.database, "source": _REORDER_SOURCE}).result_rows}
            columns = ", ".join(name for name in names if name in kept)
            copied = client.query(f"SELECT count() FROM {source}").result_rows[0][0]
            # Views read from a table by its name, so logs_hourly_mv counted every insert into
            # `logs` across the exchange, and counts the copy again: the old rows left `logs`
            # at the exchange, so take them out of the hourly counts, and the copy puts them back.
            keys = ", ".join(name if name in kept else default for name, default in _HOURLY_KEYS)
            client.command(f"INSERT INTO {self.table('logs_hourly')} (hour, pipeline, service, level, pattern_id, logs) "
                           f"SELECT toStartOfHour(timestamp), {keys}, -toInt64(count()) FROM {source} "
                           "GROUP BY ALL")
            client.command(f"INSERT INTO {logs} ({columns}) SELECT {columns} FROM {source}")
            client.command(f"DROP TABLE {source} SYNC")
        log.info("reordered %s: %d rows copied", logs, copied)
        return int(copied)

    def table(self, name: str) -> str:
        return f"{self.database}.{name}"

    def command(self, sql: str, parameters: dict | None = None):
        with self._handle() as client:
            return client.command(sql, parameters=parameters)

    @tracing.traced("clickhouse query", **{"db.system": "clickhouse"})
    def query(self, sql: str, parameters: dict | None = None) -> list[tuple]:
        with self._handle() as client:
            return client.query(sql, parameters=parameters).result_rows

    @tracing.traced("clickhouse query", **{"db.system": "clickhouse"})
    def query_dicts(self, sql: str, parameters: dict | None = None) -> list[dict]:
        with self._handle() as client:
            result = client.query(sql, parameters=parameters)
        return [dict(zip(result.column_names, row)) for row in result.result_rows]

    @tracing.traced("clickhouse query", **{"db.system": "clickhouse"})
    def query_arrow(self, sql: str, parameters: dict | None = None) -> pa.Table:
        with self._handle() as client:
            return client.query_arrow(sql, parameters=parameters)

    def insert_arrow(self, table_name: str, table: pa.Table, settings: dict | None = None) -> None:
        if self._insert_in_place:
            with self._engine() as connection:
                insert_arrow_in_place(connection, self.table(table_name), table, settings)
            return
        with self._handle() as client:
            client.insert_arrow(self.table(table_name), table, settings=settings)

    @tracing.traced("clickhouse insert", **{"db.system": "clickhouse"})
    def insert_rows(self, table_name: str, rows: Sequence[Sequence], column_names: Sequence[str]) -> None:
        with self._handle() as client:
            client.insert(self.table(table_name), rows, column_names=list(column_names))

    def ping(self) -> bool:
        try:
            return self.query("SELECT 1") == [(1,)]
        except Exception:  # noqa: BLE001
            return False

    async def aquery(self, sql: str, parameters: dict | None = None) -> list[tuple]:
        return await asyncio.to_thread(self.query, sql, parameters)

    async def aquery_dicts(self, sql: str, parameters: dict | None = None) -> list[dict]:
        return await asyncio.to_thread(self.query_dicts, sql, parameters)

    async def ainsert_arrow(self, table_name: str, table: pa.Table, settings: dict | None = None) -> None:
        await asyncio.to_thread(self.insert_arrow, table_name, table, settings)

    async def aping(self) -> bool:
        return await asyncio.to_thread(self.ping)

    def stored_at(self, topic: str, partition: int, offsets: Sequence[int], record_ids: Sequence[str],
                  start, end) -> set[tuple[int, str]]:
        """Which (offset, record_id) pairs of one partition are stored, among rows timed in [start, end]
        (the time bounds let the sort key skip most of the table)."""
        sql = (f"SELECT kafka_offset, record_id FROM {self.table('logs')} "
               "WHERE timestamp BETWEEN {start:DateTime64(3)} AND {end:DateTime64(3)} "
               "AND kafka_topic = {topic:String} AND kafka_partition = {partition:UInt32} "
               "AND kafka_offset IN {offsets:Array(UInt64)} AND record_id IN {ids:Array(String)}")
        rows = self.query(sql, {"topic": topic, "partition": partition, "offsets": list(offsets),
                                "ids": list(record_ids), "start": start, "end": end})
        return {(int(offset), record_id) for offset, record_id in rows}

    def stored_offsets(self, topic: str, partitions: Sequence[int] | None = None) -> dict[int, int]:
        """The highest Kafka offset already stored, per partition of `topic`."""
        sql = (f"SELECT partition, max(max_offset) FROM {self.table('ingest_offsets')} "
               "WHERE topic = {topic:String} GROUP BY partition")
        rows = self.query(sql, {"topic": topic})
        found = {int(p): int(o) for p, o in rows}
        if partitions is not None:
            return {p: found[p] for p in partitions if p in found}
        return found
