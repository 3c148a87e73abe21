"""Helpers for the outage and disk-full tests: dependencies that can be stopped and started again
on the same address, a steady log producer, and the checks every outage ends with.

- `RedisProcess`: Debian's redis-server on a fixed port; `kill()` is SIGKILL, `start()` again.
- `PostgresProcess`: a throwaway PostgreSQL (support.start_postgres) that `stop()`s with
  `pg_ctl -m immediate` (a crash, not a clean shutdown) and `start()`s on the same port and data.
- `EmbedderServer`: the real embedder app under uvicorn on a fixed port, stopped and started
  again in the test's event loop.
- `SteadyProducer`: generated logs at a fixed rate into raw-logs until stopped; it knows every
  record id it produced and how many of them ingest forwards (WARN, ERROR, FATAL).
- `committed_total`, `metric_value`: what the group committed; one sample of /metrics.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from logpipe.core.kafka import new_producer, send_values
from logpipe.generator.service import LogFactory, encode
from support import PostgresServer, _postgres_bin_dir, _run_as, start_postgres, wait_for, wait_until

FORWARDED_LEVELS = frozenset({"WARN", "ERROR", "FATAL"})


# --- Redis --------------------------------------------------------------------------------------
class RedisProcess:
    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> "RedisProcess":
        import redis

        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: apt-get install -y redis-server")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis.from_url(self.url)

        def answers() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.process.returncode} on port {self.port}")
            try:
                return client.ping()
            except redis.ConnectionError:
                return False

        try:
            wait_until(answers, timeout=15, interval=0.05, message=f"redis-server did not start on {self.port}")
        finally:
            client.close()
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


# --- PostgreSQL ---------------------------------------------------------------------------------
class PostgresProcess:
    """support.start_postgres, with a stop that keeps the data and a start on the same port."""

    def __init__(self) -> None:
        self.server: PostgresServer = start_postgres()

    def url(self, database: str) -> str:
        return self.server.url(database)

    def create_database(self) -> str:
        return self.server.create_database()

    def _pg_ctl(self, *arguments: str) -> None:
        _run_as(self.server.run_as, [str(_postgres_bin_dir() / "pg_ctl"), "-D", str(self.server.base / "data"),
                                     *arguments])

    def stop(self) -> None:
        self._pg_ctl("-m", "immediate", "-w", "stop")

    def start(self) -> None:
        base, port = self.server.base, self.server.port
        options = f"-h 127.0.0.1 -p {port} -k {base} -c fsync=off -c full_page_writes=off -c max_connections=50"
        self._pg_ctl("-o", options, "-l", str(base / "log"), "-w", "-t", "60", "start")

    def remove(self) -> None:
        self.server.stop()


# --- the embedder service -----------------------------------------------------------------------
class EmbedderServer:
    def __init__(self, settings, port: int) -> None:
        self.settings = settings
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.server = None
        self.task: asyncio.Task | None = None
        self.app = None

    async def start(self) -> None:
        import uvicorn

        from logpipe.embedder.app import create_app

        self.app = create_app(self.settings)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.server.install_signal_handlers = lambda: None
        self.task = asyncio.create_task(self.server.serve())
        await wait_for(lambda: self.server.started or self.task.done(), timeout=120,
                       message="the embedder did not start")
        if self.task.done():
            self.task.result()  # its error
            raise AssertionError("the embedder stopped at once")

    async def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            await self.task
            self.server = None


# --- logs ---------------------------------------------------------------------------------------
@dataclass
class SteadyProducer:
    """Produces `rate` generated logs a second (in ticks of a tenth of a second) until stopped."""

    bootstrap: str
    topic: str
    rate: int = 100
    seed: int = 1
    record_ids: set[str] = field(default_factory=set)
    forwarded: int = 0
    _task: asyncio.Task | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="steady-producer")

    async def stop(self) -> None:
        self._stop.set()
        await self._task

    @property
    def produced(self) -> int:
        return len(self.record_ids)

    async def _run(self) -> None:
        factory = LogFactory(error_rate=0.2, seed=self.seed)
        self.seed += 1
        producer = new_producer(self.bootstrap)
        await producer.start()
        per_tick = max(1, self.rate // 10)
        try:
            next_tick = time.monotonic()
            while not self._stop.is_set():
                records = factory.batch(per_tick)
                await send_values(producer, self.topic, [encode(r) for r in records])
                # Counted once the broker acknowledged them: what ingest must store.
                self.record_ids.update(r["record_id"] for r in records)
                self.forwarded += sum(r["level"] in FORWARDED_LEVELS for r in records)
                next_tick += 0.1
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout=max(0.0, next_tick - time.monotonic()))
                except asyncio.TimeoutError:
                    pass
        finally:
            await producer.stop()


async def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """Offsets `group` committed on `topic`, summed (read without joining the group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer._client.cluster.partitions_for_topic(topic) or set()
        total = 0
        for partition in partitions:
            total += await consumer.committed(TopicPartition(topic, partition)) or 0
        return total
    finally:
        await consumer.stop()


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The sample `name{labels}` in a Prometheus text exposition, or None."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def stored_counts(store) -> tuple[int, int]:
    """(rows, distinct record ids) in the logs table, duplicates included (FINAL-free)."""
    rows, distinct = store.query(f"SELECT count(), uniqExact(record_id) FROM {store.table('logs')}")[0]
    return int(rows), int(distinct)


def stored_ids(store) -> set[str]:
    return {row[0] for row in store.query(f"SELECT DISTINCT record_id FROM {store.table('logs')}")}


async def read_values(bootstrap: str, topic: str, expected: int, timeout_s: float = 10.0) -> list[bytes]:
    """What `topic` holds, read from the start until `expected` values or the deadline."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(values) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                values.extend(r.value for r in records)
    finally:
        await consumer.stop()
    return values
