"""When the vectorizer builds the embedded engine's HNSW index: a geometric schedule, so the
un-indexed tail a search scans stays bounded and a high error rate cannot keep a build running."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from logpipe.stores.vectors import EdgeVectorStore, VectorPoint
from logpipe.vectorizer.handlers import Vectorizer
from logpipe.vectorizer.service import IndexSchedule
from logpipe.vectorizer.settings import Settings


def simulate(schedule: IndexSchedule, final: int, step: int) -> list[int]:
    """The shard sizes at which builds start as points arrive `step` at a time."""
    builds, indexed_at = [], 0
    for points in range(step, final + 1, step):
        if schedule.due(points, indexed_at):
            builds.append(points)
            indexed_at = points
    return builds


def test_builds_come_at_the_first_threshold_then_each_doubling():
    builds = simulate(IndexSchedule(first_after=20_000, growth=2.0), 1_000_000, 1_000)
    assert builds == [20_000, 40_000, 80_000, 160_000, 320_000, 640_000]
    # All builds together handle less than twice the final shard, however fast points come.
    assert sum(builds) < 2 * 1_000_000


def test_the_unindexed_tail_stays_below_the_indexed_part():
    schedule = IndexSchedule(first_after=20_000, growth=2.0)
    indexed_at = 0
    for points in range(500, 2_000_001, 500):
        if schedule.due(points, indexed_at):
            indexed_at = points
        assert points - indexed_at < max(20_000, indexed_at)
    # At 100,000 points (the search goal) the last build saw 80,000: 20,000 are un-indexed.
    assert simulate(schedule, 100_000, 500)[-1] == 80_000


def test_a_slower_growth_builds_more_often_and_zero_never_builds():
    builds = simulate(IndexSchedule(first_after=10_000, growth=1.5), 100_000, 500)
    # Never for fewer than first_after new points, so a small shard is not rebuilt for a few.
    assert builds == [10_000, 20_000, 30_000, 45_000, 67_500]
    assert simulate(IndexSchedule(first_after=0), 1_000_000, 1_000) == []
    # Big batches: the build comes at the first batch past the threshold, once.
    assert simulate(IndexSchedule(first_after=20_000, growth=2.0), 100_000, 30_000) == [30_000, 60_000]


def test_the_defaults_build_the_index():
    settings = Settings()
    assert settings.optimize_after_points == 20_000 and settings.optimize_growth == 2.0
    assert settings.optimize_in_child


def points(rng, start: int, count: int, dim: int = 384) -> list[VectorPoint]:
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    return [VectorPoint(f"rec-{start + i}", vectors[i] / np.linalg.norm(vectors[i]),
                        {"service": "svc", "level": "ERROR", "message": f"m {start + i}"}) for i in range(count)]


async def grow(vectorizer: Vectorizer, store: EdgeVectorStore, rng, start: int, count: int,
               write_during: bool = False) -> list[VectorPoint]:
    """Write `count` points as a batch would and let the vectorizer's schedule act on them;
    with `write_during`, go on writing small batches while a build it started runs (returned)."""
    store.upsert(points(rng, start, count))
    vectorizer._maybe_optimize(count)
    written: list[VectorPoint] = []
    while (write_during and vectorizer._optimizing is not None and not vectorizer._optimizing.done()
           and len(written) < 5_000):
        batch = points(rng, start + count + len(written), 10)
        await asyncio.to_thread(store.upsert, batch)
        written += batch
        await asyncio.sleep(0)
    if vectorizer._optimizing is not None:
        await vectorizer._optimizing
    return written


async def test_the_vectorizer_builds_the_index_as_the_shard_grows_and_after_a_restart(tmp_path):
    """8,000 x 384 floats is the smallest shard the engine indexes at all. The second build
    runs in a child process, as shipped, while writes go on: every one of them is kept."""
    rng = np.random.default_rng(5)
    settings = Settings(optimize_after_points=8_000, optimize_growth=2.0, optimize_in_child=False)
    store = EdgeVectorStore(tmp_path, "scheduled")
    store.ensure_collection(384)
    vectorizer = Vectorizer(settings, pipeline=None, producer=None, store=store)
    await grow(vectorizer, store, rng, 0, 5_000)
    assert vectorizer.stats.index_builds == 0 and store.index_state() == (5_000, 0)
    await grow(vectorizer, store, rng, 5_000, 3_000)
    assert vectorizer.stats.index_builds == 1
    assert store.index_state()[1] >= 8_000
    await grow(vectorizer, store, rng, 8_000, 4_000)  # 12,000: not yet twice 8,000
    assert vectorizer.stats.index_builds == 1
    vectorizer.settings.optimize_in_child = True
    during = await grow(vectorizer, store, rng, 12_000, 4_000, write_during=True)
    assert vectorizer.stats.index_builds == 2 and during
    total = 16_000 + len(during)
    assert store.count() == total
    assert store.index_state()[1] >= 16_000
    assert len(store.retrieve([p.record_id for p in during])) == len(during)
    assert store.search(during[-1].vector, limit=1)[0].record_id == during[-1].record_id
    view = vectorizer.stats_view()["index"]
    assert view["builds"] == 2 and 16_000 <= view["indexed_at_points"] <= total and not view["building"]
    await vectorizer.close()

    # A restarted vectorizer reads what the last build indexed: no build until twice that.
    restarted = Vectorizer(settings, pipeline=None, producer=None, store=store)
    await grow(restarted, store, rng, total, 1_000)
    assert restarted.stats.index_builds == 0
    assert restarted.stats_view()["index"]["indexed_at_points"] >= 16_000
    assert store.count() == total + 1_000
    assert store.search(points(np.random.default_rng(5), 0, 1)[0].vector, limit=1)[0].record_id == "rec-0"
    await restarted.close()
    store.close()


class _ServerLikeStore:
    """A store that indexes on its own (a Qdrant server): index_state is None."""

    def __init__(self) -> None:
        self.state_reads = 0
        self.optimized = 0

    def index_state(self):
        self.state_reads += 1
        return None

    def optimize(self, in_child: bool = False) -> bool:
        self.optimized += 1
        return True


class _BrokenStateStore(_ServerLikeStore):
    def index_state(self):
        self.state_reads += 1
        raise ConnectionError("shard closed")


@pytest.mark.parametrize("store_class", [_ServerLikeStore, _BrokenStateStore], ids=["indexes-itself", "unreadable"])
async def test_a_store_without_a_readable_local_index_is_asked_once_and_never_built(store_class):
    """A server that indexes itself answers None; a shard whose state cannot be read fails:
    neither is asked again at every batch, and nothing is built."""
    store = store_class()
    vectorizer = Vectorizer(Settings(optimize_after_points=10), pipeline=None, producer=None, store=store)
    for _ in range(5):
        vectorizer._maybe_optimize(1_000)
        if vectorizer._optimizing is not None:
            await vectorizer._optimizing
    assert store.state_reads == 1 and store.optimized == 0
    assert vectorizer.stats_view()["index"]["builds"] == 0
    await vectorizer.close()
