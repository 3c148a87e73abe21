"""Kafka clients: producing many values fast with aiokafka (whole batches per partition,
acknowledged), and the FastStream subscriber options our batch consumers share.

Ingest consumes through FastStream's confluent-kafka broker: librdkafka fetches and decodes
records in its own C threads, where aiokafka spent about a third of ingest's CPU in Python.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import threading
import time
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
        futures = [await producer.send(topic, value, key=key, headers=list(headers) or None)
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


async def first_record_parser(records: tuple, original: Callable[[tuple], Awaitable[Any]]) -> Any:
    """FastStream batch parser for handlers that read the ConsumerRecords themselves.

    FastStream's own batch parser copies every record's value and decodes its headers, a
    Python loop that cost ingest about a tenth of its CPU; the handlers here never look at
    the parsed body, so only the first record is parsed (for the message's metadata).
    """
    message = await original(records[:1])
    message.raw_message = records
    return message


class ConfluentCommitter:
    """Rebalance callbacks and exact offset commits for a FastStream confluent subscriber.

    confluent-kafka lets one call at a time touch a consumer, and `consume()` holds it while it
    waits, so every call goes through the single thread FastStream consumes on (between two
    polls). librdkafka runs the rebalance callbacks on that same thread, inside a poll: before
    partitions move, `on_revoke` has the event loop flush what was buffered, and commits that
    flush's offsets right there, since the thread they would otherwise queue for is this one.
    Offsets are committed only for partitions this member still owns.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, flush: Callable[[], Awaitable[Any]],
                 assigned: Callable[[Any], None] | None = None, timeout_s: float = 60.0) -> None:
        self._loop = loop
        self._flush = flush
        self._assigned = assigned
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._owned: set[tuple[str, int]] = set()
        self._pending: dict[tuple[str, int], int] = {}
        self._waiters: list[asyncio.Future] = []
        self._revoking = False
        self._consumer = None  # FastStream's AsyncConfluentConsumer, once a batch arrived

    def attach(self, async_consumer) -> None:
        self._consumer = async_consumer

    # -- librdkafka callbacks (consumer thread) ------------------------------------------------
    def on_assign(self, consumer, partitions) -> None:
        with self._lock:
            self._owned.update((tp.topic, tp.partition) for tp in partitions)
        if self._assigned is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._assigned, list(partitions))

    def on_revoke(self, consumer, partitions) -> None:
        if partitions and not self._loop.is_closed():
            self._revoking = True
            try:
                done = asyncio.run_coroutine_threadsafe(self._flush(), self._loop)
                deadline = time.monotonic() + self._timeout_s
                while True:
                    try:
                        done.result(timeout=0.05)
                        break
                    except concurrent.futures.TimeoutError:
                        self._drain(consumer)  # the flush's commits wait for this thread
                        if time.monotonic() > deadline:
                            raise
            except Exception as exc:  # noqa: BLE001 - replayed by the next owner
                log.warning("flush before rebalance failed: %s", exc)
            finally:
                self._revoking = False
                self._drain(consumer)
        with self._lock:
            self._owned.difference_update((tp.topic, tp.partition) for tp in partitions)

    # -- commits -------------------------------------------------------------------------------
    async def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit `offsets` (the next offset to read per topic and partition) and wait for it."""
        if not offsets:
            return
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("no consumer attached yet")
        waiter = self._loop.create_future()
        with self._lock:
            for key, offset in offsets.items():
                self._pending[key] = max(offset, self._pending.get(key, -1))
            self._waiters.append(waiter)
        if not self._revoking:
            # FastStream runs every call on its confluent consumer through this one-thread pool
            # (faststream issue 1904); queueing there puts the commit between two polls.
            self._loop.run_in_executor(consumer._thread_pool, self._drain, consumer.consumer)
        await waiter

    def _drain(self, consumer) -> None:
        from confluent_kafka import TopicPartition as ConfluentTopicPartition

        with self._lock:
            pending, self._pending = self._pending, {}
            waiters, self._waiters = self._waiters, []
            wanted = [ConfluentTopicPartition(topic, partition, offset)
                      for (topic, partition), offset in pending.items() if (topic, partition) in self._owned]
        if not waiters:
            return
        error: Exception | None = None
        if wanted:
            try:
                consumer.commit(offsets=wanted, asynchronous=False)
            except Exception as exc:  # noqa: BLE001 - handed to the waiters
                error = exc
        for waiter in waiters:
            self._loop.call_soon_threadsafe(_settle, waiter, error)


def _settle(waiter: asyncio.Future, error: Exception | None) -> None:
    if waiter.done():
        return
    if error is None:
        waiter.set_result(None)
    else:
        waiter.set_exception(error)


def _manual_batch_options(settings: Any, max_records: int) -> dict[str, Any]:
    """Options every batch consumer here shares: it buffers, writes, then commits exactly what
    it wrote itself (manual acks, raw records)."""
    from faststream import AckPolicy

    return dict(
        group_id=settings.group_id,
        batch=True,
        max_records=max_records,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset=settings.auto_offset_reset,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        check_crcs=settings.kafka_check_crcs,
        parser=first_record_parser,
        decoder=raw_decoder,
    )


def confluent_batch_options(settings: Any, max_records: int, committer: ConfluentCommitter) -> dict[str, Any]:
    """FastStream confluent batch-subscriber options; commits go through `committer`."""
    return dict(
        _manual_batch_options(settings, max_records),
        # A poll holds the consumer: keep it short so commits between polls wait little.
        polling_interval=0.1,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
        on_assign=committer.on_assign,
        on_revoke=committer.on_revoke,
    )


def batch_subscriber_options(settings: Any, max_records: int, listener: ConsumerRebalanceListener) -> dict[str, Any]:
    """FastStream (aiokafka) batch-subscriber options, with a flush before rebalance."""
    return dict(
        _manual_batch_options(settings, max_records),
        # Poll often; the consumer's own buffer enforces BATCH_TIMEOUT_SECONDS.
        batch_timeout_ms=int(min(settings.batch_timeout_seconds, 1.0) * 1000),
        listener=listener,
    )
