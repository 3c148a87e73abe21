"""`logpipe dev` (what `make dev` runs): broker + every service + generator, then Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import httpx

from logpipe.core.broker import free_port, port_in_use


def test_dev_runs_the_whole_platform_and_stops_cleanly(tmp_path):
    ports = {name: free_port() for name in ("gateway", "generator", "ingest", "embedder", "vectorizer", "analyzer")}
    broker_port = free_port()
    env = {
        **os.environ,
        "LOGPIPE_DATA_DIR": str(tmp_path / "data"),
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{broker_port}",
        "GENERATOR_RATE_PER_SECOND": "300",
        "GENERATOR_ERROR_RATE_PERCENTAGE": "20",
        "GENERATOR_INCIDENTS": "none",
        "INGEST_BATCH_TIMEOUT_SECONDS": "1",
        "INGEST_SESSION_TIMEOUT_MS": "2000",
        "INGEST_HEARTBEAT_INTERVAL_MS": "500",
        "VECTORIZER_SESSION_TIMEOUT_MS": "2000",
        "VECTORIZER_HEARTBEAT_INTERVAL_MS": "500",
        **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
    }
    process = subprocess.Popen([sys.executable, "-m", "logpipe.cli", "dev"], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    banner = threading.Event()

    def read() -> None:
        for line in process.stdout:
            output.append(line)
            if "logpipe is running" in line:
                banner.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert banner.wait(240), "".join(output[-50:])
        time.sleep(0.5)
        text = "".join(output)
        token = re.search(r"(lpt_[A-Za-z0-9_\-]+)", text).group(1)
        assert f"http://127.0.0.1:{ports['gateway']}/" in text
        headers = {"Authorization": f"Bearer {token}"}
        gateway = f"http://127.0.0.1:{ports['gateway']}"

        deadline = time.monotonic() + 90
        total = 0
        while time.monotonic() < deadline and total == 0:
            response = httpx.get(f"{gateway}/api/logs", params={"level": "ERROR", "limit": 5}, headers=headers, timeout=10)
            assert response.status_code == 200, response.text
            total = response.json()["total"]
            time.sleep(1)
        assert total > 0, "".join(output[-40:])
        assert httpx.get(f"{gateway}/api/logs", timeout=10).status_code == 401

        produced = httpx.get(f"http://127.0.0.1:{ports['generator']}/stats", timeout=10).json()["produced"]
        ingest = httpx.get(f"http://127.0.0.1:{ports['ingest']}/stats", timeout=10).json()
        assert produced > 0 and ingest["written"] > 0 and ingest["dlq"] == 0
        for name, port in ports.items():
            # A dependency probe can time out once while every service shares one busy process.
            deadline = time.monotonic() + 30
            while True:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
                if health["status"] in ("healthy", "degraded") or time.monotonic() > deadline:
                    break
                time.sleep(1)
            assert health["service"] == name
            assert health["status"] in ("healthy", "degraded"), (name, health)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        reader.join(timeout=5)
    assert code == 0, "".join(output[-40:])
    deadline = time.monotonic() + 10
    while port_in_use(broker_port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not port_in_use(broker_port), "the broker outlived `logpipe dev`"
