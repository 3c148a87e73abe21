"""ingest against the real broker (Tansu) and real ClickHouse (chdb)."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from logpipe.generator.service import LogFactory, encode
from support import produce, produce_to_every_partition, running_ingest, wait_for


async def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 20.0) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    values: list[bytes] = []
    try:
        import time

        deadline = time.monotonic() + timeout
        while len(values) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                values.extend(r.value for r in records)
    finally:
        await consumer.stop()
    return values


def count(store, where: str = "1") -> int:
    return store.query(f"SELECT count() FROM {store.table('logs')} WHERE {where}")[0][0]


async def test_generated_logs_land_exactly_once_and_errors_are_forwarded(kafka_bootstrap, topics, topic_prefix, clickhouse):
    factory = LogFactory(error_rate=0.2, seed=7)
    records = factory.batch(3000)
    forwarded_expected = sum(r["level"] in ("WARN", "ERROR", "FATAL") for r in records)
    async with running_ingest(kafka_bootstrap, topic_prefix, clickhouse) as app:
        await produce(kafka_bootstrap, topics.raw_logs, [encode(r) for r in records])
        await wait_for(lambda: app.state.ingestor.stats.written >= 3000)
        await app.state.ingestor.flush()  # the last batch's commit done: every batch counted
        stats = app.state.ingestor.stats_view()
        assert stats["fast_batches"] == stats["batches"]  # canonical records never need the exact path
    assert count(clickhouse) == 3000
    assert count(clickhouse, "level IN ('WARN','ERROR','FATAL')") == forwarded_expected

    stored = clickhouse.query_dicts(
        f"SELECT * FROM {clickhouse.table('logs')} WHERE record_id = {{rid:String}}", {"rid": records[5]["record_id"]})
    assert len(stored) == 1
    row, sent = stored[0], records[5]
    for field in ("service", "level", "message", "trace_id", "user_id", "pod", "client_ip"):
        assert row[field] == sent[field]
    assert row["timestamp"].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" == sent["timestamp"]
    assert row["attributes"]["family"] == sent["attributes"]["family"]

    forwarded = await read_topic(kafka_bootstrap, topics.vectorization_queue, forwarded_expected)
    assert len(forwarded) == forwarded_expected
    decoded = [orjson.loads(v) for v in forwarded]
    assert {d["level"] for d in decoded} <= {"WARN", "ERROR", "FATAL"}
    assert {d["record_id"] for d in decoded} == {r["record_id"] for r in records if r["level"] in ("WARN", "ERROR", "FATAL")}
    assert all("pattern_id" in d and d["timestamp"].endswith("Z") for d in decoded)


async def test_only_the_configured_levels_are_forwarded(kafka_bootstrap, topics, topic_prefix, clickhouse):
    # INGEST_VECTORIZE_LEVELS (a LogPipeline's `vectors.levels`): here errors only, no warnings.
    records = LogFactory(error_rate=0.3, seed=11).batch(600)
    wanted = {r["record_id"] for r in records if r["level"] in ("ERROR", "FATAL")}
    assert wanted and any(r["level"] == "WARN" for r in records)
    async with running_ingest(kafka_bootstrap, topic_prefix, clickhouse, vectorize_levels="error,Fatal") as app:
        await produce(kafka_bootstrap, topics.raw_logs, [encode(r) for r in records])
        await wait_for(lambda: app.state.ingestor.stats.written >= 600)
        await app.state.ingestor.flush()
    assert count(clickhouse) == 600  # every level is still stored
    forwarded = [orjson.loads(v) for v in await read_topic(kafka_bootstrap, topics.vectorization_queue, len(wanted))]
    assert {d["record_id"] for d in forwarded} == wanted
    assert {d["level"] for d in forwarded} <= {"ERROR", "FATAL"}


# Recent times: rows older than the table's TTL (90 days) are dropped by ClickHouse on insert.
BASE = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)


def at(seconds: float, fmt: str = "iso") -> str:
    moment = BASE + timedelta(seconds=seconds)
    if fmt == "row":
        return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    if fmt == "naive":
        return moment.strftime("%Y-%m-%dT%H:%M:%S")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


SHIPPER_SHAPES = {
    "fluent-bit": (
        {"@timestamp": BASE.timestamp() + 0.25, "log": "upstream connect error: connection refused\n", "stream": "stderr",
         "kubernetes": {"pod_name": "api-5f6d", "namespace_name": "shop", "host": "node-3",
                        "container_name": "api", "labels": {"app": "checkout"}}},
        dict(service="checkout", pod="api-5f6d", namespace="shop", host="node-3", level="ERROR",
             timestamp=at(0.25, "row")),
    ),
    "vector": (
        {"message": "WARNING disk usage at 91%", "timestamp": at(1.5), "host": "vec-host",
         "source_type": "kubernetes_logs", "kubernetes": {"pod_name": "db-0", "pod_namespace": "data"}},
        dict(service="unknown", pod="db-0", namespace="data", host="vec-host", level="WARN",
             timestamp=at(1.5, "row")),
    ),
    "logstash-ecs": (
        {"@timestamp": at(2), "message": "payment failed", "@version": "1",
         "log": {"level": "error", "logger": "com.shop.Pay"}, "service": {"name": "payments", "version": "3.1"},
         "host": {"name": "ecs-host"}, "trace": {"id": "abc123"}, "error": {"type": "Timeout", "stack_trace": "at x"},
         "http": {"request": {"method": "POST"}, "response": {"status_code": 504}}, "url": {"path": "/pay"},
         "user": {"id": "u-9"}, "event": {"duration": 1500000000}},
        dict(service="payments", version="3.1", host="ecs-host", trace_id="abc123", level="ERROR", logger="com.shop.Pay",
             error_type="Timeout", stack_trace="at x", http_method="POST", http_status=504, http_path="/pay",
             user_id="u-9", duration_ms=1500.0, timestamp=at(2, "row")),
    ),
    "otlp-json": (
        {"resourceLogs": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "cart"}},
            {"key": "k8s.pod.name", "value": {"stringValue": "cart-1"}}]},
            "scopeLogs": [{"scope": {"name": "cart.logger"}, "logRecords": [
                {"timeUnixNano": str(int(BASE.timestamp() + 3) * 10**9), "severityNumber": 17, "severityText": "ERROR",
                 "body": {"stringValue": "cart checkout crashed"}, "traceId": "0af7651916cd43dd8448eb211c80319c",
                 "spanId": "b7ad6b7169203331",
                 "attributes": [{"key": "http.response.status_code", "value": {"intValue": "500"}}]}]}]}]},
        dict(service="cart", pod="cart-1", level="ERROR", trace_id="0af7651916cd43dd8448eb211c80319c",
             span_id="b7ad6b7169203331", http_status=500, logger="cart.logger", timestamp=at(3, "row")),
    ),
    "python-json-logger": (
        {"asctime": "x", "levelname": "CRITICAL", "name": "worker", "message": "queue stalled", "time": at(4, "naive")},
        dict(service="unknown", level="FATAL", logger="worker", timestamp=at(4, "row")),
    ),
}


async def test_each_shipper_shape_lands_with_the_right_fields(kafka_bootstrap, topics, topic_prefix, clickhouse):
    values = [orjson.dumps(payload) for payload, _ in SHIPPER_SHAPES.values()]
    values.append(b"2025-11-25 10:00:05 ERROR [main] plain text failure in module X")
    async with running_ingest(kafka_bootstrap, topic_prefix, clickhouse) as app:
        await produce(kafka_bootstrap, topics.raw_logs, values)
        await wait_for(lambda: app.state.ingestor.stats.written >= len(values))
    rows = clickhouse.query_dicts(
        f"SELECT *, formatDateTime(timestamp, '%Y-%m-%d %H:%i:%s.%f') AS ts FROM {clickhouse.table('logs')}")
    by_message = {r["message"].strip(): r for r in rows}
    assert len(rows) == len(values)
    expected_messages = {"fluent-bit": "upstream connect error: connection refused", "vector": "WARNING disk usage at 91%",
                         "logstash-ecs": "payment failed", "otlp-json": "cart checkout crashed",
                         "python-json-logger": "queue stalled"}
    for shape, (_, expected) in SHIPPER_SHAPES.items():
        row = by_message[expected_messages[shape]]
        for field, value in expected.items():
            actual = row["ts"][:23] if field == "timestamp" else row[field]
            assert actual == value, (shape, field, actual, value)
    # Unknown fields are kept, not dropped.
    assert by_message["upstream connect error: connection refused"]["attributes"]["stream"] == "stderr"
    assert by_message["payment failed"]["attributes"]["@version"] == "1"
    text = by_message["2025-11-25 10:00:05 ERROR [main] plain text failure in module X"]
    assert text["level"] == "ERROR" and text["attributes"]["format"] == "text"


MALFORMED = {
    b"\xff\xfe not utf-8 \xc3\x28": "invalid UTF-8",
    b"   ": "empty message",
    b'{"message": "broken json", ': "malformed JSON",
    b'{"level": "ERROR", "service": "x"}': "no message field",
    b'{"message": "bad status", "http_status": "teapot"}': "not a number",
    b'{"message": {"nested": true}}': "impossible type",
    b'{"message": "bad time", "timestamp": true}': "impossible type",
    b'[{"message": "array"}]': "JSON array",
    b'{"message": "' + b"x" * 5000 + b'"}': "over the",
}


async def test_each_malformed_class_goes_to_the_dlq_with_its_reason(kafka_bootstrap, topics, topic_prefix, clickhouse):
    good = [encode(r) for r in LogFactory(seed=1).batch(20)]
    async with running_ingest(kafka_bootstrap, topic_prefix, clickhouse, max_record_bytes=4096) as app:
        await produce(kafka_bootstrap, topics.raw_logs, good + list(MALFORMED))
        await wait_for(lambda: app.state.ingestor.stats.written + app.state.ingestor.stats.dlq >= 20 + len(MALFORMED))
        assert app.state.ingestor.stats.dlq == len(MALFORMED)
    assert count(clickhouse) == 20
    dead = [orjson.loads(v) for v in await read_topic(kafka_bootstrap, topics.raw_logs_dlq, len(MALFORMED))]
    assert len(dead) == len(MALFORMED)
    by_original = {base64.b64decode(d["original_base64"]): d for d in dead}
    for original, reason in MALFORMED.items():
        entry = by_original[original]  # the original bytes, intact
        assert reason in entry["error"], (original[:40], entry["error"])
        assert entry["stage"] == "decode" and entry["time"].endswith("Z")
        assert entry["source"]["topic"] == topics.raw_logs


async def test_stats_and_flush_endpoints(kafka_bootstrap, topics, topic_prefix, clickhouse):
    async with running_ingest(kafka_bootstrap, topic_prefix, clickhouse, batch_size=100_000,
                              batch_timeout_seconds=300, batch_mode="fixed") as app:
        await produce(kafka_bootstrap, topics.raw_logs, [encode(r) for r in LogFactory(seed=3).batch(50)])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            await wait_for(lambda: app.state.ingestor.consumer.stats.consumed >= 50)
            assert count(clickhouse) == 0  # still buffered: neither size nor time reached
            assert (await client.get("/stats")).json()["buffered"] == 50
            flushed = (await client.post("/flush")).json()
            assert flushed["written"] == 50
            stats = (await client.get("/stats")).json()
            assert stats["consumed"] == 50 and stats["written"] == 50 and stats["batches"] == 1
            health = await client.get("/health")
            assert health.status_code == 200
            body = health.json()
            assert body["status"] == "healthy" and body["dependencies"] == {"clickhouse": "connected", "kafka": "connected"}
            metrics = (await client.get("/metrics")).text
            assert "logpipe_ingest_written_total" in metrics
    assert count(clickhouse) == 50


async def test_clickhouse_outage_retries_without_committing(kafka_bootstrap, topics, topic_prefix, clickhouse, monkeypatch):
    records = LogFactory(seed=4).batch(40)
    async with running_ingest(kafka_bootstrap, topic_prefix, clickhouse, retry_base_seconds=0.05,
                              retry_max_seconds=0.2) as app:
        ingestor = app.state.ingestor
        real_insert = ingestor.store.ainsert_arrow
        down = {"refused": 0, "until_checked": True}

        async def flaky_insert(*args, **kwargs):
            # Down until the open circuit has been seen through /stats, and for 5 tries at least.
            if down["until_checked"] or down["refused"] < 5:
                down["refused"] += 1
                raise ConnectionError("ClickHouse is down")
            return await real_insert(*args, **kwargs)

        monkeypatch.setattr(ingestor.store, "ainsert_arrow", flaky_insert)
        await produce(kafka_bootstrap, topics.raw_logs, [encode(r) for r in records])
        await wait_for(lambda: ingestor.breaker.state == "open")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            stats = (await client.get("/stats")).json()
            assert stats["circuit"] == "open" and "ClickHouse is down" in stats["last_error"]
            assert (await client.get("/health")).json()["status"] in ("healthy", "degraded")
        assert ingestor.stats.written == 0  # nothing stored (and so nothing committed) while it is down
        down["until_checked"] = False
        await wait_for(lambda: ingestor.stats.written >= 40)
        assert ingestor.breaker.state == "closed"
    assert count(clickhouse) == 40


@pytest.mark.parametrize("level_in,level_out", [("warning", "WARN"), ("Err", "ERROR"), ("CRITICAL", "FATAL"),
                                                ("fatal", "FATAL"), ("info", "INFO")])
async def test_levels_are_normalised_on_the_fast_path(kafka_bootstrap, topics, topic_prefix, clickhouse, level_in, level_out):
    record = LogFactory(seed=5).one()
    record["level"] = level_in
    async with running_ingest(kafka_bootstrap, topic_prefix, clickhouse) as app:
        await produce(kafka_bootstrap, topics.raw_logs, [encode(record)])
        await wait_for(lambda: app.state.ingestor.stats.written >= 1)
    assert clickhouse.query(f"SELECT level FROM {clickhouse.table('logs')}") == [(level_out,)]


async def test_two_replicas_share_partitions_and_store_each_log_once(kafka_bootstrap, topics, topic_prefix, clickhouse):
    records = LogFactory(seed=21).batch(4000)
    group = f"replicas-{topic_prefix}"
    async with running_ingest(kafka_bootstrap, topic_prefix, clickhouse, group_id=group) as first:
        await produce(kafka_bootstrap, topics.raw_logs, [encode(r) for r in records[:2000]])
        # A second replica joins mid-stream: partitions move, the first flushes and commits before they do.
        async with running_ingest(kafka_bootstrap, topic_prefix, clickhouse, group_id=group) as second:
            await wait_for(lambda: second.state.ingestor.consumer.stats.assigned_partitions, timeout=60)
            await wait_for(lambda: len(first.state.ingestor.consumer.stats.assigned_partitions) < 4, timeout=60)
            # Onto every partition, so both replicas get some whichever two each holds.
            await produce_to_every_partition(kafka_bootstrap, topics.raw_logs, [encode(r) for r in records[2000:]], 4)
            await wait_for(lambda: count(clickhouse) >= 4000, timeout=60)
            await first.state.ingestor.flush()
            await second.state.ingestor.flush()
            assert second.state.ingestor.consumer.stats.consumed > 0  # it did get partitions
    assert count(clickhouse) == 4000
    assert clickhouse.query(f"SELECT uniqExact(record_id) FROM {clickhouse.table('logs')}")[0][0] == 4000


async def test_with_the_shipped_batching_a_lone_log_is_stored_without_waiting_for_a_batch(
        kafka_bootstrap, topics, topic_prefix, clickhouse):
    from logpipe.ingest.settings import Settings

    shipped = {name: Settings.model_fields[name].default
               for name in ("batch_mode", "batch_size", "batch_max_bytes", "batch_timeout_seconds")}
    async with running_ingest(kafka_bootstrap, topic_prefix, clickhouse, **shipped) as app:
        ingestor = app.state.ingestor
        await wait_for(lambda: ingestor.consumer.stats.assigned_partitions, timeout=30)
        await produce(kafka_bootstrap, topics.raw_logs, [encode(LogFactory(seed=9).one())])
        await wait_for(lambda: count(clickhouse) == 1)
        await wait_for(lambda: ingestor.stats.written == 1)  # counted once the write stage returns
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            stats = (await client.get("/stats")).json()
        # Cut because the pipeline was free, not because a batch filled or the latency target passed.
        assert stats["cuts"] == {"idle": 1} and stats["last_batch_records"] == 1
        assert stats["last_batch_waited_seconds"] < shipped["batch_timeout_seconds"]
