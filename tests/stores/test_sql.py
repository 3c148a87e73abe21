"""The SQL store: the same code on SQLite and PostgreSQL, tables created idempotently."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlmodel import Field, SQLModel, select

from support import start_postgres

from logpipe.core.settings import CommonSettings
from logpipe.stores import sql
from logpipe.stores.sql import Anomaly, Baseline, ErrorPattern, NightlyReport

ANALYSIS_TABLES = {"nightly_reports", "error_patterns", "anomalies", "baselines"}


@pytest.fixture(scope="module")
def postgres_server():
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'logpipe.db'}"
    server = request.getfixturevalue("postgres_server")
    return server.url(server.create_database())


class ExampleToken(SQLModel, table=True):
    """A table defined outside stores/sql.py, as the gateway defines its token table."""

    __tablename__ = "test_example_tokens"
    id: int | None = Field(default=None, primary_key=True)
    name: str


def test_database_url_defaults_to_sqlite_in_the_data_dir(tmp_path):
    settings = CommonSettings(LOGPIPE_DATA_DIR=str(tmp_path))
    assert sql.database_url(settings) == f"sqlite:///{tmp_path / 'logpipe.db'}"
    production = CommonSettings(DATABASE_URL="postgresql://u:p@db:5432/logpipe")
    assert sql.database_url(production) == "postgresql+psycopg://u:p@db:5432/logpipe"
    assert sql.database_url(CommonSettings(DATABASE_URL="postgres://u:p@db/x")) == "postgresql+psycopg://u:p@db/x"


def test_engine_is_shared_per_url_and_sqlite_file_is_created(tmp_path):
    settings = CommonSettings(LOGPIPE_DATA_DIR=str(tmp_path / "nested" / "dir"))
    first = sql.engine(settings)
    assert sql.engine(settings) is first
    sql.init_db(first)
    assert (tmp_path / "nested" / "dir" / "logpipe.db").exists()
    with first.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_tables_are_created_idempotently_with_any_registered_model(sql_url):
    engine = sql.engine(sql_url)
    sql.init_db(engine)
    sql.init_db(engine)  # a second start changes nothing
    tables = set(sa.inspect(engine).get_table_names())
    assert ANALYSIS_TABLES | {"test_example_tokens"} <= tables
    assert sql.ping(engine)


def test_rows_round_trip_with_utc_times_json_and_big_counts(sql_url):
    engine = sql.engine(sql_url)
    sql.init_db(engine)
    end = datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc)
    report = NightlyReport(window_start=end - timedelta(hours=24), window_end=end, services=["a", "b"],
                           report={"anomalies": [{"severity": "high"}], "nested": {"ids": ["9007199254740991"]}},
                           total_logs=5_000_000_000)
    with sql.session(engine) as db:
        db.add(report)
        db.commit()
        db.add(ErrorPattern(report_id=report.id, pattern_id="9007199254740991", template="disk <*> full", count=3,
                            services=["a"], first_seen=end - timedelta(hours=1)))
        db.add(Anomaly(report_id=report.id, kind="pattern_spike", service="a", pattern_id="9007199254740991",
                       severity="high", z_score=9.5, bucket=end - timedelta(hours=1)))
        db.add(Baseline(pipeline="default", service="a", pattern_id="", hour_of_day=23, samples=2, mean=10.0,
                        m2=2.0, last_bucket=end - timedelta(hours=1)))
        db.add(ExampleToken(name="t"))
        db.commit()
    with sql.session(engine) as db:
        loaded = db.get(NightlyReport, report.id)
        assert loaded.window_end == end and loaded.window_end.tzinfo is not None
        assert loaded.services == ["a", "b"]
        assert loaded.report["nested"]["ids"] == ["9007199254740991"]
        assert loaded.total_logs == 5_000_000_000
        pattern = db.exec(select(ErrorPattern).where(ErrorPattern.report_id == report.id)).one()
        assert pattern.pattern_id == "9007199254740991" and pattern.first_seen == end - timedelta(hours=1)
        anomaly = db.exec(select(Anomaly).where(Anomaly.severity == "high")).one()
        assert anomaly.bucket == end - timedelta(hours=1)
        baseline = db.get(Baseline, ("default", "a", "", 23))
        assert baseline.mean == 10.0 and baseline.last_bucket == end - timedelta(hours=1)
