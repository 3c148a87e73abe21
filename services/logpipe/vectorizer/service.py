"""The vectorizer's batch logic: decode, embed each distinct text once, judge novelty, upsert.

No I/O is imported here: the embedder and the vector store are handed in, so tests and the
benchmark drive the same code the service runs.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Sequence

import numpy as np
import orjson

from logpipe.ai.search import NOVELTY_LEVELS, judge_novelty, keyword_vector, nearest_earlier_errors, record_context
from logpipe.core.circuit import DependencyUnavailable, is_outage
from logpipe.core.dlq import dead_letter
from logpipe.core.record import Level, format_timestamp, normalize_level
from logpipe.stores.vectors import VectorPoint

# The payload every point carries (the gateway shows these; filters use the indexed ones).
PAYLOAD_FIELDS = ("timestamp", "service", "level", "message", "trace_id", "span_id", "host", "error_type",
                  "pattern_id", "record_id")
MAX_PAYLOAD_MESSAGE = 8192
# The model reads 256 tokens (roughly 1,000 characters); a longer text only costs transfer and
# would exceed the embedder service's 8,192-character limit, failing its whole batch.
MAX_EMBED_CHARS = 2048
# Ingest forwards canonical level names; only other spellings need normalising.
_CANONICAL_LEVELS = frozenset(level.value for level in Level)


@dataclass
class QueueMessage:
    value: bytes | None
    topic: str = ""
    partition: int = 0
    offset: int = 0
    timestamp_ms: int | None = None


@dataclass
class DeadLetter:
    """What could not be vectorized: the original bytes, why, at which stage, when."""

    message: QueueMessage
    error: str
    stage: str
    failed_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def to_bytes(self) -> bytes:
        m = self.message
        return dead_letter(m.value, self.error, self.stage, self.failed_at, topic=m.topic,
                           partition=m.partition, offset=m.offset, timestamp_ms=m.timestamp_ms)


@dataclass
class WorkItem:
    message: QueueMessage
    record: dict[str, Any]
    text: str


@dataclass
class BatchOutcome:
    consumed: int = 0
    upserted: int = 0
    distinct_texts: int = 0
    reused: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    novel_events: list[dict[str, Any]] = field(default_factory=list)
    retries: dict[str, int] = field(default_factory=dict)
    novelty_error: str | None = None
    # Texts judged in this batch (text -> record id); remembered once the batch is committed.
    judged: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"consumed": self.consumed, "upserted": self.upserted, "distinct_texts": self.distinct_texts,
                "reused_embeddings": self.reused, "dlq": len(self.dead_letters), "novel": len(self.novel_events)}


def decode(messages: Sequence[QueueMessage], mask: Callable[[list[str]], list[str]] | None = None
           ) -> tuple[list[WorkItem], list[DeadLetter]]:
    """Queue messages to work items; anything that is not a forwarded log becomes a dead letter."""
    items: list[WorkItem] = []
    dead: list[DeadLetter] = []
    for message in messages:
        try:
            record = orjson.loads(message.value or b"")
        except orjson.JSONDecodeError as exc:
            dead.append(DeadLetter(message, f"not JSON: {exc}", "decode"))
            continue
        problem = _invalid(record)
        if problem:
            dead.append(DeadLetter(message, problem, "decode"))
            continue
        level = record.get("level", "ERROR")
        if level not in _CANONICAL_LEVELS:
            record["level"] = str(normalize_level(level) or "ERROR")
        items.append(WorkItem(message, record, " ".join(record["message"][:MAX_EMBED_CHARS * 2].split())[:MAX_EMBED_CHARS]))
    if mask is not None and items:
        for item, masked in zip(items, mask([item.text for item in items])):
            if masked.strip():
                item.text = masked
    return items, dead


def _invalid(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "a log record must be a JSON object"
    record_id = record.get("record_id")
    if not isinstance(record_id, str) or not record_id or len(record_id) > 128:
        return "record_id must be a non-empty string of at most 128 characters"
    message = record.get("message")
    if not isinstance(message, str) or not message.strip():
        return "message must be a non-empty string"
    level = record.get("level")
    if level is not None and level not in _CANONICAL_LEVELS and normalize_level(level) is None:
        return f"unknown log level {record['level']!r}"
    pattern_id = record.get("pattern_id", 0)
    if pattern_id is not None and (not isinstance(pattern_id, int) or isinstance(pattern_id, bool)
                                   or not 0 <= pattern_id < 1 << 64):
        return "pattern_id must be an unsigned 64-bit integer"
    return None


def payload_for(record: dict[str, Any]) -> dict[str, Any]:
    payload = {name: record.get(name) for name in PAYLOAD_FIELDS if record.get(name) not in (None, "")}
    payload["pattern_id"] = int(record.get("pattern_id") or 0)
    message = payload.get("message", "")
    if len(message) > MAX_PAYLOAD_MESSAGE:
        payload["message"] = message[:MAX_PAYLOAD_MESSAGE]
    return payload


async def with_retries(call: Callable[[], Awaitable[Any]], attempts: int, base_delay: float,
                       on_retry: Callable[[int, Exception], None] | None = None,
                       sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> Any:
    """Try once, then `attempts` more times after base, 2x base, 4x base... seconds."""
    for attempt in range(attempts + 1):
        try:
            return await call()
        except Exception as exc:  # noqa: BLE001 - the caller dead-letters what still fails
            if attempt == attempts:
                raise
            if on_retry is not None:
                on_retry(attempt + 1, exc)
            await sleep(base_delay * (2 ** attempt))


class VectorizerPipeline:
    """One batch at a time: the caller commits offsets after `process` returns."""

    def __init__(self, embed: Callable[[list[str]], Awaitable[np.ndarray]], store: Any, *,
                 novelty_enabled: bool = True, novelty_threshold: float = 0.75, retry_attempts: int = 3,
                 retry_base_seconds: float = 0.5, mask: Callable[[list[str]], list[str]] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, known_texts_limit: int = 100_000,
                 embed_context: bool = True, keywords: bool = True) -> None:
        self.embed = embed
        self.store = store
        self.novelty_enabled = novelty_enabled
        self.novelty_threshold = novelty_threshold
        self.retry_attempts = retry_attempts
        self.retry_base_seconds = retry_base_seconds
        self.mask = mask
        self.embed_context = embed_context
        self.keywords = keywords
        self.sleep = sleep
        self.collection_ready = False
        # Texts already stored, with a record that carries them: an exact repeat is never
        # novel, so it needs no search (most errors repeat, so most searches are skipped).
        self.known_texts: OrderedDict[str, str] = OrderedDict()
        self.known_texts_limit = known_texts_limit

    def remember(self, outcome: BatchOutcome) -> None:
        """Call after the batch is committed (a batch that is retried must be judged afresh)."""
        for text, record_id in outcome.judged.items():
            self.known_texts[text] = record_id
            self.known_texts.move_to_end(text)
        while len(self.known_texts) > self.known_texts_limit:
            self.known_texts.popitem(last=False)

    async def _retry(self, stage: str, call, outcome: BatchOutcome):
        def count(_attempt: int, _exc: Exception) -> None:
            outcome.retries[stage] = outcome.retries.get(stage, 0) + 1

        return await with_retries(call, self.retry_attempts, self.retry_base_seconds, count, self.sleep)

    async def process(self, messages: Sequence[QueueMessage]) -> BatchOutcome:
        outcome = BatchOutcome(consumed=len(messages))
        items, outcome.dead_letters = decode(messages, self.mask)
        if not items:
            return outcome
        # The error type, HTTP status, route, logger and first frame say what failed in the
        # words a person searches with; the message alone often does not (docs/vectors.md).
        keyword_texts = [f"{item.text} {record_context(item.record)} {item.record.get('service') or ''}"
                         if self.keywords else "" for item in items]
        if self.embed_context:
            for item in items:
                # Without the route: copies of one error keep sharing one embedding.
                context = record_context(item.record, route=False)
                if context:
                    item.text = f"{item.text} ({context})"
        texts = list(dict.fromkeys(item.text for item in items))
        outcome.distinct_texts = len(texts)
        outcome.reused = len(items) - len(texts)
        try:
            vectors = await self._retry("embed", lambda: self.embed(texts), outcome)
            vectors = np.asarray(vectors, dtype=np.float32)
            if vectors.shape[0] != len(texts):
                raise ValueError(f"embedder returned {vectors.shape[0]} vectors for {len(texts)} texts")
        except Exception as exc:  # noqa: BLE001 - a refusal ends in the DLQ, an outage is held
            _raise_if_outage("embedder", exc)
            outcome.dead_letters += [DeadLetter(item.message, _describe(exc), "embed") for item in items]
            return outcome
        by_text = dict(zip(texts, vectors))
        if not self.collection_ready:
            try:
                await self._retry("upsert", lambda: self.store.aensure_collection(int(vectors.shape[1])), outcome)
            except Exception as exc:  # noqa: BLE001
                _raise_if_outage("qdrant", exc)
                raise
            self.collection_ready = True

        payloads = [payload_for(item.record) for item in items]
        if self.novelty_enabled:
            try:
                outcome.novel_events = await self._judge(items, payloads, by_text, outcome)
            except Exception as exc:  # noqa: BLE001 - novelty is best effort; the vectors still go in
                outcome.novelty_error = _describe(exc)
        # One Python list per distinct text, shared by its copies: converting is the costly part.
        as_lists = {text: vector.tolist() for text, vector in by_text.items()}
        # Copies of one error share one keyword vector (computed once, converted once).
        keywords: dict[str, Any] = {}
        if self.keywords:
            for text in keyword_texts:
                if text not in keywords:
                    keywords[text] = keyword_vector(text)
        points = [VectorPoint(item.record["record_id"], as_lists[item.text], payload, keywords.get(text))
                  for item, payload, text in zip(items, payloads, keyword_texts)]
        try:
            await self._retry("upsert", lambda: self.store.aupsert(points), outcome)
        except Exception as exc:  # noqa: BLE001 - a refused point ends in the DLQ, an outage is held
            _raise_if_outage("qdrant", exc)
            outcome.dead_letters += [DeadLetter(item.message, _describe(exc), "upsert") for item in items]
            outcome.novel_events = []
            outcome.judged = {}
            return outcome
        outcome.upserted = len(points)
        return outcome

    async def _judge(self, items: list[WorkItem], payloads: list[dict], by_text: dict[str, np.ndarray],
                     outcome: BatchOutcome) -> list[dict[str, Any]]:
        """Mark novel errors in their payloads and return the events to publish."""
        first_of: dict[str, int] = {}
        for index, item in enumerate(items):
            payloads[index]["novel"] = False
            if item.record["level"] in NOVELTY_LEVELS:
                if item.text not in first_of:
                    outcome.judged[item.text] = item.record["record_id"]
                if item.text not in self.known_texts:
                    first_of.setdefault(item.text, index)
        if not first_of:
            return []
        candidates = list(first_of.items())
        vectors = np.stack([by_text[text] for text, _ in candidates])
        record_ids = [items[index].record["record_id"] for _, index in candidates]
        batch_ids = [item.record["record_id"] for item in items]
        nearest = await nearest_earlier_errors(self.store, vectors, batch_ids)
        verdicts = judge_novelty(vectors, record_ids, nearest, self.novelty_threshold)
        # A neighbour is a stored error or an earlier message of this batch.
        known = {payload["record_id"]: payload for payload in payloads}
        known.update({hit.record_id: hit.payload for hit in nearest if hit is not None})
        events = []
        for (text, index), verdict in zip(candidates, verdicts):
            if not verdict.novel:
                continue
            payload = payloads[index]
            payload["novel"] = True
            payload["nearest_record_id"] = verdict.nearest_record_id
            payload["nearest_score"] = verdict.nearest_score
            neighbour = None
            if verdict.nearest_record_id is not None:
                other = known.get(verdict.nearest_record_id, {})
                neighbour = {"record_id": verdict.nearest_record_id, "score": verdict.nearest_score,
                             "message": other.get("message"), "service": other.get("service")}
            events.append({
                "type": "novel_error",
                "record_id": payload["record_id"],
                "timestamp": payload.get("timestamp"),
                "service": payload.get("service"),
                "level": payload.get("level"),
                "message": payload.get("message"),
                "trace_id": payload.get("trace_id"),
                "pattern_id": payload.get("pattern_id", 0),
                "similarity": verdict.nearest_score,
                "threshold": self.novelty_threshold,
                "nearest": neighbour,
                "detected_at": format_timestamp(datetime.now(timezone.utc)),
            })
        return events


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]


def _raise_if_outage(dependency: str, exc: Exception) -> None:
    """An away dependency is not the records' fault: raised, the consumer holds the batch (its
    circuit for `dependency` opens, fetching pauses, nothing is committed) and retries it."""
    if isinstance(exc, DependencyUnavailable):
        raise exc
    if is_outage(exc):
        raise DependencyUnavailable(dependency, f"{dependency} unavailable: {_describe(exc)}") from exc


@dataclass(frozen=True)
class IndexSchedule:
    """When the embedded engine (re)builds its HNSW index, on a geometric schedule.

    Without the index a search scans every point its filter matches; with it, only the points
    written since the last build (the un-indexed tail) are scanned. The first build comes once
    `first_after` points are un-indexed; each later one once the shard has grown by `growth`
    since the last. So the tail stays below max(first_after, (growth - 1) x the indexed points)
    (plus what arrives during a build), the number of builds grows with log(points), and the
    points all builds together handle stay below growth / (growth - 1) x the shard
    (2x with growth 2): a high error rate cannot keep a build running all the time.
    """

    first_after: int = 20_000
    growth: float = 2.0

    def due(self, points: int, indexed_at: int) -> bool:
        """True when a shard of `points` whose last build saw `indexed_at` should build now."""
        if self.first_after <= 0:
            return False
        if points - indexed_at < self.first_after:
            return False
        return indexed_at == 0 or points >= indexed_at * self.growth

    def due_after_deletions(self, points: int, deleted: int) -> bool:
        """True when `deleted` points since the last build call for one: the engine gives their
        memory back only when a build rewrites the segments holding them (it rewrites a segment
        once a fifth of it is deleted), so retention under a cap rebuilds each time a fifth of
        the shard has been replaced, which also indexes the points that replaced them."""
        if self.first_after <= 0 or deleted <= 0:
            return False
        return deleted >= max(self.first_after, VACUUM_SHARE * points)


# The share of a segment deleted from which the engine's build rewrites it (Qdrant's default
# `deleted_threshold`).
VACUUM_SHARE = 0.2
