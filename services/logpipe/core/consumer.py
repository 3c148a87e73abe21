"""The batched Kafka consumer every logpipe service that consumes in batches runs on.

    consumer = BatchConsumer(options, decode=..., write=..., prepare=...)
    consumer.start(); ...; await consumer.stop()

It buffers what it consumes, cuts batches, and hands each to the caller's async `write`. Two
ways to cut (`adaptive`):

- adaptive (what the services ship): a batch is cut as soon as the pipeline has a free place
  (fewer than `adaptive_in_flight` batches preparing or writing) and anything is buffered, so a
  lone record goes out at the next poll; while the writer is busy the buffer grows, which makes
  batches as large as the incoming rate needs, up to `batch_size` records or `batch_max_bytes`
  bytes, or until the oldest buffered record is `batch_timeout_seconds` old (the latency target);
- fixed: a batch is cut at `batch_size` records (or `batch_max_bytes`) or once the oldest
  buffered record is `batch_timeout_seconds` old, whatever the writer does.

Each batch records why it was cut (`Batch.cut_reason`: idle, records, bytes, latency, flush)
and how long its oldest record waited in the buffer (`Batch.waited_seconds`); `stats.cuts`
counts the reasons.
Offsets are committed only after `write` returned, exactly those of the batch written (never
the consumer's position: records fetched since belong to later batches). A failing `write` is
retried with backoff and commits nothing meanwhile; consumption pauses once the buffer is full
(back-pressure), so memory stays bounded, and a record that never got written is read again
by whoever owns its partition next.

Circuit breakers (`circuits`, core/circuit.py, keyed by dependency): a failing `write` whose
exception names its dependency (`DependencyUnavailable.dependency`) counts against that
breaker, and its back-off follows the breaker's. While any of them is open, fetching pauses
right away (not only once the buffer fills): an outage holds a bounded amount of data, commits
nothing for it, and `/health` and `/metrics` say which dependency it waits for. A writer that
retries internally (ingest's insert) records its failures on a breaker passed here, with the
same effect.

`after_commit(batch, result)` runs once a batch's offsets were committed (or the commit
failed and was logged), for state that must not run ahead of the commit.

Pipelining: an optional async `prepare(batch)` (parsing, say) runs for up to `prepare_workers`
batches at once, while `write` takes batches strictly in the order they were cut, so offsets
(and anything keyed by them, like ingest's stored-offset watermark) only ever move forward.

The client is confluent-kafka (librdkafka): it fetches and decodes records in its own C
threads, where aiokafka decoded them in Python on the event loop (`bench/consume.py`,
docs/ingest.md). confluent-kafka lets one call at a time touch a consumer, and `consume()`
holds it while it waits, so every call goes through one thread of the consumer's own, and
`consume()` waits at most `poll_timeout_seconds`. librdkafka runs the rebalance callbacks on
that thread, inside `consume()`: before partitions move, `on_revoke` has the event loop write
everything buffered and commits it right there (the commits cannot queue for the thread they
are already on). Rebalancing is eager (librdkafka's default, set explicitly): a revoke takes
every partition. What could not be written within `revoke_timeout_seconds` is still written
later, but offsets are only ever committed for partitions this member owns: the next owner
reads those records again (at least once; storage keyed by record id absorbs the copy).

Rejoining (`rejoin_after_seconds`): a member that lost its partitions and, that long after, still
owns none although the broker lists partitions for its topics is rebuilt: the client is closed
and a new one subscribes and joins afresh, again after a doubling wait (up to
`rejoin_max_seconds`) while it still gets none. librdkafka does not recover from this by itself:
once a topic was missing from the broker's metadata for `topic.metadata.propagation.max.ms` (a
restarted in-memory broker before the topics are created again), it counts zero partitions for
it, and the same client did not get them back after the topic was created (not within 60 s, the
metadata refresh is every 5 minutes; docs/reliability.md). While a member waits like this,
`stats.stalled` says why, `/health` lists it as a degraded reason (`consumer:<name>`), and
`logpipe_consumer_stalled{service}` is 1; `logpipe_consumer_rebuilds_total{service}` counts the
rebuilds. A member that never owned a partition is left alone, and so is one that lost its share
to other members (more members than partitions): before rebuilding, the member reads the group's
committed offsets and the partitions' end offsets, and rebuilds only when records wait and the
committed offsets did not move over `PROGRESS_WINDOW_SECONDS` (nobody consumes them); otherwise
a rebuild would only make the whole group rebalance, again and again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Generic, Mapping, Protocol, Sequence, TypeVar

from logpipe.core import metrics
from logpipe.core.circuit import CircuitBreaker

log = logging.getLogger(__name__)

REBUILDS = metrics.counter("logpipe_consumer_rebuilds_total",
                           "Kafka consumers rebuilt after owning no partition of existing topics too long",
                           ("service",))
STALLED = metrics.gauge("logpipe_consumer_stalled",
                        "1 while a consumer that lost its partitions owns none and waits to rejoin", ("service",))

TopicPartition = tuple[str, int]
# How long a member that owns nothing watches the group's committed offsets before it calls the
# group stuck (records waiting, nobody committing them) and rebuilds its client.
PROGRESS_WINDOW_SECONDS = 10.0


class Chunk(Protocol):
    """What `decode` makes of one poll: something with a length and the offsets it ends at."""

    def __len__(self) -> int: ...

    def next_offsets(self) -> dict[TopicPartition, int]:
        """The offset to commit per (topic, partition) once these records are handled."""
        ...


C = TypeVar("C", bound=Chunk)


@dataclass
class ConsumerOptions:
    bootstrap_servers: str
    topics: Sequence[str]
    group_id: str
    # Records per batch: the size (fixed) or the upper bound (adaptive).
    batch_size: int
    # The time cut (fixed), or the latency target: the longest a buffered record waits (adaptive).
    batch_timeout_seconds: float
    adaptive: bool = False
    # Bytes (record values) per batch at most; 0: no byte bound.
    batch_max_bytes: int = 0
    # Adaptive: cut while fewer batches than this are preparing or writing (default: one per
    # prepare worker, so the writer always has the next batch being prepared).
    adaptive_in_flight: int | None = None
    auto_offset_reset: str = "earliest"
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    # A write held back by an outage must not cost the consumer its partitions.
    max_poll_interval_ms: int = 3_600_000
    check_crcs: bool = False
    # Records one `consume()` returns at most (defaults to batch_size).
    max_poll_records: int | None = None
    # A poll holds the consumer: short, so commits between two polls wait little.
    poll_timeout_seconds: float = 0.1
    # Batches cut and not yet written; one more batch may wait in the buffer, then fetching pauses.
    max_batches_in_flight: int = 2
    prepare_workers: int = 1
    retry_base_seconds: float = 0.5
    retry_max_seconds: float = 30.0
    # How long a rebalance waits for the buffered records to be written before dropping them.
    revoke_timeout_seconds: float = 60.0
    # How long a member that lost its partitions may own none while the broker lists some for
    # its topics before the client is rebuilt; the wait doubles per rebuild up to the maximum.
    rejoin_after_seconds: float = 30.0
    rejoin_max_seconds: float = 300.0
    client_options: dict[str, Any] = field(default_factory=dict)

    def librdkafka_config(self) -> dict[str, Any]:
        config = {
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": self.group_id,
            "auto.offset.reset": self.auto_offset_reset,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": self.heartbeat_interval_ms,
            "max.poll.interval.ms": self.max_poll_interval_ms,
            "check.crcs": self.check_crcs,
            "partition.assignment.strategy": "range,roundrobin",
            "max.partition.fetch.bytes": 8 << 20,
            "fetch.max.bytes": 64 << 20,
        }
        config.update(self.client_options)
        return config

    @classmethod
    def from_settings(cls, settings: Any, topics: Sequence[str], **overrides: Any) -> "ConsumerOptions":
        """Options from a service's settings (the fields every consuming service has)."""
        options = dict(
            bootstrap_servers=settings.kafka_bootstrap_servers, topics=list(topics), group_id=settings.group_id,
            batch_size=settings.batch_size, batch_timeout_seconds=settings.batch_timeout_seconds,
            adaptive=getattr(settings, "batch_mode", "fixed") == "adaptive",
            batch_max_bytes=getattr(settings, "batch_max_bytes", 0),
            auto_offset_reset=settings.auto_offset_reset, session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms, check_crcs=settings.kafka_check_crcs,
            rejoin_after_seconds=getattr(settings, "rejoin_after_seconds", 30.0))
        options.update(overrides)
        return cls(**options)


@dataclass
class ConsumerStats:
    polls: int = 0
    consumed: int = 0
    batches: int = 0
    write_failures: int = 0
    commit_failures: int = 0
    commit_seconds: float = 0.0
    pauses: int = 0
    paused: bool = False
    last_flush_at: float | None = None
    last_error: str | None = None
    # Records in the assigned partitions not yet fetched (the broker's high watermark, as of the
    # last fetch, minus this consumer's position); refreshed at most once a second.
    lag: int | None = None
    assigned_partitions: list[str] = field(default_factory=list)
    # Per partition, the next offset this consumer committed.
    committed: dict[str, int] = field(default_factory=dict)
    # Batches cut, per reason (idle, records, bytes, latency, flush), and the last batch's shape.
    cuts: dict[str, int] = field(default_factory=dict)
    last_batch_records: int = 0
    last_batch_bytes: int = 0
    last_batch_waited_seconds: float = 0.0
    # Why this member consumes nothing while it should, for as long as that lasts (also in /health).
    stalled: str | None = None
    # Clients closed and built again because they owned no partition (module docstring: Rejoining).
    rebuilds: int = 0


@dataclass
class Batch(Generic[C]):
    """One cut batch: the chunks of the polls it holds, in order, and what `prepare` made."""

    chunks: list[C]
    records: int
    offsets: dict[TopicPartition, int]
    prepared: Any = None
    started: float = field(default_factory=time.perf_counter)
    # The record values' bytes, why the batch was cut, and how long its oldest record had
    # waited in the buffer by then (time.monotonic seconds).
    bytes: int = 0
    cut_reason: str = ""
    waited_seconds: float = 0.0


@dataclass
class _Pending:
    batch: Batch
    done: asyncio.Future
    prepared: asyncio.Task | None = None


class BatchConsumer(Generic[C]):
    def __init__(self, options: ConsumerOptions, *, decode: Callable[[list], C],
                 write: Callable[[Batch[C]], Awaitable[Any]],
                 prepare: Callable[[Batch[C]], Awaitable[None]] | None = None,
                 after_commit: Callable[[Batch[C], Any], None] | None = None,
                 on_assign: Callable[[list[TopicPartition]], None] | None = None, name: str = "consumer",
                 circuits: Mapping[str, CircuitBreaker] | None = None, health: Any = None) -> None:
        self.options = options
        # core.health.Health: a stalled member is listed among its degraded reasons.
        self._health = health
        self.circuits: dict[str, CircuitBreaker] = dict(circuits or {})
        self.stats = ConsumerStats()
        self._decode = decode
        self._write = write
        self._prepare = prepare
        self._after_commit = after_commit
        self._on_assign = on_assign
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-kafka")
        self._consumer = None
        self._buffer: list[C] = []
        self._buffered = 0
        self._buffered_bytes = 0
        self._buffer_since: float | None = None
        self._polled_bytes = 0
        # Batches cut and not yet written (in_flight also holds written ones awaiting their commit,
        # which can wait a poll): the adaptive cut asks whether the writer is free, not the commit.
        self._unwritten = 0
        self._adaptive_in_flight = max(1, options.adaptive_in_flight
                                       or (options.prepare_workers if prepare is not None else 1))
        self._in_flight: deque[_Pending] = deque()
        self._to_write: asyncio.Queue[_Pending] | None = None
        self._prepare_slots: asyncio.Semaphore | None = None
        self._wake = asyncio.Event()  # ends the poll loop's backoff early when stopping
        self._cut_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []
        self._finishing: set[asyncio.Task] = set()
        self._stopping = False  # no more polling
        self._closed = False  # no more writing
        # Commits: queued by the event loop, carried out on the consumer's thread.
        self._lock = threading.Lock()
        self._owned: set[TopicPartition] = set()
        self._pending_commits: dict[TopicPartition, int] = {}
        self._commit_waiters: list[asyncio.Future] = []
        self._revoking = False
        self._lag_due = 0.0
        # Rejoining: when this member last went from owning partitions to owning none (monotonic;
        # None while it owns some, or never did), and when to look at it next.
        self._lost_at: float | None = None
        self._rejoin_due: float | None = None
        self._rejoin_wait = options.rejoin_after_seconds
        # The group's committed offsets at the last look while this member owned nothing.
        self._progress: dict[TopicPartition, int] | None = None

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._to_write = asyncio.Queue()
        self._prepare_slots = asyncio.Semaphore(self.options.prepare_workers)
        self._consumer = self._new_client()
        self._tasks = [asyncio.create_task(self._poll_loop(), name=f"{self._name}-poll"),
                       asyncio.create_task(self._write_loop(), name=f"{self._name}-write"),
                       asyncio.create_task(self._timer(), name=f"{self._name}-batch-timer")]

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Stop fetching, write and commit what was consumed, leave the group."""
        if self._consumer is None or self._closed:
            return
        self._stopping = True
        self._wake.set()
        await asyncio.gather(self._tasks[0], return_exceptions=True)
        down = [name for name, breaker in self.circuits.items() if breaker.is_open]
        if down:
            # Waiting out `timeout_s` for a dependency that is away would only delay the stop.
            log.warning("%s: %s unavailable; not flushing, the %d unwritten records will be read again",
                        self._name, ", ".join(down), self.buffered)
        else:
            try:
                await asyncio.wait_for(self.flush(), timeout=timeout_s)
            except Exception as exc:  # noqa: BLE001 - uncommitted records are read again after a restart
                log.warning("%s: final flush failed; the records will be read again: %s", self._name, exc)
        self._closed = True
        tasks = self._tasks + list(self._finishing)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pending in self._in_flight:
            if not pending.done.done():
                pending.done.cancel()
        await asyncio.get_running_loop().run_in_executor(self._thread, self._consumer.close)
        self._thread.shutdown(wait=True)

    @property
    def buffered(self) -> int:
        """Records consumed and not yet written (in the buffer or in a batch on its way)."""
        return self._buffered + sum(p.batch.records for p in self._in_flight)

    def _new_client(self):
        from confluent_kafka import Consumer

        consumer = Consumer(self.options.librdkafka_config())
        consumer.subscribe(list(self.options.topics), on_assign=self._assigned, on_revoke=self._revoked)
        return consumer

    # -- polling (the consumer's thread) -----------------------------------------------------------
    def _poll(self, max_records: int, pause: bool | None) -> C | None:
        due, lost_at = self._rejoin_due, self._lost_at
        if due is not None and lost_at is not None and time.monotonic() >= due:
            self._check_rejoin(lost_at)
        consumer = self._consumer
        self._polled_bytes = 0
        if pause is not None:
            assignment = consumer.assignment()
            if assignment:
                consumer.pause(assignment) if pause else consumer.resume(assignment)
        messages = consumer.consume(num_messages=max_records, timeout=self.options.poll_timeout_seconds)
        if time.monotonic() >= self._lag_due:
            self._lag_due = time.monotonic() + 1.0
            self.stats.lag = self._lag(consumer)
        if not messages:
            return None
        good = [m for m in messages if m.error() is None]
        if len(good) != len(messages):
            for message in messages:
                if message.error() is not None:
                    log.warning("%s: consume error: %s", self._name, message.error())
            if not good:
                return None
        # Decoded here, before the event loop sees them: the Message objects die within the poll
        # (thousands waiting as tracked objects made the cyclic GC cost seconds).
        try:
            chunk = self._decode(good)
            # len(Message) is its value's length, counted in C: the byte bound costs no Python loop.
            self._polled_bytes = sum(map(len, good))
            return chunk
        except Exception:
            # These records were fetched but are held nowhere: rewind, so the next poll reads them
            # again, instead of a later batch committing past them.
            self._rewind(consumer, good)
            raise

    def _check_rejoin(self, lost_at: float) -> None:
        """This member lost its partitions at `lost_at` and owns none since: rebuild the client
        if the broker lists partitions for its topics (module docstring: Rejoining)."""
        consumer = self._consumer
        waited = time.monotonic() - lost_at
        if consumer.assignment():
            self._rejoin_due = time.monotonic() + self._rejoin_wait  # its assignment callback is on its way
            return
        listed: list[TopicPartition] = []
        missing = []
        try:
            for topic in self.options.topics:
                found = consumer.list_topics(topic, timeout=5.0).topics.get(topic)
                if found is None or found.error is not None or not found.partitions:
                    missing.append(topic)
                else:
                    listed += [(topic, partition) for partition in sorted(found.partitions)]
            progress = self._group_progress(consumer, listed) if listed else None
        except Exception as exc:  # noqa: BLE001 - the broker away: nothing to rejoin yet
            self._stall(f"owns no partition for {waited:.0f} s; the broker does not answer: {exc}"[:500])
            self._rejoin_due = time.monotonic() + self._rejoin_wait / 2
            return
        if not listed:
            self._stall(f"owns no partition for {waited:.0f} s; {', '.join(missing)} not on the broker")
            self._rejoin_due = time.monotonic() + self._rejoin_wait / 2
            return
        partitions = len(listed)
        lag, committed = progress
        previous, self._progress = self._progress, committed
        if lag == 0 or (previous is not None and committed != previous):
            # Nothing waits to be consumed, or the group's committed offsets moved since the last
            # look: other members own the partitions (more members than partitions; this one lost
            # its share in a rebalance). Rebuilding would only make the whole group rebalance.
            self._stall(None)
            self._rejoin_due = time.monotonic() + self._rejoin_wait
            return
        if previous is None:
            # Records wait: see whether anyone commits them before calling the group stuck.
            self._rejoin_due = time.monotonic() + min(PROGRESS_WINDOW_SECONDS, self.options.rejoin_after_seconds)
            return
        self.stats.rebuilds += 1
        REBUILDS.labels(self._name).inc()
        reason = (f"owned no partition for {waited:.0f} s after losing its assignment although the broker "
                  f"lists {partitions} for {', '.join(self.options.topics)}: Kafka client rebuilt "
                  f"({self.stats.rebuilds} so far), waiting for its assignment")
        log.warning("%s: %s", self._name, reason)
        self._stall(reason)
        try:
            consumer.close()  # leaves the group; it owns nothing, so there is nothing to flush
        except Exception as exc:  # noqa: BLE001 - replaced either way
            log.warning("%s: closing the stalled Kafka client failed: %s", self._name, exc)
        self._consumer = self._new_client()
        self._rejoin_wait = min(self.options.rejoin_max_seconds, self._rejoin_wait * 2)
        self._rejoin_due = time.monotonic() + self._rejoin_wait

    @staticmethod
    def _group_progress(consumer, listed: list[TopicPartition]) -> tuple[int, dict[TopicPartition, int]]:
        """The group's lag over these partitions and its committed offsets, from the broker (a
        partition never committed, or forgotten by a restarted broker, counts from its start)."""
        from confluent_kafka import TopicPartition as KafkaPartition

        committed: dict[TopicPartition, int] = {}
        lag = 0
        for tp in consumer.committed([KafkaPartition(topic, partition) for topic, partition in listed], timeout=5.0):
            low, high = consumer.get_watermark_offsets(KafkaPartition(tp.topic, tp.partition), timeout=5.0,
                                                       cached=False)
            committed[(tp.topic, tp.partition)] = tp.offset
            lag += max(0, high - max(tp.offset, low))
        return lag, committed

    def _stall(self, reason: str | None) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._note_stall, reason)

    def _note_stall(self, reason: str | None) -> None:
        self.stats.stalled = reason
        STALLED.labels(self._name).set(1 if reason else 0)
        if self._health is not None:
            if reason:
                self._health.degraded_reasons[f"consumer:{self._name}"] = reason
            else:
                self._health.degraded_reasons.pop(f"consumer:{self._name}", None)

    @staticmethod
    def _lag(consumer) -> int | None:
        # Cheap: `cached=True` reads the high watermark librdkafka keeps from its fetch responses.
        try:
            lag, known = 0, False
            for position in consumer.position(consumer.assignment()):
                if position.offset < 0:
                    continue  # nothing returned from this partition yet: unknown, left out
                low, high = consumer.get_watermark_offsets(position, cached=True)
                if high >= 0:
                    lag += max(0, high - position.offset)
                    known = True
            return lag if known else None
        except Exception:  # noqa: BLE001 - a statistic, never worth a failed poll
            return None

    @staticmethod
    def _rewind(consumer, messages: list) -> None:
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        first: dict[TopicPartition, int] = {}
        for message in messages:
            key = (message.topic(), message.partition())
            first[key] = min(message.offset(), first.get(key, message.offset()))
        for (topic, partition), offset in first.items():
            consumer.seek(KafkaTopicPartition(topic, partition, offset))

    async def _poll_loop(self) -> None:
        max_records = self.options.max_poll_records or self.options.batch_size
        loop = asyncio.get_running_loop()
        while not self._stopping:
            full = self._full()
            change = None
            if full != self.stats.paused:
                change = full
                self.stats.paused = full
                self.stats.pauses += int(full)
            try:
                chunk = await loop.run_in_executor(self._thread, self._poll, max_records, change)
            except Exception as exc:  # noqa: BLE001 - e.g. the broker away; librdkafka reconnects
                self.stats.last_error = f"consume: {type(exc).__name__}: {exc}"[:500]
                log.error("%s: consume failed: %s", self._name, exc)
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                except asyncio.TimeoutError:
                    pass
                continue
            self.stats.polls += 1
            if chunk is None or not len(chunk):
                continue
            self.stats.consumed += len(chunk)
            polled_bytes = self._polled_bytes
            async with self._cut_lock:
                if not self._buffer:
                    self._buffer_since = time.monotonic()
                self._buffer.append(chunk)
                self._buffered += len(chunk)
                self._buffered_bytes += polled_bytes
                self._cut_if_due()

    def _has_room(self) -> bool:
        return len(self._in_flight) < self.options.max_batches_in_flight

    def _bound_reached(self) -> str | None:
        if self._buffered >= self.options.batch_size:
            return "records"
        if self.options.batch_max_bytes and self._buffered_bytes >= self.options.batch_max_bytes:
            return "bytes"
        return None

    def _full(self) -> bool:
        """Back-pressure: every batch slot taken and a whole batch waiting in the buffer, or a
        dependency's circuit open (fetching more would only hold more unwritten data)."""
        if any(breaker.is_open for breaker in self.circuits.values()):
            return True
        return not self._has_room() and self._bound_reached() is not None

    def _cut_if_due(self) -> None:
        """Cut the buffer if a bound, the latency target or (adaptive) a free writer says so.
        Called with the cut lock held."""
        if self._buffer_since is None or not self._has_room():
            return
        reason = self._bound_reached()
        if reason is None and time.monotonic() - self._buffer_since >= self.options.batch_timeout_seconds:
            reason = "latency"
        if reason is None and self.options.adaptive and self._unwritten < self._adaptive_in_flight:
            reason = "idle"
        if reason is not None:
            self._cut_locked(reason)

    # -- batches -------------------------------------------------------------------------------
    def _cut_locked(self, reason: str) -> _Pending | None:
        chunks, records, size, since = self._buffer, self._buffered, self._buffered_bytes, self._buffer_since
        self._buffer, self._buffered, self._buffered_bytes, self._buffer_since = [], 0, 0, None
        if not chunks:
            return None
        offsets: dict[TopicPartition, int] = {}
        for chunk in chunks:
            for key, offset in chunk.next_offsets().items():
                if offset > offsets.get(key, -1):
                    offsets[key] = offset
        waited = time.monotonic() - since if since is not None else 0.0
        pending = _Pending(Batch(chunks, records, offsets, bytes=size, cut_reason=reason, waited_seconds=waited),
                           self._loop.create_future())
        self.stats.cuts[reason] = self.stats.cuts.get(reason, 0) + 1
        self.stats.last_batch_records, self.stats.last_batch_bytes = records, size
        self.stats.last_batch_waited_seconds = round(waited, 3)
        if self._prepare is not None:
            pending.prepared = asyncio.create_task(self._prepare_one(pending.batch))
        self._in_flight.append(pending)
        self._unwritten += 1
        self._to_write.put_nowait(pending)
        return pending

    async def _prepare_one(self, batch: Batch) -> None:
        async with self._prepare_slots:
            await self._retry("prepare", lambda: self._prepare(batch))

    async def _timer(self) -> None:
        timeout = self.options.batch_timeout_seconds
        while True:
            await asyncio.sleep(min(0.25, timeout / 4))
            since = self._buffer_since
            if since is not None and time.monotonic() - since >= timeout and self._has_room():
                async with self._cut_lock:
                    self._cut_if_due()

    async def flush(self) -> list[Any]:
        """Write (and commit) everything consumed so far; the results of those writes, in order."""
        if self._closed:
            return []
        async with self._cut_lock:
            self._cut_locked("flush")
            waiting = [p.done for p in self._in_flight]
        # Shielded: a caller giving up (a timeout) must not cancel the batches themselves.
        return list(await asyncio.gather(*(asyncio.shield(done) for done in waiting)))

    async def _write_loop(self) -> None:
        while True:
            pending = await self._to_write.get()
            try:
                if pending.prepared is not None:
                    await pending.prepared
                result = await self._retry("write", lambda: self._write(pending.batch))
            except BaseException as exc:
                self._unwritten -= 1
                if pending in self._in_flight:
                    self._in_flight.remove(pending)
                if not pending.done.done():
                    if isinstance(exc, asyncio.CancelledError):
                        pending.done.cancel()
                    else:
                        pending.done.set_exception(exc)
                raise
            # The next write does not wait for this commit: a poll may hold the consumer's thread
            # for up to poll_timeout_seconds (with small batches that was a tenth of the run).
            # Commits still happen in order, merged per partition, and each after its write.
            finishing = asyncio.create_task(self._finish(pending, result))
            self._finishing.add(finishing)
            finishing.add_done_callback(self._finishing.discard)
            self._unwritten -= 1
            if self.options.adaptive and self._buffer_since is not None:
                async with self._cut_lock:
                    self._cut_if_due()  # the writer is free: what grew meanwhile is the next batch

    async def _finish(self, pending: _Pending, result: Any) -> None:
        try:
            await self._commit(pending.batch.offsets)
            if self._after_commit is not None:
                self._after_commit(pending.batch, result)
        finally:
            if pending in self._in_flight:
                self._in_flight.remove(pending)
        self.stats.batches += 1
        self.stats.last_flush_at = time.time()
        if not pending.done.done():
            pending.done.set_result(result)
        await self._cut_waiting()

    async def _cut_waiting(self) -> None:
        """A slot came free (and, adaptive, the writer): cut what waited for one."""
        async with self._cut_lock:
            self._cut_if_due()

    async def _retry(self, what: str, action: Callable[[], Awaitable[Any]]) -> Any:
        """Nothing after this batch moves on until it succeeded (ordering and offsets depend on it)."""
        delay = self.options.retry_base_seconds
        failed: set[str] = set()
        while True:
            try:
                result = await action()
            except Exception as exc:  # noqa: BLE001 - retried; stopping gives up (nothing committed)
                self.stats.write_failures += 1
                self.stats.last_error = f"{what}: {type(exc).__name__}: {exc}"[:500]
                wait = delay
                breaker = self.circuits.get(getattr(exc, "dependency", None) or "")
                if breaker is not None:
                    breaker.record_failure(exc)
                    failed.add(breaker.dependency)
                    wait = min(self.options.retry_max_seconds, breaker.delay())
                log.error("%s: %s failed; retrying in %.2fs: %s", self._name, what, wait, exc,
                          extra={"dependency": breaker.dependency if breaker else None,
                                 "circuit": breaker.state if breaker else None})
                if self._closed:
                    raise
                await asyncio.sleep(wait)
                delay = min(self.options.retry_max_seconds, max(delay * 2, 0.01))
                continue
            for dependency in failed:
                log.info("%s: %s recovered after %d failures", self._name, dependency,
                         self.circuits[dependency].failures)
                self.circuits[dependency].record_success()
            return result

    # -- commits -------------------------------------------------------------------------------
    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit `offsets` and wait for it. A failed commit (the group rebalancing) is logged:
        the data is written, and the next owner reads it again (at least once)."""
        if not offsets:
            return
        waiter = self._loop.create_future()
        with self._lock:
            for key, offset in offsets.items():
                self._pending_commits[key] = max(offset, self._pending_commits.get(key, -1))
            self._commit_waiters.append(waiter)
        if not self._revoking:
            self._loop.run_in_executor(self._thread, self._drain_commits)
        started = time.perf_counter()
        try:
            await waiter
        except Exception as exc:  # noqa: BLE001
            self.stats.commit_failures += 1
            self.stats.last_error = f"commit: {type(exc).__name__}: {exc}"[:500]
            log.warning("%s: offset commit failed; the records will be read again: %s", self._name, exc)
        finally:
            self.stats.commit_seconds += time.perf_counter() - started

    def _drain_commits(self) -> None:
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        with self._lock:
            pending, self._pending_commits = self._pending_commits, {}
            waiters, self._commit_waiters = self._commit_waiters, []
            wanted = {key: offset for key, offset in pending.items() if key in self._owned}
        if not waiters:
            return
        error: Exception | None = None
        if wanted and self._consumer is not None:
            try:
                self._consumer.commit(offsets=[KafkaTopicPartition(t, p, o) for (t, p), o in wanted.items()],
                                      asynchronous=False)
            except Exception as exc:  # noqa: BLE001 - handed to the waiters
                error = exc
        if error is None:
            for (topic, partition), offset in wanted.items():
                self.stats.committed[f"{topic}/{partition}"] = offset
        for waiter in waiters:
            self._loop.call_soon_threadsafe(_settle, waiter, error)

    # -- rebalance callbacks (the consumer's thread, inside consume()) -------------------------
    def _assigned(self, consumer, partitions) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        with self._lock:
            self._owned.update(keys)
        if keys:
            if self._lost_at is not None or self.stats.stalled:
                self._stall(None)
            self._lost_at = self._rejoin_due = self._progress = None
            self._rejoin_wait = self.options.rejoin_after_seconds
        if partitions:
            # New partitions wait like the old ones while full, and fetch otherwise: a partition
            # paused before a rebalance stays paused when assigned again (librdkafka keeps the
            # flag), and the resume that ended that pause may have come while nothing was assigned
            # (a broker restart: after it ingest owned its partitions again and never fetched).
            consumer.pause(partitions) if self.stats.paused else consumer.resume(partitions)
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._note_assignment, keys)

    def _note_assignment(self, keys: list[TopicPartition]) -> None:
        with self._lock:
            owned = sorted(self._owned)
        self.stats.assigned_partitions = [f"{topic}/{partition}" for topic, partition in owned]
        if self._on_assign is not None:
            self._on_assign(keys)

    def _revoked(self, consumer, partitions) -> None:
        if partitions and not self._closed and not self._loop.is_closed():
            self._revoking = True
            try:
                done = asyncio.run_coroutine_threadsafe(self.flush(), self._loop)
                deadline = time.monotonic() + self.options.revoke_timeout_seconds
                while True:
                    try:
                        done.result(timeout=0.05)
                        break
                    except concurrent.futures.TimeoutError:
                        self._drain_commits()  # the flush's commits wait for this thread
                        if time.monotonic() > deadline:
                            raise
            except Exception as exc:  # noqa: BLE001 - read again by the next owner
                # What was not written stays buffered and is written later (its commit is skipped
                # for partitions this member lost); the next owner reads it again meanwhile, and
                # idempotent storage absorbs the second copy. Dropping it instead would race with
                # the next assignment's first poll.
                log.warning("%s: writing before the rebalance did not finish; the next owner reads "
                            "those records again: %s", self._name, exc)
            finally:
                self._revoking = False
                self._drain_commits()
        with self._lock:
            self._owned.difference_update((tp.topic, tp.partition) for tp in partitions)
            owned = sorted(self._owned)
        if partitions and not owned and not self._closed:
            self._lost_at = time.monotonic()
            self._rejoin_due = self._lost_at + self._rejoin_wait
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(
                setattr, self.stats, "assigned_partitions", [f"{t}/{p}" for t, p in owned])


def _settle(waiter: asyncio.Future, error: Exception | None) -> None:
    if waiter.done():
        return
    if error is None:
        waiter.set_result(None)
    else:
        waiter.set_exception(error)


class Messages(list):
    """A poll's records as plain values (for consumers that want a list, like the vectorizer)."""

    def next_offsets(self) -> dict[TopicPartition, int]:
        offsets: dict[TopicPartition, int] = {}
        for record in self:
            key = (record.topic, record.partition)
            if record.offset >= offsets.get(key, -1):
                offsets[key] = record.offset + 1
        return offsets
