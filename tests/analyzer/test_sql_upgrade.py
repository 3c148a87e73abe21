"""An existing database from before incidents (SQLite and PostgreSQL) gains the incident
columns at start, keeps its rows, and takes new incidents."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from sqlmodel import select

# The anomalies table as the first schema created it.
OLD_SCHEMA = (
    "CREATE TABLE nightly_reports (id VARCHAR(32) PRIMARY KEY, pipeline VARCHAR(128) NOT NULL, "
    "status VARCHAR(16) NOT NULL)",
    "CREATE TABLE anomalies (id {serial} PRIMARY KEY, report_id VARCHAR(32) NOT NULL REFERENCES nightly_reports(id), "
    "kind VARCHAR(24) NOT NULL, service VARCHAR(200) NOT NULL, pattern_id VARCHAR(24) NOT NULL, "
    "bucket TIMESTAMP WITH TIME ZONE, observed FLOAT NOT NULL, expected FLOAT NOT NULL, stddev FLOAT NOT NULL, "
    "z_score FLOAT NOT NULL, severity VARCHAR(8) NOT NULL, description TEXT NOT NULL, "
    "created_at TIMESTAMP WITH TIME ZONE NOT NULL)",
    "INSERT INTO nightly_reports (id, pipeline, status) VALUES ('old', 'default', 'completed')",
    "INSERT INTO anomalies (report_id, kind, service, pattern_id, observed, expected, stddev, z_score, "
    "severity, description, created_at) VALUES ('old', 'pattern_spike', 'api', '7', 200, 20, 4, 12, 'high', "
    "'api: spike', '2026-05-01 00:00:00+00')",
)


@pytest.fixture(params=["sqlite", "postgresql"])
def old_database(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        url = server.url(server.create_database())
    from logpipe.stores import sql

    engine = sql.engine(url)
    serial = "SERIAL" if request.param == "postgresql" else "INTEGER"
    with engine.begin() as connection:
        for statement in OLD_SCHEMA:
            connection.execute(sa.text(statement.replace("{serial}", serial)))
    yield engine
    engine.dispose()


def test_an_old_anomalies_table_gains_the_incident_columns_and_keeps_its_rows(old_database):
    from logpipe.stores import sql
    from logpipe.stores.sql import Anomaly

    sql.init_db(old_database)
    sql.init_db(old_database)  # idempotent: a second start changes nothing
    columns = {column["name"] for column in sa.inspect(old_database).get_columns("anomalies")}
    assert {"incident_id", "start", "end", "peak", "hours", "observed_total", "expected_total", "excess",
            "ongoing", "related_group"} <= columns
    start = datetime(2026, 5, 4, 5, tzinfo=timezone.utc)
    with sql.session(old_database) as db:
        db.add(Anomaly(report_id="old", kind="service_quiet", service="api", severity="critical", incident_id="abc",
                       start=start, end=start.replace(hour=8), hours=3, expected_total=900, excess=-900,
                       ongoing=False, related_group="R1"))
        db.commit()
        old, new = db.exec(select(Anomaly).order_by(Anomaly.id)).all()
    assert (old.kind, old.observed, old.hours, old.excess, old.ongoing, old.related_group) == \
        ("pattern_spike", 200, 1, 0, False, "")
    assert (new.start, new.end, new.hours, new.excess, new.related_group) == (start, start.replace(hour=8), 3, -900, "R1")
