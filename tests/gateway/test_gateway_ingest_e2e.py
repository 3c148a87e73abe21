"""Real shippers end to end: the OpenTelemetry OTLP/HTTP exporter and python-logging-loki send
logs to the gateway, which produces to raw-logs; the real ingest service stores them in
ClickHouse, and they come back from GET /api/logs with the right fields."""

from __future__ import annotations

import asyncio
import gzip
import logging
import time
from datetime import datetime, timedelta, timezone

import httpx
import orjson
import snappy
from aiokafka import AIOKafkaConsumer

from logpipe.core.record import format_timestamp
from logpipe.gateway.protocols import loki
from support import running_ingest, wait_for


async def logs_of(gateway, **params) -> list[dict]:
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read")) as client:
        response = await client.get("/api/logs", params=params)
        assert response.status_code == 200, response.text
        return response.json()["logs"]


def send_with_opentelemetry(url: str, token: str) -> str:
    """Log through the official OTLP/HTTP exporter inside a span; returns the span's trace id."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create({"service.name": "otel-checkout", "service.version": "2.1.0",
                                "deployment.environment": "staging", "host.name": "node-9"})
    provider = LoggerProvider(resource=resource)
    exporter = OTLPLogExporter(endpoint=f"{url}/v1/logs", headers={"Authorization": f"Bearer {token}"})
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
    logger = logging.getLogger("shop.checkout.payments")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    tracer = TracerProvider(resource=resource).get_tracer("test")
    try:
        with tracer.start_as_current_span("charge") as span:
            logger.error("payment declined for order %s", 4711, extra={"user_id": "u-77", "http.status_code": 402})
            logger.info("checkout finished")
            trace_id = format(span.get_span_context().trace_id, "032x")
        provider.force_flush()
    finally:
        logger.removeHandler(handler)
        provider.shutdown()
    return trace_id


def send_with_python_logging_loki(url: str, token: str) -> None:
    import logging_loki

    handler = logging_loki.LokiHandler(url=f"{url}/loki/api/v1/push", tags={"application": "loki-billing"},
                                       auth=("logpipe", token), version="1")
    logger = logging.getLogger("billing.invoices")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        logger.warning("invoice run slow: 12 s")
        logger.error("invoice 991 failed: upstream timeout")
    finally:
        logger.removeHandler(handler)


async def test_opentelemetry_and_loki_clients_reach_api_logs(gateway, kafka_bootstrap, topics, clickhouse):
    async with running_ingest(kafka_bootstrap, topics.prefix, clickhouse):
        trace_id = await asyncio.to_thread(send_with_opentelemetry, gateway.url, gateway.tokens["ingest"])
        await asyncio.to_thread(send_with_python_logging_loki, gateway.url, gateway.tokens["ingest"])

        otel = await wait_for(lambda: _at_least(logs_of(gateway, service="otel-checkout"), 2), timeout=30)
        error = next(log for log in otel if log["level"] == "ERROR")
        assert error["message"] == "payment declined for order 4711"
        assert error["trace_id"] == trace_id and len(error["span_id"]) == 16
        assert error["version"] == "2.1.0" and error["environment"] == "staging" and error["host"] == "node-9"
        assert error["logger"] == "shop.checkout.payments"
        assert error["user_id"] == "u-77" and error["http_status"] == 402
        assert {log["level"] for log in otel} == {"ERROR", "INFO"}
        by_trace = await logs_of(gateway, trace_id=trace_id)
        assert {log["message"] for log in by_trace} == {"payment declined for order 4711", "checkout finished"}

        loki_logs = await wait_for(lambda: _at_least(logs_of(gateway, service="loki-billing"), 2), timeout=30)
        assert {(log["level"], log["message"]) for log in loki_logs} == {
            ("WARN", "invoice run slow: 12 s"), ("ERROR", "invoice 991 failed: upstream timeout")}
        assert all(log["logger"] == "billing.invoices" for log in loki_logs)

        # JSON lines and Loki's snappy protobuf, over plain HTTP, land the same way.
        async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("ingest")) as client:
            response = await client.post("/api/ingest", content=gzip.compress(
                b'{"service": "jsonl-app", "level": "error", "message": "disk full", "record_id": "jl-1"}\n'
                b'{"service": "jsonl-app", "msg": "retrying", "level": 30, "record_id": "jl-2"}\n'),
                headers={"Content-Encoding": "gzip"})
            assert response.status_code == 200 and response.json() == {"accepted": 2}
            an_hour_ago = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
            body = snappy.compress(loki.encode_push_request(
                [('{service_name="loki-proto", level="fatal"}', [(int(an_hour_ago.timestamp()) * 10**9, "out of memory")])]))
            response = await client.post("/loki/api/v1/push", content=body,
                                         headers={"Content-Type": "application/x-protobuf"})
            assert response.status_code == 204, response.text
        jsonl = await wait_for(lambda: _at_least(logs_of(gateway, service="jsonl-app"), 2), timeout=30)
        assert {(log["record_id"], log["level"]) for log in jsonl} == {("jl-1", "ERROR"), ("jl-2", "INFO")}
        proto = await wait_for(lambda: _at_least(logs_of(gateway, service="loki-proto"), 1), timeout=30)
        assert proto[0]["level"] == "FATAL" and proto[0]["timestamp"] == format_timestamp(an_hour_ago)


async def _at_least(coroutine, count: int):
    logs = await coroutine
    return logs if len(logs) >= count else None


async def test_accepted_means_in_kafka_and_malformed_is_refused_whole(gateway, kafka_bootstrap, topics):
    consumer = AIOKafkaConsumer(topics.raw_logs, bootstrap_servers=kafka_bootstrap, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("ingest")) as client:
            bad = await client.post("/api/ingest", content=b'{"message": "fine"}\n{"message": 5, "level": "nope"')
            assert bad.status_code == 400 and "line 2" in bad.json()["detail"]
            bad = await client.post("/v1/logs", content=b"\x00\x01garbage",
                                    headers={"Content-Type": "application/x-protobuf"})
            assert bad.status_code == 400 and "protobuf" in bad.json()["detail"]
            bad = await client.post("/loki/api/v1/push", content=b'{"streams": 5}',
                                    headers={"Content-Type": "application/json"})
            assert bad.status_code == 400 and "streams" in bad.json()["detail"]
            too_many = b"\n".join(b'{"message": "m"}' for _ in range(gateway.settings.max_records_per_request + 1))
            response = await client.post("/api/ingest", content=too_many)
            assert response.status_code == 413 and "split the batch" in response.json()["detail"]
            good = await client.post("/api/ingest", content=b'{"message": "kept", "service": "s1", "record_id": "k1"}')
            assert good.status_code == 200
        # Only the accepted request reached Kafka, as canonical records with a record_id.
        values = []
        deadline = time.monotonic() + 20
        while not values and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            values += [orjson.loads(message.value) for messages in batches.values() for message in messages]
        batches = await consumer.getmany(timeout_ms=1000)  # and nothing else arrives
        values += [orjson.loads(message.value) for messages in batches.values() for message in messages]
        assert len(values) == 1
        assert values[0]["record_id"] == "k1" and values[0]["message"] == "kept" and values[0]["level"] == "INFO"
        assert values[0]["timestamp"].endswith("Z") and "attributes" in values[0]
    finally:
        await consumer.stop()


async def test_ingest_answers_503_when_kafka_is_unreachable(kafka_bootstrap, topics, clickhouse, tmp_path):
    from gateway_support import gateway_settings, start_gateway
    from logpipe.core.broker import free_port

    settings = gateway_settings(f"127.0.0.1:{free_port()}", topics.prefix, clickhouse, tmp_path,
                                produce_timeout_s=1.0)
    running, server = start_gateway(settings)
    try:
        async with httpx.AsyncClient(base_url=running.url, headers=running.headers("ingest")) as client:
            response = await client.post("/api/ingest", content=b'{"message": "m"}')
            assert response.status_code == 503 and response.headers["retry-after"]
            assert "retry" in response.json()["detail"]
            health = (await client.get("/health")).json()
            assert health["dependencies"]["kafka"] == "disconnected" and health["status"] == "degraded"
    finally:
        server.stop()
