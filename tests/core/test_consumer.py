"""The shared batch consumer (`core/consumer.py`) against the real broker (Tansu)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from logpipe.core.consumer import Batch, BatchConsumer, ConsumerOptions, Messages
from support import produce_to_every_partition, wait_for

PARTITIONS = 4


@dataclass
class Record:
    value: bytes
    topic: str
    partition: int
    offset: int


def decode(messages) -> Messages:
    return Messages(Record(m.value(), m.topic(), m.partition(), m.offset()) for m in messages)


class Sink:
    """A write function that keeps what it was given; `fail` and `gate` make it fail or wait."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.fail = False
        self.gate: asyncio.Event | None = None
        # One permit lets one write through (None: no limit).
        self.permits: asyncio.Semaphore | None = None
        self.attempts = 0
        self.written: list[Batch] = []  # the engine's batches, with their cut reason and size

    async def write(self, batch: Batch) -> int:
        self.attempts += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.permits is not None:
            await self.permits.acquire()
        if self.fail:
            raise ConnectionError("the store is down")
        values = [record.value for chunk in batch.chunks for record in chunk]
        assert len(values) == batch.records
        self.batches.append(values)
        self.written.append(batch)
        return len(values)

    @property
    def values(self) -> list[bytes]:
        return [value for batch in self.batches for value in batch]


def options(bootstrap: str, topic: str, group: str, **overrides) -> ConsumerOptions:
    settings = dict(bootstrap_servers=bootstrap, topics=[topic], group_id=group, batch_size=100,
                    batch_timeout_seconds=300, session_timeout_ms=2000, heartbeat_interval_ms=500,
                    retry_base_seconds=0.05, retry_max_seconds=0.2)
    settings.update(overrides)
    return ConsumerOptions(**settings)


@contextlib.asynccontextmanager
async def running(opts: ConsumerOptions, sink: Sink, stop_timeout_s: float = 30.0, decoder=decode):
    consumer = BatchConsumer(opts, decode=decoder, write=sink.write, name="test")
    consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop(timeout_s=stop_timeout_s)


async def committed(bootstrap: str, group: str, topic: str) -> int:
    """Offsets the group committed on `topic`, summed over its partitions (read from the broker)."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        total = 0
        for partition in range(PARTITIONS):
            total += await reader.committed(TopicPartition(topic, partition)) or 0
        return total
    finally:
        await reader.stop()


async def committed_is(bootstrap: str, group: str, topic: str, expected: int) -> bool:
    return await committed(bootstrap, group, topic) == expected


def values(count: int, start: int = 0) -> list[bytes]:
    return [f"record-{i}".encode() for i in range(start, start + count)]


def group() -> str:
    return f"engine-{uuid.uuid4().hex[:8]}"


async def test_size_cut_writes_full_batches_and_commits_exactly_what_was_written(kafka_bootstrap, topics):
    sink, name = Sink(), group()
    sent = values(250)
    async with running(options(kafka_bootstrap, topics.raw_logs, name, batch_size=100), sink) as consumer:
        await produce_to_every_partition(kafka_bootstrap, topics.raw_logs, sent, PARTITIONS)
        # Less than a batch left: every full batch was cut (which records make one depends on the polls).
        await wait_for(lambda: consumer.stats.consumed == 250 and 250 - len(sink.values) < 100)
        await wait_for(lambda: consumer.stats.lag == 0)  # all fetched
        # No time cut (300 s): only full batches were written, the rest waits in the buffer.
        assert all(len(batch) >= 100 for batch in sink.batches)
        await wait_for(lambda: committed_is(kafka_bootstrap, name, topics.raw_logs, len(sink.values)), timeout=10)
        await wait_for(lambda: consumer.buffered == 250 - len(sink.values))
        assert consumer.stats.batches == len(sink.batches)


async def test_time_cut_writes_a_partial_batch(kafka_bootstrap, topics):
    sink, name = Sink(), group()
    async with running(options(kafka_bootstrap, topics.raw_logs, name, batch_size=10_000,
                               batch_timeout_seconds=0.5), sink) as consumer:
        await produce_to_every_partition(kafka_bootstrap, topics.raw_logs, values(30), PARTITIONS)
        await wait_for(lambda: len(sink.values) == 30)
        assert sorted(sink.values) == sorted(values(30))
        await wait_for(lambda: committed_is(kafka_bootstrap, name, topics.raw_logs, 30), timeout=10)
        await wait_for(lambda: consumer.buffered == 0 and consumer.stats.last_flush_at is not None)
        assert all(len(batch) < 10_000 for batch in sink.batches)


async def test_a_failing_write_commits_nothing_and_the_records_are_read_again(kafka_bootstrap, topics):
    failing, name = Sink(), group()
    failing.fail = True
    sent = values(40)
    async with running(options(kafka_bootstrap, topics.raw_logs, name, batch_size=10,
                               batch_timeout_seconds=0.2), failing, stop_timeout_s=1.0) as consumer:
        await produce_to_every_partition(kafka_bootstrap, topics.raw_logs, sent, PARTITIONS)
        await wait_for(lambda: consumer.stats.consumed >= 10 and failing.attempts >= 4)
        assert consumer.stats.write_failures >= 4 and "the store is down" in consumer.stats.last_error
        assert failing.values == []
        assert await committed(kafka_bootstrap, name, topics.raw_logs) == 0
    # The next member of the group reads every record again, from the offsets never committed.
    working = Sink()
    async with running(options(kafka_bootstrap, topics.raw_logs, name, batch_size=10,
                               batch_timeout_seconds=0.2), working):
        await wait_for(lambda: len(working.values) == 40)
        await wait_for(lambda: committed_is(kafka_bootstrap, name, topics.raw_logs, 40), timeout=10)
    assert sorted(working.values) == sorted(sent)


async def test_a_retried_write_is_committed_once_it_succeeds(kafka_bootstrap, topics):
    sink, name = Sink(), group()
    sink.fail = True
    async with running(options(kafka_bootstrap, topics.raw_logs, name, batch_size=20,
                               batch_timeout_seconds=0.2), sink) as consumer:
        await produce_to_every_partition(kafka_bootstrap, topics.raw_logs, values(20), PARTITIONS)
        await wait_for(lambda: sink.attempts >= 3)
        assert await committed(kafka_bootstrap, name, topics.raw_logs) == 0
        sink.fail = False
        await wait_for(lambda: len(sink.values) == 20)
        await wait_for(lambda: committed_is(kafka_bootstrap, name, topics.raw_logs, 20), timeout=10)
        assert consumer.stats.commit_failures == 0


async def test_revoked_partitions_are_written_and_committed_before_they_move(kafka_bootstrap, topics):
    first_sink, second_sink, name = Sink(), Sink(), group()
    # Batches never fill and never time out here: only a rebalance (or a flush) writes.
    opts = options(kafka_bootstrap, topics.raw_logs, name, batch_size=100_000, batch_timeout_seconds=300)
    async with running(opts, first_sink) as first:
        await wait_for(lambda: len(first.stats.assigned_partitions) == PARTITIONS, timeout=30)
        await produce_to_every_partition(kafka_bootstrap, topics.raw_logs, values(400), PARTITIONS)
        await wait_for(lambda: first.stats.consumed == 400)
        assert first_sink.values == []
        async with running(opts, second_sink) as second:
            await wait_for(lambda: second.stats.assigned_partitions and first.stats.assigned_partitions,
                           timeout=60)
            # The first member wrote what it held before its partitions moved, and committed it.
            assert sorted(first_sink.values) == sorted(values(400))
            assert await committed(kafka_bootstrap, name, topics.raw_logs) == 400
            assert len(first.stats.assigned_partitions) + len(second.stats.assigned_partitions) == PARTITIONS
            await produce_to_every_partition(kafka_bootstrap, topics.raw_logs, values(400, 400), PARTITIONS)
            await wait_for(lambda: first.stats.consumed + second.stats.consumed == 800, timeout=30)
            await first.flush()
            await second.flush()
            assert second.stats.consumed > 0
    # Every record written once: nothing the first member committed was read again.
    assert sorted(first_sink.values + second_sink.values) == sorted(values(800))
    assert await committed(kafka_bootstrap, name, topics.raw_logs) == 800


async def test_a_slow_write_pauses_fetching(kafka_bootstrap, topics):
    sink, name = Sink(), group()
    sink.gate = asyncio.Event()
    opts = options(kafka_bootstrap, topics.raw_logs, name, batch_size=10, batch_timeout_seconds=0.2,
                   max_poll_records=10, max_batches_in_flight=1)
    # One batch in flight and one in the buffer, each under two polls' worth.
    bound = 2 * (10 - 1 + 10)
    async with running(opts, sink) as consumer:
        await produce_to_every_partition(kafka_bootstrap, topics.raw_logs, values(300), PARTITIONS)
        await wait_for(lambda: consumer.stats.paused)
        polls = consumer.stats.polls
        # Polling goes on while paused (rebalances are served), but nothing more arrives.
        await wait_for(lambda: consumer.stats.polls >= polls + 10)
        assert consumer.stats.consumed <= bound and consumer.buffered <= bound
        await wait_for(lambda: consumer.stats.lag)  # the rest waits in Kafka
        assert sink.values == []
        sink.gate.set()
        await wait_for(lambda: len(sink.values) == 300, timeout=60)
        await wait_for(lambda: not consumer.stats.paused)  # resumed at the next poll
        assert consumer.stats.pauses >= 1
        await wait_for(lambda: committed_is(kafka_bootstrap, name, topics.raw_logs, 300), timeout=10)
    assert sorted(sink.values) == sorted(values(300))


async def test_a_poll_that_fails_to_decode_is_read_again(kafka_bootstrap, topics):
    sink, name = Sink(), group()
    failures = []

    def decode_failing_twice(messages):
        if len(failures) < 2:
            failures.append(len(messages))
            raise ValueError("cannot decode")
        return decode(messages)

    async with running(options(kafka_bootstrap, topics.raw_logs, name, batch_size=10,
                               batch_timeout_seconds=0.2), sink, decoder=decode_failing_twice) as consumer:
        await produce_to_every_partition(kafka_bootstrap, topics.raw_logs, values(60), PARTITIONS)
        await wait_for(lambda: len(sink.values) == 60)
        await wait_for(lambda: committed_is(kafka_bootstrap, name, topics.raw_logs, 60), timeout=10)
        assert len(failures) == 2 and "cannot decode" in consumer.stats.last_error
    assert sorted(sink.values) == sorted(values(60))  # none skipped, none twice


# -- adaptive batching (what ingest and the vectorizer ship) ------------------------------------

def adaptive(bootstrap: str, topic: str, group: str, **overrides) -> ConsumerOptions:
    return options(bootstrap, topic, group, **{"adaptive": True, **overrides})


async def test_adaptive_batches_grow_while_the_writer_is_busy_up_to_the_record_bound(kafka_bootstrap, topics):
    sink, name = Sink(), group()
    sink.permits = asyncio.Semaphore(0)
    opts = adaptive(kafka_bootstrap, topics.raw_logs, name, batch_size=100, batch_timeout_seconds=300,
                    max_poll_records=10, max_batches_in_flight=1)
    sent = values(300)
    async with running(opts, sink) as consumer:
        await produce_to_every_partition(kafka_bootstrap, topics.raw_logs, sent, PARTITIONS)
        # The first poll went out at once (the writer was free); the rest grows behind it.
        await wait_for(lambda: sink.attempts == 1 and consumer.stats.paused)
        assert consumer.stats.cuts == {"idle": 1}
        assert await committed(kafka_bootstrap, name, topics.raw_logs) == 0
        sink.permits.release()
        await wait_for(lambda: len(sink.written) == 1)
        first = sink.written[0]
        assert first.cut_reason == "idle" and first.records <= 10
        # Committed after the write, exactly that batch, though more is buffered and cut.
        await wait_for(lambda: committed_is(kafka_bootstrap, name, topics.raw_logs, first.records), timeout=10)
        await wait_for(lambda: consumer.buffered > 100)
        assert await committed(kafka_bootstrap, name, topics.raw_logs) == first.records
        for _ in range(300):
            sink.permits.release()
        await wait_for(lambda: len(sink.values) == 300, timeout=60)
        await wait_for(lambda: committed_is(kafka_bootstrap, name, topics.raw_logs, 300), timeout=10)
    assert sorted(sink.values) == sorted(sent)
    second = sink.written[1]
    # It grew while the first write waited, to the record bound (plus at most one poll's records).
    assert second.cut_reason == "records" and 100 <= second.records < 100 + 10
    assert all(batch.records < 100 + 10 for batch in sink.written)


async def test_adaptive_batches_are_bounded_by_bytes(kafka_bootstrap, topics):
    sink, name = Sink(), group()
    sink.gate = asyncio.Event()
    sent = [f"{i:0100d}".encode() for i in range(200)]  # 100 bytes each
    opts = adaptive(kafka_bootstrap, topics.raw_logs, name, batch_size=10_000, batch_max_bytes=1_000,
                    batch_timeout_seconds=300, max_poll_records=5, max_batches_in_flight=1)
    async with running(opts, sink) as consumer:
        await produce_to_every_partition(kafka_bootstrap, topics.raw_logs, sent, PARTITIONS)
        await wait_for(lambda: consumer.stats.paused)  # one write held, 1,000 bytes waiting: full
        assert consumer.buffered <= 5 + (1_000 + 5 * 100) // 100
        sink.gate.set()
        await wait_for(lambda: len(sink.values) == 200, timeout=60)
        await wait_for(lambda: committed_is(kafka_bootstrap, name, topics.raw_logs, 200), timeout=10)
    assert sorted(sink.values) == sorted(sent)
    for batch, written in zip(sink.written, sink.batches):
        assert batch.bytes == sum(len(value) for value in written)  # the engine counts what it holds
        assert batch.bytes < 1_000 + 5 * 100  # the bound, plus at most one poll's bytes
    assert consumer.stats.cuts.get("bytes", 0) >= 1
    assert max(batch.records for batch in sink.written) >= 10  # grew past a poll, to the byte bound


async def test_a_lone_record_is_written_at_once_and_one_behind_a_busy_writer_within_the_latency_target(
        kafka_bootstrap, topics):
    sink, name = Sink(), group()
    sink.permits = asyncio.Semaphore(0)
    opts = adaptive(kafka_bootstrap, topics.raw_logs, name, batch_size=10_000, batch_timeout_seconds=1.0,
                    max_batches_in_flight=2)
    async with running(opts, sink) as consumer:
        await wait_for(lambda: len(consumer.stats.assigned_partitions) == PARTITIONS, timeout=30)
        await produce_to_every_partition(kafka_bootstrap, topics.raw_logs, [b"lone"], PARTITIONS)
        await wait_for(lambda: sink.attempts == 1)
        lone = consumer._in_flight[0].batch
        # Cut by the free writer at the poll that brought it, not by the 1 s target.
        assert lone.cut_reason == "idle" and lone.records == 1
        assert lone.waited_seconds < opts.batch_timeout_seconds
        # The writer is now busy: the next record waits for the latency target, then is cut.
        await produce_to_every_partition(kafka_bootstrap, topics.raw_logs, [b"behind"], PARTITIONS)
        await wait_for(lambda: consumer.stats.cuts.get("latency") == 1)
        behind = consumer._in_flight[1].batch
        assert behind.records == 1 and behind.waited_seconds >= opts.batch_timeout_seconds
        sink.permits.release()
        sink.permits.release()
        await wait_for(lambda: len(sink.values) == 2)
        await wait_for(lambda: committed_is(kafka_bootstrap, name, topics.raw_logs, 2), timeout=10)
    assert sink.values == [b"lone", b"behind"]


async def test_a_member_that_lost_its_topic_to_a_broker_restart_rejoins_by_itself():
    """An in-memory broker restarted: the group and the topic are gone. The topic comes back
    later than librdkafka waits for a vanished topic (1 s here, 30 s by default), so the client
    counts zero partitions for it and, left alone, never consumes again. The engine rebuilds it,
    says so in /health while it waits, and counts the rebuild in /metrics."""
    from prometheus_client import REGISTRY

    from logpipe.core.broker import EmbeddedBroker, free_port
    from logpipe.core.health import Health
    from logpipe.core.topics import Topics, ensure_topics

    port = free_port()
    broker = EmbeddedBroker(port=port).start()
    topics = Topics(f"rejoin{uuid.uuid4().hex[:6]}-")
    health = Health("test")
    sink, name = Sink(), group()
    opts = options(broker.bootstrap_servers, topics.raw_logs, name, batch_timeout_seconds=0.2,
                   rejoin_after_seconds=2.0,
                   client_options={"topic.metadata.propagation.max.ms": 1000, "reconnect.backoff.max.ms": 500})
    rebuilds_before = REGISTRY.get_sample_value("logpipe_consumer_rebuilds_total", {"service": "rejoin"}) or 0.0
    consumer = BatchConsumer(opts, decode=decode, write=sink.write, name="rejoin", health=health)
    try:
        await ensure_topics(broker.bootstrap_servers, topics, partitions=PARTITIONS)
        consumer.start()
        await produce_to_every_partition(broker.bootstrap_servers, topics.raw_logs, values(40), PARTITIONS)
        await wait_for(lambda: len(sink.values) == 40, timeout=30)

        broker.stop()
        broker = EmbeddedBroker(port=port).start()
        # While the topic is away the member owns nothing and /health says why.
        await wait_for(lambda: "not on the broker" in (consumer.stats.stalled or ""), timeout=30,
                       message=lambda: consumer.stats)
        body, _ = await health.report()
        assert body["status"] == "degraded", body
        assert topics.raw_logs in body["reasons"]["consumer:rejoin"], body
        assert consumer.stats.rebuilds == 0  # nothing to join yet: no rebuild

        await ensure_topics(broker.bootstrap_servers, topics, partitions=PARTITIONS)
        after = values(40, start=1_000)
        await produce_to_every_partition(broker.bootstrap_servers, topics.raw_logs, after, PARTITIONS)
        await wait_for(lambda: set(after) <= set(sink.values), timeout=60,
                       message=lambda: f"{len(set(after) & set(sink.values))} of 40 consumed; {consumer.stats}")
        assert consumer.stats.rebuilds >= 1
        assert REGISTRY.get_sample_value("logpipe_consumer_rebuilds_total",
                                         {"service": "rejoin"}) == rebuilds_before + consumer.stats.rebuilds
        assert consumer.stats.stalled is None
        assert REGISTRY.get_sample_value("logpipe_consumer_stalled", {"service": "rejoin"}) == 0
        body, _ = await health.report()
        assert "consumer:rejoin" not in body.get("reasons", {}), body
        # Each record once: the restarted log numbers from 0 again and the new client starts there.
        assert sorted(sink.values) == sorted(values(40) + after)
    finally:
        await consumer.stop(timeout_s=10)
        broker.stop()


async def test_partitions_paused_before_a_broker_restart_are_fetched_again_once_reassigned():
    """Fetching paused for back-pressure, then the broker restarts: the member loses its
    partitions while paused, its writes finish while it owns none (so the resume has nothing to
    act on), and it gets the same partitions back. librdkafka keeps a partition's pause over a
    rebalance: without resuming them on assignment the member owned them and never fetched."""
    from logpipe.core.broker import EmbeddedBroker, free_port
    from logpipe.core.topics import Topics, ensure_topics

    port = free_port()
    broker = EmbeddedBroker(port=port).start()
    topics = Topics(f"paused{uuid.uuid4().hex[:6]}-")
    sink, name = Sink(), group()
    sink.gate = asyncio.Event()
    opts = options(broker.bootstrap_servers, topics.raw_logs, name, batch_size=10, batch_timeout_seconds=0.2,
                   max_batches_in_flight=1, revoke_timeout_seconds=1.0)
    consumer = BatchConsumer(opts, decode=decode, write=sink.write, name="test")
    try:
        await ensure_topics(broker.bootstrap_servers, topics, partitions=PARTITIONS)
        consumer.start()
        await produce_to_every_partition(broker.bootstrap_servers, topics.raw_logs, values(100), PARTITIONS)
        await wait_for(lambda: consumer.stats.paused, timeout=30, message=lambda: consumer.stats)

        broker.stop()
        await wait_for(lambda: not consumer.stats.assigned_partitions, timeout=30, message=lambda: consumer.stats)
        sink.gate.set()  # the writes finish while nothing is assigned: fetching is no longer held
        await wait_for(lambda: not consumer.stats.paused, timeout=30, message=lambda: consumer.stats)

        broker = EmbeddedBroker(port=port).start()
        await ensure_topics(broker.bootstrap_servers, topics, partitions=PARTITIONS)
        after = values(40, start=1_000)
        await produce_to_every_partition(broker.bootstrap_servers, topics.raw_logs, after, PARTITIONS)
        await wait_for(lambda: set(after) <= set(sink.values), timeout=30,
                       message=lambda: f"{len(set(after) & set(sink.values))} of 40 consumed; {consumer.stats}")
    finally:
        sink.gate.set()
        await consumer.stop(timeout_s=10)
        broker.stop()


async def test_a_member_left_without_partitions_by_a_bigger_group_is_not_rebuilt():
    """Three members, two partitions: the member that owned one and lost it when a third joined
    owns nothing while the others consume. That is not the stuck client of a broker restart
    (records wait, nobody commits them): rebuilding it would make the whole group rebalance, again
    and again. The group's committed offsets move, so it is left alone."""
    from logpipe.core.broker import EmbeddedBroker, free_port
    from logpipe.core.kafka import new_producer
    from logpipe.core.topics import Topics, ensure_topics

    broker = EmbeddedBroker(port=free_port()).start()
    topics = Topics(f"crowd{uuid.uuid4().hex[:6]}-")
    name = group()
    sinks = {member: Sink() for member in ("z", "y", "a")}

    def member(client_id: str) -> BatchConsumer:
        # The range assignor orders members by id, which begins with client.id: "a" (joining
        # last) takes a partition from "y" or "z", and "z" ends up with none after owning one.
        opts = options(broker.bootstrap_servers, topics.raw_logs, name, batch_size=10, batch_timeout_seconds=0.2,
                       rejoin_after_seconds=1.0, client_options={"client.id": client_id})
        return BatchConsumer(opts, decode=decode, write=sinks[client_id].write, name=f"crowd-{client_id}")

    members: dict[str, BatchConsumer] = {}
    producer = new_producer(broker.bootstrap_servers)
    stop = asyncio.Event()
    sent: list[bytes] = []

    async def produce() -> None:
        index = 0
        while not stop.is_set():
            value = f"r{index}".encode()
            await (await producer.send(topics.raw_logs, value, partition=index % 2))
            sent.append(value)
            index += 1
            await asyncio.sleep(0.02)

    task = None
    try:
        await ensure_topics(broker.bootstrap_servers, topics, partitions=2)
        await producer.start()
        task = asyncio.create_task(produce())
        for client_id in ("z", "y"):
            members[client_id] = member(client_id)
            members[client_id].start()
        await wait_for(lambda: len(members["z"].stats.assigned_partitions) == 1
                       and len(members["y"].stats.assigned_partitions) == 1, timeout=30,
                       message=lambda: {k: m.stats.assigned_partitions for k, m in members.items()})
        members["a"] = member("a")
        members["a"].start()
        await wait_for(lambda: not members["z"].stats.assigned_partitions
                       and len(members["a"].stats.assigned_partitions) == 1
                       and len(members["y"].stats.assigned_partitions) == 1, timeout=30,
                       message=lambda: {k: m.stats.assigned_partitions for k, m in members.items()})
        # Well past the rejoin wait and the progress window (1 s each), with records flowing.
        deadline = asyncio.get_running_loop().time() + 8
        while asyncio.get_running_loop().time() < deadline:
            assert all(m.stats.rebuilds == 0 for m in members.values()), \
                {k: (m.stats.rebuilds, m.stats.stalled) for k, m in members.items()}
            await asyncio.sleep(0.2)
        stop.set()
        await task
        consumed = lambda: sorted(v for sink in sinks.values() for v in sink.values)  # noqa: E731
        await wait_for(lambda: set(sent) <= set(consumed()), timeout=30,
                       message=lambda: f"{len(set(sent) - set(consumed()))} of {len(sent)} missing")
        assert not members["z"].stats.assigned_partitions and members["z"].stats.stalled is None
        assert all(m.stats.rebuilds == 0 for m in members.values())
    finally:
        stop.set()
        if task is not None:
            await task
        for consumer in members.values():
            await consumer.stop(timeout_s=10)
        await producer.stop()
        broker.stop()
