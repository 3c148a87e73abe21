"""Circuit breakers (core/circuit.py): states and back-off, what /health and /metrics show, the
consumer pausing while one is open, and the Redis cache skipped while its circuit is open."""

from __future__ import annotations

import errno
import uuid
from typing import NamedTuple

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import REGISTRY

from logpipe.core.broker import free_port
from logpipe.core.circuit import CircuitBreaker, DependencyUnavailable, is_outage
from logpipe.core.consumer import BatchConsumer, ConsumerOptions, Messages
from logpipe.core.health import Health
from logpipe.core.http import create_service_app
from logpipe.stores.cache import FallbackCache, RedisCache
from support import produce, wait_for


class Record(NamedTuple):
    value: bytes
    topic: str
    partition: int
    offset: int


async def committed(bootstrap: str, group: str, topic: str) -> int:
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        return sum([await reader.committed(TopicPartition(topic, p)) or 0 for p in range(4)])
    finally:
        await reader.stop()


def sample(name: str, service: str, dependency: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"service": service, "dependency": dependency})


def test_a_breaker_opens_after_the_threshold_backs_off_exponentially_and_closes_on_success():
    service = f"svc-{uuid.uuid4().hex[:6]}"
    breaker = CircuitBreaker("store", service, threshold=3, base_delay_s=0.5, max_delay_s=3.0)
    assert breaker.state == "closed" and breaker.delay() == 0.0
    delays = []
    for _ in range(5):
        breaker.record_failure(ConnectionError("refused"))
        delays.append(breaker.delay())
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert breaker.state == "open" and breaker.last_error == "ConnectionError: refused"
    assert sample("logpipe_circuit_open", service, "store") == 1
    assert sample("logpipe_dependency_retries_total", service, "store") == 5
    breaker.record_success()
    assert breaker.state == "closed" and breaker.view()["opened_total"] == 1
    assert sample("logpipe_circuit_open", service, "store") == 0


def test_outages_are_told_from_refusals():
    assert is_outage(ConnectionRefusedError()) and is_outage(TimeoutError())
    assert is_outage(OSError(errno.ENOSPC, "No space left on device"))
    assert is_outage(DependencyUnavailable("qdrant", "away"))
    assert not is_outage(ValueError("bad vector")) and not is_outage(OSError(errno.ENOENT, "missing"))


async def test_health_shows_an_open_circuit_as_degraded_with_the_reason():
    service = f"svc-{uuid.uuid4().hex[:6]}"
    health = Health(service)
    health.add("kafka", lambda: True)
    breaker = health.circuit("clickhouse", threshold=2)
    app = create_service_app(service, health)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        assert (await client.get("/health")).json()["circuits"] == {"clickhouse": "closed"}
        breaker.record_failure("OSError: disk full")
        breaker.record_failure("OSError: disk full")
        response = await client.get("/health")
        body = response.json()
        assert response.status_code == 200 and body["status"] == "degraded"
        assert body["circuits"] == {"clickhouse": "open"}
        assert body["reasons"] == {"circuit:clickhouse": "open after 2 failures: OSError: disk full"}
        metrics = (await client.get("/metrics")).text
        assert f'logpipe_circuit_open{{dependency="clickhouse",service="{service}"}} 1.0' in metrics
        breaker.record_success()
        body = (await client.get("/health")).json()
        assert body["status"] == "healthy" and "reasons" not in body


async def test_an_open_circuit_pauses_fetching_and_commits_nothing_until_it_closes(kafka_bootstrap, topics):
    down = {"now": True}
    written: list[bytes] = []

    async def write(batch) -> None:
        if down["now"]:
            raise DependencyUnavailable("store", "store unavailable (test)")
        written.extend(record.value for chunk in batch.chunks for record in chunk)

    breaker = CircuitBreaker("store", f"test-{uuid.uuid4().hex[:6]}", threshold=1, base_delay_s=0.05, max_delay_s=0.2)
    group = f"circuit-{uuid.uuid4().hex[:8]}"
    options = ConsumerOptions(bootstrap_servers=kafka_bootstrap, topics=[topics.raw_logs], group_id=group,
                              batch_size=5, batch_timeout_seconds=0.1, session_timeout_ms=2000,
                              heartbeat_interval_ms=500, retry_base_seconds=0.05, retry_max_seconds=0.2,
                              # Room for every record: only the open circuit can pause fetching here.
                              max_batches_in_flight=100)
    consumer = BatchConsumer(options, decode=lambda messages: Messages(
        Record(m.value(), m.topic(), m.partition(), m.offset()) for m in messages), write=write,
                             name="circuit-test", circuits={"store": breaker})
    consumer.start()
    try:
        await produce(kafka_bootstrap, topics.raw_logs, [f"r{i}".encode() for i in range(40)])
        await wait_for(lambda: breaker.is_open and consumer.stats.paused, timeout=30)
        # Paused with room to spare: fetching stopped short of the 40 records produced.
        held = consumer.stats.consumed
        assert held < 40
        assert await committed(kafka_bootstrap, group, topics.raw_logs) == 0
        retries = breaker.retries_total
        await wait_for(lambda: breaker.retries_total >= retries + 3, timeout=10)
        assert consumer.stats.consumed == held and written == []
        down["now"] = False
        await wait_for(lambda: len(written) == 40, timeout=30)

        async def all_committed() -> bool:
            return await committed(kafka_bootstrap, group, topics.raw_logs) == 40

        await wait_for(all_committed, timeout=15)
        assert breaker.state == "closed" and sorted(written) == sorted(f"r{i}".encode() for i in range(40))
        await wait_for(lambda: not consumer.stats.paused, timeout=5)
    finally:
        await consumer.stop(timeout_s=10)


async def test_the_redis_cache_is_skipped_while_its_circuit_is_open():
    breaker = CircuitBreaker("redis", f"test-{uuid.uuid4().hex[:6]}", threshold=2, base_delay_s=60, max_delay_s=60)
    cache = FallbackCache(RedisCache(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.3), breaker=breaker)
    try:
        for _ in range(2):
            assert await cache.get_many(["a", "b"]) == [None, None]
        assert breaker.is_open and cache.errors == 2
        # Open: Redis is not asked (no connect attempt, no timeout), every key is a miss.
        assert await cache.get_many(["a"]) == [None]
        await cache.set_many({"a": b"x"})
        assert cache.skipped == 2 and cache.errors == 2
    finally:
        await cache.close()
