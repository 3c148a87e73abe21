"""Helpers shared by tests (importable as `support`: pytest puts tests/ on sys.path)."""
from __future__ import annotations

import asyncio
import contextlib
import time

from logpipe.core.kafka import new_producer, send_values


@contextlib.asynccontextmanager
async def running_ingest(kafka_bootstrap, topic_prefix, clickhouse, **overrides):
    """The real ingest app (lifespan included) against Tansu and chdb."""
    from logpipe.ingest.app import create_app
    from logpipe.ingest.settings import Settings

    options = dict(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        clickhouse_url=clickhouse.dsn,
        clickhouse_database=clickhouse.database,
        batch_size=500,
        batch_timeout_seconds=0.5,
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
        group_id=f"ingest-{topic_prefix}",
    )
    options.update(overrides)
    app = create_app(Settings(**options))
    async with app.router.lifespan_context(app):
        yield app


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = new_producer(bootstrap)
    await producer.start()
    try:
        await send_values(producer, topic, values)
    finally:
        await producer.stop()


async def produce_to_every_partition(bootstrap: str, topic: str, values: list[bytes], partitions: int) -> None:
    """Values spread over all `partitions` explicitly (send_values' round robin is process-wide,
    so where its next batch lands depends on what other code sent before)."""
    producer = new_producer(bootstrap)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, partition=i % partitions) for i, value in enumerate(values)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)

