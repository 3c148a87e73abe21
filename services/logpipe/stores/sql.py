"""SQL metadata store through SQLModel: PostgreSQL via DATABASE_URL, else SQLite under LOGPIPE_DATA_DIR."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, create_engine

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def database_url(settings) -> str:
    if settings.database_url:
        return settings.database_url
    path = Path(settings.data_dir).resolve() / "logpipe.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def engine(settings) -> Engine:
    """One engine per URL per process, shared by every service of `run all`."""
    url = database_url(settings)
    with _engines_lock:
        existing = _engines.get(url)
        if existing is not None:
            return existing
        if url.startswith("sqlite"):
            created = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

            # Several services write one SQLite file; WAL lets readers run beside a writer.
            @event.listens_for(created, "connect")
            def _sqlite_pragmas(connection, _record) -> None:
                cursor = connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA busy_timeout=30000")
                cursor.close()
        else:
            created = create_engine(url, pool_pre_ping=True)
        _engines[url] = created
        return created


def init_db(sql_engine: Engine) -> None:
    """Create every table registered on SQLModel.metadata (import the models first)."""
    SQLModel.metadata.create_all(sql_engine)
