"""Topic names and the one function that creates them (used by `logpipe broker` and the operator)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

log = logging.getLogger(__name__)

RAW_LOGS = "raw-logs"
VECTORIZATION_QUEUE = "vectorization-queue"
RAW_LOGS_DLQ = "raw-logs-dlq"
VECTORIZATION_DLQ = "vectorization-dlq"
NOVEL_ERRORS = "novel-errors"
ALL_TOPICS = (RAW_LOGS, VECTORIZATION_QUEUE, RAW_LOGS_DLQ, VECTORIZATION_DLQ, NOVEL_ERRORS)


@dataclass(frozen=True)
class Topics:
    """The topic names of one pipeline (the operator gives each pipeline a prefix)."""

    prefix: str = ""

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    @property
    def raw_logs(self) -> str:
        return self.name(RAW_LOGS)

    @property
    def vectorization_queue(self) -> str:
        return self.name(VECTORIZATION_QUEUE)

    @property
    def raw_logs_dlq(self) -> str:
        return self.name(RAW_LOGS_DLQ)

    @property
    def vectorization_dlq(self) -> str:
        return self.name(VECTORIZATION_DLQ)

    @property
    def novel_errors(self) -> str:
        return self.name(NOVEL_ERRORS)

    def all(self) -> list[str]:
        return [self.name(base) for base in ALL_TOPICS]


async def ensure_topics(bootstrap_servers: str, topics: Topics, partitions: int = 4,
                        replication_factor: int = 1, dlq_partitions: int = 1,
                        timeout_s: float = 30.0, topic_configs: dict[str, str] | None = None) -> list[str]:
    """Create the pipeline's topics if missing; returns those it created. Idempotent.
    `topic_configs` (e.g. retention.ms) apply to the topics it creates."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = []
        for name in topics.all():
            if name in existing:
                continue
            count = dlq_partitions if name.endswith("-dlq") else partitions
            wanted.append(NewTopic(name, num_partitions=count, replication_factor=replication_factor,
                                   topic_configs=dict(topic_configs or {})))
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
        return [topic.name for topic in wanted]
    finally:
        await admin.close()


async def wait_for_kafka(bootstrap_servers: str, timeout_s: float = 30.0) -> None:
    """Return once the broker answers a metadata request; raise TimeoutError otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    last_error: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=2000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError) as exc:
            last_error = exc
        finally:
            try:
                await admin.close()
            except Exception:  # noqa: BLE001 - closing a client that never connected
                pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"Kafka at {bootstrap_servers} did not answer within {timeout_s}s: {last_error}")
