"""Memory the embedded vector store (Qdrant Edge, `stores/vectors.py`) holds per point.

Why the services' process of `logpipe dev` grows in `bench/soak.py` (docs/reliability.md "Soak"):
each configuration runs in a fresh child process, which upserts `--points` points shaped like
the vectorizer's (384 dimensions, the vectorizer's payload fields, an 8-term keyword vector) in
batches of 500 and reads its own /proc/self/status: anonymous memory (RssAnon: heaps, what the
engine holds in memory) and file-backed pages (RssFile: mapped segment files, which the kernel
can drop and read again), and glibc's heap in use (`mallinfo2`, where the engine's allocations
go). Then, per configuration:

- with `--optimize`: the HNSW build as the vectorizer runs it (in a child process, the indexed
  copy swapped in), `--points` more points, a second build, 200 searches (p50/p95 ms), 10,000
  more points;
- `delete`: all but the newest 10,000 points deleted, a vacuum (`optimize`), 20,000 more points:
  whether freed memory is used again (it is not: deleted points are held until a build rewrites
  their segment and the rewritten shard is swapped in);
- instead of `delete`, with `--retention-cycles N`: the vectorizer's retention at a cap of
  `--points` (`expire`, then the build its schedule asks for), N times a fifth of the cap
  written: whether memory stays level under the cap.

Configurations: `default` (the store as shipped) and `on_disk` (vectors, keyword vectors, HNSW
and payload on disk, `Memory.Cold` wherever the engine takes it).

    .venv/bin/python bench/vector_memory.py                      # 40,000 points, both
    .venv/bin/python bench/vector_memory.py --points 20000 --optimize
    .venv/bin/python bench/vector_memory.py --points 30000 --modes default --retention-cycles 10

Prints one JSON line: for each configuration, the memory at each step and the bytes per point.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import subprocess
import sys
import tempfile
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCH = 500
SERVICES = ("api-gateway", "auth-service", "payment-service", "order-service")
LEVELS = ("ERROR", "WARN", "FATAL")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def memory() -> dict[str, float]:
    found = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            if name in ("RssAnon", "RssFile"):
                found[name.lower().replace("rss", "") + "_mb"] = round(int(value.split()[0]) / 1024, 1)
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    found["malloc_used_mb"] = round((info.uordblks + info.hblkhd) / 2**20, 1)
    return found


def search_times(store, rng, queries: int = 200) -> dict[str, float]:
    """p50/p95 of a vector search (20 hits, no filter) on the store as it is."""
    import time

    took = []
    for _ in range(queries):
        query = rng.standard_normal(384).astype("float32")
        started = time.perf_counter()
        store.search(query / float((query ** 2).sum() ** 0.5), limit=20)
        took.append((time.perf_counter() - started) * 1000)
    took.sort()
    return {"p50": round(took[len(took) // 2], 2), "p95": round(took[int(len(took) * 0.95)], 2)}


def child(mode: str, points: int, optimize: bool, retention_cycles: int = 0) -> dict:
    import numpy as np

    from logpipe.stores import vectors

    class OnDisk(vectors.EdgeVectorStore):
        def _config(self, dimension: int, keywords: bool = True):
            import qdrant_edge as qe

            cold = qe.Memory.Cold
            return qe.EdgeConfig(
                vectors=qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine, on_disk=True, memory=cold),
                sparse_vectors={vectors.KEYWORDS: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf, on_disk=True,
                                                                             memory=cold)} if keywords else None,
                on_disk_payload=True, payload_memory=cold, id_tracker_memory=cold,
                hnsw_config=qe.HnswIndexConfig(m=self.hnsw_m, ef_construct=self.hnsw_ef_construct,
                                               full_scan_threshold=10_000, max_indexing_threads=0, on_disk=True,
                                               memory=cold),
                max_search_threads=self.search_threads)

    kind = OnDisk if mode == "on_disk" else vectors.EdgeVectorStore
    rng = np.random.default_rng(7)
    chooser = random.Random(7)
    record_ids: list[str] = []
    written = [0]

    def stamp() -> str:
        # Each point a millisecond after the one before: the retention deletes the oldest first.
        written[0] += 1
        moment = datetime(2026, 12, 7, tzinfo=timezone.utc) + timedelta(milliseconds=written[0])
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def batch(count: int) -> list:
        dense = rng.standard_normal((count, 384)).astype(np.float32)
        dense /= np.linalg.norm(dense, axis=1, keepdims=True)
        made = []
        for row in dense:
            record_id = str(uuid.UUID(int=chooser.getrandbits(128)))
            record_ids.append(record_id)
            payload = {"record_id": record_id, "service": chooser.choice(SERVICES), "level": chooser.choice(LEVELS),
                       "timestamp": stamp(), "host": "node-3", "error_type": "TimeoutError",
                       "message": f"Database connection timeout after {chooser.randint(1, 9999)}ms to "
                                  f"db-{chooser.randint(1, 99)}.internal:5432",
                       "trace_id": uuid.UUID(int=chooser.getrandbits(128)).hex, "span_id": f"{chooser.getrandbits(64):016x}",
                       "pattern_id": chooser.randint(1, 2**50)}
            terms = sorted(chooser.sample(range(1, 2**20), 8))
            made.append(vectors.VectorPoint(record_id, row, payload, vectors.KeywordVector(terms, [1.0] * 8)))
        return made

    def add(count: int) -> None:
        for _ in range(count // BATCH):
            store.upsert(batch(BATCH))

    with tempfile.TemporaryDirectory(prefix="vector-memory-") as data_dir:
        store = kind(data_dir)
        store.ensure_collection(384)
        steps = {"empty": memory()}
        add(points)
        steps["filled"] = memory()
        result = {"points": points, "steps": steps,
                  "bytes_per_point": {name.removesuffix("_mb"): round((steps["filled"][name] - steps["empty"][name]) * 2**20 / points)
                                      for name in steps["empty"]}}
        if optimize:
            # As the vectorizer builds it: in a child process, the indexed copy swapped in.
            store.optimize(in_child=True)
            steps["built"] = memory()
            add(points)
            steps[f"built_plus_{points}"] = memory()
            store.optimize(in_child=True)
            steps["built_again"] = memory()
            result["search_ms"] = search_times(store, rng)
            steps["after_searches"] = memory()
            add(10_000)
            steps["then_plus_10000"] = memory()
        if not retention_cycles:
            keep = 10_000
            gone = [vectors.point_id(record_id) for record_id in record_ids[:-keep]]
            import qdrant_edge as qe

            with store._use() as (shard, _):  # noqa: SLF001 - the bench looks inside the store
                shard.update(qe.UpdateOperation.delete_points(gone))
            store.optimize()
            steps[f"deleted_{len(gone)}_vacuumed"] = memory()
            add(20_000)
            steps["then_plus_20000"] = memory()
        if retention_cycles:
            # The vectorizer's retention at a cap of `points`: each cycle writes a fifth of the
            # cap, deletes the oldest beyond it (`expire`) and builds in a child as the
            # vectorizer's schedule then does (IndexSchedule.due_after_deletions).
            store.expire(keep=points)
            store.optimize(in_child=True)
            steps["retention_start"] = memory()
            for cycle in range(retention_cycles):
                add(points // 5)
                store.expire(keep=points)
                store.optimize(in_child=True)
                steps[f"retention_cycle_{cycle + 1}"] = memory()
            result["retention_points"] = store.count()
        store.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=40_000)
    parser.add_argument("--modes", default="default,on_disk")
    parser.add_argument("--optimize", action="store_true", help="also the HNSW build (minutes on 2 cores)")
    parser.add_argument("--retention-cycles", type=int, default=0,
                        help="then N cycles of the vectorizer's retention at a cap of --points")
    parser.add_argument("--child", default="")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.points, args.optimize, args.retention_cycles)), flush=True)
        return
    result = {"bench": "vector_memory", "points": args.points, "load_average_before": os.getloadavg()}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "services"),
                                                                      os.environ.get("PYTHONPATH")])))
    for mode in args.modes.split(","):
        done = subprocess.run([sys.executable, __file__, "--child", mode, "--points", str(args.points)]
                              + (["--optimize"] if args.optimize else [])
                              + ["--retention-cycles", str(args.retention_cycles)],
                              env=env, capture_output=True, text=True, timeout=1800, check=True)
        result[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_average_after"] = os.getloadavg()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
