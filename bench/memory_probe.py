"""What grows inside the services' process of `logpipe dev`: the evidence behind
docs/reliability.md "Soak".

Runs the platform like bench/soak.py (bench/running.py `Platform`: Tansu, then every service in
one process on free ports and a fresh data directory), with a sampler thread inside the
services' process that every `--every` seconds writes one JSON line:
- RssAnon / RssFile / Threads (/proc/self/status), thread names counted (/proc/self/task);
- resident MB by mapping (/proc/self/smaps): anonymous, libraries, the embedded vector store's
  segment files (`qdrant-files`), ClickHouse's files;
- glibc's heap (`mallinfo2`: what Python's large objects and the vector engine allocate; chdb
  has its own jemalloc);
- chdb: `system.metrics` MemoryTracking and every cache's bytes, active parts, their rows;
- Python: allocated blocks, and with `--tracemalloc` the lines whose traced memory changed most
  since tracing began, largest change first (tracing starts at `--trace-from` seconds, after the
  model loaded: traced from the start, the platform barely runs on 2 cores).

    .venv/bin/python bench/memory_probe.py --rate 15000 --seconds 300
    .venv/bin/python bench/memory_probe.py --rate 8000 --seconds 330 --tracemalloc

Prints the samples (JSON lines), then the services' counters.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from running import Platform, load_average  # noqa: E402 - bench/ is not a package


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _status() -> dict:
    found = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile"):
                found[name + "_mb"] = int(value.split()[0]) // 1024
            elif name == "Threads":
                found[name] = int(value)
    return found


def _smaps_mb() -> dict:
    by_mapping: dict[str, int] = {}
    current = "[anon]"
    with open("/proc/self/smaps") as handle:
        for line in handle:
            parts = line.split()
            if parts and "-" in parts[0] and not parts[0].endswith(":"):
                path = parts[5] if len(parts) > 5 else "[anon]"
                if f"{os.sep}qdrant{os.sep}" in path:
                    path = "qdrant-files"
                elif f"{os.sep}clickhouse{os.sep}" in path:
                    path = "clickhouse-files"
                elif ".so" in path:
                    path = "[libraries]"
                elif not path.startswith("["):
                    path = "other files"
                current = path
            elif parts and parts[0] == "Rss:":
                by_mapping[current] = by_mapping.get(current, 0) + int(parts[1])
    return {name: kb // 1024 for name, kb in sorted(by_mapping.items(), key=lambda item: -item[1]) if kb >= 1024}


def _thread_names() -> dict:
    names: dict[str, int] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as handle:
                name = handle.read().strip().rstrip("0123456789-_")
        except OSError:
            continue
        names[name] = names.get(name, 0) + 1
    return dict(sorted(names.items(), key=lambda item: -item[1])[:10])


def _chdb(client) -> dict:
    found = dict(client.query(
        "SELECT metric, value FROM system.metrics WHERE metric IN ('MemoryTracking', "
        "'MergesMutationsMemoryTracking') OR (metric LIKE '%CacheBytes' AND value > 0)").result_rows)
    parts, rows = client.query("SELECT count(), sum(rows) FROM system.parts WHERE active").result_rows[0]
    megabytes = {name: round(value / 2**20, 2) for name, value in found.items()}
    return {**megabytes, "active_parts": parts, "rows": rows}


def sampler(path: str, every: float, trace: bool, trace_from: float) -> None:
    import tracemalloc

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Mallinfo2
    started = time.monotonic()
    client = base = None
    while True:
        time.sleep(every)
        sample: dict = {"t": round(time.monotonic() - started), **_status()}
        info = libc.mallinfo2()
        sample["glibc_heap_mb"] = {"in_use": (info.uordblks + info.hblkhd) >> 20, "free": info.fordblks >> 20}
        sample["resident_by_mapping_mb"] = _smaps_mb()
        sample["threads_by_name"] = _thread_names()
        try:
            if client is None:
                from logpipe.core.settings import CommonSettings
                from logpipe.stores.clickhouse import connect

                client = connect(CommonSettings().clickhouse_dsn)
            sample["chdb"] = _chdb(client)
        except Exception as exc:  # noqa: BLE001 - a sample without it, said why
            sample["chdb"] = repr(exc)[:200]
        sample["python_blocks"] = sys.getallocatedblocks()
        if trace and not tracemalloc.is_tracing() and sample["t"] >= trace_from:
            tracemalloc.start()
        elif trace and tracemalloc.is_tracing():
            snapshot = tracemalloc.take_snapshot()
            sample["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
            if base is None:
                base = snapshot
            else:
                sample["traced_growth_mb"] = [
                    [str(stat.traceback), round(stat.size_diff / 2**20, 2)]
                    for stat in snapshot.compare_to(base, "lineno")[:10]]
        with open(path, "a") as handle:
            handle.write(json.dumps(sample) + "\n")


def child_main(samples: str, every: float, trace: bool, trace_from: float, broker_port: int, partitions: int) -> None:
    threading.Thread(target=sampler, args=(samples, every, trace, trace_from), name="memory-probe",
                     daemon=True).start()
    from logpipe.dev import run_dev

    run_dev(port=broker_port, partitions=partitions, generate=False)


class ProbedPlatform(Platform):
    def __init__(self, samples: str, every: float, trace: bool, trace_from: float, **kwargs) -> None:
        super().__init__(sample_stages=False, **kwargs)
        self.child_args = [samples, str(every), "1" if trace else "0", str(trace_from)]

    def start(self, timeout_s: float = 600) -> "ProbedPlatform":
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--child", *self.child_args, str(self.broker_port), str(self.partitions)],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parent.parent)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the platform stopped at start:\n{self.log_tail()}")
            if "logpipe is running" in Path(self.log_path).read_text(errors="replace"):
                return self
            time.sleep(0.5)
        raise RuntimeError(f"the platform did not start in {timeout_s:.0f} s:\n{self.log_tail()}")


def main() -> None:
    if len(sys.argv) == 8 and sys.argv[1] == "--child":
        _, _, samples, every, trace, trace_from, port, partitions = sys.argv
        child_main(samples, float(every), trace == "1", float(trace_from), int(port), int(partitions))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=15_000)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--every", type=float, default=30)
    parser.add_argument("--error-rate", type=float, default=4.0, help="the generator's error_rate_percentage")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--trace-from", type=float, default=60)
    args = parser.parse_args()
    import httpx

    print(json.dumps({"bench": "memory_probe", "rate": args.rate, "load_average_before": load_average()}), flush=True)
    samples = os.path.join(tempfile.gettempdir(), f"memory-probe-{os.getpid()}.jsonl")
    with ProbedPlatform(samples, args.every, args.tracemalloc, args.trace_from) as platform:
        generator = platform.url("generator")
        with httpx.Client(timeout=30) as client:
            client.put(f"{generator}/control", json={"rate_per_second": args.rate,
                                                     "error_rate_percentage": args.error_rate}).raise_for_status()
            client.post(f"{generator}/start").raise_for_status()
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
            client.post(f"{generator}/stop").raise_for_status()
            counters = {name: client.get(f"{platform.url(name)}/stats").json() for name in ("generator", "ingest",
                                                                                            "vectorizer")}
    try:
        with open(samples) as handle:
            for line in handle:
                print(line.rstrip(), flush=True)
    finally:
        if os.path.exists(samples):
            os.remove(samples)
    print(json.dumps({"produced": counters["generator"]["produced"], "stored": counters["ingest"]["written"],
                      "vectorized": counters["vectorizer"]["vectorized"], "load_average_after": load_average()}),
          flush=True)


if __name__ == "__main__":
    main()
