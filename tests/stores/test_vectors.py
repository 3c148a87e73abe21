"""Vector store: the embedded engine (Qdrant Edge) and the server adapter (qdrant-client).

The server adapter runs here against qdrant-client's local mode: the same client calls a
Qdrant server receives.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from logpipe.stores import vectors as vectors_module
from logpipe.stores.vectors import (
    EdgeVectorStore,
    ServerVectorStore,
    VectorFilter,
    VectorPoint,
    VectorStoreError,
    ensure_collection,
    point_id,
)

DIM = 16
T0 = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def make_points(n: int = 40) -> list[VectorPoint]:
    return [VectorPoint(f"rec-{i}", unit(i), {
        "timestamp": T0 + timedelta(minutes=i), "service": f"svc-{i % 4}",
        "level": "ERROR" if i % 2 else "WARN", "message": f"message {i}", "trace_id": f"t{i}",
        "pattern_id": (1 << 63) + i if i % 10 == 0 else i % 5,
    }) for i in range(n)]


@pytest.fixture(params=["edge", "server"])
def store(request, tmp_path):
    if request.param == "edge":
        instance = EdgeVectorStore(tmp_path, "test_logs")
    else:
        from qdrant_client import QdrantClient

        instance = ServerVectorStore(collection="test_logs", client=QdrantClient(":memory:"))
    instance.ensure_collection(DIM)
    yield instance
    instance.close()


def test_collection_is_created_once_with_indexes(store):
    assert store.ensure_collection(DIM) is False  # second call: nothing to do
    assert store.dimension() == DIM
    assert store.count() == 0


def test_dimension_mismatch_is_refused(store):
    with pytest.raises(VectorStoreError, match="dimensional"):
        store.ensure_collection(DIM + 1)


def test_point_ids_are_the_uuid5_of_the_record_id():
    """Collections written before point_id was hand-rolled hold uuid5 ids: a replayed record
    must land on the same point, not beside it."""
    import uuid

    from logpipe.stores.vectors import POINT_ID_NAMESPACE

    for record_id in ["rec-3", "0ed90475-9531-485d-9d9d-c9f81818e811", "bench-1-99", "ünïcode/ïd", "x" * 128]:
        assert point_id(record_id) == str(uuid.uuid5(POINT_ID_NAMESPACE, record_id))


def test_reupsert_is_idempotent(store):
    points = make_points(10)
    store.upsert(points)
    store.upsert(points)
    assert store.count() == 10
    [record] = store.retrieve(["rec-3"])
    assert record["point_id"] == point_id("rec-3")
    assert record["payload"]["message"] == "message 3"
    assert record["payload"]["timestamp"] == "2026-11-25T10:03:00.000Z"


def test_search_ranks_and_filters(store):
    store.upsert(make_points())
    hits = store.search(unit(7), limit=5)
    assert hits[0].record_id == "rec-7" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    only = store.search(unit(7), limit=50, filters=VectorFilter(services=["svc-1"], levels=["error"]))
    assert only and all(h.payload["service"] == "svc-1" and h.payload["level"] == "ERROR" for h in only)
    assert {h.record_id for h in only} == {f"rec-{i}" for i in range(40) if i % 4 == 1}

    window = store.search(unit(7), limit=50, filters=VectorFilter(
        since=T0 + timedelta(minutes=10), until=T0 + timedelta(minutes=20)))
    assert {h.record_id for h in window} == {f"rec-{i}" for i in range(10, 20)}

    # Pattern ids are UInt64 in ClickHouse: the top half survives the round trip.
    big = store.search(unit(20), limit=50, filters=VectorFilter(pattern_ids=[(1 << 63) + 20]))
    assert [h.record_id for h in big] == ["rec-20"] and big[0].payload["pattern_id"] == (1 << 63) + 20

    excluded = store.search(unit(7), limit=1, filters=VectorFilter(exclude_record_ids=["rec-7"]))
    assert excluded[0].record_id != "rec-7"
    assert store.count(VectorFilter(levels=["WARN"])) == 20


def test_batch_search_keeps_order(store):
    store.upsert(make_points())
    results = store.search_batch([unit(3), unit(30)], limit=1)
    assert [r[0].record_id for r in results] == ["rec-3", "rec-30"]


def test_edge_collection_survives_restart(tmp_path):
    first = EdgeVectorStore(tmp_path, "persisted")
    assert first.ensure_collection(DIM) is True
    first.upsert(make_points(5))
    first.close()
    again = EdgeVectorStore(tmp_path, "persisted")
    assert again.ensure_collection(DIM) is False
    assert again.count() == 5
    assert again.search(unit(2), limit=1)[0].record_id == "rec-2"
    again.close()
    wrong = EdgeVectorStore(tmp_path, "persisted")
    with pytest.raises(VectorStoreError):
        wrong.ensure_collection(DIM * 2)


def test_the_upkeep_state_is_kept_beside_the_shard_and_a_damaged_one_is_ignored(tmp_path):
    store = EdgeVectorStore(tmp_path, "kept")
    assert store.load_upkeep() == {}
    store.ensure_collection(DIM)
    store.save_upkeep({"deleted_since_build": 1234})
    # Beside the shard's directory, so a build's copy of the shard does not carry it.
    assert not any(p.name.endswith("upkeep.json") for p in store.path.rglob("*"))
    assert EdgeVectorStore(tmp_path, "kept").load_upkeep() == {"deleted_since_build": 1234}
    store._upkeep_path.write_text("{not json")
    assert store.load_upkeep() == {}
    store.close()


def test_edge_optimize_builds_index_and_search_still_answers(tmp_path):
    store = EdgeVectorStore(tmp_path, "optimized")
    store.ensure_collection(DIM)
    store.upsert(make_points(200))
    store.optimize()
    assert store.count() == 200
    assert store.search(unit(150), limit=1)[0].record_id == "rec-150"
    store.close()


def test_an_index_built_in_a_child_keeps_what_is_written_meanwhile(tmp_path):
    """The build runs in a child process; searches and writes go on, nothing written is lost."""
    import threading

    dim = 384  # big enough (8,000 x 384 floats) for the engine to build an HNSW index at all
    rng = np.random.default_rng(3)

    def points(start: int, count: int) -> list[VectorPoint]:
        vectors = rng.standard_normal((count, dim)).astype(np.float32)
        return [VectorPoint(f"rec-{start + i}", vectors[i] / np.linalg.norm(vectors[i]),
                            {"service": "svc", "level": "ERROR", "message": f"m {start + i}"}) for i in range(count)]

    store = EdgeVectorStore(tmp_path, "child_built")
    store.ensure_collection(dim)
    store.upsert(points(0, 8000))
    assert store.shard.info().indexed_vectors_count == 0
    outcome: list = []
    build = threading.Thread(target=lambda: outcome.append(store.optimize(in_child=True)))
    build.start()
    written: list[VectorPoint] = []
    deadline = datetime.now() + timedelta(minutes=5)
    while build.is_alive() and datetime.now() < deadline:
        batch = points(8000 + len(written), 20)
        store.upsert(batch)
        written += batch
        assert store.search(batch[-1].vector, limit=1)[0].record_id == batch[-1].record_id
    build.join(timeout=60)
    assert outcome == [True] and written
    assert store.shard.info().indexed_vectors_count >= 8000
    assert store.count() == 8000 + len(written)
    assert len(store.retrieve([p.record_id for p in written])) == len(written)
    assert store.search(written[0].vector, limit=1)[0].record_id == written[0].record_id
    assert sorted(path.name for path in (tmp_path / "qdrant").iterdir()) == ["child_built"]
    store.close()
    again = EdgeVectorStore(tmp_path, "child_built")
    again.ensure_collection(dim)
    assert again.count() == 8000 + len(written)
    again.close()


def test_a_crash_during_a_build_in_a_child_leaves_the_shard_as_it_was(tmp_path):
    import shutil

    store = EdgeVectorStore(tmp_path, "crashed")
    store.ensure_collection(DIM)
    store.upsert(make_points(40))
    store.close()
    root = tmp_path / "qdrant"
    # A half-built copy is dropped ...
    shutil.copytree(root / "crashed", root / "crashed.building")
    store = EdgeVectorStore(tmp_path, "crashed")
    store.ensure_collection(DIM)
    assert store.count() == 40 and sorted(p.name for p in root.iterdir()) == ["crashed"]
    store.close()
    # ... and a crash between moving the shard aside and moving the copy in brings it back.
    (root / "crashed").rename(root / "crashed.previous")
    store = EdgeVectorStore(tmp_path, "crashed")
    store.ensure_collection(DIM)
    assert store.count() == 40 and store.search(unit(7), limit=1)[0].record_id == "rec-7"
    assert sorted(p.name for p in root.iterdir()) == ["crashed"]
    store.close()


def test_ensure_collection_function_for_the_operator(tmp_path):
    assert ensure_collection("", "op_logs", tmp_path, DIM) is True
    assert ensure_collection("", "op_logs", tmp_path, DIM) is False
    assert (tmp_path / "qdrant" / "op_logs").is_dir()


def test_novel_flag_round_trips_and_filters(store):
    points = make_points(12)
    for index, point in enumerate(points):
        point.payload["novel"] = index % 4 == 0
    store.upsert(points)
    assert store.count(VectorFilter(novel=True)) == 3
    assert store.count(VectorFilter(novel=False)) == 9
    assert store.retrieve(["rec-4"])[0]["payload"]["novel"] is True
    assert store.retrieve(["rec-5"])[0]["payload"]["novel"] is False
    hits = store.search(unit(4), limit=12, filters=VectorFilter(novel=True))
    assert {h.record_id for h in hits} == {"rec-0", "rec-4", "rec-8"} and all(h.payload["novel"] for h in hits)


def test_expire_deletes_by_age_then_the_oldest_beyond_the_cap(store):
    """Retention (the vectorizer's): points whose log is older than `before` go, then the
    oldest by the log's time until `keep` remain; the newest stay searchable."""
    store.upsert(make_points(40))  # rec-i at T0 + i minutes
    assert store.expire(before=T0 + timedelta(minutes=10), keep=25, page=4) == {"age": 10, "cap": 5}
    assert store.count() == 25
    left = {item["payload"]["record_id"] for item in store.retrieve([f"rec-{i}" for i in range(40)])}
    assert left == {f"rec-{i}" for i in range(15, 40)}
    assert store.search(unit(39), limit=1)[0].record_id == "rec-39"
    # Nothing past either bound: nothing goes.
    assert store.expire(before=T0, keep=25) == {"age": 0, "cap": 0}
    assert store.expire(keep=None) == {"age": 0, "cap": 0} and store.count() == 25


def test_points_deleted_during_a_build_in_a_child_stay_deleted(tmp_path):
    """Retention may delete while a child builds the indexed copy: the copy swapped in gets the
    deletions too, in order with the writes (a point written again after its deletion stays)."""
    import threading

    dim = 384
    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((8_040, dim)).astype(np.float32)
    stored = [VectorPoint(f"rec-{i}", vectors[i] / np.linalg.norm(vectors[i]),
                          {"service": "svc", "level": "ERROR", "message": f"m {i}",
                           "timestamp": T0 + timedelta(seconds=i)}) for i in range(8_040)]
    store = EdgeVectorStore(tmp_path, "retained")
    store.ensure_collection(dim)
    store.upsert(stored[:8_000])
    outcome: list = []
    build = threading.Thread(target=lambda: outcome.append(store.optimize(in_child=True)))
    build.start()
    copying = threading.Event()  # never set: a bounded pause between looks
    # The build takes its copy under the swap guard; the first use after it sees the journal.
    entry = vectors_module._shards[str(store.path)]  # noqa: SLF001 - the test looks inside the store
    deadline = datetime.now() + timedelta(minutes=2)
    while entry[5] is None and build.is_alive() and datetime.now() < deadline:
        copying.wait(0.01)
    assert store.expire(keep=7_000) == {"age": 0, "cap": 1_000}  # rec-0 .. rec-999
    store.upsert(stored[8_000:])
    store.upsert(stored[:1])  # rec-0 comes back after its deletion
    # All of it happened while the child built the copy, so the copy gets it from the journal.
    assert build.is_alive() and entry[5] is not None and entry[5].size == 1_000 / 20 + 41
    build.join(timeout=300)
    assert outcome == [True]
    assert store.shard.info().indexed_vectors_count >= 7_000
    assert store.count() == 7_041
    assert [item["payload"]["record_id"] for item in store.retrieve(["rec-0", "rec-1", "rec-999", "rec-8039"])] \
        == ["rec-0", "rec-8039"]
    store.close()


def test_a_compaction_in_a_child_drops_deleted_points_without_indexing(tmp_path):
    """`optimize(in_child=True, index=False)`: the copy is rewritten without the deleted points
    and without HNSW for anything new (what the vectorizer runs when builds fall behind)."""
    dim = 384
    rng = np.random.default_rng(6)
    vectors = rng.standard_normal((12_000, dim)).astype(np.float32)
    stored = [VectorPoint(f"rec-{i}", vectors[i] / np.linalg.norm(vectors[i]),
                          {"service": "svc", "level": "ERROR", "message": f"m {i}",
                           "timestamp": T0 + timedelta(seconds=i)}) for i in range(12_000)]
    store = EdgeVectorStore(tmp_path, "compacted")
    store.ensure_collection(dim)
    store.upsert(stored[:8_000])
    assert store.optimize(in_child=True)
    built = store.index_state()
    assert built[0] == 8_000 and built[1] >= 8_000  # the dense vectors are in the HNSW graph
    store.upsert(stored[8_000:])
    assert store.expire(keep=6_000) == {"age": 0, "cap": 6_000}
    assert store.optimize(in_child=True, index=False)
    points, indexed = store.index_state()
    assert points == 6_000 and store.count() == 6_000
    # The segment that held the deleted points is rewritten without its graph, and the 4,000
    # written after the build are not indexed (a full build of the same copy indexes some).
    assert indexed == 0
    assert store.retrieve(["rec-0", "rec-5999"]) == []
    assert store.search(stored[-1].vector, limit=1)[0].record_id == "rec-11999"
    assert store.search(stored[6_000].vector, limit=1)[0].record_id == "rec-6000"
    store.close()
