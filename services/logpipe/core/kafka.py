"""Producing many values fast with aiokafka: whole batches per partition, acknowledged."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any, Awaitable, Callable, Sequence

from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener

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
                      keys: Sequence[bytes | None] | None = None) -> None:
    """Send every value and return once the broker acknowledged all of them.

    Keyless values are packed into record batches spread round-robin over the partitions
    (a few microseconds per value instead of one `send` each); keyed values use `send` so
    the key picks the partition.
    """
    if not values:
        return
    if keys is not None:
        futures = [await producer.send(topic, value, key=key) for value, key in zip(values, keys)]
        await asyncio.gather(*futures)
        return
    partitions = sorted(await producer.partitions_for(topic))
    futures = []
    batch = producer.create_batch()
    for value in values:
        if batch.append(key=None, value=value, timestamp=None) is None:
            if batch.record_count() == 0:
                raise ValueError(f"a {len(value)}-byte value does not fit in one Kafka batch")
            batch.close()
            futures.append(await producer.send_batch(batch, topic, partition=partitions[next(_round_robin) % len(partitions)]))
            batch = producer.create_batch()
            if batch.append(key=None, value=value, timestamp=None) is None:
                raise ValueError(f"a {len(value)}-byte value does not fit in one Kafka batch")
    if batch.record_count():
        batch.close()
        futures.append(await producer.send_batch(batch, topic, partition=partitions[next(_round_robin) % len(partitions)]))
    await asyncio.gather(*futures)


async def reachable(producer: AIOKafkaProducer, timeout_s: float = 2.5) -> bool:
    """Health probe: the broker answers a metadata request."""
    metadata = await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout=timeout_s)
    return bool(metadata.brokers())


class FlushOnRebalance(ConsumerRebalanceListener):
    """Write and commit what a consumer buffered before its partitions move; tell it what arrived.

    `flush` failing is logged, not raised: the next owner replays the uncommitted records.
    """

    def __init__(self, flush: Callable[[], Awaitable[Any]],
                 assigned: Callable[[Any], None] | None = None) -> None:
        self._flush = flush
        self._assigned = assigned

    async def on_partitions_revoked(self, revoked) -> None:
        if revoked:
            try:
                await self._flush()
            except Exception as exc:  # noqa: BLE001 - replayed by the next owner
                log.warning("flush before rebalance failed: %s", exc)

    async def on_partitions_assigned(self, assigned) -> None:
        if self._assigned is not None:
            self._assigned(assigned)


async def raw_decoder(message) -> Any:
    """FastStream decoder for batch handlers that read the ConsumerRecords themselves."""
    return None


def batch_subscriber_options(settings: Any, max_records: int, listener: ConsumerRebalanceListener) -> dict[str, Any]:
    """FastStream batch-subscriber options shared by consumers that buffer, write, then commit
    exactly what they wrote themselves (manual acks, raw records, a flush before rebalance)."""
    from faststream import AckPolicy

    return dict(
        group_id=settings.group_id,
        batch=True,
        max_records=max_records,
        # Poll often; the consumer's own buffer enforces BATCH_TIMEOUT_SECONDS.
        batch_timeout_ms=int(min(settings.batch_timeout_seconds, 1.0) * 1000),
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset=settings.auto_offset_reset,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        listener=listener,
        decoder=raw_decoder,
    )
