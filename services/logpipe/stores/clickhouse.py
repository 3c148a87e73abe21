"""ClickHouse through `clickhouse-connect`: a server URL in production, `chdb://PATH` embedded.

The embedded engine (chdb) allows one process per data directory, so clients are shared
per DSN within a process, and calls are serialised behind a lock and run off the event loop.
An embedded DSN may carry engine (server) settings as its query string, such as
`chdb:///var/lib/logpipe/clickhouse?uncompressed_cache_size=1073741824`: chdb takes them when
the engine opens, as a ClickHouse server takes them from its config.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import parse_qsl

import clickhouse_connect
import pyarrow as pa

_SQL_DIR_DEFAULT = Path(__file__).resolve().parents[3] / "sql" / "clickhouse"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def sql_dir() -> Path:
    return Path(os.environ.get("LOGPIPE_SQL_DIR", _SQL_DIR_DEFAULT))


def split_embedded_dsn(dsn: str) -> tuple[str, dict[str, str]]:
    """`chdb://PATH?name=value&...` -> (`chdb://PATH`, the engine settings)."""
    location, _, query = dsn.partition("?")
    return location, dict(parse_qsl(query, strict_parsing=bool(query)))


def connect(dsn: str):
    """One client per DSN per process (chdb: one engine per data directory)."""
    with _clients_lock:
        client = _clients.get(dsn)
        if client is None:
            if dsn.startswith("chdb://"):
                location, engine_settings = split_embedded_dsn(dsn)
                Path(location[len("chdb://"):]).mkdir(parents=True, exist_ok=True)
                client = clickhouse_connect.get_client(dsn=location, chdb_options=engine_settings or None)
            else:
                client = clickhouse_connect.get_client(dsn=dsn, compress="lz4")
            _clients[dsn] = client
        return client


def close_all() -> None:
    with _clients_lock:
        for client in _clients.values():
            try:
                client.close()
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
        _clients.clear()


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

    def __init__(self, dsn: str, database: str = "logpipe") -> None:
        if not _IDENTIFIER.match(database):
            raise ValueError(f"invalid ClickHouse database name {database!r}")
        self.dsn = dsn
        self.database = database
        self.client = connect(dsn)
        self._lock = threading.Lock()

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb://")

    def apply_schema(self, ttl_days: int = 90) -> None:
        """Create or update every table; safe to run on every start."""
        with self._lock:
            for statement in schema_statements(self.database, ttl_days):
                self.client.command(statement)

    def table(self, name: str) -> str:
        return f"{self.database}.{name}"

    def command(self, sql: str, parameters: dict | None = None):
        with self._lock:
            return self.client.command(sql, parameters=parameters)

    def query(self, sql: str, parameters: dict | None = None) -> list[tuple]:
        with self._lock:
            return self.client.query(sql, parameters=parameters).result_rows

    def query_dicts(self, sql: str, parameters: dict | None = None) -> list[dict]:
        with self._lock:
            result = self.client.query(sql, parameters=parameters)
            return [dict(zip(result.column_names, row)) for row in result.result_rows]

    def query_arrow(self, sql: str, parameters: dict | None = None) -> pa.Table:
        with self._lock:
            return self.client.query_arrow(sql, parameters=parameters)

    def insert_arrow(self, table_name: str, table: pa.Table, settings: dict | None = None) -> None:
        with self._lock:
            self.client.insert_arrow(self.table(table_name), table, settings=settings)

    def insert_rows(self, table_name: str, rows: Sequence[Sequence], column_names: Sequence[str]) -> None:
        with self._lock:
            self.client.insert(self.table(table_name), rows, column_names=list(column_names))

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

    def stored_offsets(self, topic: str, partitions: Sequence[int] | None = None) -> dict[int, int]:
        """The highest Kafka offset already stored, per partition of `topic`."""
        sql = (f"SELECT partition, max(max_offset) FROM {self.table('ingest_offsets')} "
               "WHERE topic = {topic:String} GROUP BY partition")
        rows = self.query(sql, {"topic": topic})
        found = {int(p): int(o) for p, o in rows}
        if partitions is not None:
            return {p: found[p] for p in partitions if p in found}
        return found
