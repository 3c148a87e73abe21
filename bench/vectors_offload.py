"""Can the embedded engine's HNSW index be built off the serving process's GIL? (issue #22)

    .venv/bin/python bench/vectors_offload.py [--points 20000] [--searches 400]

qdrant-edge-py 0.9 holds the GIL while `optimize()` builds the index, so an in-process build
freezes every service of `logpipe run all`. Qdrant's documented Edge pattern is two shards, a
mutable one for new writes and an immutable indexed one, queried together. This measures the
step that pattern needs here: a child process builds the index on a copy of the shard while
the parent keeps serving, and the parent then opens the indexed copy.

1. A shard of --points clustered 384-dimensional unit vectors with a service/level payload
   (EdgeVectorStore, payload indexes as logpipe makes them), flushed.
2. In process: `optimize()` while a heartbeat thread ticks every millisecond; the longest gap
   between ticks is how long every other thread of the process stood still.
3. Offloaded: the shard directory copied, a child process (spawned, its own interpreter)
   loads the copy and builds its index, while the parent runs filtered searches on its own
   (unindexed) shard and the heartbeat ticks. Then the parent closes nothing and loads the
   indexed copy beside it: the load time, and search p50/p95 on it.

4. What logpipe ships, `EdgeVectorStore.optimize(in_child=True)`, with a write and a search
   at a time going on: the slowest write-and-search step (the copy and the swap pause the
   shard's users, not the process), whether every point written meanwhile is kept, the index's size after.

5. `--schedule`: what logpipe ships end to end. The vectorizer's own index schedule
   (`Vectorizer._maybe_optimize` with the shipped `Settings()`: first build at 20,000
   un-indexed points, then each doubling, in a child) while points arrive in batches of 1,000
   at --rate points/s up to --points, with searches between the batches; the baseline, in
   the same process, is the same growth with the index never built (the default before).
   Reports search p50/p95 per 10,000 points on the way, the slowest write of a batch (the copy
   and the swap pause the shard's users) and the heartbeat's longest stall, then search p50/p95
   at --points once the builds the schedule asked for are done, with the ratio to the baseline.

Prints one JSON object: per mode the build seconds, the heartbeat's longest stall, search
p50/p95 during the build, the same with no build running (control), and the indexed copy's
load time and search latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from logpipe.stores.vectors import EdgeVectorStore, VectorFilter, VectorPoint

SERVICES = ["order-service", "payment-service", "auth-service", "api-gateway"]


class Heartbeat(threading.Thread):
    """Ticks every millisecond; `longest` is the longest gap between ticks (a GIL stall)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.longest = 0.0

    def run(self) -> None:
        last = time.perf_counter()
        while not self.stop.wait(0.001):
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now


def fill(store: EdgeVectorStore, points: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, 384)).astype(np.float32)
    batch = []
    for index in range(points):
        vector = centres[index % 40] + rng.normal(0, 0.3, 384).astype(np.float32)
        batch.append(VectorPoint(f"r{index}", vector / np.linalg.norm(vector),
                                 {"service": SERVICES[index % 4], "level": "ERROR" if index % 3 else "WARN",
                                  "message": f"error {index % 40}", "record_id": f"r{index}"}))
        if len(batch) == 5000:
            store.upsert(batch)
            batch = []
    store.upsert(batch)
    store.shard.flush()


def searches(store: EdgeVectorStore, count: int, seed: int, until: threading.Event | None = None) -> list[float]:
    rng = np.random.default_rng(seed)
    filters = None  # unfiltered: the search the index helps most (docs/vectors.md latency table)
    samples = []
    while len(samples) < count or (until is not None and not until.is_set()):
        query = rng.normal(size=384).astype(np.float32)
        began = time.perf_counter()
        store.search(query / np.linalg.norm(query), 20, filters)
        samples.append((time.perf_counter() - began) * 1000)
        if until is not None and until.is_set() and len(samples) >= count:
            break
    return samples


def percentiles(samples: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(samples, 50)), 2), "p95_ms": round(float(np.percentile(samples, 95)), 2),
            "max_ms": round(float(max(samples)), 1), "searches": len(samples)}


def build_in_child(data_dir: str, collection: str) -> float:
    """Runs in the spawned child: load the copied shard, build its index, close it."""
    store = EdgeVectorStore(data_dir, collection)
    store.ensure_collection(384)
    began = time.perf_counter()
    store.optimize()
    took = time.perf_counter() - began
    store.close()
    return took


def offloaded_parts(args, data_dir: str, result: dict) -> None:
    # In process, for the stall it causes.
    inline = EdgeVectorStore(data_dir, "inline")
    inline.ensure_collection(384)
    fill(inline, args.points, args.seed)
    heartbeat = Heartbeat()
    heartbeat.start()
    began = time.perf_counter()
    inline.optimize()
    result["in_process"] = {"build_s": round(time.perf_counter() - began, 1),
                            "longest_stall_s": round(heartbeat.longest, 2)}
    heartbeat.stop.set()
    inline.close()

    # Offloaded: the parent serves its unindexed shard while a child indexes a copy.
    mutable = EdgeVectorStore(data_dir, "mutable")
    mutable.ensure_collection(384)
    fill(mutable, args.points, args.seed)
    began = time.perf_counter()
    shutil.copytree(mutable.path, Path(data_dir) / "qdrant" / "indexed")
    copy_s = time.perf_counter() - began
    heartbeat = Heartbeat()
    heartbeat.start()
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        began = time.perf_counter()
        pending = pool.apply_async(build_in_child, (data_dir, "indexed"))
        done = threading.Event()
        waiter = threading.Thread(target=lambda: (pending.wait(), done.set()), daemon=True)
        waiter.start()
        during = searches(mutable, args.searches, args.seed, until=done)
        child_build_s = pending.get()
        wall_s = time.perf_counter() - began
    heartbeat.stop.set()
    # The control: the same searches and heartbeat with no build anywhere (the machine's own
    # scheduling delays, shared with other work, show up here too).
    heartbeat = Heartbeat()
    heartbeat.start()
    control = searches(mutable, len(during), args.seed + 2)
    heartbeat.stop.set()
    control_stall = heartbeat.longest
    began = time.perf_counter()
    indexed = EdgeVectorStore(data_dir, "indexed")
    indexed.ensure_collection(384)
    load_s = time.perf_counter() - began
    after = searches(indexed, args.searches, args.seed + 1)
    unindexed = searches(mutable, args.searches, args.seed + 1)
    result["offloaded"] = {
        "copy_s": round(copy_s, 2), "child_build_s": round(child_build_s, 1), "wall_s": round(wall_s, 1),
        "parent_longest_stall_s": round(heartbeat.longest, 2),
        "parent_search_during_build": percentiles(during),
        "control_longest_stall_s": round(control_stall, 2), "control_search_no_build": percentiles(control),
        "load_indexed_copy_s": round(load_s, 2), "search_on_indexed_copy": percentiles(after),
        "search_on_unindexed_shard": percentiles(unindexed),
        "same_points": indexed.count() == mutable.count() == args.points,
    }
    indexed.close()
    mutable.close()


def store_part(args, data_dir: str, result: dict) -> None:
    # What logpipe ships: EdgeVectorStore.optimize(in_child=True) (copy, child build, swap,
    # the points written meanwhile written again), with searches and writes going on.
    served = EdgeVectorStore(data_dir, "served")
    served.ensure_collection(384)
    fill(served, args.points, args.seed)
    heartbeat = Heartbeat()
    heartbeat.start()
    done = threading.Event()
    outcome: list = []

    def build() -> None:
        outcome.append(served.optimize(in_child=True))
        done.set()

    began = time.perf_counter()
    threading.Thread(target=build, daemon=True).start()
    rng = np.random.default_rng(args.seed + 3)
    during, written, slowest = [], 0, 0.0
    while not done.is_set():
        step = time.perf_counter()
        vector = rng.normal(size=384).astype(np.float32)
        served.upsert([VectorPoint(f"w{written}", vector / np.linalg.norm(vector),
                                   {"service": "order-service", "level": "ERROR", "record_id": f"w{written}"})])
        written += 1
        during += searches(served, 1, int(rng.integers(1 << 30)))
        slowest = max(slowest, time.perf_counter() - step)
    wall_s = time.perf_counter() - began
    heartbeat.stop.set()
    result["store_in_child"] = {
        "built": outcome == [True], "wall_s": round(wall_s, 1), "parent_longest_stall_s": round(heartbeat.longest, 2),
        "search_during_build": percentiles(during), "written_during_build": written,
        "slowest_write_and_search_s": round(slowest, 2),
        "all_kept": served.count() == args.points + written,
        "indexed_vectors": served.shard.info().indexed_vectors_count,
        "search_after": percentiles(searches(served, args.searches, args.seed + 4)),
    }
    served.close()


def grown_points(rng, start: int, count: int, centres) -> list[VectorPoint]:
    batch = []
    for index in range(start, start + count):
        vector = centres[index % 40] + rng.normal(0, 0.3, 384).astype(np.float32)
        batch.append(VectorPoint(f"g{index}", vector / np.linalg.norm(vector),
                                 {"service": SERVICES[index % 4], "level": "ERROR" if index % 3 else "WARN",
                                  "message": f"error {index % 40}", "record_id": f"g{index}"}))
    return batch


async def grow_with_schedule(data_dir: str, name: str, settings, args) -> dict:
    """Points arrive at args.rate per second in batches of 1,000 through the vectorizer's schedule."""
    from logpipe.vectorizer.handlers import Vectorizer

    store = EdgeVectorStore(data_dir, name)
    store.ensure_collection(384)
    vectorizer = Vectorizer(settings, pipeline=None, producer=None, store=store)
    rng = np.random.default_rng(args.seed)
    centres = np.random.default_rng(args.seed + 9).normal(size=(40, 384)).astype(np.float32)
    heartbeat = Heartbeat()
    heartbeat.start()
    filters = VectorFilter(services=["order-service"], levels=["ERROR"])
    by_step: dict[int, list[float]] = {}
    builds_seen: list[dict] = []
    slowest_write, written, began = 0.0, 0, time.perf_counter()
    while written < args.points:
        batch = grown_points(rng, written, 1000, centres)
        step = time.perf_counter()
        await asyncio.to_thread(store.upsert, batch)
        slowest_write = max(slowest_write, time.perf_counter() - step)
        written += len(batch)
        # (The first task only reads the shard's state: not a build.)
        building = vectorizer._points is None or (vectorizer._optimizing is not None
                                                  and not vectorizer._optimizing.done())
        vectorizer._maybe_optimize(len(batch))
        if not building and vectorizer._optimizing is not None and not vectorizer._optimizing.done():
            builds_seen.append({"started_at_points": written, "at_s": round(time.perf_counter() - began, 1)})
        for _ in range(args.searches_per_batch):
            query = rng.normal(size=384).astype(np.float32)
            at = time.perf_counter()
            await asyncio.to_thread(store.search, query / np.linalg.norm(query), 20, None)
            by_step.setdefault((written - 1) // 10_000, []).append((time.perf_counter() - at) * 1000)
        # Pace the arrival: the vectorizer writes what ingest forwards, not as fast as it can.
        await asyncio.sleep(max(0.0, written / args.rate - (time.perf_counter() - began)))
    grown_s = time.perf_counter() - began
    state_at_end = store.index_state()
    building_at_end = vectorizer._optimizing is not None and not vectorizer._optimizing.done()
    at_end = searches(store, args.searches, args.seed + 5)
    # Let the builds the schedule asked for finish (a build due once the last one ends starts then).
    while vectorizer._optimizing is not None and not vectorizer._optimizing.done():
        await vectorizer._optimizing
        before = vectorizer._optimizing
        vectorizer._maybe_optimize(0)
        if vectorizer._optimizing is not before and not vectorizer._optimizing.done():
            builds_seen.append({"started_at_points": written, "at_s": round(time.perf_counter() - began, 1)})
    settled_s = time.perf_counter() - began
    heartbeat.stop.set()
    rng_f = np.random.default_rng(args.seed + 6)
    filtered = []
    for _ in range(args.searches):
        query = rng_f.normal(size=384).astype(np.float32)
        at = time.perf_counter()
        store.search(query / np.linalg.norm(query), 20, filters)
        filtered.append((time.perf_counter() - at) * 1000)
    result = {
        "points": store.count(), "all_kept": store.count() == args.points, "grown_s": round(grown_s, 1),
        "settled_s": round(settled_s, 1), "builds": vectorizer.stats.index_builds, "builds_started": builds_seen,
        "index_at_end_of_growth": {"points": state_at_end[0], "indexed": state_at_end[1],
                                   "build_running": building_at_end},
        "index_settled": dict(zip(("points", "indexed"), store.index_state())),
        "slowest_batch_write_s": round(slowest_write, 2), "longest_stall_s": round(heartbeat.longest, 2),
        "search_while_growing": {f"{step * 10}k-{step * 10 + 10}k": percentiles(samples)
                                 for step, samples in sorted(by_step.items())},
        "search_at_end_of_growth": percentiles(at_end),
        "search_settled": percentiles(searches(store, args.searches, args.seed + 5)),
        "search_settled_service_level": percentiles(filtered),
    }
    await vectorizer.close()
    store.close()
    return result


def schedule_part(args, data_dir: str, result: dict) -> None:
    from logpipe.vectorizer.settings import Settings

    shipped = Settings()
    never = Settings(optimize_after_points=0)
    result["schedule"] = {"optimize_after_points": shipped.optimize_after_points, "growth": shipped.optimize_growth,
                          "in_child": shipped.optimize_in_child, "rate_points_per_s": args.rate}
    result["schedule"]["baseline_never_indexed"] = asyncio.run(grow_with_schedule(data_dir, "never", never, args))
    result["schedule"]["shipped"] = asyncio.run(grow_with_schedule(data_dir, "scheduled", shipped, args))
    base = result["schedule"]["baseline_never_indexed"]["search_settled"]["p95_ms"]
    result["schedule"]["p95_ratio_settled_to_baseline"] = round(
        result["schedule"]["shipped"]["search_settled"]["p95_ms"] / base, 3)
    result["schedule"]["p95_ratio_end_of_growth_to_baseline"] = round(
        result["schedule"]["shipped"]["search_at_end_of_growth"]["p95_ms"] / base, 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--searches", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only-store", action="store_true",
                        help="run only the last part (what logpipe ships): for larger --points")
    parser.add_argument("--schedule", action="store_true",
                        help="only the vectorizer's shipped index schedule while the shard grows to --points")
    parser.add_argument("--rate", type=float, default=2000, help="--schedule: points written per second")
    parser.add_argument("--searches-per-batch", type=int, default=5)
    args = parser.parse_args()
    result: dict = {"points": args.points}
    with tempfile.TemporaryDirectory(prefix="logpipe-offload-") as data_dir:
        if args.schedule:
            schedule_part(args, data_dir, result)
            print(json.dumps(result))
            return
        if not args.only_store:
            offloaded_parts(args, data_dir, result)
        store_part(args, data_dir, result)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
