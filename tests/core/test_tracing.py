"""OpenTelemetry: one trace from the gateway's ingest route through ingest to the vectorizer,
carried in Kafka headers; off unless the OTEL_* variables ask for it."""

from __future__ import annotations

import json
import logging

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from logpipe.core import tracing
from support import running_ingest, wait_for


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    tracing.configure("logpipe-test", environ={}, exporter=exporter)
    yield exporter
    tracing.reset()


def test_tracing_is_off_unless_the_environment_asks():
    assert not tracing.wanted({})
    assert not tracing.wanted({"OTEL_SERVICE_NAME": "ingest"})
    assert not tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"})
    assert not tracing.wanted({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"})
    assert tracing.wanted({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing.configure("ingest", environ={})
    assert not tracing.enabled()
    # Off, the helpers hand out nothing and read nothing.
    assert tracing.kafka_headers() == ()
    assert tracing.extract([("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]) is None
    assert tracing.current_ids() is None
    with tracing.span("clickhouse insert") as current:
        assert current is None


def test_kafka_headers_round_trip_the_context(spans):
    with tracing.span("producer") as producer:
        headers = tracing.kafka_headers()
    assert dict(headers)["traceparent"].decode().split("-")[1] == format(producer.get_span_context().trace_id, "032x")
    context = tracing.extract(headers)
    with tracing.span("consumer", parent=context) as consumer:
        pass
    assert consumer.parent.span_id == producer.get_span_context().span_id
    assert tracing.extract([("other", b"x")]) is None


def test_traced_functions_run_in_a_span_only_while_tracing_is_on(spans):
    @tracing.traced("analyzer bursts", stage="bursts")
    def bursts(value):
        return value * 2

    @tracing.traced("embedding")
    async def embed(value):
        return value + 1

    import asyncio

    assert bursts(2) == 4 and asyncio.run(embed(1)) == 2
    finished = {span.name: span for span in spans.get_finished_spans()}
    assert finished["analyzer bursts"].attributes["stage"] == "bursts"
    assert "embedding" in finished
    tracing.reset()
    spans.clear()
    assert bursts(3) == 6
    assert spans.get_finished_spans() == ()


def test_our_own_log_lines_carry_trace_and_span_ids(spans):
    from logpipe.core.logging import JsonFormatter

    formatter = JsonFormatter("ingest")
    record = logging.LogRecord("logpipe.test", logging.INFO, __file__, 1, "inside a span", (), None)
    with tracing.span("work") as current:
        line = json.loads(formatter.format(record))
    assert line["trace_id"] == format(current.get_span_context().trace_id, "032x")
    assert line["span_id"] == format(current.get_span_context().span_id, "016x")
    outside = json.loads(formatter.format(record))
    assert "trace_id" not in outside


@pytest.mark.slow
async def test_one_trace_runs_gateway_ingest_vectorizer(spans, kafka_bootstrap, topics, clickhouse, tmp_path,
                                                       embedding_backend):
    from aiokafka import AIOKafkaConsumer

    from logpipe.gateway.app import create_app as create_gateway
    from logpipe.gateway.auth import create_token, open_engine
    from logpipe.gateway.settings import Settings as GatewaySettings
    from logpipe.vectorizer.app import create_app as create_vectorizer
    from logpipe.vectorizer.settings import Settings as VectorizerSettings

    gateway_settings = GatewaySettings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topics.prefix,
                                       clickhouse_url=clickhouse.dsn, clickhouse_database=clickhouse.database,
                                       data_dir=tmp_path, frontend_dir=tmp_path / "no-dashboard")
    token = create_token(open_engine(gateway_settings), "tracing", ["ingest"]).token
    vectorizer_settings = VectorizerSettings(
        kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topics.prefix, data_dir=tmp_path, batch_size=10,
        batch_timeout_seconds=0.3, session_timeout_ms=2000, heartbeat_interval_ms=500,
        group_id=f"vectorizer-{topics.prefix}", qdrant_collection="traced_logs")
    gateway = create_gateway(gateway_settings)
    vectorizer = create_vectorizer(vectorizer_settings)
    message = "payment declined: card issuer unreachable after 3 retries"
    async with running_ingest(kafka_bootstrap, topics.prefix, clickhouse), \
            gateway.router.lifespan_context(gateway), vectorizer.router.lifespan_context(vectorizer):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gateway") as http:
            sent = await http.post("/api/ingest", content=orjson.dumps({"service": "checkout", "level": "ERROR",
                                                                         "message": message}),
                                   headers={"Authorization": f"Bearer {token}"})
        assert sent.status_code == 200, sent.text
        store = vectorizer.state.vector_store
        await wait_for(lambda: store.count() == 1, timeout=90)
        await wait_for(lambda: any(s.name == "vectorizer batch" for s in spans.get_finished_spans()), timeout=30)

        # What a consumer sees on the queue: the forwarded record carries the trace context.
        consumer = AIOKafkaConsumer(topics.vectorization_queue, bootstrap_servers=kafka_bootstrap,
                                    auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        try:
            fetched = await consumer.getmany(timeout_ms=10_000)
        finally:
            await consumer.stop()
        forwarded = [record for records in fetched.values() for record in records]
        assert len(forwarded) == 1
        header_names = {key for key, _ in forwarded[0].headers}
        assert "traceparent" in header_names

    finished = spans.get_finished_spans()
    by_name = {}
    for span in finished:
        by_name.setdefault(span.name, []).append(span)
    route = next(s for s in finished if s.name.startswith("POST /api/ingest") and s.kind.name == "SERVER")
    trace_id = route.context.trace_id

    def one(name: str, parent) -> object:
        children = [s for s in by_name.get(name, []) if s.parent is not None and s.parent.span_id == parent.context.span_id]
        assert len(children) == 1, (name, sorted(by_name))
        return children[0]

    # One trace: route -> produce -> (Kafka header) -> ingest batch -> ClickHouse insert, and
    # ingest batch -> (Kafka header) -> vectorizer batch.
    produce = one("kafka produce", route)
    ingest = one("ingest batch", produce)
    insert = one("clickhouse insert", ingest)
    vectorize = one("vectorizer batch", ingest)
    assert {produce.context.trace_id, ingest.context.trace_id, insert.context.trace_id,
            vectorize.context.trace_id} == {trace_id}
    # Our own spans inside the vectorizer's batch: the embedding and the Qdrant write.
    for name in ("embedding", "qdrant upsert"):
        assert any(s.context.trace_id == trace_id for s in by_name.get(name, [])), (name, sorted(by_name))
    assert forwarded[0].headers and dict(forwarded[0].headers)["traceparent"].decode().split("-")[1] == \
        format(trace_id, "032x")

    # The maintained Kafka instrumentations: aiokafka's producer span for the vectorizer's
    # novel-error event (a child of its batch), and confluent-kafka's consume spans in ingest and
    # the vectorizer, which start their own trace and link to each record's context.
    aiokafka_sends = [s for s in finished if s.instrumentation_scope.name == "opentelemetry.instrumentation.aiokafka"
                      and s.kind.name == "PRODUCER" and s.context.trace_id == trace_id]
    assert [s.parent.span_id for s in aiokafka_sends] == [vectorize.context.span_id], sorted(by_name)
    confluent = [s for s in finished if s.instrumentation_scope.name == "opentelemetry.instrumentation.confluent_kafka"]
    linked = {link.context.span_id for s in confluent for link in s.links if link.context.trace_id == trace_id}
    assert {produce.context.span_id, ingest.context.span_id} <= linked, sorted(by_name)
    # The SQLAlchemy instrumentation (its `sqlalchemy<2.1` check skipped, we run 2.1): the
    # route's token lookup is a query span inside the route's trace.
    queries = [s for s in finished if s.instrumentation_scope.name == "opentelemetry.instrumentation.sqlalchemy"
               and s.context.trace_id == trace_id]
    assert queries and any("api_token" in str(s.attributes.get("db.statement", "")) for s in queries), \
        [(s.name, dict(s.attributes)) for s in queries]


async def test_a_record_sent_with_a_key_carries_one_traceparent(spans, kafka_bootstrap, topics):
    from aiokafka import AIOKafkaConsumer

    from logpipe.core.kafka import new_producer, send_values

    producer = new_producer(kafka_bootstrap)
    await producer.start()
    try:
        with tracing.span("produce keyed") as outer:
            await send_values(producer, topics.novel_errors, [b"event"], keys=[b"checkout"],
                              headers=tracing.kafka_headers())
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topics.novel_errors, bootstrap_servers=kafka_bootstrap,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        fetched = await consumer.getmany(timeout_ms=10_000)
    finally:
        await consumer.stop()
    records = [record for batch in fetched.values() for record in batch]
    assert len(records) == 1
    # Reading makes no span: the live tail reads every log, and a span each would flood the
    # collector (the instrumentation's reads are unwrapped; its sends are kept).
    assert not [s for s in spans.get_finished_spans() if s.kind.name == "CONSUMER"], \
        [(s.name, s.instrumentation_scope.name) for s in spans.get_finished_spans()]
    traceparents = [value for key, value in records[0].headers if key == "traceparent"]
    assert len(traceparents) == 1, records[0].headers
    # The one header is the aiokafka instrumentation's producer span, a child of ours.
    send = next(s for s in spans.get_finished_spans()
                if s.instrumentation_scope.name == "opentelemetry.instrumentation.aiokafka" and s.kind.name == "PRODUCER")
    assert send.parent.span_id == outer.get_span_context().span_id
    assert traceparents[0].decode().split("-")[2] == format(send.context.span_id, "016x")
