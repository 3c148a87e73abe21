"""The vectorizer service end to end over a real Tansu broker, the real model and embedded Qdrant."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from logpipe.core.record import LogRecord
from support import produce, wait_for
from vectorizer_support import running_vectorizer

T0 = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)


def forwarded(index: int, message: str, level: str = "ERROR", service: str = "orders", pattern_id: int = 0) -> bytes:
    """A record exactly as ingest forwards it: LogRecord.to_json_dict() plus pattern_id."""
    record = LogRecord(record_id=f"rec-{index}", message=message, level=level, service=service,
                       timestamp=T0 + timedelta(seconds=index), trace_id=f"{index:032x}", host="node-1")
    return orjson.dumps({**record.to_json_dict(), "pattern_id": pattern_id})


async def read_topic(bootstrap: str, topic: str, count: int, timeout_s: float = 30) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    records = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(records) < count and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """Offsets the group committed on `topic`, summed (read without joining the group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        total = 0
        for partition in consumer.partitions_for_topic(topic) or await _partitions(consumer, topic):
            committed = await consumer.committed(TopicPartition(topic, partition))
            total += committed or 0
        return total
    finally:
        await consumer.stop()


async def _partitions(consumer, topic):
    await consumer._client.force_metadata_update()
    return consumer._client.cluster.partitions_for_topic(topic) or set()


async def test_queue_to_qdrant_with_novel_errors(kafka_bootstrap, topics, tmp_path, embedding_backend):
    values = [forwarded(i, f"Database connection timeout after {100 + i} ms to postgres-primary:5432",
                        pattern_id=42) for i in range(12)]
    values += [forwarded(12 + i, "Payment declined: card expired", level="WARN", service="checkout")
               for i in range(8)]
    values += [forwarded(20, "Kernel panic: out of memory while compacting heap", level="FATAL", service="jvm")]
    async with running_vectorizer(kafka_bootstrap, topics, tmp_path) as (app, http, settings):
        store = app.state.vector_store
        await produce(kafka_bootstrap, topics.vectorization_queue, values)
        await wait_for(lambda: store.count() == 21, timeout=60)

        point = store.retrieve(["rec-3"])[0]["payload"]
        assert point["message"] == "Database connection timeout after 103 ms to postgres-primary:5432"
        assert point["service"] == "orders" and point["level"] == "ERROR" and point["pattern_id"] == 42
        assert point["timestamp"] == "2026-11-25T07:00:03.000Z" and point["trace_id"] == f"{3:032x}"

        # Two kinds of error appeared for the first time (the WARNs are not judged).
        events = [orjson.loads(r.value) for r in await read_topic(kafka_bootstrap, topics.novel_errors, 2)]
        assert sorted(e["service"] for e in events) == ["jvm", "orders"]
        assert all(e["type"] == "novel_error" and e["record_id"].startswith("rec-") for e in events)

        async def committed(count: int) -> bool:
            return await committed_total(kafka_bootstrap, settings.group_id, topics.vectorization_queue) == count

        await wait_for(lambda: committed(21), timeout=30)

        stats = (await http.get("/stats")).json()
        assert stats["vectorized"] == 21 and stats["points"] == 21 and stats["novel"] == 2
        # Copies within a batch reuse one embedding; across batches the cache serves them:
        # the model saw at most the 3 distinct (masked) texts, whatever the batching.
        assert stats["reused_embeddings"] + stats["distinct_texts"] == 21 and stats["reused_embeddings"] > 0
        embedder_stats = app.state.embedder.stats
        assert embedder_stats.cache_misses <= 3
        assert embedder_stats.cache_hits + embedder_stats.cache_misses == stats["distinct_texts"]
        assert stats["dlq"] == 0 and stats["vector_backend"] == "edge"
        health = (await http.get("/health")).json()
        assert health["status"] == "healthy", health
        metrics = (await http.get("/metrics")).text
        assert "logpipe_vectorizer_novel_errors_total" in metrics

        # The same records again (a replay): still one point per record.
        await produce(kafka_bootstrap, topics.vectorization_queue, values[:5])
        await wait_for(lambda: app.state.vectorizer.stats.vectorized == 26, timeout=30)
        await wait_for(lambda: committed(26), timeout=30)
        assert store.count() == 21


async def test_an_unreachable_embedder_holds_the_records(kafka_bootstrap, topics, tmp_path):
    """An embedder that is away is an outage, not the records' fault: the batch waits whole
    (circuit open, fetching paused, nothing dead-lettered or committed)."""
    from logpipe.core.broker import free_port

    values = [forwarded(i, f"error {i}") for i in range(3)] + [b"{not json"]
    async with running_vectorizer(kafka_bootstrap, topics, tmp_path, embedder_url=f"http://127.0.0.1:{free_port()}",
                                  retry_attempts=1, retry_base_seconds=0.01, retry_max_seconds=0.2,
                                  batch_mode="fixed", batch_size=100) as (app, http, settings):
        await produce(kafka_bootstrap, topics.vectorization_queue, values)
        await wait_for(lambda: app.state.vectorizer.circuits["embedder"].is_open, timeout=30)
        # The poll loop pauses fetching on its next turn after the circuit opens.
        await wait_for(lambda: app.state.vectorizer.consumer.stats.paused, timeout=30)
        health = (await http.get("/health")).json()
        assert health["dependencies"]["embedder"] == "disconnected" and health["status"] == "unhealthy"
        assert health["circuits"]["embedder"] == "open" and "unreachable" in health["reasons"]["circuit:embedder"]
        metrics = (await http.get("/metrics")).text
        assert 'logpipe_circuit_open{dependency="embedder",service="vectorizer"} 1.0' in metrics
        stats = (await http.get("/stats")).json()
        assert stats["paused"] is True and stats["vectorized"] == 0 and stats["dlq"] == 0
        assert stats["circuits"]["embedder"]["retries_total"] >= 3
        assert await committed_total(kafka_bootstrap, settings.group_id, topics.vectorization_queue) == 0
        assert await read_topic(kafka_bootstrap, topics.vectorization_dlq, 1, timeout_s=1) == []


async def test_process_flushes_now_through_the_http_embedder(kafka_bootstrap, topics, tmp_path, embedding_backend):
    """Separate processes: the vectorizer calls the embedder service over HTTP."""
    import uvicorn

    from logpipe.core.broker import free_port
    from logpipe.embedder.app import create_app as create_embedder
    from logpipe.embedder.settings import Settings as EmbedderSettings

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_embedder(EmbedderSettings(data_dir=tmp_path)), host="127.0.0.1",
                                           port=port, log_level="warning", lifespan="on"))
    server.install_signal_handlers = lambda: None
    serving = asyncio.create_task(server.serve())
    await wait_for(lambda: server.started, timeout=60)
    try:
        async with running_vectorizer(kafka_bootstrap, topics, tmp_path / "v", embedder_url=f"http://127.0.0.1:{port}",
                                      batch_size=1000, batch_timeout_seconds=120, batch_mode="fixed") as (app, http, _):
            await produce(kafka_bootstrap, topics.vectorization_queue, [forwarded(i, f"slow path {i % 2}") for i in range(3)])
            await wait_for(lambda: app.state.vectorizer.buffered == 3, timeout=30)
            assert app.state.vector_store.dimension() is None  # nothing processed yet
            flushed = (await http.post("/process")).json()
            assert flushed["upserted"] == 3 and flushed["distinct_texts"] == 1
            assert app.state.vector_store.count() == 3
            assert (await http.get("/health")).json()["dependencies"]["embedder"] == "connected"
    finally:
        server.should_exit = True
        await serving
