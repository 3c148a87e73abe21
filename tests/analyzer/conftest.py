"""Analyzer fixtures: logs with known incidents in real chdb, SQL on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from support import start_postgres
from logpipe.analyzer import synthetic as syn

DAYS = 8  # seven quiet days, then the incident day


@dataclass
class World:
    """What was generated, so tests can name the patterns they expect to be found."""

    store: object
    start: datetime
    incident_day: datetime
    refused_checkout: syn.PatternSpec
    refused_orders: syn.PatternSpec
    timeout_payments: syn.PatternSpec
    payment_step_checkout: syn.PatternSpec
    migration_orders: syn.PatternSpec
    patterns: list[syn.PatternSpec]

    def day_end(self, day: int) -> datetime:
        return self.start + timedelta(days=day + 1)


def build_world(store) -> World:
    start = syn.start_of_day() - timedelta(days=DAYS)
    refused_checkout = syn.PatternSpec("checkout", "Connection refused connecting to postgres at db-primary:5432 after {n} ms",
                                       "ERROR", 20)
    refused_orders = syn.PatternSpec("orders", "Connection refused while connecting to postgres db-primary:5432, "
                                     "retried after {n} ms", "ERROR", 15)
    timeout_payments = syn.PatternSpec("payments", "Timeout calling payment-provider after {n} ms", "ERROR", 12)
    payment_step_checkout = syn.PatternSpec("checkout", "Payment step failed for order {n}: upstream error", "ERROR", 3)
    migration_orders = syn.PatternSpec("orders", "Schema migration {n} failed: column already exists", "FATAL", 0)
    patterns = [
        refused_checkout, refused_orders, timeout_payments, payment_step_checkout,
        syn.PatternSpec("checkout", "Cart validation failed for item {n}", "WARN", 25),
        syn.PatternSpec("orders", "Order {n} not found in the order book", "WARN", 10),
        syn.PatternSpec("payments", "Card declined for transaction {n}", "WARN", 18),
        syn.PatternSpec("shipping", "Label printer queue is {n} jobs long", "WARN", 8),
    ]
    volume = {"checkout": 300, "orders": 250, "payments": 250, "shipping": 150}
    history = syn.Scenario(start=start, hours=24 * (DAYS - 1), patterns=patterns, volume_per_hour=volume, seed=3)
    incident_day = start + timedelta(days=DAYS - 1)
    incident = syn.Scenario(
        start=incident_day, hours=24, volume_per_hour=volume, seed=4,
        patterns=patterns,
        incidents=[syn.Incident(timeout_payments, start_hour=14, hours=2, factor=12, cascade=payment_step_checkout)],
        quiet_from_hour={"shipping": 20})
    first = syn.build(history)
    store.insert_arrow("logs", first)
    store.insert_arrow("logs", syn.build(incident, record_offset=first.num_rows))
    # The new FATAL pattern: 30 events in the afternoon of the incident day only.
    burst = syn.Scenario(start=incident_day + timedelta(hours=16), hours=1, volume_per_hour={},
                         patterns=[syn.PatternSpec("orders", migration_orders.template, "FATAL", 30)], seed=5)
    store.insert_arrow("logs", syn.build(burst, record_offset=10_000_000))
    return World(store, start, incident_day, refused_checkout, refused_orders, timeout_payments,
                 payment_step_checkout, migration_orders, patterns)


@pytest.fixture(scope="module")
def world(chdb_dsn):
    """Eight days of logs, written once per module into a database of their own."""
    from logpipe.stores.clickhouse import ClickHouseStore

    store = ClickHouseStore(chdb_dsn, database=f"analysis_{uuid.uuid4().hex[:10]}")
    store.apply_schema(ttl_days=3650)
    yield build_world(store)
    store.command(f"DROP DATABASE IF EXISTS {store.database} SYNC")


@pytest.fixture(scope="session")
def postgres_server():
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_engine(request, tmp_path):
    from logpipe.stores import sql

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'logpipe.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        url = server.url(server.create_database())
    engine = sql.engine(url)
    sql.init_db(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path):
    from logpipe.stores import sql

    engine = sql.engine(f"sqlite:///{tmp_path / 'logpipe.db'}")
    sql.init_db(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def analyzer_settings(tmp_path):
    from logpipe.analyzer.settings import Settings

    return Settings(LOGPIPE_DATA_DIR=str(tmp_path), llm_backend="none", ANALYSIS_SCHEDULE_CRON="",
                    novel_errors_enabled=False)
