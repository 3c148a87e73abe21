"""ingest's Kafka subscriber and HTTP routes.

Delivery: records are buffered until BATCH_SIZE or BATCH_TIMEOUT_SECONDS, then one flush
(1) builds rows, (2) publishes dead letters and forwards WARN/ERROR/FATAL, (3) inserts into
ClickHouse, (4) commits offsets. A crash anywhere before (4) replays the batch; rows already
stored are recognised by their Kafka offsets (`ingest_offsets`) and skipped, so nothing is
lost and nothing doubles. Forwarding before the insert means a replay forwards again, which
the vectorizer absorbs (its point ids derive from record ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Request
from faststream.confluent import KafkaBroker, KafkaMessage, Topic

from logpipe.core import metrics, tracing
from logpipe.core.kafka import ConfluentCommitter, confluent_batch_options, send_values
from logpipe.core.topics import Topics
from logpipe.ingest.service import (
    Batch,
    BatchBuilder,
    CircuitBreaker,
    RawBatch,
    with_pattern_ids,
)
from logpipe.ingest.settings import Settings
from logpipe.stores.clickhouse import ClickHouseStore

log = logging.getLogger(__name__)

# ClickHouse by default runs the ReplacingMergeTree merge over every inserted block, which
# doubled the insert's CPU; a batch holds no duplicate record ids (dropped while building) and
# replays are skipped by offset, so background merges alone fold what is left.
INSERT_SETTINGS = {"optimize_on_insert": 0}

CONSUMED = metrics.counter("logpipe_ingest_consumed_total", "Kafka records consumed from raw-logs")
WRITTEN = metrics.counter("logpipe_ingest_written_total", "Log rows written to ClickHouse")
FORWARDED = metrics.counter("logpipe_ingest_forwarded_total", "Records forwarded to vectorization-queue")
DEAD = metrics.counter("logpipe_ingest_dlq_total", "Records sent to raw-logs-dlq")
REPLAYED = metrics.counter("logpipe_ingest_replay_skipped_total", "Replayed records skipped as already stored")
BATCHES = metrics.counter("logpipe_ingest_batches_total", "Batches flushed", ("path",))
INSERT_FAILURES = metrics.counter("logpipe_ingest_insert_failures_total", "Failed ClickHouse inserts")
FLUSH_SECONDS = metrics.histogram("logpipe_ingest_flush_seconds", "Time to flush one batch",
                                  buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
STAGE_SECONDS = metrics.counter("logpipe_ingest_stage_seconds_total",
                                "Wall time spent per pipeline stage (build, publish, insert, commit)", ("stage",))
BREAKER_OPEN = metrics.gauge("logpipe_ingest_circuit_open", "1 while the ClickHouse circuit breaker is open")


@dataclass
class Stats:
    consumed: int = 0
    written: int = 0
    forwarded: int = 0
    dlq: int = 0
    batches: int = 0
    fast_batches: int = 0
    replay_skipped: int = 0
    last_error: str | None = None
    last_flush_at: float | None = None
    circuit: str = "closed"
    assigned_partitions: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=lambda: {"build": 0.0, "publish": 0.0,
                                                                     "insert": 0.0, "commit": 0.0})
    started_at: float = field(default_factory=time.time)


@dataclass
class _Pending:
    """One cut batch on its way through the pipeline."""

    messages: Any  # the consumed chunks (RawBatch each), then one RawBatch
    records: int
    done: asyncio.Future
    batch: Batch | None = None
    commit_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    forward_values: list[bytes] = field(default_factory=list)
    skipped: int = 0
    built: asyncio.Task | None = None
    started: float = field(default_factory=time.perf_counter)
    trace_contexts: list = field(default_factory=list)


class Ingestor:
    """Buffers raw records and writes them through a two-stage pipeline.

    Stage 1 (build) parses and tags batch N+1 in a worker thread while stage 2 (write)
    publishes, inserts and commits batch N in another: both cores work. Stage 2 handles
    batches strictly in order, so offsets are committed in order. Each queue holds at most
    `pipeline_depth` batches: when ClickHouse is down, stage 2 waits, the queues fill, and
    consumption stops (backpressure) with nothing committed.
    """

    def __init__(self, settings: Settings, store: ClickHouseStore, producer: AIOKafkaProducer,
                 tagger: Any = None) -> None:
        self.settings = settings
        self.store = store
        self.producer = producer
        self.tagger = tagger
        self.topics = Topics(settings.topic_prefix)
        self.builder = BatchBuilder(settings.pipeline, settings.max_record_bytes)
        self.breaker = CircuitBreaker(settings.breaker_threshold, settings.retry_base_seconds,
                                      settings.retry_max_seconds)
        self.stats = Stats()
        self._buffer: list[RawBatch] = []
        self._trace_contexts: list = []  # of the buffered records, while tracing is on
        self._buffered = 0
        self._buffer_since: float | None = None
        self._lock = asyncio.Lock()
        self.committer = ConfluentCommitter(asyncio.get_running_loop(), self.flush, self.forget_partitions)
        self._stored: dict[tuple[str, int], int] = {}
        self._known_partitions: set[tuple[str, int]] = set()
        self._closing = False
        self._to_build: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=settings.pipeline_depth)
        self._to_write: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=settings.pipeline_depth)
        self._in_flight: list[_Pending] = []
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._build_stage(), name="ingest-build"),
                       asyncio.create_task(self._write_stage(), name="ingest-write"),
                       asyncio.create_task(self._timer(), name="ingest-batch-timer")]

    # -- Kafka side ------------------------------------------------------------------------
    async def on_records(self, records: tuple, message: KafkaMessage) -> None:
        if self._closing:
            return  # fetched after the final flush: not committed, so read again after a restart
        # Columns right away: a consumed Message is an object the cyclic GC tracks, and
        # thousands of them waiting in the pipeline made its full collections cost seconds.
        chunk = RawBatch.from_confluent(records)
        if tracing.enabled():
            self._trace_contexts.extend(tracing.contexts_of(records))
        self.stats.consumed += len(chunk)
        CONSUMED.inc(len(chunk))
        async with self._lock:
            if not self._buffer:
                self._buffer_since = time.monotonic()
            self._buffer.append(chunk)
            self._buffered += len(chunk)
            self.committer.attach(message.consumer)
            if self._buffered >= self.settings.batch_size:
                await self._cut_locked()

    async def _timer(self) -> None:
        """Cut a partial batch once it is BATCH_TIMEOUT_SECONDS old."""
        timeout = self.settings.batch_timeout_seconds
        while not self._closing:
            await asyncio.sleep(min(0.25, timeout / 4))
            since = self._buffer_since
            if since is not None and time.monotonic() - since >= timeout:
                async with self._lock:
                    if self._buffer_since is not None and time.monotonic() - self._buffer_since >= timeout:
                        await self._cut_locked()

    async def _cut_locked(self) -> _Pending | None:
        messages, records = self._buffer, self._buffered
        self._buffer, self._buffer_since, self._buffered = [], None, 0
        if not messages:
            return None
        pending = _Pending(messages, records, asyncio.get_running_loop().create_future(),
                           trace_contexts=self._trace_contexts[:32])
        self._trace_contexts = []
        self._in_flight.append(pending)
        await self._to_build.put(pending)
        return pending

    async def flush(self) -> dict[str, int]:
        """Write everything consumed so far; returns what this flush wrote."""
        if self._closing:  # the pipeline is gone; a rebalance while stopping has nothing to write
            return {"flushed": 0, "written": 0, "dlq": 0, "forwarded": 0, "replay_skipped": 0}
        async with self._lock:
            await self._cut_locked()
            waiting = list(self._in_flight)
        results = await asyncio.gather(*(p.done for p in waiting))
        total = {"flushed": 0, "written": 0, "dlq": 0, "forwarded": 0, "replay_skipped": 0}
        for result in results:
            for key in total:
                total[key] += result.get(key, 0)
        return total

    @property
    def buffered(self) -> int:
        return self._buffered + sum(p.records for p in self._in_flight)

    # -- stage 1: build ----------------------------------------------------------------------
    async def _build_stage(self) -> None:
        """Start building each batch as it comes, up to BUILD_WORKERS at once; the write
        stage takes them in the order they were cut."""
        slots = asyncio.Semaphore(self.settings.build_workers)
        while True:
            pending = await self._to_build.get()
            await slots.acquire()
            pending.built = asyncio.create_task(self._build_one(pending, slots))
            await self._to_write.put(pending)

    async def _build_one(self, pending: _Pending, slots: asyncio.Semaphore) -> None:
        try:
            while True:
                try:
                    if not pending.commit_offsets:
                        pending.messages = await asyncio.to_thread(RawBatch.concat, pending.messages)
                        pending.commit_offsets = pending.messages.next_offsets()
                    stored = await self._stored_offsets(pending.commit_offsets)
                    with self._timed("build"):
                        pending.batch, pending.skipped, pending.forward_values = await asyncio.to_thread(
                            self._build, pending.messages, stored)
                    return
                except Exception as exc:  # noqa: BLE001 - e.g. ClickHouse down while reading offsets
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
                    log.exception("building a batch failed; retrying")
                    await asyncio.sleep(1.0)
        finally:
            slots.release()

    # -- stage 2: publish, insert, commit ---------------------------------------------------
    async def _write_stage(self) -> None:
        while True:
            pending = await self._to_write.get()
            try:
                await pending.built
                result = await self._write(pending)
            except BaseException as exc:
                if not pending.done.done():
                    pending.done.set_exception(exc) if not isinstance(exc, asyncio.CancelledError) else pending.done.cancel()
                raise
            finally:
                if pending in self._in_flight:
                    self._in_flight.remove(pending)
            pending.done.set_result(result)

    async def _retry(self, what: str, action) -> None:
        """Kafka publishing is retried like the insert: nothing moves on until it succeeded."""
        delay = self.settings.retry_base_seconds
        while True:
            try:
                return await action()
            except Exception as exc:  # noqa: BLE001
                self.stats.last_error = f"{what}: {type(exc).__name__}: {exc}"[:500]
                log.error("%s failed; retrying in %.1fs: %s", what, delay, exc)
                if self._closing:
                    raise
                await asyncio.sleep(delay)
                delay = min(self.settings.retry_max_seconds, delay * 2)

    async def _write(self, pending: _Pending) -> dict[str, int]:
        batch, messages, skipped = pending.batch, pending.messages, pending.skipped
        if skipped:
            self.stats.replay_skipped += skipped
            REPLAYED.inc(skipped)
            log.info("skipped %d replayed records already stored", skipped)
        # Publishing waits on broker acks and the insert on ClickHouse: do both at once;
        # the commit waits for both.
        with tracing.batch_span("ingest batch", pending.trace_contexts, **{"logpipe.records": len(messages)}):
            await asyncio.gather(self._publish(batch, pending.forward_values), self._store(batch))
        self._remember_offsets(pending.commit_offsets)
        with self._timed("commit"):
            await self._commit(pending.commit_offsets)
        self.stats.written += batch.rows.num_rows
        WRITTEN.inc(batch.rows.num_rows)
        self.stats.batches += 1
        self.stats.fast_batches += int(batch.fast_path)
        BATCHES.labels("fast" if batch.fast_path else "exact").inc()
        self.stats.last_flush_at = time.time()
        FLUSH_SECONDS.observe(time.perf_counter() - pending.started)
        return {"flushed": len(messages), "written": batch.rows.num_rows, "dlq": len(batch.dead_letters),
                "forwarded": len(pending.forward_values), "replay_skipped": skipped}

    async def _publish(self, batch: Batch, forward_values: list[bytes]) -> None:
        with self._timed("publish"):
            if batch.dead_letters:
                letters = [d.to_bytes() for d in batch.dead_letters]
                await self._retry("publishing to the DLQ",
                                  lambda: send_values(self.producer, self.topics.raw_logs_dlq, letters))
                self.stats.dlq += len(batch.dead_letters)
                DEAD.inc(len(batch.dead_letters))
                for dead in batch.dead_letters[:5]:
                    log.warning("record sent to DLQ", extra={"reason": dead.error, "partition": dead.message.partition,
                                                             "offset": dead.message.offset})
            if forward_values:
                headers = tracing.kafka_headers()
                await self._retry("forwarding to vectorization-queue",
                                  lambda: send_values(self.producer, self.topics.vectorization_queue, forward_values,
                                                      headers=headers))
                self.stats.forwarded += len(forward_values)
                FORWARDED.inc(len(forward_values))

    async def _store(self, batch: Batch) -> None:
        if batch.rows.num_rows:
            with self._timed("insert"), tracing.span("clickhouse insert", **{"db.system": "clickhouse",
                                                                             "db.collection.name": "logs"}):
                await self._insert_with_retry(batch)

    @contextlib.contextmanager
    def _timed(self, stage: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.stats.stage_seconds[stage] += elapsed
            STAGE_SECONDS.labels(stage).inc(elapsed)

    def _build(self, messages: RawBatch, stored: dict[tuple[str, int], int]) -> tuple[Batch, int, list[bytes]]:
        fresh = messages.skip_stored(stored)
        batch = self.builder.build(fresh)
        if self.tagger is not None and batch.rows.num_rows:
            batch.rows = with_pattern_ids(batch.rows, self.tagger.tag(batch.rows["message"]))
        return batch, len(messages) - len(fresh), batch.forwarded_json()

    async def _insert_with_retry(self, batch: Batch) -> None:
        """Retry until ClickHouse takes the rows. Meanwhile nothing is consumed or committed."""
        while True:
            try:
                await self.store.ainsert_arrow("logs", batch.rows, settings=INSERT_SETTINGS)
                if self.breaker.failures:
                    log.info("ClickHouse insert recovered after %d failures", self.breaker.failures)
                self.breaker.record_success()
                self._set_circuit()
                return
            except Exception as exc:  # noqa: BLE001 - any store failure is retried
                INSERT_FAILURES.inc()
                self.breaker.record_failure(f"{type(exc).__name__}: {exc}"[:500])
                self.stats.last_error = self.breaker.last_error
                self._set_circuit()
                delay = self.breaker.delay()
                log.error("ClickHouse insert failed (%d in a row); retrying in %.1fs",
                          self.breaker.failures, delay, extra={"error": self.breaker.last_error})
                if self._closing:
                    raise
                await asyncio.sleep(delay)

    def _set_circuit(self) -> None:
        self.stats.circuit = self.breaker.state
        BREAKER_OPEN.set(1 if self.breaker.state == "open" else 0)

    async def _commit(self, next_offsets: dict[tuple[str, int], int]) -> None:
        """Commit exactly what was written: positions the consumer fetched since are not ours.

        A failed commit (a rebalance under way, the coordinator moving) loses nothing: the rows
        are stored, and whoever reads these partitions next skips them by offset.
        """
        try:
            await self.committer.commit(next_offsets)
        except Exception as exc:  # noqa: BLE001
            self.stats.last_error = f"commit: {type(exc).__name__}: {exc}"[:500]
            log.warning("offset commit failed; stored rows will be skipped on replay: %s", exc)

    async def _stored_offsets(self, partitions) -> dict[tuple[str, int], int]:
        """Highest stored offset per partition, read from ClickHouse once per assignment."""
        wanted = set(partitions) - self._known_partitions
        by_topic: dict[str, list[int]] = {}
        for topic, partition in wanted:
            by_topic.setdefault(topic, []).append(partition)
        for topic, partitions in by_topic.items():
            found = await asyncio.to_thread(self.store.stored_offsets, topic, partitions)
            for partition in partitions:
                self._known_partitions.add((topic, partition))
                if partition in found:
                    self._stored[(topic, partition)] = found[partition]
        return self._stored

    def _remember_offsets(self, next_offsets: dict[tuple[str, int], int]) -> None:
        # Everything below these offsets is handled; later skips need no query.
        for key, offset in next_offsets.items():
            self._stored[key] = max(offset - 1, self._stored.get(key, -1))

    def forget_partitions(self, partitions) -> None:
        """After a rebalance another consumer may have stored more: ask ClickHouse again."""
        self.stats.assigned_partitions = sorted(f"{tp.topic}/{tp.partition}" for tp in partitions)
        for tp in partitions:
            self._known_partitions.discard((tp.topic, tp.partition))
            self._stored.pop((tp.topic, tp.partition), None)

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.flush(), timeout=30)
        except Exception as exc:  # noqa: BLE001 - uncommitted records are replayed on restart
            log.warning("final flush failed; the records will be replayed on restart: %s", exc)
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def subscribe(broker: KafkaBroker, ingestor: Ingestor, settings: Settings) -> None:
    topics = Topics(settings.topic_prefix)

    # Topics are created by `logpipe.schemas` (partition count and all), never by a consumer.
    raw_logs = Topic(topics.raw_logs, declare=False)

    @broker.subscriber(raw_logs, **confluent_batch_options(settings, settings.batch_size, ingestor.committer))
    async def consume_raw_logs(body: Any, message: KafkaMessage) -> None:
        await ingestor.on_records(message.raw_message, message)


router = APIRouter(tags=["ingest"])


@router.get("/stats")
async def stats(request: Request) -> dict:
    ingestor: Ingestor = request.app.state.ingestor
    data = dict(ingestor.stats.__dict__)
    data["buffered"] = ingestor.buffered
    data["circuit"] = ingestor.breaker.state
    return data


@router.post("/flush")
async def flush(request: Request) -> dict:
    ingestor: Ingestor = request.app.state.ingestor
    return await ingestor.flush()
