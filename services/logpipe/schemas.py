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
