"""`logpipe dev` (what `make dev` runs): broker + every service + generator, then Ctrl-C.

It runs under a pseudo-terminal, as when a person types `make dev`: what it prints there is
what they read.
"""

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
from support import wait_until

ANSI = re.compile(r"\x1b\[[0-9;]*m")
HUMAN_LINE = re.compile(r"\d\d:\d\d:\d\d (DEBUG|INFO|WARN|ERROR|FATAL) +\S+ ")


class Screen:
    """Everything the child writes to its terminal, read by a thread as it comes."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.chunks: list[bytes] = []
        self.banner = threading.Event()
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            self.chunks.append(chunk)
            if b"logpipe is running" in b"".join(self.chunks[-2:]):
                self.banner.set()
        self.closed.set()

    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace").replace("\r\n", "\n")

    def tail(self, lines: int = 50) -> str:
        return "\n".join(self.text().splitlines()[-lines:])


def dev_environment(tmp_path, **extra: str) -> tuple[dict[str, str], dict[str, int]]:
    """What both `logpipe dev` tests run with: free ports, a fresh data directory, a steady
    generator without incidents and short group timeouts; `extra` on top."""
    ports = {name: free_port() for name in ("gateway", "generator", "ingest", "embedder", "vectorizer", "analyzer")}
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("LOG_FORMAT", "NO_COLOR")},
        "LOGPIPE_DATA_DIR": str(tmp_path / "data"),
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "GENERATOR_RATE_PER_SECOND": "300",
        "GENERATOR_INCIDENTS": "none",
        "INGEST_SESSION_TIMEOUT_MS": "2000",
        "INGEST_HEARTBEAT_INTERVAL_MS": "500",
        "VECTORIZER_SESSION_TIMEOUT_MS": "2000",
        "VECTORIZER_HEARTBEAT_INTERVAL_MS": "500",
        **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
        **extra,
    }
    return env, ports


def test_dev_runs_the_whole_platform_readably_on_a_terminal_and_stops_cleanly(tmp_path):
    env, ports = dev_environment(tmp_path, GENERATOR_ERROR_RATE_PERCENTAGE="20", INGEST_BATCH_TIMEOUT_SECONDS="1",
                                 TERM="xterm")
    master, slave = os.openpty()
    process = subprocess.Popen([sys.executable, "-m", "logpipe.cli", "dev"], env=env, cwd=tmp_path,
                               stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    screen = Screen(master)
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    try:
        assert screen.banner.wait(240), screen.tail()
        banner_seen = time.monotonic()
        # The banner is one write: wait for its last line rather than for the clock.
        token_line = wait_until(lambda: re.search(r"(lpt_[A-Za-z0-9_\-]+)\s*\n", screen.text()), timeout=10)
        token = token_line.group(1)
        headers = {"Authorization": f"Bearer {token}"}

        def errors_stored() -> int:
            response = httpx.get(f"{gateway}/api/logs", params={"level": "ERROR", "limit": 5}, headers=headers,
                                 timeout=10)
            assert response.status_code == 200, response.text
            return response.json()["total"]

        wait_until(errors_stored, timeout=90, interval=1, message=lambda: screen.tail(40))
        assert httpx.get(f"{gateway}/api/logs", timeout=10).status_code == 401

        produced = httpx.get(f"http://127.0.0.1:{ports['generator']}/stats", timeout=10).json()["produced"]
        ingest = httpx.get(f"http://127.0.0.1:{ports['ingest']}/stats", timeout=10).json()
        assert produced > 0 and ingest["written"] > 0 and ingest["dlq"] == 0
        for name, port in ports.items():
            # A dependency probe can time out once while every service shares one busy process.
            health = wait_until(lambda: _healthy(port), timeout=30, interval=1,
                                message=lambda: f"{name} not healthy")
            assert health["service"] == name

        # Several novel errors, so a line per novel error would show as several lines.
        vectorizer = f"http://127.0.0.1:{ports['vectorizer']}/stats"
        stats = wait_until(lambda: (s := httpx.get(vectorizer, timeout=10).json())["novel"] >= 3 and s,
                           timeout=90, interval=1, message=lambda: screen.tail(20))
        novel_ids = [event["record_id"] for event in stats["recent_novel"]]
    finally:
        minutes_after_banner = (time.monotonic() - banner_seen) / 60 if screen.banner.is_set() else 0
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        screen.closed.wait(10)
        os.close(master)
    assert code == 0, screen.tail(40)

    text = screen.text()
    plain = ANSI.sub("", text)
    lines = [line for line in plain.splitlines() if line.strip()]
    # The banner comes after every service's startup line, and nothing of startup follows it.
    banner_at = next(i for i, line in enumerate(lines) if line.startswith("logpipe is running"))
    assert lines[banner_at] == f"logpipe is running: open the dashboard at {gateway}/  (Ctrl-C stops everything)"
    assert f"  API (gateway)       {gateway}/            (OpenAPI docs: {gateway}/docs)" in lines
    ready = [i for i, line in enumerate(lines) if HUMAN_LINE.match(line) and " ready  url=" in line]
    assert len(ready) == len(ports) and max(ready) < banner_at, "\n".join(lines[:banner_at + 3])
    # A person's terminal: human lines, no JSON, colour on.
    assert not [line for line in lines if line.lstrip().startswith("{")], plain[-3000:]
    logged = [line for line in lines if re.match(r"\d\d:\d\d:\d\d ", line)]
    assert logged and all(HUMAN_LINE.match(line) for line in logged), logged[:10]
    assert "\x1b[" in text
    # No line per novel error: none names one, and the count comes at most once a minute.
    assert not [line for line in lines if any(record_id in line for record_id in novel_ids)]
    assert not [line for line in lines if re.search(r"\bnovel error\b(?!s)", line)]
    summaries = [line for line in logged if " novel errors  count=" in line]
    assert 1 <= len(summaries) <= 2 + int(minutes_after_banner), summaries

    assert wait_until(lambda: not port_in_use(int(env["KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1])), timeout=10, message="the broker outlived `logpipe dev`")


def _healthy(port: int) -> dict | None:
    health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
    return health if health["status"] in ("healthy", "degraded") else None


def _children(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as handle:
            found += [int(child) for child in handle.read().split()]
    return found


def _cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return [part.decode() for part in handle.read().split(b"\0") if part]


def test_dev_can_run_the_generator_in_a_process_of_its_own(tmp_path):
    """LOGPIPE_DEV_GENERATOR_PROCESS: the generator leaves the services' process (and GIL),
    its logs still reach ClickHouse, and Ctrl-C stops it with everything else."""
    env, ports = dev_environment(tmp_path, LOGPIPE_DEV_GENERATOR_PROCESS="true", LOG_FORMAT="json")
    log_path = tmp_path / "dev.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "logpipe.cli", "dev"], env=env, cwd=tmp_path,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        def banner() -> bool:
            assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
            return "logpipe is running" in log_path.read_text(errors="replace")

        wait_until(banner, timeout=240, interval=0.5,
                   message=lambda: log_path.read_text(errors="replace")[-3000:])
        generators = [child for child in _children(process.pid) if _cmdline(child)[-2:] == ["run", "generator"]]
        assert len(generators) == 1, [_cmdline(child) for child in _children(process.pid)]
        generator_pid = generators[0]

        def stored() -> int:
            produced = httpx.get(f"http://127.0.0.1:{ports['generator']}/stats", timeout=10).json()["produced"]
            ingest = httpx.get(f"http://127.0.0.1:{ports['ingest']}/stats", timeout=10).json()
            return produced > 0 and ingest["written"] >= 300 and ingest["dlq"] == 0

        wait_until(stored, timeout=90, interval=1, message=lambda: log_path.read_text(errors="replace")[-3000:])
        assert _healthy(ports["generator"])["dependencies"] == {"kafka": "connected"}
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0, log_path.read_text(errors="replace")[-3000:]
    assert not os.path.exists(f"/proc/{generator_pid}"), "the generator process outlived `logpipe dev`"
    assert wait_until(lambda: not port_in_use(ports["generator"]), timeout=10)
