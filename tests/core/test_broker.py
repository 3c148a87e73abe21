"""`logpipe broker`: starts Tansu, waits for it, creates the pipeline's topics."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

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
