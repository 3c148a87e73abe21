"""When processing keeps failing, the vectorizer stops fetching: what it holds stays within
VECTORIZER_MAX_BUFFERED, nothing is committed, and everything is processed once it recovers."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from logpipe.vectorizer.handlers import Vectorizer
from logpipe.vectorizer.service import BatchOutcome
from logpipe.vectorizer.settings import Settings
from support import produce_to_every_partition, wait_for


class FlakyPipeline:
    def __init__(self) -> None:
        self.failing = True
        self.attempts = 0
        self.processed: list[bytes] = []

    async def process(self, messages):
        self.attempts += 1
        if self.failing:
            raise ConnectionError("Qdrant is down")
        self.processed.extend(m.value for m in messages)
        return BatchOutcome(consumed=len(messages), upserted=len(messages))

    def remember(self, outcome) -> None:
        pass


async def committed(bootstrap: str, group: str, topic: str) -> int:
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        return sum([await reader.committed(TopicPartition(topic, p)) or 0 for p in range(4)])
    finally:
        await reader.stop()


async def test_fetching_pauses_when_the_buffer_is_full(kafka_bootstrap, topics):
    pipeline = FlakyPipeline()
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topics.prefix, batch_size=10,
                        max_buffered=40, batch_timeout_seconds=0.2, retry_base_seconds=0.05,
                        session_timeout_ms=2000, heartbeat_interval_ms=500, group_id=f"bp-{topics.prefix}")
    vectorizer = Vectorizer(settings, pipeline, producer=None, store=None)
    values = [f'{{"n": {i}}}'.encode() for i in range(200)]
    vectorizer.start()
    try:
        await produce_to_every_partition(kafka_bootstrap, topics.vectorization_queue, values, 4)
        await wait_for(lambda: vectorizer.consumer.stats.paused)
        attempts = pipeline.attempts
        await wait_for(lambda: pipeline.attempts >= attempts + 5)  # still failing, still held
        assert vectorizer.buffered <= 40 and vectorizer.consumer.stats.consumed <= 40
        stats = vectorizer.stats_view()
        assert "Qdrant is down" in stats["last_error"] and stats["paused"]
        assert await committed(kafka_bootstrap, settings.group_id, topics.vectorization_queue) == 0
        pipeline.failing = False
        await wait_for(lambda: len(pipeline.processed) == 200)
        assert sorted(pipeline.processed) == sorted(values)
        assert vectorizer.stats.vectorized == 200

        async def all_committed() -> bool:
            return await committed(kafka_bootstrap, settings.group_id, topics.vectorization_queue) == 200

        await wait_for(all_committed, timeout=10)
        await wait_for(lambda: not vectorizer.consumer.stats.paused)
    finally:
        await vectorizer.close()
