"""The vectors' retention: points whose log ClickHouse has dropped go (LOG_TTL_DAYS), and the
embedded engine is capped, with an index build after enough deletions to give the memory back
(qdrant-edge frees a deleted point only when a build rewrites its segment: bench/vector_memory.py)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import numpy as np

from prometheus_client import REGISTRY
from logpipe.stores.vectors import EdgeVectorStore, VectorPoint
from logpipe.vectorizer.handlers import Vectorizer
from logpipe.vectorizer.service import IndexSchedule
from logpipe.vectorizer.settings import EMBEDDED_MAX_POINTS, Settings


def test_the_retention_follows_the_logs_and_caps_only_the_embedded_engine():
    settings = Settings()
    assert settings.retention() == settings.log_ttl_days == 90
    assert settings.points_cap() == EMBEDDED_MAX_POINTS == 400_000
    assert Settings(qdrant_url="http://qdrant:6333").points_cap() is None
    assert Settings(qdrant_url="http://qdrant:6333", max_points=1_000_000).points_cap() == 1_000_000
    assert Settings(max_points=0).points_cap() is None
    assert Settings(retention_days=7, log_ttl_days=30).retention() == 7


def test_under_a_cap_a_build_comes_each_time_a_fifth_of_the_shard_was_replaced():
    """At a steady cap, as many points go as arrive: the growth rule never fires again, the
    deletion rule does, so the un-indexed tail and the deleted-but-held points stay bounded."""
    schedule = IndexSchedule(first_after=20_000, growth=2.0)
    cap, step = 400_000, 1_000
    indexed_at, deleted, builds = cap, 0, []
    for arrived in range(step, 2_000_001, step):
        deleted += step
        if schedule.due(cap, indexed_at) or schedule.due_after_deletions(cap, deleted):
            builds.append(arrived)
            indexed_at, deleted = cap, 0
        assert deleted < 0.2 * cap
    assert builds[:3] == [80_000, 160_000, 240_000] and len(builds) == 25
    # A small shard is not rebuilt for a few deletions; no deletions, no build; 0 never builds.
    assert not schedule.due_after_deletions(50_000, 19_999)
    assert schedule.due_after_deletions(50_000, 20_000)
    assert not schedule.due_after_deletions(50_000, 0)
    assert not IndexSchedule(first_after=0).due_after_deletions(50_000, 50_000)


def points(rng, start: int, count: int, newest: datetime) -> list[VectorPoint]:
    """`count` points one second apart, the last at `newest`."""
    vectors = rng.standard_normal((count, 384)).astype(np.float32)
    return [VectorPoint(f"rec-{start + i}", vectors[i] / np.linalg.norm(vectors[i]),
                        {"service": "svc", "level": "ERROR", "message": f"m {start + i}",
                         "timestamp": newest - timedelta(seconds=count - 1 - i)}) for i in range(count)]


async def test_retention_deletes_the_expired_then_the_oldest_and_rebuilds_the_index(tmp_path):
    rng = np.random.default_rng(11)
    now = datetime.now(timezone.utc)
    settings = Settings(optimize_after_points=2_000, optimize_growth=2.0, optimize_in_child=False,
                        retention_days=30, max_points=6_000)
    store = EdgeVectorStore(tmp_path, "retained")
    store.ensure_collection(384)
    vectorizer = Vectorizer(settings, pipeline=None, producer=None, store=store)
    expired_before = REGISTRY.get_sample_value("logpipe_vectorizer_expired_points_total", {"reason": "age"}) or 0
    old = points(rng, 0, 2_000, now - timedelta(days=31))
    recent = points(rng, 2_000, 8_000, now)
    store.upsert(old + recent)
    vectorizer._maybe_optimize(10_000)
    await vectorizer._optimizing
    assert vectorizer.stats.index_builds == 1 and store.index_state()[0] == 10_000

    assert await vectorizer.retain() == {"age": 2_000, "cap": 2_000}
    # The newest 6,000 remain: the 2,000 past 30 days and the 2,000 oldest recent ones are gone.
    assert store.count() == 6_000
    assert store.retrieve(["rec-0", "rec-1999", "rec-2000", "rec-3999"]) == []
    assert [item["payload"]["record_id"] for item in store.retrieve(["rec-4000", "rec-9999"])] \
        == ["rec-4000", "rec-9999"]
    assert store.search(recent[-1].vector, limit=1)[0].record_id == "rec-9999"
    # 4,000 deleted of a 6,000-point shard: a build rewrites what held them (the growth rule
    # alone would wait for 20,000 points).
    assert vectorizer._optimizing is not None
    await vectorizer._optimizing
    assert vectorizer.stats.index_builds == 2
    view = vectorizer.stats_view()["retention"]
    assert view["days"] == 30 and view["max_points"] == 6_000
    assert view["expired"] == {"age": 2_000, "cap": 2_000} and view["deleted_since_build"] == 0
    assert (REGISTRY.get_sample_value("logpipe_vectorizer_expired_points_total", {"reason": "age"}) or 0) \
        - expired_before == 2_000
    # What the vectors dashboard shows: the points, the cap, the deleted points still held.
    assert REGISTRY.get_sample_value("logpipe_vectorizer_points") == 6_000
    assert REGISTRY.get_sample_value("logpipe_vectorizer_points_cap") == 6_000
    assert REGISTRY.get_sample_value("logpipe_vectorizer_deleted_points_held") == 0

    # Within both bounds: nothing goes and nothing is rebuilt.
    assert await vectorizer.retain() == {"age": 0, "cap": 0}
    assert vectorizer._optimizing.done() and vectorizer.stats.index_builds == 2
    await vectorizer.close()
    store.close()


async def test_the_retention_runs_on_its_interval_and_outlives_a_failure(tmp_path):
    from support import wait_for

    rng = np.random.default_rng(12)
    settings = Settings(optimize_after_points=0, retention_interval_seconds=0.05, max_points=100)
    store = EdgeVectorStore(tmp_path, "interval")
    store.ensure_collection(384)
    store.upsert(points(rng, 0, 150, datetime.now(timezone.utc)))
    vectorizer = Vectorizer(settings, pipeline=None, producer=None, store=store)
    failures = []
    real = store.aexpire

    async def flaky(before=None, keep=None):
        if not failures:
            failures.append("down")
            raise ConnectionError("qdrant away")
        return await real(before, keep)

    store.aexpire = flaky
    vectorizer._retention = asyncio.create_task(vectorizer._retain_forever())
    await wait_for(lambda: store.count() == 100, timeout=30, message="the cap was not applied")
    assert failures == ["down"] and vectorizer.stats.expired_by_cap == 50
    await vectorizer.close()
    assert vectorizer._retention.done()
    store.close()


class _CappedStore:
    """A shard held at its cap: as many points deleted as written (what the engine does is
    tested above and in tests/stores); records which builds the vectorizer asks for."""

    def __init__(self, points: int, indexed: int, outcomes: list[bool]) -> None:
        self.points, self.indexed = points, indexed
        self.outcomes = outcomes
        self.builds: list[bool] = []  # index=True: a build, False: a compaction

    def index_state(self):
        return self.points, self.indexed

    def optimize(self, in_child: bool = False, index: bool = True) -> bool:
        self.builds.append(index)
        return self.outcomes.pop(0) if self.outcomes else True

    async def aexpire(self, before=None, keep=None):
        return {"age": 0, "cap": self.deleted}

    async def acount(self):
        return self.points


async def test_builds_that_fall_behind_the_retention_give_way_to_a_compaction_and_a_failure_is_retried():
    settings = Settings(optimize_after_points=20_000, max_points=100_000)
    store = _CappedStore(100_000, 100_000, outcomes=[False])
    vectorizer = Vectorizer(settings, pipeline=None, producer=None, store=store)

    async def replaced(count: int) -> None:
        """`count` points written and as many deleted by the retention, at the cap."""
        vectorizer._maybe_optimize(count)
        store.deleted = count
        await vectorizer.retain()
        if vectorizer._optimizing is not None:
            await vectorizer._optimizing

    await replaced(10_000)
    assert store.builds == []  # a tenth of the shard replaced: not yet
    await replaced(15_000)  # a quarter: an index build, which fails ...
    assert store.builds == [True] and vectorizer.stats.index_builds_failed == 1
    await replaced(5_000)  # ... and is not retried for every batch,
    assert store.builds == [True]
    await replaced(10_000)  # but after 20,000 more changes although the shard stays at its cap.
    assert store.builds == [True, True] and vectorizer.stats.index_builds == 1
    assert vectorizer._deleted_since_build == 0
    # Deletions outran the builds: more deleted points held than live ones. A compaction first
    # (no HNSW: it only gives their memory back), then an index build once due again.
    vectorizer._deleted_since_build = 90_000
    await replaced(20_000)
    assert store.builds == [True, True, False] and vectorizer.stats.compactions == 1
    assert vectorizer.stats_view()["index"]["compactions"] == 1
    await replaced(20_000)
    assert store.builds == [True, True, False, True] and vectorizer.stats.index_builds == 2
    await vectorizer.close()


async def test_deletions_not_yet_given_back_are_remembered_across_a_restart(tmp_path):
    """The deleted points stay held in the shard until a build; a restarted vectorizer must still
    count them, or the build they call for would wait for as many deletions again."""
    rng = np.random.default_rng(5)
    now = datetime.now(timezone.utc)
    store = EdgeVectorStore(tmp_path, "restarted")
    store.ensure_collection(384)
    store.upsert(points(rng, 0, 10_000, now))
    first = Vectorizer(Settings(optimize_in_child=False, max_points=9_000), pipeline=None, producer=None, store=store)
    assert await first.retain() == {"age": 0, "cap": 1_000}
    if first._optimizing is not None:  # the shard's state is read once
        await first._optimizing
    assert first.stats.index_builds == 0  # 1,000 of 10,000: no build due (20,000 by default)
    await first.close()
    store.close()

    store = EdgeVectorStore(tmp_path, "restarted")
    store.ensure_collection(384)
    settings = Settings(optimize_in_child=False, optimize_after_points=2_000, max_points=8_000)
    second = Vectorizer(settings, pipeline=None, producer=None, store=store)
    assert second.stats_view()["retention"]["deleted_since_build"] == 1_000
    assert REGISTRY.get_sample_value("logpipe_vectorizer_deleted_points_held") == 1_000
    # 1,000 more: 2,000 deleted since the last build, which calls for one.
    assert await second.retain() == {"age": 0, "cap": 1_000}
    assert second._optimizing is not None
    await second._optimizing
    assert second.stats.index_builds == 1 and second.stats_view()["retention"]["deleted_since_build"] == 0
    await second.close()
    third = Vectorizer(settings, pipeline=None, producer=None, store=store)
    assert third.stats_view()["retention"]["deleted_since_build"] == 0
    await third.close()
    store.close()


class _ServerStore:
    """A Qdrant server: it indexes and frees deleted points on its own (index_state None)."""

    def index_state(self):
        return None

    async def aexpire(self, before=None, keep=None):
        return {"age": 5_000, "cap": 0}

    async def acount(self):
        return 1_000_000


async def test_a_qdrant_server_holds_no_deleted_points_for_the_vectorizer_to_count():
    vectorizer = Vectorizer(Settings(qdrant_url="http://qdrant:6333"), pipeline=None, producer=None,
                            store=_ServerStore())
    vectorizer._maybe_optimize(100)
    await vectorizer._optimizing  # learns that the server indexes itself
    assert await vectorizer.retain() == {"age": 5_000, "cap": 0}
    assert vectorizer.stats_view()["retention"]["deleted_since_build"] == 0
    assert REGISTRY.get_sample_value("logpipe_vectorizer_deleted_points_held") == 0
    assert REGISTRY.get_sample_value("logpipe_vectorizer_points") == 1_000_000
    assert REGISTRY.get_sample_value("logpipe_vectorizer_points_cap") == 0  # no cap with a server
    await vectorizer.close()
