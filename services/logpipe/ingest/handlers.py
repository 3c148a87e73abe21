"""ingest's batch handler (on the shared consumer, `core/consumer.py`) and HTTP routes.

Delivery: the consumer cuts batches as the pipeline frees up (BATCH_MODE, core/consumer.py); one flush
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
from fastapi import APIRouter, Depends, Request

from logpipe.core import metrics, tracing
from logpipe.core.circuit import CircuitBreaker
from logpipe.core.consumer import Batch as ConsumedBatch
from logpipe.core.consumer import BatchConsumer, ConsumerOptions
from logpipe.core.http import requires_token
from logpipe.core.kafka import send_values
from logpipe.core.shippers import RecordLimits
from logpipe.core.topics import Topics
from logpipe.ingest.service import (
    Batch,
    BatchBuilder,
    REPLAY_TIME_MARGIN,
    RawBatch,
    candidates_by_partition,
    identify,
    replay_candidates,
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
    """What ingest did with the batches; what was consumed is in `Ingestor.consumer.stats`."""

    written: int = 0
    forwarded: int = 0
    dlq: int = 0
    fast_batches: int = 0
    replay_skipped: int = 0
    # Partitions found to start again below the stored offsets (a recreated topic, a broker
    # that lost its log): their records are stored, not skipped as a replay.
    offset_resets: int = 0
    last_error: str | None = None
    circuit: str = "closed"
    stage_seconds: dict[str, float] = field(default_factory=lambda: {"build": 0.0, "publish": 0.0, "insert": 0.0})
    started_at: float = field(default_factory=time.time)


@dataclass
class _Built:
    batch: Batch
    skipped: int
    forward_values: list[bytes]


class Ingestor:
    """Turns each batch the consumer cuts into rows, dead letters and forwarded errors.

    Runs on the shared batch consumer (`core/consumer.py`): `_prepare` parses and tags a batch
    in a worker thread (up to BUILD_WORKERS batches at once) while `_write` publishes and
    inserts the one before it; writes go strictly in order and the consumer commits a batch's
    offsets only after its write returned. When ClickHouse is down the write retries, the
    batches in flight fill up and fetching pauses (back-pressure) with nothing committed.
    """

    def __init__(self, settings: Settings, store: ClickHouseStore, producer: AIOKafkaProducer,
                 tagger: Any = None, breaker: CircuitBreaker | None = None, health: Any = None) -> None:
        self.settings = settings
        self.store = store
        self.producer = producer
        self.tagger = tagger
        self.topics = Topics(settings.topic_prefix)
        self.builder = BatchBuilder(settings.pipeline, settings.max_record_bytes, settings.vectorize_level_set,
                                    RecordLimits.from_settings(settings))
        # The service's ClickHouse breaker (shown by /health); an open one pauses the consumer.
        self.breaker = breaker or CircuitBreaker("clickhouse", "ingest", settings.breaker_threshold,
                                                 settings.retry_base_seconds, settings.retry_max_seconds)
        self.stats = Stats()
        self._stored: dict[tuple[str, int], int] = {}
        self._known_partitions: set[tuple[str, int]] = set()
        options = ConsumerOptions.from_settings(
            settings, [self.topics.raw_logs],
            # Both former pipeline stages' queues: batches waiting to build and to write.
            max_batches_in_flight=2 * settings.pipeline_depth, prepare_workers=settings.build_workers,
            retry_base_seconds=settings.retry_base_seconds, retry_max_seconds=settings.retry_max_seconds)
        self.consumer: BatchConsumer[RawBatch] = BatchConsumer(
            options, decode=self._decode, prepare=self._prepare, write=self._write,
            on_assign=self.forget_partitions, name="ingest", circuits={"clickhouse": self.breaker},
            health=health)

    def start(self) -> None:
        self.consumer.start()

    @staticmethod
    def _decode(messages: list) -> RawBatch:
        # Columns right away: a consumed Message is an object the cyclic GC tracks, and
        # thousands of them waiting in the pipeline made its full collections cost seconds.
        chunk = RawBatch.from_confluent(messages)
        if tracing.enabled():
            # Which traces the records belong to (Kafka headers), for the batch span.
            chunk.trace_contexts = tracing.contexts_of(messages)
        CONSUMED.inc(len(chunk))
        return chunk

    async def flush(self) -> dict[str, int]:
        """Write everything consumed so far; returns what this flush wrote."""
        total = {"flushed": 0, "written": 0, "dlq": 0, "forwarded": 0, "replay_skipped": 0}
        for result in await self.consumer.flush():
            for key in total:
                total[key] += result.get(key, 0)
        return total

    @property
    def buffered(self) -> int:
        return self.consumer.buffered

    def stats_view(self) -> dict[str, Any]:
        """What `/stats` shows: the consumer's counters and ingest's own."""
        consumer = self.consumer.stats
        data = dict(consumer.__dict__)
        data.update(self.stats.__dict__)
        data["stage_seconds"] = dict(self.stats.stage_seconds, commit=consumer.commit_seconds)
        data["last_error"] = self.stats.last_error or consumer.last_error
        data["buffered"] = self.buffered
        data["circuit"] = self.breaker.state
        return data

    # -- prepare: build (worker threads) -----------------------------------------------------
    async def _prepare(self, batch: ConsumedBatch) -> None:
        messages = await asyncio.to_thread(RawBatch.concat, batch.chunks)
        stored = await self._stored_offsets(batch.offsets)
        with self._timed("build"):
            built, skipped, forward_values = await asyncio.to_thread(self._build, messages, stored)
        batch.prepared = _Built(built, skipped, forward_values)

    # -- write: publish, insert (in order; the consumer commits after) ----------------------
    async def _retry(self, what: str, action) -> None:
        """Kafka publishing is retried like the insert: nothing moves on until it succeeded."""
        delay = self.settings.retry_base_seconds
        while True:
            try:
                return await action()
            except Exception as exc:  # noqa: BLE001
                self.stats.last_error = f"{what}: {type(exc).__name__}: {exc}"[:500]
                log.error("%s failed; retrying in %.1fs: %s", what, delay, exc)
                await asyncio.sleep(delay)
                delay = min(self.settings.retry_max_seconds, delay * 2)

    async def _write(self, consumed: ConsumedBatch) -> dict[str, int]:
        built: _Built = consumed.prepared
        batch, skipped = built.batch, built.skipped
        if skipped:
            self.stats.replay_skipped += skipped
            REPLAYED.inc(skipped)
            log.info("skipped %d replayed records already stored", skipped)
        # Publishing waits on broker acks and the insert on ClickHouse: do both at once;
        # the commit waits for both.
        with tracing.batch_span("ingest batch", tracing.contexts_of_chunks(consumed.chunks),
                                **{"logpipe.records": consumed.records}):
            await asyncio.gather(self._publish(batch, built.forward_values), self._store(batch))
        self._remember_offsets(consumed.offsets)
        self.stats.written += batch.rows.num_rows
        WRITTEN.inc(batch.rows.num_rows)
        self.stats.fast_batches += int(batch.fast_path)
        BATCHES.labels("fast" if batch.fast_path else "exact").inc()
        FLUSH_SECONDS.observe(time.perf_counter() - consumed.started)
        return {"flushed": consumed.records, "written": batch.rows.num_rows, "dlq": len(batch.dead_letters),
                "forwarded": len(built.forward_values), "replay_skipped": skipped}

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
        if len(fresh) < len(messages):
            fresh = self._verified_skip(messages, stored)
        batch = self.builder.build(fresh)
        if self.tagger is not None and batch.rows.num_rows:
            batch.rows = with_pattern_ids(batch.rows, self.tagger.tag(batch.rows["message"]))
        return batch, len(messages) - len(fresh), batch.forwarded_json()

    def _verified_skip(self, messages: RawBatch, stored: dict[tuple[str, int], int]) -> RawBatch:
        """Skip only what ClickHouse really holds. Offsets at or below the stored watermark are a
        replay after a crash, unless the partition started again from 0: a topic deleted and
        recreated, or a broker that lost its log (the embedded broker keeps it in memory). Then
        the records there are new, and skipping them would lose them. Each candidate's record id
        is compared with the row stored at its offset: one query per partition, and only for
        batches that reach below the watermark."""
        candidates = replay_candidates(messages, stored)
        keep = ~candidates
        new_records = 0
        for (topic, partition), index in candidates_by_partition(messages, candidates).items():
            identities = identify(messages, index, self.settings.max_record_bytes, self.builder.limits)
            known = [(i, identity) for i, identity in zip(index, identities) if identity is not None]
            if known:
                stamps = [identity[1] for _, identity in known]
                found = self.store.stored_at(topic, partition, [int(messages.offsets[i]) for i, _ in known],
                                             [identity[0] for _, identity in known],
                                             min(stamps) - REPLAY_TIME_MARGIN, max(stamps) + REPLAY_TIME_MARGIN)
                absent = [i for i, identity in known if (int(messages.offsets[i]), identity[0]) not in found]
            else:
                absent = []
            if absent:
                # New records below the watermark: keep all of this partition's candidates (those
                # that are not logs go to the DLQ as on first delivery) and forget the watermark.
                keep[index] = True
                new_records += len(index)
                self._stored[(topic, partition)] = -1
                log.warning("%s/%d holds new records at offsets already stored (%d to %d): the topic was "
                            "recreated or the broker lost its log; storing them", topic, partition,
                            int(messages.offsets[index].min()), int(messages.offsets[index].max()))
        if new_records:
            self.stats.offset_resets += 1
        return messages if keep.all() else messages.select(keep)

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
                self.breaker.record_failure(exc)
                self.stats.last_error = self.breaker.last_error
                self._set_circuit()
                delay = self.breaker.delay()
                log.error("ClickHouse insert failed (%d in a row); retrying in %.1fs",
                          self.breaker.failures, delay, extra={"error": self.breaker.last_error})
                await asyncio.sleep(delay)

    def _set_circuit(self) -> None:
        self.stats.circuit = self.breaker.state
        BREAKER_OPEN.set(1 if self.breaker.state == "open" else 0)

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

    def forget_partitions(self, partitions: list[tuple[str, int]]) -> None:
        """After a rebalance another consumer may have stored more: ask ClickHouse again."""
        for key in partitions:
            self._known_partitions.discard(key)
            self._stored.pop(key, None)

    async def close(self) -> None:
        """Stop consuming; write and commit what was consumed (the rest is read again on restart)."""
        await self.consumer.stop(timeout_s=30)


router = APIRouter(tags=["ingest"])


@router.get("/stats")
async def stats(request: Request) -> dict:
    ingestor: Ingestor = request.app.state.ingestor
    return ingestor.stats_view()


@router.post("/flush", dependencies=[Depends(requires_token("admin"))])
async def flush(request: Request) -> dict:
    ingestor: Ingestor = request.app.state.ingestor
    return await ingestor.flush()
