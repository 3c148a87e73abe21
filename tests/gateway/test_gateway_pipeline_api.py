"""GET /api/pipeline, GET /api/pipeline/dlq and report downloads over the real gateway, Tansu,
chdb and the real ingest service (its /stats and its DLQ)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI
from sqlmodel import Session

from gateway_support import ServerThread, gateway_settings, start_gateway
from logpipe.core.broker import free_port
from logpipe.core.dlq import dead_letter
from logpipe.core.kafka import new_producer
from logpipe.stores.sql import NightlyReport
from support import wait_for


def vectorizer_stand_in(points: int) -> FastAPI:
    """The vectorizer's GET /stats contract (the real one needs the embedding model)."""
    app = FastAPI()

    @app.get("/stats")
    async def stats():
        return {"consumed": 40, "embedded": 38, "buffered": 2, "collection": "log_embeddings", "points": points,
                "retention": {"days": 90, "max_points": 400_000, "interval_seconds": 60.0,
                              "expired": {"age": 3, "cap": 4}, "deleted_since_build": 7, "last_run_at": None}}

    return app


async def produce_one_by_one(bootstrap: str, topic: str, values: list[bytes], partition: int | None = None) -> None:
    # One message per batch: Tansu reports a partition's end offset as its last batch's base + 1.
    producer = new_producer(bootstrap, linger_ms=0)
    await producer.start()
    try:
        for index, value in enumerate(values):
            await producer.send_and_wait(topic, value, partition=index % 4 if partition is None else partition)
    finally:
        await producer.stop()


async def commit_start(bootstrap: str, group: str, topic: str) -> None:
    """A consumer group that committed offset 0 on every partition and then stopped reading."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(4)]
        consumer.assign(partitions)
        await consumer.commit({tp: 0 for tp in partitions})
    finally:
        await consumer.stop()


@pytest.fixture
def pipeline_gateway(kafka_bootstrap, topics, clickhouse, tmp_path):
    """The gateway with the real ingest service beside it, a vectorizer stand-in, fast lag samples."""
    from logpipe.ingest.app import create_app as create_ingest
    from logpipe.ingest.settings import Settings as IngestSettings

    ingest = ServerThread(create_ingest(IngestSettings(
        kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topics.prefix, clickhouse_url=clickhouse.dsn,
        clickhouse_database=clickhouse.database, batch_size=50, batch_timeout_seconds=0.2,
        session_timeout_ms=2000, heartbeat_interval_ms=500, group_id=f"ingest-{topics.prefix}")),
        free_port()).start()
    vectorizer = ServerThread(vectorizer_stand_in(points=38), free_port()).start()
    gateway, server = start_gateway(gateway_settings(
        kafka_bootstrap, topics.prefix, clickhouse, tmp_path, ingest_url=ingest.url, vectorizer_url=vectorizer.url,
        lag_sample_s=0.2, consumer_groups=f"lagging-{topics.prefix},ingest-{topics.prefix}"))
    try:
        yield gateway
    finally:
        server.stop()
        vectorizer.stop()
        ingest.stop()


async def test_pipeline_shows_topics_lag_rates_dlq_and_collection(pipeline_gateway, kafka_bootstrap, topics):
    gateway = pipeline_gateway
    group = f"lagging-{topics.prefix}"
    await commit_start(kafka_bootstrap, group, topics.vectorization_queue)
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read"), timeout=30) as client:
        async def lag_of(wanted: int):
            body = (await client.get("/api/pipeline")).json()
            found = [g for g in body["consumer_groups"] if g["group"] == group]
            sampled = [point["lag"] for point in body["lag_history"] if point["group"] == group]
            return body if found and found[0]["lag"] == wanted and sampled[-1:] == [wanted] else None

        await produce_one_by_one(kafka_bootstrap, topics.vectorization_queue, [b"{}"] * 3)
        await wait_for(lambda: lag_of(3), timeout=30)
        await produce_one_by_one(kafka_bootstrap, topics.vectorization_queue, [b"{}"] * 5)
        body = await wait_for(lambda: lag_of(8), timeout=30)

        assert body["available"] is True and body["pipeline"] == "default"
        by_name = {topic["name"]: topic for topic in body["topics"]}
        assert set(by_name) == set(topics.all())
        # The fixture made 4 partitions per topic and 1 per DLQ (ensure_topics' defaults).
        assert [p["partition"] for p in by_name[topics.raw_logs]["partitions"]] == [0, 1, 2, 3]
        assert len(by_name[topics.raw_logs_dlq]["partitions"]) == 1
        assert sum(p["end_offset"] for p in by_name[topics.vectorization_queue]["partitions"]) == 8
        lagging = next(g for g in body["consumer_groups"] if g["group"] == group)
        assert lagging["topic"] == topics.vectorization_queue
        assert sorted(lagging["partitions"]) == ["0", "1", "2", "3"] and sum(lagging["partitions"].values()) == 8
        # Sampled in the background: the history saw the lag rise from 3 to 8.
        history = [point["lag"] for point in body["lag_history"] if point["group"] == group]
        assert 3 in history and history[-1] == 8 and history == sorted(history)

        assert body["rates"]["ingest"]["available"] is True and "written" in body["rates"]["ingest"]
        assert body["rates"]["vectorizer"]["available"] is True and body["rates"]["vectorizer"]["embedded"] == 38
        # With the retention, so the page can say what a search covers.
        assert body["collection"] == {"name": "log_embeddings", "points": 38, "available": True, "error": None,
                                      "max_points": 400_000, "retention_days": 90, "expired": 7}
        assert body["dlq"] == {"raw-logs-dlq": 0, "vectorization-dlq": 0}


async def test_malformed_records_through_ingest_show_in_the_dlq(pipeline_gateway, kafka_bootstrap, topics):
    gateway = pipeline_gateway
    bad = [b'{"message": "broken json", ', b"\xff\xfe not utf-8 at all", b"[1, 2, 3]"]
    good = orjson.dumps({"timestamp": datetime.now(timezone.utc).isoformat(), "service": "api", "level": "INFO",
                         "message": "fine"})
    await produce_one_by_one(kafka_bootstrap, topics.raw_logs, [good, *bad])
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read"), timeout=30) as client:
        async def dead_letters():
            body = (await client.get("/api/pipeline/dlq", params={"topic": "raw-logs-dlq"})).json()
            return body if len(body["records"]) == len(bad) else None

        listing = await wait_for(dead_letters, timeout=60)
        body = (await client.get("/api/pipeline")).json()
        assert body["rates"]["ingest"]["dlq"] == len(bad)
        # Ingest wrote the three in one batch; Tansu reports a partition's end as its last batch's
        # base offset + 1, so the size from offsets is 1 here (3 on Kafka): never 0.
        assert 1 <= body["dlq"]["raw-logs-dlq"] <= len(bad)
        ingest_group = next(g for g in body["consumer_groups"] if g["group"] == f"ingest-{topics.prefix}")
        assert ingest_group["topic"] == topics.raw_logs

        assert listing["topic"] == "raw-logs-dlq" and listing["kafka_topic"] == topics.raw_logs_dlq
        records = listing["records"]
        assert len(records) == len(bad)
        assert {r["stage"] for r in records} == {"decode"} and all(r["error"] for r in records)
        assert sorted(r["original_bytes"] for r in records) == sorted(len(value) for value in bad)
        by_size = {r["original_bytes"]: r for r in records}
        assert by_size[len(bad[0])]["original"] == bad[0].decode()
        # Invalid bytes are replaced, never dropped or sent as raw bytes.
        assert by_size[len(bad[1])]["original"].startswith("\ufffd\ufffd not utf-8")
        times = [r["time"] for r in records]
        assert times == sorted(times, reverse=True)
        one = (await client.get("/api/pipeline/dlq", params={"topic": "raw-logs-dlq", "limit": 1})).json()
        assert one["records"] == records[:1]
        empty = (await client.get("/api/pipeline/dlq", params={"topic": "vectorization-dlq"})).json()
        assert empty["records"] == [] and empty["available"] is True
        for params in ({"topic": "raw-logs"}, {"topic": "raw-logs-dlq", "limit": 101}, {}):
            assert (await client.get("/api/pipeline/dlq", params=params)).status_code == 422


async def test_dlq_records_are_cut_and_foreign_ones_shown_as_they_are(gateway, kafka_bootstrap, topics):
    failed_at = datetime.now(timezone.utc)
    big = ("x" * 5000).encode()
    records = [dead_letter(big, "embedding failed: timeout", "vectorizer", failed_at - timedelta(seconds=2),
                           topic=topics.vectorization_queue, partition=0, offset=7, timestamp_ms=None),
               b"someone else's bytes",
               dead_letter(b"\xc3\x28 latin", "not UTF-8", "vectorizer", failed_at,
                           topic=topics.vectorization_queue, partition=1, offset=9, timestamp_ms=None)]
    await produce_one_by_one(kafka_bootstrap, topics.vectorization_dlq, records, partition=0)
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read"), timeout=30) as client:
        body = (await client.get("/api/pipeline/dlq", params={"topic": "vectorization-dlq"})).json()
        found = body["records"]
        # Newest first: the foreign record has no time of its own, so Kafka's (when produced) counts.
        assert [r["offset"] for r in found] == [1, 2, 0]
        newest, oldest = found[1], found[2]
        assert newest["error"] == "not UTF-8" and newest["original"] == "\ufffd( latin"
        assert oldest["original"] == "x" * 2000 and oldest["original_bytes"] == 5000 and oldest["stage"] == "vectorizer"
        foreign = next(r for r in found if r["stage"] == "unknown")
        assert foreign["original"] == "someone else's bytes" and "not a logpipe dead-letter" in foreign["error"]


async def test_empty_topics_show_their_partitions(kafka_bootstrap, topic_prefix, clickhouse, tmp_path):
    from logpipe.core.topics import Topics, ensure_topics

    # DLQs of three partitions that never received a record: the count comes from the topic
    # metadata, each partition holding 0.
    names = Topics(f"{topic_prefix}wide-")
    await ensure_topics(kafka_bootstrap, names, partitions=2, dlq_partitions=3)
    gateway, server = start_gateway(gateway_settings(kafka_bootstrap, names.prefix, clickhouse, tmp_path))
    try:
        async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read"), timeout=30) as client:
            body = (await client.get("/api/pipeline")).json()
        assert body["available"] is True, body.get("error")
        by_name = {topic["name"]: topic["partitions"] for topic in body["topics"]}
        for dlq in (names.raw_logs_dlq, names.vectorization_dlq):
            assert by_name[dlq] == [{"partition": p, "end_offset": 0} for p in range(3)]
        assert [p["partition"] for p in by_name[names.raw_logs]] == [0, 1]
        assert body["dlq"] == {"raw-logs-dlq": 0, "vectorization-dlq": 0}
    finally:
        server.stop()


def test_topic_listing_takes_partitions_from_metadata_not_offsets():
    from logpipe.gateway.pipeline import topic_listing

    # A broker that answered no end offset for an empty partition still lists it.
    listing = topic_listing(["logs", "logs-dlq", "missing"], {"logs": [0, 1], "logs-dlq": [0, 1, 2]},
                            {("logs", 0): 5, ("logs", 1): 7, ("logs-dlq", 1): 0})
    assert listing == [
        {"name": "logs", "partitions": [{"partition": 0, "end_offset": 5}, {"partition": 1, "end_offset": 7}]},
        {"name": "logs-dlq", "partitions": [{"partition": p, "end_offset": 0} for p in range(3)]},
        {"name": "missing", "partitions": []},
    ]


async def test_kafka_down_is_an_answer_not_an_error(clickhouse, topics, tmp_path):
    # Nothing listens on this port: Kafka, ingest and the vectorizer are all unreachable.
    dead = f"127.0.0.1:{free_port()}"
    settings = gateway_settings(dead, topics.prefix, clickhouse, tmp_path, pipeline_timeout_s=2,
                                ingest_url=f"http://{dead}", vectorizer_url=f"http://{dead}")
    gateway, server = start_gateway(settings)
    try:
        async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read"), timeout=30) as client:
            response = await client.get("/api/pipeline")
            assert response.status_code == 200
            body = response.json()
            assert body["available"] is False and body["error"]
            assert body["topics"] == [] and body["consumer_groups"] == [] and body["dlq"] == {}
            assert body["rates"]["ingest"]["available"] is False and body["rates"]["ingest"]["error"]
            assert body["collection"]["available"] is False and body["collection"]["points"] is None
            response = await client.get("/api/pipeline/dlq", params={"topic": "raw-logs-dlq"})
            assert response.status_code == 200
            assert response.json()["available"] is False and response.json()["records"] == []
    finally:
        server.stop()


async def test_a_token_bound_to_another_pipeline_is_refused(gateway):
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("bound"), timeout=30) as client:
        assert (await client.get("/api/pipeline")).status_code == 403
        assert (await client.get("/api/pipeline/dlq", params={"topic": "raw-logs-dlq"})).status_code == 403
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        assert (await client.get("/api/pipeline")).status_code == 401


async def test_report_download(gateway):
    from test_gateway_insights import add_report

    engine = gateway.app.state.sql_engine
    mine = add_report(engine, "default", datetime.now(timezone.utc), ["high"])
    others = add_report(engine, "team-a", datetime.now(timezone.utc), ["low"])
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read")) as client:
        markdown = await client.get(f"/api/reports/{mine}/download")
        assert markdown.status_code == 200 and markdown.text == "# report"
        assert markdown.headers["content-type"].startswith("text/markdown")
        assert markdown.headers["content-disposition"] == f'attachment; filename="logpipe-report-{mine}.md"'
        as_json = await client.get(f"/api/reports/{mine}/download", params={"format": "json"})
        assert as_json.headers["content-disposition"] == f'attachment; filename="logpipe-report-{mine}.json"'
        report = as_json.json()
        assert report == (await client.get(f"/api/reports/{mine}")).json()
        assert report["anomalies"][0]["severity"] == "high"
        assert (await client.get(f"/api/reports/{mine}/download", params={"format": "pdf"})).status_code == 422
        assert (await client.get("/api/reports/nope/download")).status_code == 404
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("bound")) as client:
        assert (await client.get(f"/api/reports/{mine}/download")).status_code == 404
        assert (await client.get(f"/api/reports/{others}/download")).status_code == 200
    # A run that failed before writing Markdown still downloads: what it is and why it stopped.
    with Session(engine) as session:
        failed = NightlyReport(pipeline="default", status="failed", error="the LLM did not answer",
                               window_start=datetime.now(timezone.utc) - timedelta(hours=24),
                               window_end=datetime.now(timezone.utc))
        session.add(failed)
        session.commit()
        failed_id = failed.id
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read")) as client:
        text = (await client.get(f"/api/reports/{failed_id}/download")).text
        assert text.startswith(f"# logpipe report {failed_id}") and "- status: failed" in text
        assert "- error: the LLM did not answer" in text


def test_a_malformed_retention_from_the_vectorizer_reads_as_unknown_not_as_an_error():
    from logpipe.gateway.pipeline import collection_info

    base = {"available": True, "points": 10, "collection": "c"}
    odd = collection_info({**base, "retention": {"days": "ninety", "max_points": True,
                                                 "expired": {"age": "3", "cap": None}}}, "d")
    assert odd == {"name": "c", "points": 10, "available": True, "max_points": None, "retention_days": None,
                   "expired": None}
    partly = collection_info({**base, "retention": {"days": 7, "expired": {"cap": 5}}}, "d")
    assert (partly["retention_days"], partly["max_points"], partly["expired"]) == (7, None, 5)
    assert collection_info({**base, "retention": ["not", "a", "dict"]}, "d") == {"name": "c", "points": 10,
                                                                                 "available": True}
    assert collection_info({**base, "retention": {"expired": "many"}}, "d")["expired"] is None
