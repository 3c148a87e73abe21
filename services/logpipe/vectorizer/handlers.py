"""vectorizer's Kafka subscriber and HTTP routes.

Delivery: records are buffered until BATCH_SIZE or BATCH_TIMEOUT_SECONDS; one flush embeds,
upserts into Qdrant, publishes dead letters and novel errors, and only then commits the
offsets. A crash before the commit replays the batch, and the replay overwrites the same
points (ids derive from record ids): nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition
from fastapi import APIRouter, Request
from faststream.kafka import KafkaBroker, KafkaMessage

from logpipe.core import metrics, tracing
from logpipe.core.kafka import FlushOnRebalance, batch_subscriber_options, send_values
from logpipe.core.topics import Topics
from logpipe.vectorizer.service import BatchOutcome, QueueMessage, VectorizerPipeline
from logpipe.vectorizer.settings import Settings

log = logging.getLogger(__name__)

CONSUMED = metrics.counter("logpipe_vectorizer_consumed_total", "Records consumed from vectorization-queue")
VECTORIZED = metrics.counter("logpipe_vectorizer_vectorized_total", "Points upserted into Qdrant")
REUSED = metrics.counter("logpipe_vectorizer_reused_embeddings_total",
                         "Records that reused the embedding of an identical message in their batch")
DEAD = metrics.counter("logpipe_vectorizer_dlq_total", "Records sent to vectorization-dlq", ("stage",))
NOVEL = metrics.counter("logpipe_vectorizer_novel_errors_total", "Errors unlike any earlier error")
RETRIES = metrics.counter("logpipe_vectorizer_retries_total", "Retried embedder/store calls", ("stage",))
NOVELTY_FAILURES = metrics.counter("logpipe_vectorizer_novelty_failures_total",
                                   "Batches whose novelty check failed (vectors still stored)")
BATCH_SECONDS = metrics.histogram("logpipe_vectorizer_batch_seconds", "Time to process one batch",
                                  buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))


@dataclass
class Stats:
    consumed: int = 0
    vectorized: int = 0
    reused_embeddings: int = 0
    distinct_texts: int = 0
    dlq: int = 0
    novel: int = 0
    batches: int = 0
    retries: int = 0
    paused: bool = False
    last_error: str | None = None
    last_flush_at: float | None = None
    started_at: float = field(default_factory=time.time)


class Vectorizer:
    """Buffers queue records, runs the pipeline per batch, publishes, commits."""

    def __init__(self, settings: Settings, pipeline: VectorizerPipeline, producer: AIOKafkaProducer,
                 store: Any) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.producer = producer
        self.store = store
        self.topics = Topics(settings.topic_prefix)
        self.stats = Stats()
        self.recent_novel: deque[dict] = deque(maxlen=20)
        self._buffer: list[QueueMessage] = []
        self._trace_contexts: list = []  # of the buffered records, while tracing is on
        self._buffer_since: float | None = None
        self._lock = asyncio.Lock()
        self._consumer = None
        self._closing = False
        self._timer_task: asyncio.Task | None = None
        self._optimizing: asyncio.Task | None = None
        self._points_since_optimize = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def start(self) -> None:
        self._timer_task = asyncio.create_task(self._timer(), name="vectorizer-batch-timer")

    async def on_records(self, records: tuple, message: KafkaMessage) -> None:
        batch = [QueueMessage(r.value, r.topic, r.partition, r.offset, r.timestamp) for r in records]
        if tracing.enabled():
            self._trace_contexts.extend(tracing.contexts_of(records))
        self.stats.consumed += len(batch)
        CONSUMED.inc(len(batch))
        async with self._lock:
            if not self._buffer:
                self._buffer_since = time.monotonic()
            self._buffer.extend(batch)
            self._consumer = message.consumer
            delay = max(self.settings.retry_base_seconds, 0.05)
            while len(self._buffer) >= self.settings.batch_size:
                try:
                    await self._flush_locked(self.settings.batch_size)
                except Exception:
                    if len(self._buffer) < self.settings.max_buffered or self._closing:
                        raise
                    # Full: hold the consumer here, so nothing more is fetched, and retry.
                    self.stats.paused = True
                    log.error("vectorizer buffer full (%d records); consumption paused, retrying in %.1fs",
                              len(self._buffer), delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
            self.stats.paused = False

    async def _timer(self) -> None:
        timeout = self.settings.batch_timeout_seconds
        while not self._closing:
            await asyncio.sleep(min(0.25, timeout / 4))
            since = self._buffer_since
            if since is not None and time.monotonic() - since >= timeout:
                async with self._lock:
                    try:
                        await self._flush_locked()
                    except Exception as exc:  # noqa: BLE001 - kept in the buffer, retried next tick
                        log.error("vectorizer flush failed; will retry: %s", exc)

    async def flush(self) -> dict[str, Any]:
        async with self._lock:
            return await self._flush_locked()

    async def _flush_locked(self, limit: int | None = None) -> dict[str, Any]:
        if not self._buffer:
            self._buffer_since = None
            return BatchOutcome().summary()
        count = limit or len(self._buffer)
        messages, self._buffer = self._buffer[:count], self._buffer[count:]
        self._buffer_since = time.monotonic() if self._buffer else None
        started = time.perf_counter()
        contexts, self._trace_contexts = self._trace_contexts[:32], []
        try:
            with tracing.batch_span("vectorizer batch", contexts, **{"logpipe.records": len(messages)}):
                outcome = await self.pipeline.process(messages)
            if outcome.dead_letters:
                await send_values(self.producer, self.topics.vectorization_dlq,
                                  [dead.to_bytes() for dead in outcome.dead_letters])
            if outcome.novel_events:
                await send_values(self.producer, self.topics.novel_errors,
                                  [orjson.dumps(event) for event in outcome.novel_events],
                                  keys=[str(e.get("service") or "").encode() for e in outcome.novel_events])
            await self._commit(messages)
            self.pipeline.remember(outcome)
        except Exception as exc:
            # Not committed: put the batch back so the next flush tries again, in order.
            self._buffer = messages + self._buffer
            self._buffer_since = self._buffer_since or time.monotonic()
            self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
            raise
        self._account(outcome)
        BATCH_SECONDS.observe(time.perf_counter() - started)
        self._maybe_optimize(outcome.upserted)
        return outcome.summary()

    def _account(self, outcome) -> None:
        self.stats.batches += 1
        self.stats.vectorized += outcome.upserted
        self.stats.reused_embeddings += outcome.reused
        self.stats.distinct_texts += outcome.distinct_texts
        self.stats.dlq += len(outcome.dead_letters)
        self.stats.novel += len(outcome.novel_events)
        self.stats.last_flush_at = time.time()
        VECTORIZED.inc(outcome.upserted)
        REUSED.inc(outcome.reused)
        NOVEL.inc(len(outcome.novel_events))
        for stage, count in outcome.retries.items():
            RETRIES.labels(stage).inc(count)
            self.stats.retries += count
        for dead in outcome.dead_letters:
            DEAD.labels(dead.stage).inc()
        if outcome.dead_letters:
            first = outcome.dead_letters[0]
            self.stats.last_error = f"{first.stage}: {first.error}"
            log.warning("records sent to vectorization-dlq", extra={
                "count": len(outcome.dead_letters), "stage": first.stage, "reason": first.error})
        if outcome.novelty_error:
            NOVELTY_FAILURES.inc()
            log.warning("novelty check failed; vectors stored without it: %s", outcome.novelty_error)
        for event in outcome.novel_events:
            self.recent_novel.appendleft(event)
            log.info("novel error", extra={"record_id": event["record_id"], "service": event["service"],
                                           "similarity": event["similarity"]})

    def _maybe_optimize(self, upserted: int) -> None:
        """Index new points in the background once enough have arrived (embedded Qdrant only)."""
        threshold = self.settings.optimize_after_points
        self._points_since_optimize += upserted
        if not threshold or self._points_since_optimize < threshold:
            return
        if self._optimizing is not None and not self._optimizing.done():
            return
        self._points_since_optimize = 0
        self._optimizing = asyncio.create_task(asyncio.to_thread(self.store.optimize), name="vectorizer-optimize")

    async def _commit(self, messages: list[QueueMessage]) -> None:
        """Commit exactly what was processed: positions fetched since are not ours yet."""
        if self._consumer is None:
            return
        offsets: dict[TopicPartition, int] = {}
        for m in messages:
            tp = TopicPartition(m.topic, m.partition)
            offsets[tp] = max(offsets.get(tp, -1), m.offset + 1)
        assigned = self._consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if offsets:
            await self._consumer.commit(offsets)

    async def close(self) -> None:
        self._closing = True
        if self._timer_task is not None:
            self._timer_task.cancel()
        try:
            await self.flush()
        except Exception as exc:  # noqa: BLE001 - uncommitted records are replayed on restart
            log.warning("final flush failed; the records will be replayed on restart: %s", exc)
        if self._optimizing is not None:
            try:
                await self._optimizing
            except Exception as exc:  # noqa: BLE001 - an index build can be redone later
                log.warning("background index build failed: %s", exc)


def subscribe(broker: KafkaBroker, vectorizer: Vectorizer, settings: Settings) -> None:
    topics = Topics(settings.topic_prefix)

    @broker.subscriber(
        topics.vectorization_queue,
        **batch_subscriber_options(settings, max(settings.batch_size, 100), FlushOnRebalance(vectorizer.flush)),
    )
    async def consume_vectorization_queue(body: Any, message: KafkaMessage) -> None:
        await vectorizer.on_records(message.raw_message, message)


router = APIRouter(tags=["vectorizer"])


@router.get("/stats")
async def stats(request: Request) -> dict:
    vectorizer: Vectorizer = request.app.state.vectorizer
    data = dict(vectorizer.stats.__dict__)
    data["buffered"] = vectorizer.buffered
    data["batch_size"] = vectorizer.settings.batch_size
    data["novelty_threshold"] = vectorizer.settings.novelty_threshold
    data["collection"] = vectorizer.store.collection
    data["vector_backend"] = vectorizer.store.backend
    try:
        data["points"] = await vectorizer.store.acount() if vectorizer.pipeline.collection_ready else 0
    except Exception:  # noqa: BLE001 - stats answer while Qdrant is down
        data["points"] = None
    data["recent_novel"] = list(vectorizer.recent_novel)
    return data


@router.post("/process")
async def process(request: Request) -> dict:
    """Process what is buffered now, without waiting for the batch size or timeout."""
    vectorizer: Vectorizer = request.app.state.vectorizer
    return await vectorizer.flush()
