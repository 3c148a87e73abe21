"""Producing to Kafka with aiokafka: many values fast (whole batches per partition,
acknowledged) and a health probe.

Batch consumers (ingest, the vectorizer) run on `core/consumer.py`, on confluent-kafka.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Sequence

from aiokafka import AIOKafkaProducer

from logpipe.core import tracing

log = logging.getLogger(__name__)

_round_robin = itertools.count()


def new_producer(bootstrap_servers: str, **kwargs) -> AIOKafkaProducer:
    """A producer that waits for the leader's acknowledgement (Tansu has no idempotent producer)."""
    options = dict(bootstrap_servers=bootstrap_servers, acks=1, linger_ms=5,
                   max_batch_size=1 << 20, max_request_size=8 << 20, request_timeout_ms=30000,
                   enable_idempotence=False)
    options.update(kwargs)
    return AIOKafkaProducer(**options)


async def send_values(producer: AIOKafkaProducer, topic: str, values: Sequence[bytes],
                      keys: Sequence[bytes | None] | None = None,
                      headers: Sequence[tuple[str, bytes]] = ()) -> None:
    """Send every value and return once the broker acknowledged all of them.

    Keyless values are packed into record batches spread round-robin over the partitions
    (a few microseconds per value instead of one `send` each); keyed values use `send` so
    the key picks the partition. `headers` go on every record (the trace context,
    core/tracing.py `kafka_headers`).
    """
    if not values:
        return
    if keys is not None:
        futures = [await producer.send(topic, value, key=key, headers=list(tracing.for_send(headers)) or None)
                   for value, key in zip(values, keys)]
        await asyncio.gather(*futures)
        return
    partitions = sorted(await producer.partitions_for(topic))
    headers = list(headers)  # the record builder takes a list only
    futures = []
    batch = producer.create_batch()
    for value in values:
        if batch.append(key=None, value=value, timestamp=None, headers=headers) is None:
            if batch.record_count() == 0:
                raise ValueError(f"a {len(value)}-byte value does not fit in one Kafka batch")
            batch.close()
            futures.append(await producer.send_batch(batch, topic, partition=partitions[next(_round_robin) % len(partitions)]))
            batch = producer.create_batch()
            if batch.append(key=None, value=value, timestamp=None, headers=headers) is None:
                raise ValueError(f"a {len(value)}-byte value does not fit in one Kafka batch")
    if batch.record_count():
        batch.close()
        futures.append(await producer.send_batch(batch, topic, partition=partitions[next(_round_robin) % len(partitions)]))
    await asyncio.gather(*futures)


async def reachable(producer: AIOKafkaProducer, timeout_s: float = 2.5) -> bool:
    """Health probe: the broker answers a metadata request."""
    metadata = await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout=timeout_s)
    return bool(metadata.brokers())
