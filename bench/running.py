"""The whole platform as `make dev` runs it, in a child process, for the benches that load it
(bench/capacity.py, bench/soak.py).

The child is `logpipe.dev.run_dev` (what `make dev` and `logpipe dev` run: Tansu as its own
process, then every service in one process through `logpipe.runner.run_services`, exactly the
code path of `logpipe run all`), on free ports and a fresh data directory, with the generator
stopped: the bench starts it and sets its rate over the generator's REST API.

Where the CPU goes: the child also runs a sampler thread (`StageSampler`) that reads each of the
process's threads' CPU time from /proc/self/task/<tid>/stat every 0.2 s and charges what a
thread used since the last look to stages:
- a Python thread, by its stacks (`sys._current_frames`, every 10 ms; samples where the thread
  waits for work left out): the outermost frame inside a
  service package (`logpipe/ingest/`, `logpipe/vectorizer/`, …) names the stage; stacks outside
  any service are named by what runs there (the ClickHouse store's insert is ingest's, its
  queries the gateway's; aiokafka's sender, the producers' batches; uvicorn/starlette; the
  event loop itself). All services share one event loop in `run all`, so only the stack can
  tell them apart there; a sample is a statistical attribution, exact over a minute to within
  a few per cent.
- a native thread (no Python frame), by its kernel name: `rdk:*` librdkafka (the consumers'
  fetching and decoding), ClickHouse's own pools (chdb), and unnamed ones (ONNX Runtime's
  intra-op threads for the embedding model, …).
The broker (Tansu) is a separate process: its CPU is read from /proc by the bench.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
SERVICES = ("gateway", "generator", "ingest", "embedder", "vectorizer", "analyzer")
SERVICE_PACKAGES = tuple(f"{os.sep}logpipe{os.sep}{name}{os.sep}" for name in SERVICES)


# -- /proc -----------------------------------------------------------------------------------------

def cpu_seconds(stat_path: str) -> float:
    """utime + stime of a process or thread (`/proc/PID/stat` or `/proc/PID/task/TID/stat`)."""
    with open(stat_path, "rb") as handle:
        text = handle.read().decode()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_tree(pid: int) -> list[int]:
    """`pid` and every descendant (the broker is the child's child)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                text = handle.read().decode()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2:].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            parts = handle.read().split(b"\0")
        words = [part.decode(errors="replace") for part in parts if part]
        if "logpipe.cli" in words and "run" in words[words.index("logpipe.cli"):]:
            # A service in a process of its own (LOGPIPE_DEV_GENERATOR_PROCESS): by its service.
            rest = words[words.index("logpipe.cli"):]
            return "logpipe run " + " ".join(rest[rest.index("run") + 1:rest.index("run") + 2])
        return os.path.basename(words[0]) if words else "?"
    except OSError:
        return "?"


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * PAGE_SIZE


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


# -- the sampler (runs inside the platform process) ------------------------------------------------

def is_idle(frame) -> bool:
    """A thread waiting for work: the event loop in its selector, a pool worker on its queue."""
    if frame is None:
        return True
    path, name = frame.f_code.co_filename, frame.f_code.co_name
    return ((path.endswith("selectors.py") and name in ("select", "poll"))
            or (path.endswith(os.path.join("concurrent", "futures", "thread.py")) and name == "_worker")
            or (path.endswith(("threading.py", "queue.py")) and name in ("wait", "get")))


def stage_of_stack(frame, thread_name: str) -> str:
    """The stage a Python thread is working for, from its current stack."""
    service = None
    store_call = None
    kinds = set()
    while frame is not None:
        path = frame.f_code.co_filename
        for name, package in zip(SERVICES, SERVICE_PACKAGES):
            if package in path:
                service = name  # keep walking: the outermost service frame wins
        if f"{os.sep}logpipe{os.sep}stores{os.sep}" in path and store_call is None:
            store_call = (os.path.basename(path), frame.f_code.co_name)
        if f"{os.sep}aiokafka{os.sep}" in path:
            kinds.add("aiokafka")
        if f"{os.sep}logpipe{os.sep}core{os.sep}consumer.py" in path:
            kinds.add("consumer")
        if any(f"{os.sep}{lib}{os.sep}" in path for lib in ("uvicorn", "starlette", "fastapi", "httpx", "h11")):
            kinds.add("http")
        frame = frame.f_back
    if service:
        return service
    if store_call:
        module, function = store_call
        if module == "clickhouse.py":
            return "ingest" if "insert" in function else "gateway"
        if module == "vectors.py":
            return "vectorizer" if ("upsert" in function or "optimize" in function) else "gateway"
        return f"store:{module}"
    if thread_name.startswith(("ingest-", "vectorizer-")):
        return thread_name.split("-")[0]
    if "consumer" in kinds:
        return "consumer (shared)"
    if "aiokafka" in kinds:
        return "kafka producers (aiokafka)"
    if "http" in kinds:
        return "http servers"
    return "event loop / other python"


def stage_of_native(comm: str, process_comm: str) -> str:
    if comm.startswith("rdk:"):
        return "librdkafka threads"
    if comm == process_comm:
        return "unnamed native threads (ONNX Runtime, ...)"
    return "clickhouse (chdb threads)"


class StageSampler(threading.Thread):
    """Charges each thread's CPU time to stages; writes the running totals to `path` each second.

    Stacks are looked at every `stack_interval_s` (10 ms) and CPU times read every
    `cpu_interval_s` (200 ms, the kernel counts in 10 ms ticks): a Python thread's CPU over
    that time is split over the stages its busy samples showed (samples where it waited for work
    are left out); without a busy sample it goes to "event loop / other python".
    """

    def __init__(self, path: str, stack_interval_s: float = 0.01, cpu_interval_s: float = 0.2) -> None:
        super().__init__(name="bench-stage-sampler", daemon=True)
        self.path = path
        self.stack_interval_s = stack_interval_s
        self.cpu_interval_s = cpu_interval_s
        self.totals: dict[str, float] = {}
        self.by_thread: dict[str, float] = {}
        self._last: dict[int, float] = {}

    def _used(self, tid: int) -> float:
        try:
            now = cpu_seconds(f"/proc/self/task/{tid}/stat")
        except OSError:
            return 0.0
        used = now - self._last.get(tid, 0.0)  # a new thread: everything since it began
        self._last[tid] = now
        return max(used, 0.0)

    def _add(self, stage: str, thread_label: str, seconds: float) -> None:
        if seconds > 0:
            self.totals[stage] = self.totals.get(stage, 0.0) + seconds
            self.by_thread[thread_label] = self.by_thread.get(thread_label, 0.0) + seconds

    def run(self) -> None:
        with open("/proc/self/comm") as handle:
            process_comm = handle.read().strip()
        me = threading.get_native_id()
        hits: dict[int, dict[str, int]] = {}
        last_cpu = last_native = last_write = 0.0
        while True:
            frames = sys._current_frames()  # noqa: SLF001 - the sampling profiler's standard source
            threads = {thread.native_id: thread for thread in threading.enumerate() if thread.native_id}
            for tid, thread in threads.items():
                if tid == me:
                    continue
                frame = frames.get(thread.ident)
                if not is_idle(frame):
                    counts = hits.setdefault(tid, {})
                    stage = stage_of_stack(frame, thread.name)
                    counts[stage] = counts.get(stage, 0) + 1
            del frames
            now = time.monotonic()
            if now - last_cpu >= self.cpu_interval_s:
                last_cpu = now
                for tid, thread in threads.items():
                    main = thread is threading.main_thread()
                    label = "py:MainThread (event loop)" if main else "py:" + thread.name.rstrip("0123456789_")
                    used = self._used(tid)
                    if tid == me:
                        self._add("bench sampler", label, used)
                        continue
                    counts = hits.pop(tid, None)
                    if not counts:
                        self._add("event loop / other python", label, used)
                        continue
                    busy = sum(counts.values())
                    for stage, count in counts.items():
                        self._add(stage, label, used * count / busy)
            if now - last_native >= 1.0:
                last_native = now
                for entry in os.listdir("/proc/self/task"):
                    tid = int(entry)
                    if tid in threads:
                        continue
                    try:
                        with open(f"/proc/self/task/{tid}/comm") as handle:
                            comm = handle.read().strip()
                    except OSError:
                        continue
                    self._add(stage_of_native(comm, process_comm), f"native:{comm.rstrip('0123456789')}",
                              self._used(tid))
            if now - last_write >= 1.0:
                last_write = now
                temporary = f"{self.path}.tmp"
                with open(temporary, "w") as handle:
                    json.dump({"stages": self.totals, "threads": self.by_thread, "at": time.time()}, handle)
                os.replace(temporary, self.path)
            time.sleep(self.stack_interval_s)


def child_main(samples_path: str, broker_port: int, partitions: int) -> None:
    if samples_path:
        StageSampler(samples_path).start()
    from logpipe.dev import run_dev

    run_dev(port=broker_port, partitions=partitions, generate=False)


# -- the bench's side ------------------------------------------------------------------------------

class Platform:
    """`logpipe dev` in a child process on free ports and a temporary data directory."""

    def __init__(self, partitions: int = 4, data_dir: str | None = None, sample_stages: bool = True,
                 env: dict[str, str] | None = None) -> None:
        from logpipe.core.broker import free_port

        self.partitions = partitions
        self._temp = tempfile.TemporaryDirectory(prefix="logpipe-bench-", ignore_cleanup_errors=True)
        self.data_dir = data_dir or self._temp.name
        self.ports = {name: free_port() for name in SERVICES}
        self.broker_port = free_port()
        self.samples_path = os.path.join(self._temp.name, "stages.json") if sample_stages else ""
        self.log_path = os.path.join(self._temp.name, "platform.log")
        self.env = dict(os.environ, LOGPIPE_DATA_DIR=self.data_dir, LOG_FORMAT="json", NO_COLOR="1",
                        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{self.broker_port}",
                        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "services"), os.environ.get("PYTHONPATH")])),
                        **{f"{name.upper()}_PORT": str(port) for name, port in self.ports.items()},
                        **(env or {}))
        self.process: subprocess.Popen | None = None
        self.token: str | None = None

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def start(self, timeout_s: float = 600) -> "Platform":
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--child", self.samples_path, str(self.broker_port), str(self.partitions)],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the platform stopped at start:\n{self.log_tail()}")
            text = Path(self.log_path).read_text(errors="replace")
            if "logpipe is running" in text:
                lines = text.splitlines()
                for index, line in enumerate(lines):
                    if "Your admin API token" in line and index + 1 < len(lines):
                        self.token = lines[index + 1].strip()
                return self
            time.sleep(0.5)
        raise RuntimeError(f"the platform did not start in {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stages(self) -> dict:
        """The sampler's running totals (CPU seconds per stage and per thread name)."""
        try:
            return json.loads(Path(self.samples_path).read_text())
        except (OSError, ValueError):
            return {"stages": {}, "threads": {}}

    def processes(self) -> dict[int, str]:
        """pid -> name for the platform process and its children (the broker)."""
        assert self.process is not None
        names = {}
        for pid in process_tree(self.process.pid):
            names[pid] = "platform" if pid == self.process.pid else process_name(pid)
        return names

    def stop(self, timeout_s: float = 60) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                for pid in reversed(process_tree(self.process.pid)):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                self.process.wait(10)
        if getattr(self, "_log", None):
            self._log.close()
        self._temp.cleanup()

    def __enter__(self) -> "Platform":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def explore_page_urls(now_ms: int | None = None) -> list[str]:
    """The API requests the dashboard's Explore page (the landing page) sends at once on load
    (frontend/src/api/auth.tsx, useServiceNames.ts, features/logs/hooks.ts: the default range,
    the last hour, 200 rows with the total, 60 histogram buckets)."""
    from datetime import datetime, timedelta, timezone
    from urllib.parse import urlencode

    end = datetime.now(timezone.utc) if now_ms is None else datetime.fromtimestamp(now_ms / 1000, timezone.utc)
    start = end - timedelta(hours=1)
    window = {"start": start.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
              "end": end.isoformat(timespec="milliseconds").replace("+00:00", "Z")}
    return ["/api/whoami", "/api/services?window_minutes=1440",
            "/api/logs?" + urlencode({**window, "limit": 200, "total": "true"}),
            "/api/logs/histogram?" + urlencode({**window, "buckets": 60})]


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--child":
    child_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
