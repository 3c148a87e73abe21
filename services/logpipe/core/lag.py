"""Consumer-group lag: how many records of a topic a group has not committed yet.

The operator scales consumers by it; a partition the group never committed counts in full.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


def group_lag(end_offsets: dict[tuple[str, int], int], committed: dict[tuple[str, int], int]) -> int:
    """Sum over partitions of end offset minus the committed offset (never negative)."""
    return sum(max(0, end - max(committed.get(key, 0), 0)) for key, end in end_offsets.items())


@dataclass(frozen=True)
class GroupOffsets:
    lag: int
    # The topic's end offsets summed over its partitions: two readings apart in time give the
    # incoming rate (records per second), the operator's other scaling input.
    end_offsets: int
    partitions: int


async def consumer_lag(bootstrap_servers: str, group: str, topic: str, timeout_s: float = 10.0) -> int:
    """The lag of `group` on `topic`, read from the broker (end offsets vs committed offsets)."""
    return (await group_offsets(bootstrap_servers, group, topic, timeout_s)).lag


async def group_offsets(bootstrap_servers: str, group: str, topic: str, timeout_s: float = 10.0) -> GroupOffsets:
    """`group`'s lag on `topic`, the topic's summed end offsets and its partition count."""
    timeout_ms = int(timeout_s * 1000)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                                request_timeout_ms=timeout_ms)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=timeout_ms)
    await consumer.start()
    try:
        await admin.start()
        partitions = [TopicPartition(topic, partition)
                      for partition in sorted(consumer.partitions_for_topic(topic)
                                              or await _partitions(consumer, topic))]
        if not partitions:
            return GroupOffsets(0, 0, 0)
        end = await consumer.end_offsets(partitions)
        # Partitions named explicitly: brokers such as Tansu do not answer "all of them".
        offsets = await admin.list_consumer_group_offsets(group, partitions=partitions)
        committed = {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}
        ends = {(tp.topic, tp.partition): offset for tp, offset in end.items()}
        return GroupOffsets(group_lag(ends, committed), sum(ends.values()), len(partitions))
    finally:
        await consumer.stop()
        await admin.close()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
    return consumer.partitions_for_topic(topic) or set()
