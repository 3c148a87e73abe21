"""Helpers of the fault suite: services in their own processes (so they can be killed with
SIGKILL), the seeded random kill schedule, Kafka group offsets, and the final count check that
reads ClickHouse and the gateway's API in a process of its own (chdb opens one data directory
per process, and the test process has its own)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from logpipe.core.broker import free_port
from support import wait_until

RUNNER = Path(__file__).with_name("service_runner.py")


def seeded_random(name: str) -> tuple[random.Random, int]:
    """A random generator whose seed is printed (and can be replayed with RELIABILITY_SEED)."""
    seed = int(os.environ.get("RELIABILITY_SEED") or random.SystemRandom().randrange(1, 2**31))
    print(f"{name}: seed {seed} (rerun with RELIABILITY_SEED={seed})", flush=True)
    return random.Random(seed), seed


@dataclass
class ServiceProcess:
    """`logpipe run <service>` in its own process, its HTTP port known, killable."""

    service: str
    env: dict[str, str]
    port: int
    log_dir: Path
    lives: int = 0
    process: subprocess.Popen | None = None
    logs: list[Path] = field(default_factory=list)

    def start(self) -> "ServiceProcess":
        self.lives += 1
        path = self.log_dir / f"{self.service}-{self.lives}.log"
        self.logs.append(path)
        with path.open("wb") as out:
            self.process = subprocess.Popen([sys.executable, str(RUNNER), "run", self.service], env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def stats(self) -> dict | None:
        """Its /stats, or None while it does not answer (starting, dead)."""
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/stats", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise AssertionError(f"{self.service} exited with {self.process.returncode}:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        return self.logs[-1].read_text(errors="replace")[-chars:] if self.logs else ""

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(timeout=30) == -signal.SIGKILL

    def stop(self, timeout_s: float = 60) -> None:
        """SIGTERM: the service writes and commits what it consumed, then exits."""
        if not self.alive():
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            raise AssertionError(f"{self.service} did not stop within {timeout_s}s:\n{self.tail()}")


def service_env(service: str, kafka_bootstrap: str, topic_prefix: str, data_dir: Path, port: int,
                **extra: str) -> dict[str, str]:
    upper = service.upper()
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TOPIC_PREFIX": topic_prefix,
        "LOGPIPE_DATA_DIR": str(data_dir),
        f"{upper}_PORT": str(port),
        f"{upper}_GROUP_ID": f"{service}-{topic_prefix}",
        # A killed member's partitions go to its successor within seconds.
        f"{upper}_SESSION_TIMEOUT_MS": "3000",
        f"{upper}_HEARTBEAT_INTERVAL_MS": "500",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        **extra,
    }


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The offsets `group` committed on `topic` (what a restart resumes from); -1001: none yet."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def wait_committed(bootstrap: str, group: str, topic: str, partitions: int, total: int,
                   service: ServiceProcess, timeout_s: float) -> dict[int, int]:
    """Until `group` committed `total` records of `topic` (offsets start at 0 and are dense, so the
    committed next offsets add up to the records behind them; the services commit only what they
    stored). Not the high watermarks: Tansu reports the last batch's base offset + 1 there."""
    seen: dict[int, int] = {}

    def done() -> bool:
        nonlocal seen
        service.check_alive()
        seen = committed_offsets(bootstrap, group, topic, partitions)
        return sum(max(0, offset) for offset in seen.values()) >= total

    wait_until(done, timeout=timeout_s, interval=0.5,
               message=lambda: f"{group} committed {seen}, expected {total} in all\n{service.tail()}")
    return seen


def check_stored(data_dir: Path, kafka_bootstrap: str, topic_prefix: str, start: str, end: str,
                 vectors: bool = False) -> dict:
    """Counts in a process of its own: ClickHouse rows and distinct record ids, and what the
    gateway's API (`/api/logs`, `/api/patterns`) answers a user for the same range."""
    env = {**os.environ, "LOGPIPE_DATA_DIR": str(data_dir), "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "TOPIC_PREFIX": topic_prefix, "GATEWAY_PORT": str(free_port()), "LOG_LEVEL": "WARNING"}
    command = [sys.executable, str(RUNNER), "check", "--start", start, "--end", end]
    if vectors:
        command.append("--vectors")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def wait_answering(service: ServiceProcess, timeout_s: float = 90) -> dict:
    def answers():
        service.check_alive()
        return service.stats()

    return wait_until(answers, timeout=timeout_s, interval=0.1,
                      message=lambda: f"{service.service} did not answer /stats\n{service.tail()}")


def elapsed(started: float) -> str:
    return f"{time.monotonic() - started:.1f}s"


def read_topic(bootstrap: str, topic: str, partitions: int, idle_s: float = 1.5, timeout_s: float = 60) -> dict:
    """record_id -> (partition, offset) of every record in `topic` (read from offset 0 until
    nothing new arrives for idle_s: Tansu's end offsets are not exact)."""
    import orjson
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reliability-reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    found: dict[str, tuple[int, int]] = {}
    deadline = time.monotonic() + timeout_s
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < idle_s and time.monotonic() < deadline:
            batch = [m for m in consumer.consume(num_messages=1000, timeout=0.3) if not m.error()]
            if batch:
                idle_since = time.monotonic()
            for message in batch:
                found[orjson.loads(message.value())["record_id"]] = (message.partition(), message.offset())
    finally:
        consumer.close()
    return found
