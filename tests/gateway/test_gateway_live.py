"""WebSocket live tail and events: a new error arrives within 2 s; a slow client never blocks others."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from datetime import datetime, timezone

import httpx
import orjson
import pytest
import websockets

from logpipe.gateway.service import Fanout, Subscriber, TailFilter
from support import produce, running_ingest, wait_for


def test_fanout_drops_for_a_full_client_and_keeps_serving_the_others():
    fanout = Fanout()
    slow = fanout.subscribe(Subscriber(None, size=3))
    fast = fanout.subscribe(Subscriber(TailFilter.parse(["error"], None).matches, size=100))
    for index in range(10):
        fanout.publish({"level": "ERROR" if index % 2 else "INFO", "n": index}, now=float(index))
    assert slow.queue.qsize() == 3 and slow.dropped == 7
    assert fast.queue.qsize() == 5 and fast.dropped == 0
    assert slow.too_slow(now=20.0, limit_s=5.0) and not fast.too_slow(now=20.0, limit_s=5.0)
    assert slow.take_dropped() == 7 and slow.dropped == 0
    with pytest.raises(ValueError, match="unknown level"):
        TailFilter.parse(["LOUD"], None)
    tail = TailFilter.parse("warn,error", "checkout", "Time")
    assert tail.matches({"level": "WARN", "service": "checkout", "message": "timeout calling bank"})
    assert not tail.matches({"level": "INFO", "service": "checkout", "message": "timeout"})
    assert not tail.matches({"level": "ERROR", "service": "cart", "message": "timeout"})


def test_live_records_are_the_normalised_rows_with_pattern_and_pipeline():
    from logpipe.core.record import derived_record_id
    from logpipe.gateway.streams import LiveRecords
    from logpipe.ingest.service import RawMessage
    from logpipe.patterns import Tagger

    messages = [RawMessage(orjson.dumps({"msg": f"user {n} logged in", "level": "warning", "app": "auth"}),
                           1_764_064_800_000, "raw-logs", 0, n) for n in range(3)]
    messages.append(RawMessage(b"", 1_764_064_800_000, "raw-logs", 0, 3))  # ingest's DLQ: not a log
    messages.append(RawMessage(b"disk full on /var", 1_764_064_800_000, "raw-logs", 0, 4))
    live = LiveRecords("team-a", 1 << 20, Tagger).records(messages)
    assert [record["record_id"] for record in live] == [derived_record_id("raw-logs", 0, n) for n in (0, 1, 2, 4)]
    assert live[0]["timestamp"] == "2025-11-25T10:00:00.000Z" and live[0]["level"] == "WARN"
    assert live[0]["service"] == "auth" and live[0]["attributes"] == {}
    assert {record["pipeline"] for record in live} == {"team-a"}
    assert len({record["pattern_id"] for record in live[:3]}) == 1
    assert 0 != live[0]["pattern_id"] != live[3]["pattern_id"] != 0
    assert LiveRecords("default", 1 << 20).records(messages[:1])[0]["pattern_id"] == 0  # tagging off


async def receive_until(socket, predicate, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("no matching message in time")
        message = orjson.loads(await asyncio.wait_for(socket.recv(), remaining))
        if predicate(message):
            return message


async def test_live_tail_delivers_a_new_error_within_two_seconds(gateway, kafka_bootstrap, topics):
    url = f"{gateway.ws_url}/ws/logs?level=ERROR&service=checkout&token={gateway.tokens['read']}"
    async with websockets.connect(url, open_timeout=10) as socket:
        hello = orjson.loads(await socket.recv())
        assert hello["type"] == "subscribed" and hello["levels"] == ["ERROR"]
        async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("ingest")) as client:
            started = time.monotonic()
            response = await client.post("/api/ingest", content=b"\n".join([
                b'{"service": "checkout", "level": "info", "message": "not for this client"}',
                b'{"service": "cart", "level": "error", "message": "other service"}',
                b'{"service": "checkout", "level": "error", "message": "card processor down", "record_id": "live-1"}',
            ]))
            assert response.status_code == 200
        message = await receive_until(socket, lambda m: m["type"] == "log", timeout=2.0)
        assert time.monotonic() - started < 2.0
        assert message["data"]["record_id"] == "live-1" and message["data"]["message"] == "card processor down"
        # Logs written to raw-logs by any shipper (here a Fluent Bit-shaped record) are tailed too.
        await produce(kafka_bootstrap, topics.raw_logs, [orjson.dumps(
            {"log": "ERROR checkout failed to reserve stock", "kubernetes": {"labels": {"app": "checkout"}},
             "date": datetime.now(timezone.utc).timestamp()})])
        message = await receive_until(socket, lambda m: m["type"] == "log", timeout=2.0)
        assert message["data"]["message"] == "ERROR checkout failed to reserve stock"
        assert message["data"]["service"] == "checkout" and message["data"]["level"] == "ERROR"


async def test_live_tail_carries_the_pattern_id_and_pipeline_ingest_stores(gateway, kafka_bootstrap, topics,
                                                                          clickhouse):
    url = f"{gateway.ws_url}/ws/logs?service=patterned&token={gateway.tokens['read']}"
    async with running_ingest(kafka_bootstrap, topics.prefix, clickhouse), \
            websockets.connect(url, open_timeout=10) as socket:
        assert orjson.loads(await socket.recv())["type"] == "subscribed"
        lines = [{"service": "patterned", "level": "error", "record_id": f"pay-{n}",
                  "message": f"payment {4000 + n} declined for user u-{n}"} for n in range(5)]
        lines.append({"service": "patterned", "level": "info", "record_id": "warm", "message": "cache warmed in 5 ms"})
        async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("ingest")) as client:
            response = await client.post("/api/ingest", content=b"\n".join(map(orjson.dumps, lines)))
            assert response.status_code == 200
        # A shipper writing to raw-logs directly: the record id is derived from the Kafka coordinates.
        await produce(kafka_bootstrap, topics.raw_logs, [orjson.dumps(
            {"log": "ERROR payment 4100 declined for user u-9", "kubernetes": {"labels": {"app": "patterned"}}})])
        live: dict[str, dict] = {}
        while len(live) < len(lines) + 1:
            message = await receive_until(socket, lambda m: m["type"] == "log", timeout=10)
            live[message["data"]["record_id"]] = message["data"]

        def stored_rows():
            rows = clickhouse.query(f"SELECT record_id, pattern_id, pipeline FROM {clickhouse.database}.logs "
                                    "WHERE service = 'patterned'")
            return {row[0]: (row[1], row[2]) for row in rows} if len(rows) == len(live) else None

        stored = await wait_for(stored_rows, timeout=30)
    assert {record_id: (data["pattern_id"], data["pipeline"]) for record_id, data in live.items()} == stored
    assert all(pattern_id != 0 for pattern_id, _ in stored.values())
    assert {pipeline for _, pipeline in stored.values()} == {"default"}
    # The payments share a pattern, the cache message has its own.
    assert len({live[f"pay-{n}"]["pattern_id"] for n in range(5)}) == 1
    assert live["warm"]["pattern_id"] != live["pay-0"]["pattern_id"]


async def stalled_websocket(port: int, path: str) -> socket.socket:
    """A client that completes the WebSocket handshake and then never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    sock.settimeout(10)
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += await asyncio.to_thread(sock.recv, 1)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return sock


async def test_a_stalled_client_does_not_block_another(kafka_bootstrap, topics, clickhouse, tmp_path):
    from gateway_support import gateway_settings, start_gateway

    gateway, server = start_gateway(gateway_settings(kafka_bootstrap, topics.prefix, clickhouse, tmp_path,
                                                     ws_queue_size=200, ws_slow_client_s=10))
    token = gateway.tokens["read"]
    # The stalled client never reads: its socket buffers fill, then its queue, then it loses logs.
    stalled = await stalled_websocket(int(gateway.url.rsplit(":", 1)[1]), f"/ws/logs?token={token}")
    try:
        async with websockets.connect(f"{gateway.ws_url}/ws/logs?token={token}", open_timeout=10,
                                      max_size=2**22) as healthy:
            await healthy.recv()  # subscribed
            received: list[dict] = []

            async def read_healthy():
                while True:
                    received.append(orjson.loads(await healthy.recv()))

            reader = asyncio.create_task(read_healthy())
            big = "x" * 32_000
            rounds, per_round = 6, 150
            for round_number in range(rounds):
                await produce(kafka_bootstrap, topics.raw_logs, [
                    orjson.dumps({"service": "flood", "level": "INFO", "message": f"{round_number}/{i} {big}"})
                    for i in range(per_round)])
                # Far less than a queue per round, with time to drain: a healthy reader loses nothing.
                await wait_for(lambda: len(received) >= (round_number + 1) * per_round, timeout=30, interval=0.1)
            await produce(kafka_bootstrap, topics.raw_logs, [orjson.dumps(
                {"service": "flood", "level": "ERROR", "message": "the last one", "record_id": "last"})])
            await wait_for(lambda: any(m["type"] == "log" and m["data"]["record_id"] == "last" for m in received),
                           timeout=10, interval=0.05)
            reader.cancel()
            logs = [m for m in received if m["type"] == "log"]
            assert len(logs) == rounds * per_round + 1
            assert not [m for m in received if m["type"] == "dropped"]
            # The stalled client, blocked for longer than ws_slow_client_s, was let go; the healthy one stays.
            await wait_for(lambda: len(gateway.app.state.live_fanout.subscribers) == 1, timeout=40)
        async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read"), timeout=30) as client:
            metrics = (await client.get("/api/metrics")).json()
        assert metrics["live_tail"]["dropped"] > 0  # the stalled client's share, and only its
    finally:
        stalled.close()
        server.stop()


async def test_events_stream_carries_novel_errors_and_anomalies(gateway, kafka_bootstrap, topics):
    from sqlmodel import Session

    from logpipe.stores.sql import Anomaly, NightlyReport

    async with websockets.connect(f"{gateway.ws_url}/ws/events", open_timeout=10,
                                  additional_headers=gateway.headers("read")) as socket:
        assert orjson.loads(await socket.recv())["type"] == "subscribed"
        novel = {"record_id": "n-1", "service": "checkout", "message": "never seen before", "distance": 0.61}
        await produce(kafka_bootstrap, topics.novel_errors, [orjson.dumps(novel)])
        message = await receive_until(socket, lambda m: m["type"] == "novel_error", timeout=5)
        assert message["data"] == novel

        now = datetime.now(timezone.utc)
        with Session(gateway.app.state.sql_engine) as session:
            report = NightlyReport(pipeline="default", window_start=now, window_end=now)
            session.add(report)
            session.commit()
            session.add(Anomaly(report_id=report.id, kind="volume_spike", service="checkout", severity="high",
                                observed=900, expected=100, z_score=9.5, description="checkout errors x9"))
            session.commit()
        message = await receive_until(socket, lambda m: m["type"] == "anomaly", timeout=5)
        assert message["data"]["service"] == "checkout" and message["data"]["severity"] == "high"


def test_live_records_keep_flowing_when_the_pattern_state_is_unreadable():
    from logpipe.gateway.streams import LiveRecords
    from logpipe.ingest.service import RawMessage
    from logpipe.patterns import Tagger

    attempts = []

    def flaky_tagger():
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("ClickHouse is down")
        return Tagger()

    live = LiveRecords("default", 1 << 20, flaky_tagger)
    message = [RawMessage(b'{"message": "queue depth 17 over limit"}', 1_764_064_800_000, "raw-logs", 0, 0)]
    assert [record["pattern_id"] for record in live.records(message)] == [0]
    assert live.records(message)[0]["pattern_id"] != 0 and len(attempts) == 2


async def test_past_novel_errors_are_listed_for_a_range_newest_first(gateway, kafka_bootstrap, topics):
    """What /ws/events showed while nobody watched: read back from the novel-errors topic."""
    now = datetime.now(timezone.utc)

    def event(record_id: str, minutes_ago: int, service: str) -> bytes:
        moment = datetime.fromtimestamp(now.timestamp() - minutes_ago * 60, timezone.utc)
        return orjson.dumps({"type": "novel_error", "record_id": record_id, "service": service, "level": "ERROR",
                             "timestamp": moment.isoformat().replace("+00:00", "Z"),
                             "message": f"never seen before {record_id}", "similarity": 0.41, "threshold": 0.75,
                             "nearest": {"record_id": "old", "score": 0.41, "message": "x", "service": service}})

    await produce(kafka_bootstrap, topics.novel_errors, [
        event("n-old", 3 * 60, "checkout"), event("n-1", 30, "checkout"), event("n-2", 5, "payments"), b"not json",
        orjson.dumps({"record_id": "bad", "timestamp": now.isoformat(), "similarity": "high", "nearest": [1]})])
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read"), timeout=30) as client:
        since = datetime.fromtimestamp(now.timestamp() - 3600, timezone.utc).isoformat()
        response = await client.get("/api/novel-errors", params={"start": since})
        assert response.status_code == 200, response.text
        body = response.json()
        assert [e["record_id"] for e in body["novel_errors"]] == ["n-2", "n-1"]
        assert body["total"] == 2 and body["truncated"] is False and body["error"] == ""
        assert body["novel_errors"][0]["similarity"] == 0.41 and body["novel_errors"][0]["nearest"]["record_id"] == "old"

        only = (await client.get("/api/novel-errors", params={"start": since, "service": "checkout"})).json()
        assert [e["record_id"] for e in only["novel_errors"]] == ["n-1"]
        every = (await client.get("/api/novel-errors", params={"limit": 1})).json()  # default: the last 24 h
        assert every["total"] == 3 and [e["record_id"] for e in every["novel_errors"]] == ["n-2"]
        bad = await client.get("/api/novel-errors", params={"start": now.isoformat(), "end": since})
        assert bad.status_code == 400 and "before" in bad.json()["detail"]

        other = await client.get("/api/novel-errors", headers=gateway.headers("bound"))
        assert other.status_code == 403, other.text
        assert (await client.get("/api/novel-errors", headers={"Authorization": ""})).status_code == 401
