"""Every schema of a pipeline, created by one function: topics, ClickHouse tables, the Qdrant
collection and the SQL tables. `logpipe schema` and the operator call it; each service also
creates its own part at start, through the same store functions, so the order never matters.
"""

from __future__ import annotations

import asyncio
import logging
import os

from logpipe.core.settings import CommonSettings
from logpipe.core.topics import Topics, ensure_topics

log = logging.getLogger(__name__)


async def ensure_all(settings: CommonSettings | None = None, *, topics: bool = True, partitions: int | None = None,
                     vector_dimension: int | None = None, reorder_logs: bool = False) -> dict[str, object]:
    """Create what is missing; `reorder_logs` also rewrites a `logs` table made with an earlier
    version's sort key (ClickHouseStore.reorder_logs)."""
    settings = settings or CommonSettings()
    done: dict[str, object] = {}
    if topics:
        done["topics_created"] = await ensure_topics(
            settings.kafka_bootstrap_servers, Topics(settings.topic_prefix),
            partitions=partitions or int(os.environ.get("KAFKA_PARTITIONS", "4")))

    from logpipe.stores.clickhouse import ClickHouseStore

    store = ClickHouseStore(settings.clickhouse_dsn, settings.clickhouse_database)
    await asyncio.to_thread(store.apply_schema, settings.log_ttl_days,
                            settings.clickhouse_time_projection)
    done["clickhouse"] = settings.clickhouse_database
    if reorder_logs:
        done["logs_rows_reordered"] = await asyncio.to_thread(
            store.reorder_logs, settings.log_ttl_days, settings.clickhouse_time_projection)

    from logpipe.stores.vectors import ensure_collection

    dimension = vector_dimension or int(os.environ.get("EMBEDDER_DIMENSION") or 384)
    done["collection_created"] = await asyncio.to_thread(
        ensure_collection, settings.qdrant_url, settings.qdrant_collection, settings.data_dir, dimension)

    from logpipe.stores import sql  # defines every SQL table

    await asyncio.to_thread(sql.init_db, sql.engine(settings))
    done["sql"] = True
    return done


# Per-pipeline schema (the operator): each LogPipeline has its own topic prefix, its own
# `pipeline` value on every row and its own collection, through the same definitions as above.

class PartitionGrowthError(RuntimeError):
    """The broker did not add the partitions asked for (Tansu has no CreatePartitions)."""


async def topic_partitions(bootstrap_servers: str, names: list[str], timeout_s: float = 30.0) -> dict[str, int]:
    """Partition count of each existing topic among `names`."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        described = await admin.describe_topics(names)
        return {topic["topic"]: len(topic["partitions"]) for topic in described
                if topic["error_code"] == 0 and topic["partitions"]}
    finally:
        await admin.close()


async def ensure_topics_for(bootstrap_servers: str, prefix: str, partitions: int, replication_factor: int = 1,
                            retention_ms: int | None = None, timeout_s: float = 30.0) -> dict[str, object]:
    """Create the pipeline's topics (the definition `logpipe schema` uses) and grow the
    non-DLQ ones to `partitions`. Partitions only grow: Kafka cannot shrink a topic.

    Raises PartitionGrowthError, after creating what was missing, when the broker refuses to grow.
    """
    topics = Topics(prefix)
    configs = {"retention.ms": str(retention_ms)} if retention_ms else None
    created = await ensure_topics(bootstrap_servers, topics, partitions=partitions,
                                  replication_factor=replication_factor, timeout_s=timeout_s,
                                  topic_configs=configs)
    current = await topic_partitions(bootstrap_servers, topics.all(), timeout_s)
    grown = await grow_partitions(bootstrap_servers, {name: partitions for name in topics.all()
                                                      if not name.endswith("-dlq")
                                                      and current.get(name, partitions) < partitions},
                                  timeout_s)
    return {"topics": topics.all(), "created": created, "grown": grown,
            "partitions": {name: max(count, partitions if name in grown else 0) for name, count in current.items()}}


async def grow_partitions(bootstrap_servers: str, wanted: dict[str, int], timeout_s: float = 30.0) -> list[str]:
    """Ask the broker for more partitions (topic -> new total); returns the topics grown."""
    if not wanted:
        return []
    from aiokafka.admin import AIOKafkaAdminClient, NewPartitions
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        response = await admin.create_partitions({name: NewPartitions(total) for name, total in wanted.items()})
    except KafkaError as exc:
        raise PartitionGrowthError(
            f"the broker refused to grow {', '.join(sorted(wanted))} to {max(wanted.values())} partitions: "
            f"{type(exc).__name__}: {exc}") from exc
    finally:
        await admin.close()
    failed = [f"{name}: error {code} {message or ''}".strip()
              for name, code, message in getattr(response, "topic_errors", []) if code]
    if failed:
        raise PartitionGrowthError("the broker refused to grow partitions: " + "; ".join(failed))
    return sorted(wanted)


async def ensure_storage_for(clickhouse_dsn: str, database: str, ttl_days: int,
                             time_projection: bool = False) -> str:
    """The ClickHouse tables and their TTL in `database` (the services' own definition)."""
    from logpipe.stores.clickhouse import ClickHouseStore

    def apply() -> None:
        store = ClickHouseStore(clickhouse_dsn, database)
        try:
            store.apply_schema(ttl_days, time_projection)
        finally:
            store.close()

    await asyncio.to_thread(apply)
    return database


async def ensure_collection_for(qdrant_url: str, collection: str, data_dir, dimension: int,
                                api_key: str = "") -> bool:
    """The pipeline's Qdrant collection and payload indexes; True when created."""
    from logpipe.stores.vectors import open_vector_store

    def ensure() -> bool:
        store = open_vector_store(qdrant_url, collection, data_dir, api_key)
        try:
            return store.ensure_collection(dimension)
        finally:
            # The operator holds no collection open between reconciles (an embedded shard
            # allows one writer per path).
            store.close()

    return await asyncio.to_thread(ensure)


async def drop_pipeline(*, bootstrap_servers: str, prefix: str, clickhouse_dsn: str, database: str,
                        pipeline: str, qdrant_url: str, collection: str, data_dir,
                        api_key: str = "", timeout_s: float = 30.0) -> dict[str, object]:
    """Remove one pipeline's data: its topics, its collection, and its rows (only rows whose
    `pipeline` is this one: other pipelines may share the database)."""
    from aiokafka.admin import AIOKafkaAdminClient

    done: dict[str, object] = {}
    names = Topics(prefix).all()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        present = [name for name in names if name in set(await admin.list_topics())]
        if present:
            await admin.delete_topics(present)
        done["topics_deleted"] = present
    finally:
        await admin.close()

    from logpipe.stores.clickhouse import ClickHouseStore

    def delete_rows() -> None:
        store = ClickHouseStore(clickhouse_dsn, database)
        try:
            for table in ("logs", "logs_hourly"):
                # A mutation that waits (mutations_sync), so the rows are gone when this returns.
                store.command(f"ALTER TABLE {store.table(table)} DELETE WHERE pipeline = {{pipeline:String}} "
                              "SETTINGS mutations_sync = 2", {"pipeline": pipeline})
        finally:
            store.close()

    await asyncio.to_thread(delete_rows)
    done["rows_deleted_for"] = pipeline
    done["collection_deleted"] = await asyncio.to_thread(_drop_collection, qdrant_url, collection, data_dir, api_key)
    return done


def _drop_collection(qdrant_url: str, collection: str, data_dir, api_key: str = "") -> bool:
    import shutil

    from logpipe.stores.vectors import EdgeVectorStore, ServerVectorStore, open_vector_store

    store = open_vector_store(qdrant_url, collection, data_dir, api_key)
    try:
        if isinstance(store, ServerVectorStore):
            return bool(store.client.delete_collection(collection))
        assert isinstance(store, EdgeVectorStore)
        store.close()
        if store.path.exists():
            shutil.rmtree(store.path)
            return True
        return False
    finally:
        if isinstance(store, ServerVectorStore):
            store.close()
