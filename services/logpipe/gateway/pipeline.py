"""The pipeline page's data: topics and their end offsets, consumer lag (now and over the last
hour), the services' own /stats, DLQ sizes and their newest records, the vector collection.

Kafka, ingest and the vectorizer may each be down while the gateway answers: every part
that needs one says `available: false` with the error instead of failing the request.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from logpipe.core.record import format_timestamp
from logpipe.core.topics import RAW_LOGS_DLQ, VECTORIZATION_DLQ, Topics

log = logging.getLogger(__name__)

DLQ_BASES = (RAW_LOGS_DLQ, VECTORIZATION_DLQ)
MAX_ORIGINAL_CHARS = 2000
# A sample holds at most this many (group, topic) lags: a broker shared by many pipelines
# lists every group, and the ring must stay bounded whatever it lists.
MAX_LAGS_PER_SAMPLE = 200


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def group_lags(end: dict[tuple[str, int], int],
               committed: dict[str, dict[tuple[str, int], int]]) -> list[dict[str, Any]]:
    """Per group and topic it committed on: lag per partition (end minus committed; a partition
    it never committed counts in full) and their sum."""
    out = []
    for group in sorted(committed):
        offsets = committed[group]
        for topic in sorted({topic for topic, _ in offsets}):
            partitions = {}
            for (end_topic, partition), end_offset in sorted(end.items()):
                if end_topic == topic:
                    partitions[str(partition)] = max(0, end_offset - max(offsets.get((topic, partition), 0), 0))
            out.append({"group": group, "topic": topic, "lag": sum(partitions.values()), "partitions": partitions})
    return out


def topic_listing(names: list[str], partitions: dict[str, list[int]],
                  end: dict[tuple[str, int], int]) -> list[dict[str, Any]]:
    """Each topic with every partition its metadata lists; a partition with no end offset
    answered (an empty one, on some brokers) holds nothing: 0."""
    return [{"name": name, "partitions": [{"partition": partition, "end_offset": end.get((name, partition), 0)}
                                          for partition in partitions.get(name, [])]}
            for name in names]


def dlq_sizes(topics: Topics, beginning: dict[tuple[str, int], int], end: dict[tuple[str, int], int]) -> dict[str, int]:
    """Records held per DLQ (end minus beginning offsets), keyed by the DLQ's base name."""
    sizes = {}
    for base in DLQ_BASES:
        name = topics.name(base)
        sizes[base] = sum(max(0, offset - beginning.get(key, 0)) for key, offset in end.items() if key[0] == name)
    return sizes


class LagHistory:
    """A bounded ring of lag samples: `retention_s / interval_s` samples, oldest dropped first."""

    def __init__(self, interval_s: float, retention_s: float) -> None:
        self.interval_s = interval_s
        self.samples: deque[tuple[str, list[tuple[str, str, int]]]] = deque(
            maxlen=max(1, int(retention_s // interval_s)))

    def add(self, moment: datetime, lags: list[dict[str, Any]]) -> None:
        entries = [(lag["group"], lag["topic"], int(lag["lag"])) for lag in lags[:MAX_LAGS_PER_SAMPLE]]
        self.samples.append((format_timestamp(moment), entries))

    def points(self) -> list[dict[str, Any]]:
        return [{"time": moment, "group": group, "topic": topic, "lag": lag}
                for moment, entries in list(self.samples) for group, topic, lag in entries]


class PipelineInspector:
    """Reads the pipeline's Kafka state through the gateway's `KafkaOffsets` and samples lag."""

    def __init__(self, offsets, topics: Topics, groups: list[str], *, timeout_s: float,
                 sample_s: float, retention_s: float) -> None:
        self.offsets = offsets
        self.topics = topics
        self.groups = groups
        self.timeout_s = timeout_s
        self.history = LagHistory(sample_s, retention_s)
        self._task: asyncio.Task | None = None

    async def snapshot(self) -> dict[str, Any]:
        names = self.topics.all()
        dlqs = [self.topics.name(base) for base in DLQ_BASES]
        return await asyncio.wait_for(self.offsets.snapshot(names, dlqs, self.groups), self.timeout_s)

    async def sample_once(self) -> None:
        snapshot = await self.snapshot()
        self.history.add(datetime.now(timezone.utc), group_lags(snapshot["end"], snapshot["committed"]))

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.sample_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Kafka may be down; the next tick tries again
                log.debug("lag sample failed: %s", error_text(exc))
            await asyncio.sleep(max(0.0, self.history.interval_s - (time.monotonic() - started)))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="lag-sampler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass


async def service_stats(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """What a service's GET /stats says, with `available: true`; or why it could not be read."""
    try:
        response = await client.get(url.rstrip("/") + "/stats")
        response.raise_for_status()
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"available": False, "error": f"{url}: {error_text(exc)}"}
    if not isinstance(body, dict):
        return {"available": False, "error": f"{url}: /stats is not a JSON object"}
    return {**body, "available": True}


async def rates(ingest_url: str, vectorizer_url: str, timeout_s: float) -> dict[str, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        ingest, vectorizer = await asyncio.gather(service_stats(client, ingest_url),
                                                  service_stats(client, vectorizer_url))
    return {"ingest": ingest, "vectorizer": vectorizer}


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def collection_info(vectorizer: dict[str, Any], default_name: str) -> dict[str, Any]:
    """The collection as the vectorizer (its only writer) sees it, with its retention: a search
    covers what the retention kept (docs/vectors.md#retention)."""
    name = str(vectorizer.get("collection") or default_name)
    if not vectorizer.get("available"):
        return {"name": name, "points": None, "available": False, "error": vectorizer.get("error")}
    points = _count(vectorizer.get("points"))
    if points is None:
        return {"name": name, "points": None, "available": False, "error": "the vectorizer cannot count its points"}
    info: dict[str, Any] = {"name": name, "points": points, "available": True}
    retention = vectorizer.get("retention")
    if isinstance(retention, dict):
        expired = retention.get("expired") if isinstance(retention.get("expired"), dict) else {}
        known = [c for c in (_count(expired.get(reason)) for reason in ("age", "cap")) if c is not None]
        info.update(max_points=_count(retention.get("max_points")), retention_days=_count(retention.get("days")),
                    expired=sum(known) if known else None)
    return info


def parse_dead_letter(value: bytes | None, partition: int, offset: int, timestamp_ms: int | None) -> dict[str, Any]:
    """One DLQ record (core/dlq.py) for a person: the reason, the stage, the original as text."""
    kafka_time = (format_timestamp(datetime.fromtimestamp(timestamp_ms / 1000, tz=timezone.utc))
                  if timestamp_ms and timestamp_ms > 0 else None)
    try:
        record = orjson.loads(value or b"")
        original = base64.b64decode(record["original_base64"], validate=True)
        error, stage = str(record.get("error", "")), str(record.get("stage", ""))
        moment = record.get("time") or kafka_time
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        # Something other than our writer put it there: show it as it is, and say so.
        original = value or b""
        error, stage, moment = f"not a logpipe dead-letter record ({error_text(exc)})", "unknown", kafka_time
    return {"partition": partition, "offset": offset, "time": moment, "stage": stage, "error": error,
            "original": original.decode("utf-8", errors="replace")[:MAX_ORIGINAL_CHARS],
            "original_bytes": len(original)}


async def read_dead_letters(bootstrap_servers: str, topic: str, limit: int, timeout_s: float) -> list[dict[str, Any]]:
    """The newest `limit` records of a DLQ, newest first, read without a consumer group.

    Each partition is read from `limit` records before its end. The end offset only says
    where to start: a broker may report it as its last batch's base offset + 1 (Tansu does),
    so reading goes on until a poll finds nothing more, within `timeout_s`.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False,
                                request_timeout_ms=int(timeout_s * 1000), auto_offset_reset="earliest")
    deadline = time.monotonic() + timeout_s
    await asyncio.wait_for(consumer.start(), timeout_s)
    try:
        await consumer.topics()  # fresh metadata: the DLQ may have been created after start
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return []
        consumer.assign(partitions)
        beginning = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        reading = []
        for tp in partitions:
            first = max(beginning[tp], end[tp] - limit)
            if end[tp] > first:
                consumer.seek(tp, first)
                reading.append(tp)
        records: list[tuple[int, int, int, dict[str, Any]]] = []
        while reading and time.monotonic() < deadline:
            batches = await consumer.getmany(*reading, timeout_ms=200, max_records=1000)
            for tp, messages in batches.items():
                for message in messages:
                    records.append((message.timestamp or 0, tp.partition, message.offset,
                                    parse_dead_letter(message.value, tp.partition, message.offset, message.timestamp)))
            if not batches:
                positions = [await consumer.position(tp) for tp in reading]
                if all(position >= end[tp] for position, tp in zip(positions, reading)):
                    break
        records.sort(key=lambda item: (item[3]["time"] or "", item[0], item[2]), reverse=True)
        return [item[3] for item in records[:limit]]
    finally:
        await consumer.stop()
