"""Reports, anomalies, analysis runs, patterns, metrics and services through the gateway."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlmodel import Session

from gateway_support import ServerThread, gateway_settings, insert_logs, make_rows, start_gateway
from logpipe.core.record import format_timestamp
from logpipe.gateway import insights
from logpipe.gateway.responses import SearchResponse
from logpipe.stores.sql import Anomaly, ErrorPattern, NightlyReport
from support import wait_for


def add_report(engine, pipeline: str, window_end: datetime, severities: list[str]) -> str:
    with Session(engine) as session:
        report = NightlyReport(pipeline=pipeline, status="completed", window_start=window_end - timedelta(hours=24),
                               window_end=window_end, summary=f"{pipeline} summary", total_logs=1000,
                               total_errors=40, anomaly_count=len(severities), report={"insights": [{"text": "x", "pattern_ids": [], "model": "rules"}]},
                               markdown="# report")
        session.add(report)
        session.commit()
        session.add(ErrorPattern(report_id=report.id, pattern_id="123", template="timeout after <*> ms", count=40))
        for index, severity in enumerate(severities):
            session.add(Anomaly(report_id=report.id, kind="pattern_spike", service=f"svc-{index}", severity=severity,
                                bucket=window_end - timedelta(hours=index + 1), z_score=3.0 + index,
                                observed=10.0 * (index + 2), expected=10.0))
        session.commit()
        return report.id


def as_json(body):
    return orjson.loads(orjson.dumps(body))


async def test_report_and_anomaly_bodies_are_sent_whole(gateway):
    engine = gateway.app.state.sql_engine
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    report_id = add_report(engine, "default", now, [])
    with Session(engine) as session:
        report = session.get(NightlyReport, report_id)
        # A key the model does not declare (a later analyzer's) passes through, nested ones too.
        report.report = {"window": {"start": "a", "end": "b", "hours": 24.0, "zone": "UTC"},
                         "summary": {"text": "calm", "pattern_ids": ["123"], "model": "rules"},
                         "future_section": [{"x": 1}]}
        session.add(report)
        session.add(Anomaly(report_id=report_id, kind="service_quiet", service="billing", severity="critical",
                            bucket=now - timedelta(hours=3), start=now - timedelta(hours=3), end=now,
                            peak=now - timedelta(hours=3), hours=3, observed=0.0, expected=120.0,
                            observed_total=0.0, expected_total=360.0, excess=-360.0, ongoing=True,
                            incident_id="abc123", related_group="R1", z_score=-9.5))
        session.commit()
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read")) as client:
        body = (await client.get(f"/api/reports/{report_id}")).json()
        assert body == as_json(insights.get_report(engine, report_id, None))
        assert body["report"]["future_section"] == [{"x": 1}] and body["report"]["window"]["zone"] == "UTC"
        anomalies = (await client.get("/api/anomalies")).json()
        assert anomalies == as_json(insights.list_anomalies(engine, pipeline=None, severities=[], services=[],
                                                            start=None, end=None, limit=100, offset=0))
        incident = anomalies["anomalies"][0]
        assert (incident["incident_id"], incident["ongoing"], incident["related_group"], incident["hours"],
                incident["excess"], incident["pipeline"]) == ("abc123", True, "R1", 3, -360.0, "default")
        assert incident["end"] == format_timestamp(now)


async def test_anomalies_in_a_range_are_the_incidents_overlapping_it(gateway):
    engine = gateway.app.state.sql_engine
    hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=12)
    report_id = add_report(engine, "default", hour + timedelta(hours=12), [])
    with Session(engine) as session:
        # Five hours long, peaking in its fourth hour: a range over its first hours must find it.
        session.add(Anomaly(report_id=report_id, kind="volume_spike", service="long", severity="high",
                            bucket=hour + timedelta(hours=3), peak=hour + timedelta(hours=3), start=hour,
                            end=hour + timedelta(hours=5), hours=5))
        # Written before incidents had a span: judged by its bucket.
        session.add(Anomaly(report_id=report_id, kind="pattern_spike", service="legacy", severity="low",
                            bucket=hour + timedelta(hours=1)))
        session.commit()

    async def services(start, end):
        async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read")) as client:
            response = await client.get("/api/anomalies", params={"start": start.isoformat(), "end": end.isoformat()})
            assert response.status_code == 200, response.text
            return sorted(a["service"] for a in response.json()["anomalies"])

    assert await services(hour, hour + timedelta(hours=2)) == ["legacy", "long"]
    assert await services(hour + timedelta(hours=4), hour + timedelta(hours=6)) == ["long"]
    assert await services(hour + timedelta(hours=5), hour + timedelta(hours=6)) == []  # the span's end is exclusive
    assert await services(hour - timedelta(hours=2), hour) == []
    assert await services(hour + timedelta(hours=1), hour + timedelta(minutes=90)) == ["legacy", "long"]


def test_search_hits_keep_the_fields_a_search_adds():
    body = {"query": "db down", "top_k": 2, "results": [
        {"rank": 1, "score": 0.91, "record_id": "r1", "match": "both", "template": "db <*> down", "pattern_id": 7,
         "payload": {"timestamp": "2026-12-06T10:00:00Z", "service": "api", "level": "ERROR",
                     "message": "db 3 down", "trace_id": "t", "pattern_id": 7, "attributes": {"k": "v"}}},
        {"rank": 2, "score": 0.5, "record_id": "r2", "payload": {"service": "api"}, "rerank": 0.3}]}
    parsed = SearchResponse.model_validate(body)
    assert parsed.model_dump(mode="json", exclude_unset=True) == body
    assert parsed.results[0].match == "both" and parsed.results[1].match is None


async def test_reports_and_anomalies(gateway):
    engine = gateway.app.state.sql_engine
    now = datetime.now(timezone.utc)
    old = add_report(engine, "default", now - timedelta(days=3), ["low"])
    new = add_report(engine, "default", now - timedelta(hours=1), ["high", "critical"])
    other = add_report(engine, "team-a", now - timedelta(hours=2), ["medium"])
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read")) as client:
        body = (await client.get("/api/reports")).json()
        assert [r["id"] for r in body["reports"]] == [other, new, old] and body["total"] == 3
        yesterday = (now - timedelta(days=1)).date().isoformat()
        body = (await client.get("/api/reports", params={"date_from": yesterday, "pipeline": "default"})).json()
        assert [r["id"] for r in body["reports"]] == [new]
        body = (await client.get("/api/reports", params={"end": (now - timedelta(days=2)).isoformat()})).json()
        assert [r["id"] for r in body["reports"]] == [old]

        report = (await client.get(f"/api/reports/{new}")).json()
        assert report["summary"] == "default summary" and report["markdown"] == "# report"
        assert [p["template"] for p in report["patterns"]] == ["timeout after <*> ms"]
        assert sorted(a["severity"] for a in report["anomalies"]) == ["critical", "high"]
        assert (await client.get("/api/reports/nope")).status_code == 404
        assert (await client.get("/api/reports/latest")).json()["id"] == other

        body = (await client.get("/api/anomalies", params={"severity": "high,critical"})).json()
        assert body["total"] == 2 and {a["severity"] for a in body["anomalies"]} == {"high", "critical"}
        body = (await client.get("/api/anomalies", params={"start": (now - timedelta(hours=2, minutes=30)).isoformat()})).json()
        assert [a["service"] for a in body["anomalies"]] == ["svc-0"]
        assert (await client.get("/api/anomalies", params={"severity": "apocalyptic"})).status_code == 400

    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("bound")) as client:
        body = (await client.get("/api/reports")).json()
        assert [r["id"] for r in body["reports"]] == [other]
        assert (await client.get(f"/api/reports/{new}")).status_code == 404
        body = (await client.get("/api/anomalies")).json()
        assert [a["severity"] for a in body["anomalies"]] == ["medium"]


async def test_analyze_runs_the_analyzer_and_the_report_is_readable(kafka_bootstrap, topics, clickhouse, tmp_path,
                                                                    embedding_backend):
    from logpipe.analyzer.app import create_app as create_analyzer
    from logpipe.analyzer.settings import Settings as AnalyzerSettings
    from logpipe.core.broker import free_port

    now = datetime.now(timezone.utc)
    insert_logs(clickhouse, make_rows(300, start=now - timedelta(hours=2), step_ms=20_000,
                                      level=lambda i: "ERROR" if i % 3 == 0 else "INFO",
                                      message=lambda i: f"db timeout after {i} ms" if i % 3 == 0 else f"ok {i}"))
    analyzer_settings = AnalyzerSettings(clickhouse_url=clickhouse.dsn, clickhouse_database=clickhouse.database,
                                         data_dir=tmp_path, schedule_cron="", llm_backend="none")
    analyzer = ServerThread(create_analyzer(analyzer_settings, store=clickhouse, embed=embedding_backend.embed),
                            free_port()).start()
    settings = gateway_settings(kafka_bootstrap, topics.prefix, clickhouse, tmp_path, analyzer_url=analyzer.url)
    gateway, server = start_gateway(settings)
    try:
        async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("admin")) as client:
            response = await client.post("/api/analyze", json={"window_hours": 6})
            assert response.status_code == 202, response.text
            report_id = response.json()["report_id"]

            async def completed():
                body = (await client.get(f"/api/reports/{report_id}")).json()
                return body if body["status"] in ("completed", "failed") else None

            report = await wait_for(completed, timeout=120, interval=0.5)
            assert report["status"] == "completed", report.get("error")
            assert report["total_logs"] == 300 and report["total_errors"] == 100
            # The response models drop nothing the stores hold: each body is the rows as read.
            engine = gateway.app.state.sql_engine
            assert report == as_json(insights.get_report(engine, report_id, None))
            assert report["report"]["window"]["hours"] == 6 and report["report"]["top_patterns"]
            listing = (await client.get("/api/reports")).json()
            assert listing == as_json(insights.list_reports(engine, pipeline=None, start=None, end=None,
                                                            status=None, limit=50, offset=0))
            assert (await client.post("/api/analyze", json={"window_hours": -1})).status_code == 422
        async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read")) as client:
            assert (await client.post("/api/analyze", json={})).status_code == 403
    finally:
        server.stop()
        analyzer.stop()


async def test_analyze_without_an_analyzer_is_503(kafka_bootstrap, topics, clickhouse, tmp_path):
    from logpipe.core.broker import free_port

    settings = gateway_settings(kafka_bootstrap, topics.prefix, clickhouse, tmp_path,
                                analyzer_url=f"http://127.0.0.1:{free_port()}")
    gateway, server = start_gateway(settings)
    try:
        async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("admin")) as client:
            response = await client.post("/api/analyze")
            assert response.status_code == 503 and "not reachable" in response.json()["detail"]
    finally:
        server.stop()


async def test_patterns_endpoint_counts_by_pattern(gateway, clickhouse):
    now = datetime.now(timezone.utc)
    insert_logs(clickhouse, make_rows(30, start=now - timedelta(minutes=20), step_ms=10_000,
                                      pattern_id=lambda i: 111 if i < 20 else 222,
                                      level=lambda i: "ERROR" if i < 20 else "INFO"))
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read")) as client:
        body = (await client.get("/api/patterns")).json()
        assert [(p["pattern_id"], p["count"]) for p in body["patterns"]] == [(111, 20), (222, 10)]
        body = (await client.get("/api/patterns", params={"level": "INFO"})).json()
        assert [(p["pattern_id"], p["count"]) for p in body["patterns"]] == [(222, 10)]
        body = (await client.get("/api/patterns", params={"min_count": 15})).json()
        assert [p["pattern_id"] for p in body["patterns"]] == [111]


async def produce_one_by_one(bootstrap: str, topic: str, values: list[bytes]) -> None:
    from logpipe.core.kafka import new_producer

    producer = new_producer(bootstrap, linger_ms=0)
    await producer.start()
    try:
        for index, value in enumerate(values):
            await producer.send_and_wait(topic, value, partition=index % 2 if not topic.endswith("dlq") else 0)
    finally:
        await producer.stop()


async def test_metrics_and_services(gateway, kafka_bootstrap, topics, clickhouse):
    now = datetime.now(timezone.utc)
    insert_logs(clickhouse, make_rows(60, start=now - timedelta(seconds=50), step_ms=500, service="checkout",
                                      level=lambda i: "ERROR" if i % 2 else "INFO")
                + [dict(row, record_id=f"p{i}") for i, row in enumerate(
                    make_rows(40, start=now - timedelta(minutes=4), step_ms=1000, service="payments"))])
    # A consumer group that read 2 of 5 raw-logs messages; 3 messages waiting in the DLQ.
    # One message per batch: Tansu reports a partition's end offset as its last batch's base + 1.
    await produce_one_by_one(kafka_bootstrap, topics.raw_logs, [orjson.dumps({"message": f"m{i}"}) for i in range(5)])
    await produce_one_by_one(kafka_bootstrap, topics.raw_logs_dlq, [b"bad 1", b"bad 2", b"bad 3"])
    group = f"lagging-{topics.prefix}"
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topics.raw_logs, p) for p in range(4)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        busiest = max(partitions, key=lambda tp: ends[tp])
        await consumer.commit({busiest: min(2, ends[busiest])})
        consumed = min(2, ends[busiest])
    finally:
        await consumer.stop()

    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read"), timeout=30) as client:
        body = (await client.get("/api/metrics")).json()
        assert body["logs"]["logs_last_5m"] == 100 and body["logs"]["errors_last_5m"] == 30
        assert body["logs"]["error_ratio_5m"] == 0.3
        assert body["storage"]["logs_rows"] == 100 and body["storage"]["bytes_on_disk"] > 0
        kafka = body["kafka"]
        assert kafka["available"], kafka
        assert kafka["dlq"][topics.raw_logs_dlq] == 3 and kafka["dlq"][topics.vectorization_dlq] == 0
        assert kafka["consumer_lag"][topics.raw_logs][group] == sum(ends.values()) - consumed

        body = (await client.get("/api/services", params={"window_minutes": 5})).json()
        by_name = {s["service"]: s for s in body["services"]}
        assert by_name["checkout"]["logs"] == 60 and by_name["checkout"]["errors"] == 30
        assert by_name["checkout"]["status"] == "failing" and by_name["payments"]["status"] == "healthy"
        assert by_name["payments"]["error_ratio"] == 0.0 and by_name["checkout"]["last_seen"].endswith("Z")

        bound = (await client.get("/api/metrics", headers=gateway.headers("bound"))).json()
        assert bound["pipeline"] == "team-a" and bound["logs"]["logs_last_5m"] == 0 and "storage" not in bound
