"""Gateway domain logic, free of I/O: live-tail filters and fan-out, lag arithmetic, scoping.

The fan-out is the part that must never let one client hurt another: publishing only ever
puts into bounded per-client queues without waiting; a client whose queue is full loses
the overflow (it is told how many it missed), and one that stays full is disconnected.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from logpipe.core.record import Level, normalize_level


class ScopeError(ValueError):
    """A request for data outside what the caller's token may see (HTTP 403)."""


def split_values(values: Iterable[str] | str | None) -> list[str]:
    """`?level=ERROR,WARN&level=FATAL` -> ["ERROR", "WARN", "FATAL"]."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for value in values:
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return out


def effective_pipeline(token_pipeline: str | None, requested: str | None) -> str | None:
    """The pipeline a query is limited to: the token's binding wins; asking for another is refused."""
    if token_pipeline:
        if requested and requested != token_pipeline:
            raise ScopeError(f"this token is bound to pipeline {token_pipeline!r}")
        return token_pipeline
    return requested or None


def check_pipeline_access(token_pipeline: str | None, served_pipeline: str) -> None:
    """Streams and ingest serve one pipeline; a token bound to another may not use them."""
    if token_pipeline and token_pipeline != served_pipeline:
        raise ScopeError(f"this token is bound to pipeline {token_pipeline!r}; this gateway serves "
                         f"{served_pipeline!r}")


@dataclass(frozen=True)
class TailFilter:
    levels: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    contains: str = ""

    @classmethod
    def parse(cls, levels: Iterable[str] | str | None, services: Iterable[str] | str | None,
              contains: str | None = None) -> "TailFilter":
        parsed = set()
        for value in split_values(levels):
            level = normalize_level(value)
            if level is None:
                raise ValueError(f"unknown level {value!r}; use one of {', '.join(Level)}")
            parsed.add(level.value)
        return cls(frozenset(parsed), frozenset(split_values(services)), (contains or "").lower())

    def matches(self, record: dict[str, Any]) -> bool:
        if self.levels and record.get("level") not in self.levels:
            return False
        if self.services and record.get("service") not in self.services:
            return False
        if self.contains and self.contains not in str(record.get("message", "")).lower():
            return False
        return True


@dataclass(eq=False)
class Subscriber:
    """One WebSocket client's bounded queue; `dropped` counts what it missed since last told."""

    matches: Any = None  # a callable(record) -> bool, or None for everything
    size: int = 1000
    queue: asyncio.Queue = field(init=False)
    dropped: int = 0
    dropped_total: int = 0
    full_since: float | None = None

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.size)

    def offer(self, item: Any, now: float) -> bool:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            self.dropped_total += 1
            if self.full_since is None:
                self.full_since = now
            return False
        self.full_since = None
        return True

    def take_dropped(self) -> int:
        count, self.dropped = self.dropped, 0
        return count

    def too_slow(self, now: float, limit_s: float) -> bool:
        return self.full_since is not None and now - self.full_since > limit_s


class Fanout:
    """Delivers each published item to every matching subscriber without ever waiting."""

    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self.published = 0
        self.delivered = 0
        self.dropped = 0

    def subscribe(self, subscriber: Subscriber) -> Subscriber:
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def publish(self, item: Any, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.published += 1
        for subscriber in list(self.subscribers):
            if subscriber.matches is not None and not subscriber.matches(item):
                continue
            if subscriber.offer(item, now):
                self.delivered += 1
            else:
                self.dropped += 1


def topic_lag(end_offsets: dict[tuple[str, int], int],
              committed: dict[str, dict[tuple[str, int], int]]) -> dict[str, dict[str, int]]:
    """Lag per topic per consumer group: sum over partitions of end offset minus committed offset.

    A partition the group never committed counts in full (nothing of it was consumed).
    """
    out: dict[str, dict[str, int]] = {}
    topics_of_group: dict[str, set[str]] = {}
    for group, offsets in committed.items():
        topics_of_group[group] = {topic for topic, _ in offsets}
    for group, topic_names in topics_of_group.items():
        for topic in topic_names:
            total = 0
            for (end_topic, partition), end in end_offsets.items():
                if end_topic != topic:
                    continue
                done = committed[group].get((topic, partition), 0)
                total += max(0, end - max(done, 0))
            out.setdefault(topic, {})[group] = total
    return out


def retained_counts(beginning: dict[tuple[str, int], int], end: dict[tuple[str, int], int]) -> dict[str, int]:
    """Messages held per topic (end minus beginning offsets): the size of a DLQ."""
    out: dict[str, int] = {}
    for key, end_offset in end.items():
        topic = key[0]
        out[topic] = out.get(topic, 0) + max(0, end_offset - beginning.get(key, 0))
    return out
