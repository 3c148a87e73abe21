"""Gateway fixtures (helpers live in gateway_support.py)."""

from __future__ import annotations

import pytest

from gateway_support import gateway_settings, start_gateway


@pytest.fixture
def gateway(kafka_bootstrap, topics, clickhouse, tmp_path):
    """The gateway for one test: its own topics, ClickHouse database and SQLite file."""
    settings = gateway_settings(kafka_bootstrap, topics.prefix, clickhouse, tmp_path)
    running, server = start_gateway(settings)
    try:
        yield running
    finally:
        server.stop()
