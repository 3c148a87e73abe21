"""When publishing keeps failing, the vectorizer's buffer stops growing: consumption waits."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from logpipe.vectorizer.handlers import Vectorizer
from logpipe.vectorizer.service import BatchOutcome
from logpipe.vectorizer.settings import Settings


class FlakyPipeline:
    def __init__(self) -> None:
        self.failing = True
        self.processed = 0

    async def process(self, messages):
        if self.failing:
            raise ConnectionError("Qdrant is down")
        self.processed += len(messages)
        return BatchOutcome()

    def remember(self, outcome) -> None:
        pass


class Consumer:
    def __init__(self) -> None:
        self.committed: dict = {}

    def assignment(self):
        from aiokafka import TopicPartition

        return {TopicPartition("q", 0)}

    async def commit(self, offsets) -> None:
        self.committed.update(offsets)


def records(start: int, count: int):
    return tuple(SimpleNamespace(value=b"{}", topic="q", partition=0, offset=i, timestamp=None)
                 for i in range(start, start + count))


async def test_consumption_waits_when_the_buffer_is_full():
    pipeline = FlakyPipeline()
    vectorizer = Vectorizer(Settings(batch_size=10, max_buffered=30, retry_base_seconds=0.05),
                            pipeline, producer=None, store=None)
    message = SimpleNamespace(consumer=Consumer())
    for start in (0, 10):  # below the cap: the failure surfaces, the records stay buffered
        try:
            await vectorizer.on_records(records(start, 10), message)
        except ConnectionError:
            pass
    assert vectorizer.buffered == 20
    held = asyncio.create_task(vectorizer.on_records(records(20, 10), message))
    await asyncio.sleep(0.3)
    assert not held.done() and vectorizer.stats.paused  # the consumer is held: nothing more is fetched
    assert vectorizer.buffered <= 30
    pipeline.failing = False
    await asyncio.wait_for(held, 5)
    assert pipeline.processed == 30 and vectorizer.buffered == 0 and not vectorizer.stats.paused
    assert list(message.consumer.committed.values()) == [30]  # committed only once written
