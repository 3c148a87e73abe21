"""SQL metadata through SQLModel: PostgreSQL (`DATABASE_URL`) in production, a SQLite file
under `LOGPIPE_DATA_DIR/logpipe.db` as the embedded default. The same code runs on both.

`engine(settings)` and `init_db(engine)` are generic: any module registers its tables on
`SQLModel.metadata` by defining them, and `init_db` creates whatever is registered.
The analysis tables live here (not in the analyzer) so the gateway can read reports without
importing another service.
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Field, Session, SQLModel

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def database_url(settings: Any) -> str:
    """The SQLAlchemy URL for `settings` (anything with `database_url` and `data_dir`)."""
    url = (getattr(settings, "database_url", "") or "").strip()
    if not url:
        data_dir = Path(getattr(settings, "data_dir", "data"))
        return f"sqlite:///{(data_dir / 'logpipe.db').resolve()}"
    # Operators paste libpq URLs; psycopg 3 is the driver we ship.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def engine(settings_or_url: Any) -> Engine:
    """One engine per URL per process (pools and SQLite locks are per engine)."""
    url = settings_or_url if isinstance(settings_or_url, str) else database_url(settings_or_url)
    with _engines_lock:
        found = _engines.get(url)
        if found is not None:
            return found
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            created = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(created, "connect", _sqlite_pragmas)
        else:
            created = sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
        _engines[url] = created
        return created


def _sqlite_pragmas(connection, _record) -> None:
    # WAL lets the gateway read reports while the analyzer writes one.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def init_db(target: Engine) -> None:
    """Create every table registered on `SQLModel.metadata` that does not exist yet, and add
    the columns the analysis tables gained since an existing database was created."""
    SQLModel.metadata.create_all(target, checkfirst=True)
    _add_missing_columns(target, ANALYSIS_TABLES)


# Tables whose later columns are added in place (each new column is nullable or has a
# server default, so existing rows stay valid).
ANALYSIS_TABLES = ("nightly_reports", "error_patterns", "anomalies")


def _add_missing_columns(target: Engine, tables: tuple[str, ...]) -> None:
    inspector = sa.inspect(target)
    preparer = target.dialect.identifier_preparer
    with target.begin() as connection:
        for name in tables:
            table = SQLModel.metadata.tables.get(name)
            if table is None or not inspector.has_table(name):
                continue
            present = {column["name"] for column in inspector.get_columns(name)}
            for column in table.columns:
                if column.name in present:
                    continue
                ddl = (f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {preparer.format_column(column)} "
                       f"{column.type.compile(target.dialect)}")
                if column.server_default is not None:
                    default = column.server_default.arg
                    if isinstance(default, str):
                        default = "'" + default.replace("'", "''") + "'"
                    else:
                        default = default.compile(dialect=target.dialect)
                    ddl += f" DEFAULT {default}"
                connection.execute(sa.text(ddl))


def session(target: Engine) -> Session:
    return Session(target, expire_on_commit=False)


def dispose_all() -> None:
    with _engines_lock:
        for created in _engines.values():
            created.dispose()
        _engines.clear()


def ping(target: Engine) -> bool:
    try:
        with target.connect() as connection:
            return connection.execute(sa.text("SELECT 1")).scalar() == 1
    except Exception:  # noqa: BLE001 - a failing probe means disconnected
        return False


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(sa.types.TypeDecorator):
    """Timezone-aware UTC datetimes on both backends (SQLite keeps no zone of its own)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                value = value.replace(tzinfo=timezone.utc)
            value = value.astimezone(timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None:
            value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return value


def _utc(**kwargs) -> Any:
    return Field(sa_type=UTCDateTime, **kwargs)


# --- analysis tables -------------------------------------------------------------------
# pattern ids are ClickHouse UInt64 (they overflow a signed BIGINT), so they are stored as
# their decimal text.

class NightlyReport(SQLModel, table=True):
    """One analysis run: its status while it runs, its report once done."""

    __tablename__ = "nightly_reports"

    id: str = Field(default_factory=_new_id, primary_key=True, max_length=32)
    pipeline: str = Field(default="default", index=True, max_length=128)
    status: str = Field(default="pending", index=True, max_length=16)  # pending|running|completed|failed
    trigger: str = Field(default="api", max_length=16)  # api|schedule|cli
    created_at: datetime = _utc(default_factory=utcnow, index=True)
    started_at: datetime | None = _utc(default=None)
    finished_at: datetime | None = _utc(default=None)
    window_start: datetime = _utc()
    window_end: datetime = _utc(index=True)
    window_hours: float = 24.0
    services: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    summary: str = Field(default="", sa_type=sa.Text)
    summary_model: str = Field(default="", max_length=200)
    llm_model: str = Field(default="", max_length=200)
    error: str = Field(default="", sa_type=sa.Text)
    total_logs: int = Field(default=0, sa_type=sa.BigInteger)
    total_errors: int = Field(default=0, sa_type=sa.BigInteger)
    anomaly_count: int = 0
    analysis_seconds: float = 0.0
    llm_seconds: float = 0.0
    report: dict = Field(default_factory=dict, sa_type=sa.JSON)
    markdown: str = Field(default="", sa_type=sa.Text)


class ErrorPattern(SQLModel, table=True):
    """A pattern as one report saw it."""

    __tablename__ = "error_patterns"
    __table_args__ = (sa.UniqueConstraint("report_id", "pattern_id"),)

    id: int | None = Field(default=None, primary_key=True)
    report_id: str = Field(foreign_key="nightly_reports.id", index=True, max_length=32, ondelete="CASCADE")
    pattern_id: str = Field(index=True, max_length=24)
    template: str = Field(default="", sa_type=sa.Text)
    example: str = Field(default="", sa_type=sa.Text)
    level: str = Field(default="ERROR", max_length=8)
    count: int = Field(default=0, sa_type=sa.BigInteger)
    services: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    first_seen: datetime | None = _utc(default=None)
    last_seen: datetime | None = _utc(default=None)
    expected: float | None = None
    trend: str = Field(default="", max_length=16)  # new|rising|falling|stable
    is_new: bool = False
    cluster_id: str = Field(default="", max_length=32)


class Anomaly(SQLModel, table=True):
    __tablename__ = "anomalies"

    id: int | None = Field(default=None, primary_key=True)
    report_id: str = Field(foreign_key="nightly_reports.id", index=True, max_length=32, ondelete="CASCADE")
    # pattern_spike|volume_spike|volume_drop|pattern_drop|service_quiet|new_pattern
    kind: str = Field(max_length=24)
    service: str = Field(index=True, max_length=200)
    pattern_id: str = Field(default="", max_length=24)
    bucket: datetime | None = _utc(default=None)
    observed: float = 0.0
    expected: float = 0.0
    stddev: float = 0.0
    z_score: float = 0.0
    severity: str = Field(index=True, max_length=8)  # low|medium|high|critical
    description: str = Field(default="", sa_type=sa.Text)
    created_at: datetime = _utc(default_factory=utcnow)
    # The incident: consecutive anomalous hours of one series. `bucket` is its peak hour
    # (kept for readers of the first schema); `peak` says the same under its own name.
    incident_id: str = Field(default="", max_length=16, sa_column_kwargs={"server_default": ""})
    start: datetime | None = _utc(default=None)
    end: datetime | None = _utc(default=None)
    peak: datetime | None = _utc(default=None)
    hours: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    observed_total: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})
    expected_total: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})
    excess: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})
    ongoing: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    related_group: str = Field(default="", max_length=16, sa_column_kwargs={"server_default": ""})


class Baseline(SQLModel, table=True):
    """Running mean/variance (Welford) of hourly counts per (service, pattern, hour of day).

    `pattern_id` is "" for a service's whole volume. `last_bucket` is the latest hour already
    folded in, so overlapping runs never count an hour twice.
    """

    __tablename__ = "baselines"

    pipeline: str = Field(primary_key=True, max_length=128)
    service: str = Field(primary_key=True, max_length=200)
    pattern_id: str = Field(primary_key=True, max_length=24)
    hour_of_day: int = Field(primary_key=True)
    samples: int = 0
    mean: float = 0.0
    m2: float = 0.0
    last_bucket: datetime | None = _utc(default=None)
    updated_at: datetime = _utc(default_factory=utcnow)


# The gateway's API tokens: only a SHA-256 of each token is stored (see gateway/auth.py).
class ApiToken(SQLModel, table=True):
    __tablename__ = "api_tokens"

    id: str = Field(primary_key=True, max_length=12)
    name: str = Field(max_length=200)
    scopes: str = Field(max_length=100)  # comma-separated, sorted
    pipeline: str | None = Field(default=None, max_length=200)
    token_hash: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    revoked_at: datetime | None = None
