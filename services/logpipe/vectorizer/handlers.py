"""vectorizer's batch handler (on the shared consumer, `core/consumer.py`) and HTTP routes.

Delivery: the consumer cuts batches as the writer frees up (BATCH_MODE, core/consumer.py); one write embeds,
upserts into Qdrant, publishes dead letters and novel errors, and only then does the consumer
commit the offsets. A failed write is retried and commits nothing; a crash before the commit
replays the batch, and the replay overwrites the same points (ids derive from record ids):
nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, Request

from logpipe.core import metrics, tracing
from logpipe.core.circuit import CircuitBreaker
from logpipe.core.consumer import Batch, BatchConsumer, ConsumerOptions, Messages
from logpipe.core.http import requires_token
from logpipe.core.kafka import send_values
from logpipe.core.topics import Topics
from logpipe.vectorizer.service import BatchOutcome, IndexSchedule, QueueMessage, VectorizerPipeline
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
INDEX_BUILDS = metrics.counter("logpipe_vectorizer_index_builds_total",
                               "HNSW index builds of the embedded Qdrant engine", ("outcome",))
EXPIRED = metrics.counter("logpipe_vectorizer_expired_points_total",
                          "Points deleted by the vectors' retention", ("reason",))
POINTS = metrics.gauge("logpipe_vectorizer_points", "Points in the vector collection (read at each retention pass)")
POINTS_CAP = metrics.gauge("logpipe_vectorizer_points_cap",
                           "The retention's cap on points (VECTORIZER_MAX_POINTS; 0: no cap)")
DELETED_HELD = metrics.gauge("logpipe_vectorizer_deleted_points_held",
                             "Points deleted since the last index build, whose memory the embedded engine "
                             "gives back only with the next build or compaction")
BATCH_SECONDS = metrics.histogram("logpipe_vectorizer_batch_seconds", "Time to process one batch",
                                  buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))


@dataclass
class Stats:
    """What the vectorizer did with the batches; what was consumed is in `Vectorizer.consumer.stats`."""

    vectorized: int = 0
    reused_embeddings: int = 0
    distinct_texts: int = 0
    dlq: int = 0
    novel: int = 0
    retries: int = 0
    index_builds: int = 0
    index_builds_failed: int = 0
    compactions: int = 0
    expired_by_age: int = 0
    expired_by_cap: int = 0
    last_error: str | None = None
    started_at: float = field(default_factory=time.time)


def decode(messages: list) -> Messages:
    """A poll's records as QueueMessages (a timestamp of type 0, "not available", reads as none)."""
    chunk = Messages()
    for m in messages:
        kind, stamp = m.timestamp()
        chunk.append(QueueMessage(m.value(), m.topic(), m.partition(), m.offset(), stamp if kind else None))
    if tracing.enabled():
        # Which traces the records belong to (Kafka headers), for the batch span.
        chunk.trace_contexts = tracing.contexts_of(messages)
    CONSUMED.inc(len(chunk))
    return chunk


class Vectorizer:
    """Runs the pipeline on each batch the consumer cuts and publishes what came of it."""

    def __init__(self, settings: Settings, pipeline: VectorizerPipeline, producer: AIOKafkaProducer,
                 store: Any, circuits: dict[str, CircuitBreaker] | None = None, health: Any = None) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.producer = producer
        self.store = store
        self.topics = Topics(settings.topic_prefix)
        self.stats = Stats()
        self.recent_novel: deque[dict] = deque(maxlen=20)
        self._optimizing: asyncio.Task | None = None
        self.index_schedule = IndexSchedule(settings.optimize_after_points, settings.optimize_growth)
        # The shard's points (counted once, then followed batch by batch) and how many the last
        # index build saw; None until read from the store (after a restart: its indexed count).
        self._points: int | None = None
        self._indexed_at: int | None = None
        # Points written plus points deleted since start: a failed build is tried again after
        # first_after more of them (under a cap the shard's size stops growing).
        self._changes = 0
        self._next_try_at = 0
        self._state_retry_at = 0.0
        # Points deleted by the retention since the last index build (their memory comes back
        # with the next build: IndexSchedule.due_after_deletions). Kept beside the shard: after
        # a restart the deleted points are still held, and the count still calls the build.
        self._deleted_since_build = self._loaded_deletions()
        DELETED_HELD.set(self._deleted_since_build)
        POINTS_CAP.set(settings.points_cap() or 0)
        self._retention: asyncio.Task | None = None
        self._retention_ran_at: float | None = None
        # A poll returns at most a batch, so the buffer and every batch in flight hold fewer
        # than two batches' records each: this many in flight keeps the total within MAX_BUFFERED.
        in_flight = max(1, settings.max_buffered // (2 * settings.batch_size) - 1)
        options = ConsumerOptions.from_settings(
            settings, [self.topics.vectorization_queue], max_batches_in_flight=in_flight,
            retry_base_seconds=max(settings.retry_base_seconds, 0.01), retry_max_seconds=settings.retry_max_seconds)
        # An away embedder or Qdrant (DependencyUnavailable from the pipeline) opens its circuit:
        # the batch is held and retried, fetching pauses, nothing is dead-lettered or committed.
        self.circuits = circuits or {}
        self.consumer: BatchConsumer[Messages] = BatchConsumer(
            options, decode=decode, write=self._write, after_commit=self._committed, name="vectorizer",
            circuits=self.circuits, health=health)

    @property
    def buffered(self) -> int:
        return self.consumer.buffered

    def start(self) -> None:
        self.consumer.start()
        self._retention = asyncio.create_task(self._retain_forever(), name="vectorizer-retention")

    async def _retain_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.retention_interval_seconds)
            try:
                await self.retain()
            except Exception as exc:  # noqa: BLE001 - Qdrant away: tried again next interval
                log.warning("vector retention failed: %s", exc)

    async def retain(self) -> dict[str, int]:
        """Delete the points past the retention (age, then the cap); how many went, by reason.
        Asks for an index build once enough went. During a build in a child the deletions are
        journaled and applied to the indexed copy too; their memory comes back with the next."""
        if not getattr(self.pipeline, "collection_ready", True):
            return {"age": 0, "cap": 0}  # nothing stored yet (the collection comes with the first batch)
        before = datetime.now(timezone.utc) - timedelta(days=self.settings.retention())
        deleted = await self.store.aexpire(before, self.settings.points_cap())
        self._retention_ran_at = time.time()
        POINTS.set(await self.store.acount())
        for reason, count in deleted.items():
            if count:
                EXPIRED.labels(reason).inc(count)
        self.stats.expired_by_age += deleted["age"]
        self.stats.expired_by_cap += deleted["cap"]
        total = deleted["age"] + deleted["cap"]
        if total:
            log.info("vectors past their retention deleted", extra=deleted)
            if self._indexed_at != -1:  # a Qdrant server frees deleted points on its own
                self._deleted_since_build += total
                self._save_upkeep()
            self._changes += total
            if self._points is not None:
                self._points = max(0, self._points - total)
            self._maybe_optimize(0)
        return deleted

    async def flush(self) -> dict[str, Any]:
        """Process everything consumed so far; what came of it, summed over the batches."""
        total = BatchOutcome().summary()
        for outcome in await self.consumer.flush():
            for key, value in outcome.summary().items():
                total[key] += value
        return total

    def stats_view(self) -> dict[str, Any]:
        consumer = self.consumer.stats
        data = dict(consumer.__dict__)
        data.update(self.stats.__dict__)
        data["last_error"] = self.stats.last_error or consumer.last_error
        data["buffered"] = self.buffered
        data["circuits"] = {name: breaker.view() for name, breaker in self.circuits.items()}
        data["index"] = self.index_view()
        data["retention"] = self.retention_view()
        return data

    async def _write(self, batch: Batch[Messages]) -> dict[str, Any]:
        messages = [message for chunk in batch.chunks for message in chunk]
        started = time.perf_counter()
        try:
            with tracing.batch_span("vectorizer batch", tracing.contexts_of_chunks(batch.chunks),
                                    **{"logpipe.records": len(messages)}):
                outcome = await self.pipeline.process(messages)
                # Inside the batch span: the novel-error events carry this trace to the analyzer.
                if outcome.dead_letters:
                    await send_values(self.producer, self.topics.vectorization_dlq,
                                      [dead.to_bytes() for dead in outcome.dead_letters])
                if outcome.novel_events:
                    await send_values(self.producer, self.topics.novel_errors,
                                      [orjson.dumps(event) for event in outcome.novel_events],
                                      keys=[str(e.get("service") or "").encode() for e in outcome.novel_events])
        except Exception as exc:
            # Raised to the consumer: it retries this batch and commits nothing meanwhile.
            self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
            raise
        self._account(outcome)
        BATCH_SECONDS.observe(time.perf_counter() - started)
        self._maybe_optimize(outcome.upserted)
        return outcome

    def _committed(self, batch: Batch[Messages], outcome: BatchOutcome) -> None:
        # Judged texts become the novelty baseline only once their batch will not be replayed.
        self.pipeline.remember(outcome)

    def _account(self, outcome) -> None:
        self.stats.vectorized += outcome.upserted
        self.stats.reused_embeddings += outcome.reused
        self.stats.distinct_texts += outcome.distinct_texts
        self.stats.dlq += len(outcome.dead_letters)
        self.stats.novel += len(outcome.novel_events)
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
        # A count per minute, not a line per event: the events themselves are on /ws/events.
        from logpipe.core.logging import count_periodically
        count_periodically(log, "novel errors", len(outcome.novel_events))

    def _maybe_optimize(self, upserted: int) -> None:
        """Start an index build in the background when the schedule says so (embedded Qdrant only)."""
        if self.index_schedule.first_after <= 0 or self._indexed_at == -1:
            return
        if self._points is not None:
            self._points += upserted
        self._changes += upserted
        if self._optimizing is not None and not self._optimizing.done():
            return
        if self._points is None and time.monotonic() < self._state_retry_at:
            return
        if self._points is not None and (self._changes < self._next_try_at
                                         or not self._build_due(self._points)):
            return
        self._optimizing = asyncio.create_task(self._index_when_due(), name="vectorizer-optimize")

    async def _index_when_due(self) -> None:
        try:
            state = await asyncio.to_thread(self.store.index_state)
        except Exception as exc:  # noqa: BLE001 - the store's own errors surface on the next write
            log.warning("cannot read the vector index state: %s", exc)
            self._state_retry_at = time.monotonic() + 60
            return
        if state is None:
            # A Qdrant server indexes on its own, and frees deleted points on its own.
            self._indexed_at = -1
            self._deleted_since_build = 0
            DELETED_HELD.set(0)
            return
        points, indexed = state
        if self._indexed_at is None:
            self._indexed_at = indexed
        self._points = points
        if not self._build_due(points):
            return
        deleted = self._deleted_since_build
        index = not self._compaction_due(points)
        log.info("building the vector index" if index else "compacting the vector store",
                 extra={"points": points, "indexed_at": self._indexed_at, "deleted_since_build": deleted})
        started = time.perf_counter()
        try:
            built = await asyncio.to_thread(self.store.optimize, self.settings.optimize_in_child, index)
        except Exception as exc:  # noqa: BLE001 - the tail stays searchable; the build is tried again later
            built = False
            log.warning("vector index build failed: %s", exc)
        INDEX_BUILDS.labels(("built" if index else "compacted") if built else "failed").inc()
        if built:
            # Points deleted during the build are deleted in the copy too, but still held there.
            self._deleted_since_build = max(0, self._deleted_since_build - deleted)
            self._save_upkeep()
            if index:
                self._indexed_at = points
                self.stats.index_builds += 1
            else:
                self.stats.compactions += 1
            log.info("vector index built" if index else "vector store compacted",
                     extra={"points": points, "seconds": round(time.perf_counter() - started, 1)})
        else:
            self.stats.index_builds_failed += 1
            # Not at every batch from now on: after another first_after points written or deleted.
            self._next_try_at = self._changes + self.index_schedule.first_after

    def _loaded_deletions(self) -> int:
        load = getattr(self.store, "load_upkeep", None)
        try:
            return max(0, int((load() if load else {}).get("deleted_since_build", 0)))
        except (TypeError, ValueError):
            return 0

    def _save_upkeep(self) -> None:
        DELETED_HELD.set(self._deleted_since_build)
        save = getattr(self.store, "save_upkeep", None)
        if save is None:
            return
        try:
            save({"deleted_since_build": self._deleted_since_build})
        except OSError as exc:  # a full disk: the count is kept in memory, the next save retries
            log.warning("cannot keep the vector store's upkeep state: %s", exc)

    def _compaction_due(self, points: int) -> bool:
        """More deleted points held than live ones, and the growth rule not due: the builds have
        not kept up with the retention (each must index what arrived since the last, and the
        deletions piled up meanwhile). A compaction (no HNSW, several times faster) gives their
        memory back first; the next build, due after a fifth of the shard again, indexes."""
        return (self.settings.optimize_in_child and self._deleted_since_build >= max(points, 1)
                and not self.index_schedule.due(points, self._indexed_at or 0))

    def _build_due(self, points: int) -> bool:
        return (self.index_schedule.due(points, self._indexed_at or 0)
                or self.index_schedule.due_after_deletions(points, self._deleted_since_build))

    def retention_view(self) -> dict[str, Any]:
        return {"days": self.settings.retention(), "max_points": self.settings.points_cap(),
                "interval_seconds": self.settings.retention_interval_seconds,
                "expired": {"age": self.stats.expired_by_age, "cap": self.stats.expired_by_cap},
                "deleted_since_build": self._deleted_since_build, "last_run_at": self._retention_ran_at}

    def index_view(self) -> dict[str, Any]:
        return {"builds": self.stats.index_builds, "failed": self.stats.index_builds_failed,
                "compactions": self.stats.compactions, "building": bool(self._optimizing and not self._optimizing.done()),
                "indexed_at_points": max(self._indexed_at or 0, 0), "points": self._points,
                "first_after": self.index_schedule.first_after, "growth": self.index_schedule.growth}

    async def close(self) -> None:
        """Stop consuming; process and commit what was consumed (the rest is read again on restart)."""
        if self._retention is not None:
            self._retention.cancel()
            await asyncio.gather(self._retention, return_exceptions=True)
        await self.consumer.stop(timeout_s=30)
        if self._optimizing is not None:
            try:
                await self._optimizing
            except Exception as exc:  # noqa: BLE001 - an index build can be redone later
                log.warning("background index build failed: %s", exc)


router = APIRouter(tags=["vectorizer"])


@router.get("/stats")
async def stats(request: Request) -> dict:
    vectorizer: Vectorizer = request.app.state.vectorizer
    data = vectorizer.stats_view()
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


@router.post("/process", dependencies=[Depends(requires_token("admin"))])
async def process(request: Request) -> dict:
    """Process what is buffered now, without waiting for the batch size or timeout."""
    vectorizer: Vectorizer = request.app.state.vectorizer
    return await vectorizer.flush()
