"""Novel errors of a window, read back from the `novel-errors` topic the vectorizer writes
(errors unlike any earlier error by embedding similarity).

The topic is the only record of them (the analyzer and the gateway's `/api/novel-errors` read
it here), so a reader reads it from the first offset at or after
the window start (by Kafka timestamp) to the current end, and keeps the events whose log
timestamp lies in the window. Novel errors are rare by design; `max_events` bounds a run
anyway. Any failure (no broker, no topic) is reported, never fatal: the report goes on.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

log = logging.getLogger(__name__)


@dataclass
class NovelErrors:
    events: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False
    error: str = ""


def _ms(value: datetime) -> int:
    return int(value.astimezone(timezone.utc).timestamp() * 1000)


def _event_time(event: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(event.get("timestamp")).replace("Z", "+00:00")).astimezone(timezone.utc)
    except ValueError:
        return None


async def read_novel_errors(bootstrap_servers: str, topic: str, start: datetime, end: datetime,
                            max_events: int = 10_000, timeout_s: float = 15.0) -> NovelErrors:
    try:
        return await asyncio.wait_for(_read(bootstrap_servers, topic, start, end, max_events), timeout_s)
    except asyncio.TimeoutError:
        return NovelErrors(error=f"reading {topic} took longer than {timeout_s:g} s")
    except Exception as exc:  # noqa: BLE001 - novelty is an extra; the run goes on without it
        return NovelErrors(error=f"{type(exc).__name__}: {exc}"[:500])


async def _read(bootstrap_servers: str, topic: str, start: datetime, end: datetime,
                max_events: int) -> NovelErrors:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False,
                                request_timeout_ms=10_000, metadata_max_age_ms=5_000)
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        raise
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer.topics()  # refresh metadata once: the topic may simply be unknown yet
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return NovelErrors(error=f"topic {topic} does not exist")
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        # Where the window starts in each partition; a broker without timestamp lookups
        # gets read from the beginning (the topic is small).
        try:
            found = await consumer.offsets_for_times({tp: _ms(start) for tp in assigned})
        except Exception:  # noqa: BLE001
            found = {}
        for tp in assigned:
            offset = found.get(tp)
            if offset is not None:
                consumer.seek(tp, offset.offset)
            else:
                await consumer.seek_to_beginning(tp)
        result = NovelErrors()
        pending = {tp for tp in assigned if ends[tp] > await consumer.position(tp)}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, messages in batches.items():
                for message in messages:
                    try:
                        event = orjson.loads(message.value)
                    except orjson.JSONDecodeError:
                        continue
                    moment = _event_time(event) if isinstance(event, dict) else None
                    if moment is not None and start <= moment < end:
                        if len(result.events) >= max_events:
                            result.truncated = True
                            return result
                        result.events.append(event)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        return result
    finally:
        await consumer.stop()
