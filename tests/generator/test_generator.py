"""The generator: realistic families, incidents, and its REST control surface over real Tansu."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import datetime, timezone

import httpx
import orjson
from aiokafka import AIOKafkaConsumer

from logpipe.core.record import LogRecord
from logpipe.generator.service import FAMILIES, INCIDENT_ONLY, Incident, LogFactory
from support import wait_for


def test_records_are_valid_logs_with_every_field():
    records = LogFactory(seed=2, error_rate=0.3).batch(2000)
    for record in records:
        parsed = LogRecord.model_validate(record)
        assert parsed.record_id == record["record_id"]
    levels = Counter(r["level"] for r in records)
    assert set(levels) >= {"INFO", "DEBUG", "WARN", "ERROR"}
    assert len({r["record_id"] for r in records}) == 2000
    # Some errors carry stack traces, HTTP errors carry status and path.
    assert any(r["stack_trace"] for r in records if r["level"] == "ERROR")
    http = [r for r in records if r["attributes"]["family"] == "http_5xx"]
    assert http and all(500 <= r["http_status"] <= 504 and r["http_path"].startswith("/") for r in http)


def test_families_repeat_with_varying_values():
    records = LogFactory(seed=3, error_rate=1.0).batch(3000)
    timeouts = [r["message"] for r in records if r["attributes"]["family"] == "db_timeout"]
    assert len(timeouts) > 50
    assert all(m.startswith("Database connection timeout after ") and m.endswith(":5432") for m in timeouts)
    assert len(set(timeouts)) > 5  # hosts and milliseconds vary
    auth = [r for r in records if r["attributes"]["family"] == "auth_failed"]
    assert auth and all(r["user_id"] in r["message"] for r in auth)


def test_error_rate_is_respected():
    from logpipe.generator.service import SERVICE_FAMILIES

    records = LogFactory(seed=4, error_rate=0.10).batch(20000)
    share = sum(r["attributes"]["family"] in SERVICE_FAMILIES[r["service"]]["error"]
                and r["attributes"]["family"] not in SERVICE_FAMILIES[r["service"]]["ok"]
                for r in records) / len(records)
    assert 0.08 < share < 0.12


def test_incidents_new_error_surge_and_quiet():
    factory = LogFactory(seed=5, error_rate=0.05, incidents=[
        Incident("new_error", "order-service", 10, 10, family="tls_expired", rate_per_second=50),
        Incident("surge", "payment-service", 30, 10, family="db_timeout", multiplier=30),
        Incident("quiet", "notification-service", 50, 10),
    ])
    factory._family_rate = 2.0
    now = datetime.now(timezone.utc)
    before = factory.incident_records(5, 1.0, now)
    during = factory.incident_records(12, 1.0, now)
    assert before == []
    assert len(during) == 50 and {r["attributes"]["family"] for r in during} == {"tls_expired"}
    assert {r["service"] for r in during} == {"order-service"}
    surge = factory.incident_records(35, 1.0, now)
    assert len(surge) == 60 and {r["service"] for r in surge} == {"payment-service"}
    quiet = [factory.one(now, elapsed_s=55) for _ in range(2000)]
    assert "notification-service" not in {r["service"] for r in quiet}
    normal = [factory.one(now, elapsed_s=70) for _ in range(2000)]
    assert "notification-service" in {r["service"] for r in normal}
    # Incident-only families never appear in normal traffic.
    assert not {r["attributes"]["family"] for r in normal} & INCIDENT_ONLY
    assert INCIDENT_ONLY <= set(FAMILIES)


async def test_stop_waits_for_the_send_in_flight(monkeypatch):
    """A stop during a send counts that send: `produced` equals what reached the topic."""
    from logpipe.generator import handlers
    from logpipe.generator.settings import Settings

    delivered: list[bytes] = []
    in_flight, release = asyncio.Event(), asyncio.Event()

    async def slow_send(producer, topic, values):
        in_flight.set()
        await release.wait()
        delivered.extend(values)

    monkeypatch.setattr(handlers, "send_values", slow_send)
    generator = handlers.Generator(Settings(rate_per_second=1000, incidents="none", seed=3), producer=None, topic="t")
    generator.start()
    await asyncio.wait_for(in_flight.wait(), 5)
    stopping = asyncio.create_task(generator.stop())
    # A negative needs a bound: given 0.1 s, stop() still waits for the acknowledgement.
    done, _ = await asyncio.wait({stopping}, timeout=0.1)
    assert not done
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert delivered and generator.stats.produced == len(delivered)
    assert not generator.running


async def test_slow_acknowledgements_do_not_lower_the_rate(monkeypatch):
    """Each send takes 0.2 s of (virtual) time, four ticks' worth: the generator still makes
    its rate, sending what the elapsed time owes (it used to send one tick's worth per tick)."""
    from logpipe.generator import handlers
    from logpipe.generator.settings import Settings

    skew = [0.0]
    real_monotonic = time.monotonic
    monkeypatch.setattr(handlers.time, "monotonic", lambda: real_monotonic() + skew[0])
    sends: list[tuple[float, int]] = []
    enough = asyncio.Event()

    async def slow_send(producer, topic, values):
        skew[0] += 0.2
        sends.append((handlers.time.monotonic(), len(values)))
        if len(sends) >= 10:
            enough.set()

    monkeypatch.setattr(handlers, "send_values", slow_send)
    generator = handlers.Generator(Settings(rate_per_second=1000, incidents="none", seed=3), producer=None, topic="t")
    started = handlers.time.monotonic()
    generator.start()
    await asyncio.wait_for(enough.wait(), 10)
    await generator.stop()
    elapsed = sends[9][0] - started
    produced = sum(count for _, count in sends[:10])
    assert elapsed >= 2.0  # ten sends of 0.2 s each
    assert produced >= 0.9 * 1000 * (elapsed - 0.2)  # the rate over all but the last send's time
    assert max(count for _, count in sends) <= 1000 * handlers.Generator.catch_up_s


async def test_rest_control_over_real_kafka(kafka_bootstrap, topics, topic_prefix):
    from logpipe.generator.app import create_app
    from logpipe.generator.settings import Settings

    app = create_app(Settings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix,
                              rate_per_second=200, incidents="none", seed=9))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://generator") as client:
            assert (await client.get("/stats")).json()["running"] is False
            assert (await client.post("/start")).json()["running"] is True
            await wait_for(lambda: app.state.generator.stats.produced >= 100)
            changed = await client.put("/control", json={"rate_per_second": 1000, "error_rate_percentage": 50})
            assert changed.json() == {"rate_per_second": 1000, "error_rate_percentage": 50.0}
            assert (await client.put("/control", json={"rate_per_second": 0})).status_code == 422
            assert (await client.put("/control", json={"error_rate_percentage": 101})).status_code == 422
            assert (await client.put("/control", json={})).status_code == 422
            await wait_for(lambda: app.state.generator.stats.produced >= 500)
            stopped = (await client.post("/stop")).json()
            assert stopped["running"] is False
            stats = (await client.get("/stats")).json()
            assert stats["running"] is False and stats["rate_per_second"] == 1000
            produced = stats["produced"]
            assert produced >= 500
            assert (await client.get("/health")).json()["dependencies"] == {"kafka": "connected"}
            assert "logpipe_generator_logs_total" in (await client.get("/metrics")).text

    consumer = AIOKafkaConsumer(topics.raw_logs, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                                group_id=None, enable_auto_commit=False)
    await consumer.start()
    values = []
    try:
        while len(values) < produced:
            batches = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 10)
            for records in batches.values():
                values.extend(r.value for r in records)
    finally:
        await consumer.stop()
    assert len(values) == produced
    for value in values[:200]:
        LogRecord.model_validate(orjson.loads(value))
