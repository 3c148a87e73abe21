"""The dead-letter record every stage writes: nothing is lost, and the reason travels with it."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime

import orjson

from logpipe.core.record import format_timestamp


# The text copy is for reading a letter by eye; past this size the base64 alone carries the
# original, so a letter stays under the producer's request size (core/kafka.py, 8 MiB).
TEXT_COPY_MAX_BYTES = 64 * 1024
# A letter must fit the producer's request, or publishing it would be retried forever and stall
# the partition. A bigger original is cut here; its size and SHA-256 say what it was, and the
# whole message stays on the source topic at `source` until that topic's retention.
ORIGINAL_MAX_BYTES = 4 * 1024 * 1024


def dead_letter(value: bytes | None, error: str, stage: str, failed_at: datetime, *, topic: str,
                partition: int, offset: int, timestamp_ms: int | None) -> bytes:
    """JSON with the original bytes (base64, and as text when it is small UTF-8), the error, the
    stage, the time and where the message came from, so it can be inspected and re-produced."""
    value = value or b""
    text: str | None = None
    if len(value) <= TEXT_COPY_MAX_BYTES:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    letter = {
        "original_base64": base64.b64encode(value[:ORIGINAL_MAX_BYTES]).decode(),
        "original_text": text,
        "error": error,
        "stage": stage,
        "time": format_timestamp(failed_at),
        "source": {"topic": topic, "partition": partition, "offset": offset, "timestamp_ms": timestamp_ms},
    }
    if len(value) > ORIGINAL_MAX_BYTES:
        letter.update(original_truncated=True, original_bytes=len(value),
                      original_sha256=hashlib.sha256(value).hexdigest())
    return orjson.dumps(letter)


# -- replay -------------------------------------------------------------------------------------
# `logpipe dlq replay <topic>` puts dead-lettered records back on the topic they came from, once
# their cause is fixed; what still fails goes back to the DLQ with the reason (the stage that
# failed dead-letters it again). Exactly once:
# - progress is the replay group's committed offsets on the DLQ: a second run starts after
#   what the first one replayed, so replaying twice stores nothing twice;
# - a crash between producing a chunk and committing it is recovered without producing it again:
#   before each chunk a marker group commits where the chunk ends on the DLQ and where the target
#   topic ended; a run that finds the marker ahead of the progress scans the target from there
#   for the chunk's records (each carries a `logpipe-replay-of` header) and skips those found;
# - a JSON object without a record id gets the id it would have had on its first delivery
#   (derived from its original topic, partition and offset), so storage keys it the same way.
# Tansu reports a partition's end as its last batch's base offset + 1, so "the end" is found by
# reading until nothing new arrives, and records dead-lettered after the run started (the
# ones this run sends back) wait for the next run.

REPLAY_TARGETS = {"raw-logs-dlq": "raw-logs", "vectorization-dlq": "vectorization-queue"}
REPLAY_HEADER = "logpipe-replay-of"


def replay_group(dlq_topic: str) -> str:
    return f"logpipe-dlq-replay.{dlq_topic}"


def marker_group(dlq_topic: str) -> str:
    return f"logpipe-dlq-replay.{dlq_topic}.in-flight"


class TruncatedLetter(ValueError):
    """A letter that carries only the start of its original (too big to carry whole)."""


def replay_value(dead: bytes | None) -> tuple[bytes, dict]:
    """The original bytes of a dead letter and where it came from; ValueError if `dead` is not
    one, TruncatedLetter if it holds only part of the original (replaying that would store a
    cut record: the whole one is on the source topic, at `source`, until its retention)."""
    try:
        letter = orjson.loads(dead or b"")
        if isinstance(letter, dict) and letter.get("original_truncated"):
            raise TruncatedLetter("the letter holds only the start of the original")
        original = base64.b64decode(letter["original_base64"], validate=True)
        source = letter.get("source") or {}
    except TruncatedLetter:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a logpipe dead letter: {exc}") from exc
    if not isinstance(source, dict):
        raise ValueError("not a logpipe dead letter: source is not an object")
    return original, source


def with_first_record_id(original: bytes, source: dict) -> bytes:
    """A JSON object without `record_id` gets the id its first delivery derived (ingest derives
    one from the Kafka coordinates, which differ for the replayed copy); anything else is kept."""
    from logpipe.core.record import derived_record_id

    try:
        parsed = orjson.loads(original)
    except orjson.JSONDecodeError:
        return original
    if (not isinstance(parsed, dict) or parsed.get("record_id") or "resourceLogs" in parsed
            or "resource_logs" in parsed or not isinstance(source.get("topic"), str)
            or not isinstance(source.get("partition"), int) or not isinstance(source.get("offset"), int)):
        return original
    parsed["record_id"] = derived_record_id(source["topic"], source["partition"], source["offset"])
    return orjson.dumps(parsed)


def replay_dead_letters(bootstrap_servers: str, dlq_topic: str, target_topic: str, *, idle_s: float = 2.0,
                        timeout_s: float = 600.0, chunk: int = 500, set_record_ids: bool = True) -> dict:
    """Replay every record dead-lettered on `dlq_topic` before this call into `target_topic`,
    exactly once (see above). Returns what it did; raises RuntimeError on a Kafka failure (what
    was committed before stays replayed, the rest is replayed by the next run)."""
    import time

    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

    started_ms = int(time.time() * 1000)
    deadline = time.monotonic() + timeout_s
    common = {"bootstrap.servers": bootstrap_servers, "enable.auto.commit": False,
              "auto.offset.reset": "earliest", "enable.partition.eof": False}
    progress = Consumer({**common, "group.id": replay_group(dlq_topic)})
    marker = Consumer({**common, "group.id": marker_group(dlq_topic)})
    producer = Producer({"bootstrap.servers": bootstrap_servers, "acks": 1, "enable.idempotence": False,
                         "linger.ms": 5, "message.max.bytes": 8 << 20})
    report = {"topic": dlq_topic, "target": target_topic, "replayed": 0, "already_replayed": 0,
              "not_dead_letters": 0, "truncated_not_replayed": 0, "left_for_next_run": 0}
    try:
        dlq_partitions = _partitions(progress, dlq_topic)
        target_partitions = _partitions(progress, target_topic)
        dlq_tps = [TopicPartition(dlq_topic, p) for p in dlq_partitions]
        target_tps = [TopicPartition(target_topic, p) for p in target_partitions]
        done = {tp.partition: max(tp.offset, 0) for tp in progress.committed(dlq_tps, timeout=30)}
        marks = {(tp.topic, tp.partition): tp.offset for tp in marker.committed(dlq_tps + target_tps, timeout=30)}
        in_flight = {p: (done[p], marks[(dlq_topic, p)]) for p in dlq_partitions
                     if marks.get((dlq_topic, p), -1) > done[p]}
        already: set[tuple[int, int]] = set()
        if in_flight:
            starts = {p: marks.get((target_topic, p), -1) for p in target_partitions}
            already = _find_replayed(bootstrap_servers, target_topic, starts, dlq_topic, in_flight, idle_s, deadline)

        progress.assign([TopicPartition(dlq_topic, p, done[p]) for p in dlq_partitions])
        position = dict(done)
        finished: set[int] = set()
        idle_since = time.monotonic()
        while len(finished) < len(dlq_partitions):
            if time.monotonic() > deadline:
                raise RuntimeError(f"replay of {dlq_topic} did not finish in {timeout_s:.0f}s; "
                                   f"{report['replayed']} records replayed and committed so far")
            messages = progress.consume(num_messages=chunk, timeout=0.5)
            batch: list[tuple[bytes, dict, int, int, int | None]] = []
            for message in messages:
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(f"reading {dlq_topic}: {message.error()}")
                partition, offset = message.partition(), message.offset()
                if partition in finished:
                    continue
                _kind, stamp = message.timestamp()
                if stamp >= started_ms:
                    # Dead-lettered while this run goes on (perhaps by it): the next run's work.
                    finished.add(partition)
                    progress.pause([TopicPartition(dlq_topic, partition)])
                    report["left_for_next_run"] += 1
                    continue
                position[partition] = offset + 1
                if (partition, offset) in already:
                    report["already_replayed"] += 1
                    continue
                try:
                    original, source = replay_value(message.value())
                except TruncatedLetter:
                    report["truncated_not_replayed"] += 1
                    continue
                except ValueError:
                    report["not_dead_letters"] += 1
                    continue
                if set_record_ids:
                    original = with_first_record_id(original, source)
                timestamp = source.get("timestamp_ms") if isinstance(source.get("timestamp_ms"), int) else None
                batch.append((original, source, partition, offset, timestamp))
            if messages:
                idle_since = time.monotonic()
                _replay_chunk(producer, progress, marker, dlq_topic, target_topic, target_tps, batch, position)
                report["replayed"] += len(batch)
            elif time.monotonic() - idle_since >= idle_s:
                break  # nothing new for idle_s on any partition: the end as of this run
        return report
    finally:
        producer.flush(10)
        progress.close()
        marker.close()


def _partitions(consumer, topic: str) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=30).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise RuntimeError(f"topic {topic!r} does not exist (is TOPIC_PREFIX right?)")
    return sorted(metadata.partitions)


def _replay_chunk(producer, progress, marker, dlq_topic: str, target_topic: str, target_tps: list,
                  batch: list, position: dict[int, int]) -> None:
    from confluent_kafka import TopicPartition

    commits = [TopicPartition(dlq_topic, p, o) for p, o in position.items()]
    if batch:
        # The marker first: a crash after producing and before the commit below is then found.
        ends = [TopicPartition(tp.topic, tp.partition, max(0, _end_offset(progress, tp))) for tp in target_tps]
        marker.commit(offsets=commits + ends, asynchronous=False)
        failures: list[str] = []

        def delivered(error, _message) -> None:
            if error is not None:
                failures.append(str(error))

        for original, _source, partition, offset, timestamp in batch:
            header = [(REPLAY_HEADER, f"{dlq_topic}/{partition}/{offset}".encode())]
            while True:
                try:
                    producer.produce(target_topic, original, headers=header, on_delivery=delivered,
                                     **({"timestamp": timestamp} if timestamp else {}))
                    break
                except BufferError:
                    producer.poll(0.1)
        remaining = producer.flush(60)
        if remaining or failures:
            raise RuntimeError(f"{target_topic} did not acknowledge {remaining + len(failures)} replayed records "
                               f"({failures[:1]}); nothing of this chunk is committed, rerun to finish")
    _commit_progress(progress, commits)


def _commit_progress(progress, commits: list) -> None:
    progress.commit(offsets=commits, asynchronous=False)


def _end_offset(consumer, tp) -> int:
    return consumer.get_watermark_offsets(tp, timeout=30)[1]


def _find_replayed(bootstrap_servers: str, target_topic: str, starts: dict[int, int], dlq_topic: str,
                   in_flight: dict[int, tuple[int, int]], idle_s: float, deadline: float) -> set[tuple[int, int]]:
    """DLQ coordinates of an interrupted chunk already on `target_topic` (their header says so)."""
    import time

    from confluent_kafka import Consumer, TopicPartition

    prefix = f"{dlq_topic}/".encode()
    found: set[tuple[int, int]] = set()
    scanner = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": marker_group(dlq_topic) + ".scan",
                        "enable.auto.commit": False})
    try:
        scanner.assign([TopicPartition(target_topic, p, max(0, o)) for p, o in starts.items()])
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < idle_s and time.monotonic() < deadline:
            messages = scanner.consume(num_messages=1000, timeout=0.5)
            if messages:
                idle_since = time.monotonic()
            for message in messages:
                if message.error():
                    continue
                for key, value in message.headers() or ():
                    if key == REPLAY_HEADER and value and value.startswith(prefix):
                        _topic, partition, offset = value.decode().rsplit("/", 2)
                        low, high = in_flight.get(int(partition), (0, -1))
                        if low <= int(offset) < high:
                            found.add((int(partition), int(offset)))
    finally:
        scanner.close()
    return found
