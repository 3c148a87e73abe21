"""A consumer killed after inserting but before committing, then restarted: still exactly N rows."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from logpipe.core.broker import free_port
from logpipe.generator.service import LogFactory, encode
from support import produce

RUNNER = Path(__file__).with_name("crash_runner.py")


def ingest_env(kafka_bootstrap: str, topic_prefix: str, data_dir: Path, port: int) -> dict:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TOPIC_PREFIX": topic_prefix,
        "LOGPIPE_DATA_DIR": str(data_dir),
        "INGEST_PORT": str(port),
        "INGEST_BATCH_SIZE": "700",
        "INGEST_BATCH_TIMEOUT_SECONDS": "1",
        "INGEST_SESSION_TIMEOUT_MS": "2000",
        "INGEST_HEARTBEAT_INTERVAL_MS": "500",
        "INGEST_GROUP_ID": f"crash-{topic_prefix}",
        "LOG_LEVEL": "WARNING",
    }


async def test_killed_before_commit_then_restarted_stores_each_log_once(kafka_bootstrap, topics, topic_prefix, tmp_path):
    total = 3000
    await produce(kafka_bootstrap, topics.raw_logs, [encode(r) for r in LogFactory(seed=11).batch(total)])
    port = free_port()
    env = ingest_env(kafka_bootstrap, topic_prefix, tmp_path, port)

    crashed = subprocess.run([sys.executable, str(RUNNER), "--die-before-commit"], env=env, timeout=120,
                             capture_output=True, text=True)
    assert crashed.returncode == -9, crashed.stderr[-3000:]
    partial = subprocess.run([sys.executable, str(RUNNER), "--count"], env=env, capture_output=True, text=True, timeout=60)
    stored_before_restart = int(partial.stdout.split()[0])
    assert 0 < stored_before_restart < total  # it did insert, and died before finishing

    restarted = subprocess.Popen([sys.executable, str(RUNNER)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        stats = {}
        while time.monotonic() < deadline:
            try:
                stats = httpx.get(f"http://127.0.0.1:{port}/stats", timeout=2).json()
                if stats["consumed"] >= total and stats["written"] + stats["replay_skipped"] >= total:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        # Nothing was committed before the crash, so the restart replays everything,
        # and skips exactly what the first process had stored.
        assert stats["consumed"] == total, stats
        assert stats["replay_skipped"] == stored_before_restart, stats
        assert stats["written"] == total - stored_before_restart, stats
    finally:
        restarted.terminate()
        restarted.wait(timeout=30)
    final = subprocess.run([sys.executable, str(RUNNER), "--count"], env=env, capture_output=True, text=True, timeout=60)
    assert final.stdout.split() == [str(total), str(total)], final.stderr[-2000:]
