"""Kafka I/O of the gateway: producing accepted records, tailing topics, offsets for metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Sequence

import orjson
import pyarrow as pa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from logpipe.core import tracing
from logpipe.core.kafka import new_producer, reachable, send_values
from logpipe.core.metrics import counter, gauge
from logpipe.core.record import wire_record
from logpipe.core.shippers import NotALogError, decode_message
from logpipe.gateway.service import Fanout

log = logging.getLogger(__name__)

PRODUCED = counter("logpipe_gateway_records_produced_total", "Records produced to raw-logs", ("protocol",))
REJECTED = counter("logpipe_gateway_requests_rejected_total", "Ingest requests refused", ("protocol", "reason"))
# The gateway sees every group's offsets (GET /api/metrics), so it exports lag for dashboards too.
CONSUMER_LAG = gauge("logpipe_kafka_consumer_lag", "Records not yet committed by a consumer group",
                     ("group", "topic", "partition"))


class ProduceError(RuntimeError):
    """Kafka did not acknowledge every record (HTTP 503: the client retries)."""


class RecordProducer:
    """Produces canonical records to one topic; returns only once Kafka acknowledged them all."""

    def __init__(self, bootstrap_servers: str, topic: str, *, max_request_size: int,
                 compression: str = "none", timeout_s: float = 10.0) -> None:
        self.topic = topic
        self.timeout_s = timeout_s
        self._producer = new_producer(
            bootstrap_servers,
            max_request_size=max(max_request_size, 1 << 20),
            compression_type=None if compression == "none" else compression,
            # Shorter than the wait below: a batch the broker did not take is failed (expired) by
            # the client before the request is answered 503, so it cannot still be delivered
            # after that answer (a broker back a moment later took the refused logs).
            request_timeout_ms=max(100, int(timeout_s * 1000) - 500),
        )
        self._started = False
        self._start_lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._start_lock:
            if not self._started:
                await self._producer.start()
                self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._producer.stop()

    async def ping(self) -> bool:
        if not self._started:
            return False
        try:
            return await reachable(self._producer)
        except (KafkaError, asyncio.TimeoutError, OSError):
            return False

    async def produce(self, records: list[dict[str, Any]], protocol: str) -> None:
        if not records:
            return
        try:
            await self.start()
            values = [orjson.dumps(record) for record in records]
            with tracing.span("kafka produce", **{"messaging.destination.name": self.topic,
                                                  "messaging.batch.message_count": len(values)}):
                await asyncio.wait_for(send_values(self._producer, self.topic, values,
                                                   headers=tracing.kafka_headers()), self.timeout_s)
        except (KafkaError, asyncio.TimeoutError, OSError) as exc:
            REJECTED.labels(protocol, "kafka").inc()
            raise ProduceError(f"Kafka did not acknowledge the records ({type(exc).__name__}: {exc}); "
                               "nothing is confirmed, retry the request") from exc
        PRODUCED.labels(protocol).inc(len(records))


class TopicTail:
    """Follows a topic from its end (no consumer group) and publishes each item to a Fanout.

    `decode` turns each fetched batch of Kafka messages into the items to publish.
    Started on the first subscriber, so a gateway nobody watches reads nothing.
    """

    def __init__(self, bootstrap_servers: str, topic: str, fanout: Fanout,
                 decode: Callable[[Sequence[Any]], Awaitable[list[Any]]]) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.fanout = fanout
        self.decode = decode
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()

    async def ensure_started(self, timeout_s: float = 10.0) -> None:
        if self._task is None or self._task.done():
            self._ready = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name=f"tail-{self.topic}")
        waiter = asyncio.create_task(self._ready.wait())
        done, _ = await asyncio.wait({waiter, self._task}, timeout=timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            if self._task.done() and self._task.exception():
                raise self._task.exception()  # type: ignore[misc]
            raise TimeoutError(f"could not start following topic {self.topic}")

    async def _run(self) -> None:
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap_servers, group_id=None, enable_auto_commit=False,
                auto_offset_reset="latest", fetch_max_wait_ms=100, metadata_max_age_ms=5000)
            try:
                await consumer.start()
                partitions = consumer.partitions_for_topic(self.topic)
                for _ in range(50):
                    if partitions:
                        break
                    await consumer._client.force_metadata_update()  # noqa: SLF001 - fresh topics
                    partitions = consumer.partitions_for_topic(self.topic)
                    await asyncio.sleep(0.1)
                if not partitions:
                    raise RuntimeError(f"topic {self.topic} does not exist")
                assignment = [TopicPartition(self.topic, p) for p in sorted(partitions)]
                consumer.assign(assignment)
                await consumer.seek_to_end(*assignment)
                # Resolve the end offsets now, so "from now on" means now and not first fetch.
                for tp in assignment:
                    await consumer.position(tp)
                self._ready.set()
                while True:
                    batches = await consumer.getmany(timeout_ms=500, max_records=2000)
                    messages = [message for partition in batches.values() for message in partition]
                    if not messages:
                        continue
                    items = await self.decode(messages)
                    now = time.monotonic()
                    for item in items:
                        self.fanout.publish(item, now)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the tail restarts; clients stay connected
                log.warning("tail of %s failed, restarting: %s", self.topic, exc)
                await asyncio.sleep(1.0)
            finally:
                try:
                    await consumer.stop()
                except Exception:  # noqa: BLE001
                    pass

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._task = None


class LiveRecords:
    """raw-logs messages as the rows ingest stores: the one normaliser (`core.shippers`), the
    shared pattern tagger (`logpipe.patterns`, state in the `patterns` tables) and this pipeline.

    Tagging here rather than waiting for ingest's row keeps the tail live (ingest writes in
    batches, seconds apart); ids agree because both taggers share the store and a pattern's id
    is a hash of the first message that made it (docs/api.md, "Live tail records").
    """

    def __init__(self, pipeline: str, max_record_bytes: int,
                 tagger_factory: Callable[[], Any] | None = None) -> None:
        self.pipeline = pipeline
        self.max_record_bytes = max_record_bytes
        self._tagger_factory = tagger_factory
        self._tagger: Any = None

    def records(self, messages: Sequence[Any]) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for message in messages:
            try:
                records.extend(decode_message(message.value, kafka_timestamp_ms=message.timestamp,
                                              topic=message.topic, partition=message.partition,
                                              offset=message.offset, max_bytes=self.max_record_bytes))
            except NotALogError:
                continue  # ingest sends it to the DLQ; it never becomes a stored log
        if not records:
            return []
        pattern_ids = self._pattern_ids([record["message"] for record in records])
        out = []
        for record, pattern_id in zip(records, pattern_ids):
            wire = wire_record(record)
            wire["pattern_id"] = pattern_id
            wire["pipeline"] = self.pipeline
            out.append(wire)
        return out

    def _pattern_ids(self, messages: list[str]) -> list[int]:
        if self._tagger_factory is None:
            return [0] * len(messages)
        if self._tagger is None:
            try:
                self._tagger = self._tagger_factory()
            except Exception:  # noqa: BLE001 - the tail keeps flowing; the next batch retries
                log.warning("live tail: pattern state unreadable, pattern_id 0 for now", exc_info=True)
                return [0] * len(messages)
        return self._tagger.tag(pa.array(messages, pa.string())).to_pylist()

    async def __call__(self, messages: Sequence[Any]) -> list[dict[str, Any]]:
        # Masking and mining cost CPU: off the event loop, so WebSockets keep flowing.
        return await asyncio.to_thread(self.records, messages)

    def close(self) -> None:
        """Store the patterns this tail mined (ingest would store the same ones)."""
        if self._tagger is not None:
            try:
                self._tagger.close()
            except Exception:  # noqa: BLE001 - shutting down; ingest writes these patterns too
                log.warning("could not store the live tail's new patterns", exc_info=True)


def decode_event(message) -> list[dict[str, Any]]:
    try:
        data = orjson.loads(message.value)
    except (orjson.JSONDecodeError, TypeError):
        return []
    return [{"type": "novel_error", "data": data}]


async def decode_events(messages: Sequence[Any]) -> list[dict[str, Any]]:
    return [event for message in messages for event in decode_event(message)]


class KafkaOffsets:
    """Offsets for GET /api/metrics: consumer-group lag and DLQ sizes."""

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._lock = asyncio.Lock()

    async def _clients(self) -> tuple[AIOKafkaConsumer, AIOKafkaAdminClient]:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None,
                                        enable_auto_commit=False, request_timeout_ms=5000)
            await consumer.start()
            self._consumer = consumer
        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=5000)
            await admin.start()
            self._admin = admin
        return self._consumer, self._admin

    async def partitions(self, topics: list[str]) -> list[TopicPartition]:
        consumer, _ = await self._clients()
        await consumer._client.force_metadata_update()  # noqa: SLF001 - topics created after start
        out = []
        for topic in topics:
            for partition in sorted(consumer.partitions_for_topic(topic) or ()):
                out.append(TopicPartition(topic, partition))
        return out

    async def snapshot(self, topics: list[str], dlq_topics: list[str], groups: list[str]) -> dict[str, Any]:
        async with self._lock:
            consumer, admin = await self._clients()
            partitions = await self.partitions(sorted(set(topics) | set(dlq_topics)))
            end = await consumer.end_offsets(partitions) if partitions else {}
            dlq_partitions = [tp for tp in partitions if tp.topic in dlq_topics]
            beginning = await consumer.beginning_offsets(dlq_partitions) if dlq_partitions else {}
            if not groups:
                listed = await admin.list_consumer_groups()
                groups = sorted({group[0] for group in listed})
            watched = [tp for tp in partitions if tp.topic in topics]
            committed: dict[str, dict[tuple[str, int], int]] = {}
            for group in groups:
                try:
                    # Partitions named explicitly: brokers such as Tansu do not answer "all of them".
                    offsets = await admin.list_consumer_group_offsets(group, partitions=watched)
                except KafkaError as exc:
                    log.debug("offsets of group %s unavailable: %s", group, exc)
                    continue
                mine = {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()
                        if tp.topic in topics and meta.offset >= 0}
                if mine:
                    committed[group] = mine
        for group, mine in committed.items():
            for (topic, partition), offset in mine.items():
                lag = max(0, end.get(TopicPartition(topic, partition), offset) - offset)
                CONSUMER_LAG.labels(group, topic, str(partition)).set(lag)
        return {
            # From the topic metadata, not from `end`: a partition's count must not depend on
            # the broker answering an offset for it (an empty DLQ still has its partitions).
            "partitions": {topic: sorted(tp.partition for tp in partitions if tp.topic == topic)
                           for topic in sorted({tp.topic for tp in partitions})},
            "end": {(tp.topic, tp.partition): offset for tp, offset in end.items()},
            "beginning": {(tp.topic, tp.partition): offset for tp, offset in beginning.items()},
            "committed": committed,
        }

    async def close(self) -> None:
        for client in (self._consumer, self._admin):
            if client is not None:
                try:
                    await (client.stop() if isinstance(client, AIOKafkaConsumer) else client.close())
                except Exception:  # noqa: BLE001
                    pass
        self._consumer = self._admin = None
