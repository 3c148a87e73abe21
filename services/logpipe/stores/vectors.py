"""Log embeddings in Qdrant: a Qdrant server (`qdrant-client`) or the embedded engine (`qdrant-edge-py`).

QDRANT_URL set: the production backend. Empty: Qdrant Edge, Qdrant's own HNSW engine, in
LOGPIPE_DATA_DIR/qdrant/<collection>, one shard per process (like chdb, one writer per path).
`qdrant-client`'s local mode was not fast enough for filtered search at 100k points.

Point ids are uuid5(record_id), so delivering a log twice overwrites one point.
`ensure_collection` is the one definition of the collection (the operator calls it too).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import multiprocessing
import shutil
import threading
import uuid
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from logpipe.core import tracing
from logpipe.stores import faults

log = logging.getLogger(__name__)

POINT_ID_NAMESPACE = uuid.UUID("2b0e4f7c-51d4-4a3c-8f0e-7d2c5a9b1e63")
# Payload key -> index type. Callers see `novel` as a bool; only novel points store it, as the
# keyword `novelty: "novel"`: qdrant-edge 0.9 turns MatchValue(True) into the integer 1, which
# no bool matches, and every stored field costs the engine about 7 µs per point.
PAYLOAD_INDEXES = {"service": "keyword", "level": "keyword", "timestamp": "datetime",
                   "pattern_id": "integer", "novelty": "keyword"}
_INT64_LIMIT = 1 << 63
# The named sparse vector that holds a point's keywords (hashed terms, BM25-like weights); the
# dense embedding stays the unnamed default vector, so collections made before keep working.
KEYWORDS = "keywords"
# Retention deletes this many points per call to the store (ids in memory at once).
EXPIRE_PAGE = 10_000


class VectorStoreError(RuntimeError):
    """The collection is missing, incompatible or unreachable."""


_POINT_ID_PREFIX = POINT_ID_NAMESPACE.bytes


def point_id(record_id: str) -> str:
    """uuid5(POINT_ID_NAMESPACE, record_id) as text, without building a uuid.UUID (half the
    cost; the vectorizer makes one per error log while it holds the GIL)."""
    digest = bytearray(hashlib.sha1(_POINT_ID_PREFIX + record_id.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def to_stored_pattern_id(pattern_id: int) -> int:
    """Pattern ids are UInt64 in ClickHouse; Qdrant integers are int64, so wrap the top half."""
    pattern_id = int(pattern_id)
    return pattern_id - (1 << 64) if pattern_id >= _INT64_LIMIT else pattern_id


def from_stored_pattern_id(value: Any) -> Any:
    return value + (1 << 64) if isinstance(value, int) and value < 0 else value


def _iso(moment: datetime | str) -> str:
    if isinstance(moment, str):
        return moment
    from logpipe.core.record import format_timestamp

    return format_timestamp(moment)


@dataclass
class VectorFilter:
    """Metadata filters; every field set narrows the result (lists mean any of)."""

    services: list[str] = field(default_factory=list)
    levels: list[str] = field(default_factory=list)
    since: datetime | str | None = None
    until: datetime | str | None = None
    pattern_ids: list[int] = field(default_factory=list)
    novel: bool | None = None
    exclude_record_ids: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.services or self.levels or self.since or self.until or self.pattern_ids
                    or self.novel is not None or self.exclude_record_ids)


@dataclass
class KeywordVector:
    """A sparse vector: term indices (ascending) and their weights."""

    indices: list[int]
    values: list[float]


@dataclass
class VectorPoint:
    record_id: str
    vector: np.ndarray | Sequence[float]
    payload: dict[str, Any]
    keywords: KeywordVector | None = None


@dataclass
class VectorHit:
    record_id: str
    score: float
    payload: dict[str, Any]
    point_id: str = ""


def _payload_out(payload: dict[str, Any] | None) -> dict[str, Any]:
    payload = dict(payload or {})
    payload["novel"] = payload.pop("novelty", None) == "novel"
    if "pattern_id" in payload:
        payload["pattern_id"] = from_stored_pattern_id(payload["pattern_id"])
    return payload


def _payload_in(point: VectorPoint) -> dict[str, Any]:
    payload = dict(point.payload)
    payload["record_id"] = point.record_id
    if "pattern_id" in payload and payload["pattern_id"] is not None:
        payload["pattern_id"] = to_stored_pattern_id(payload["pattern_id"])
    if "timestamp" in payload and isinstance(payload["timestamp"], datetime):
        payload["timestamp"] = _iso(payload["timestamp"])
    if payload.pop("novel", False):
        payload["novelty"] = "novel"
    return payload


def _as_list(vector) -> list[float]:
    if isinstance(vector, list):
        return vector
    return vector.tolist() if isinstance(vector, np.ndarray) else list(vector)


class VectorStore:
    """What every backend offers. Blocking methods; `a*` variants run them off the event loop."""

    collection: str
    backend: str

    def ensure_collection(self, dimension: int) -> bool:
        raise NotImplementedError

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        raise NotImplementedError

    def search(self, vector, limit: int = 20, filters: VectorFilter | None = None,
               score_threshold: float | None = None) -> list[VectorHit]:
        return self.search_batch([vector], limit, filters, score_threshold)[0]

    def search_batch(self, vectors: Sequence, limit: int = 20, filters: VectorFilter | None = None,
                     score_threshold: float | None = None) -> list[list[VectorHit]]:
        raise NotImplementedError

    def search_keywords(self, keywords: KeywordVector, limit: int = 20, filters: VectorFilter | None = None,
                        score_threshold: float | None = None) -> list[VectorHit]:
        """Points sharing the query's keywords, by BM25-like score; [] for a collection without them."""
        raise NotImplementedError

    def has_keywords(self) -> bool:
        return False

    def count(self, filters: VectorFilter | None = None) -> int:
        raise NotImplementedError

    def retrieve(self, record_ids: Iterable[str], with_vectors: bool = False) -> list[dict[str, Any]]:
        raise NotImplementedError

    def dimension(self) -> int | None:
        raise NotImplementedError

    def index_state(self) -> tuple[int, int] | None:
        """(points, indexed vectors) where this process builds the index; None where the server does."""
        return None

    def load_upkeep(self) -> dict[str, Any]:
        """What the vectorizer keeps about this store's upkeep across restarts (deletions since
        the last build); {} where a server does its own."""
        return {}

    def save_upkeep(self, state: dict[str, Any]) -> None:
        """Keep `state` for `load_upkeep` after a restart (nothing where a server does its own)."""

    def expire(self, before: datetime | None = None, keep: int | None = None,
               page: int = EXPIRE_PAGE) -> dict[str, int]:
        """Retention: delete the points whose log is older than `before`, then the oldest points
        beyond the newest `keep` (by the log's time). How many went, by reason ("age", "cap")."""
        deleted = {"age": 0, "cap": 0}
        if before is not None:
            while True:
                ids = self._oldest_ids(page, before)
                if ids:
                    self._delete_ids(ids)
                    deleted["age"] += len(ids)
                if len(ids) < page:
                    break
        if keep is not None:
            excess = self.count() - keep
            while excess > 0:
                ids = self._oldest_ids(min(page, excess))
                if not ids:
                    break  # points without a time cannot be ordered; none are written so
                self._delete_ids(ids)
                deleted["cap"] += len(ids)
                excess -= len(ids)
        return deleted

    def _oldest_ids(self, limit: int, before: datetime | None = None) -> list:
        raise NotImplementedError

    def _delete_ids(self, ids: list) -> None:
        raise NotImplementedError

    def optimize(self, in_child: bool = False, index: bool = True) -> bool:
        """Build indexes for points written since the last call (the server does this itself);
        `in_child`: in a child process, so this process never stalls (embedded engine);
        `index=False` (in a child only): a compaction, which rewrites the segments holding
        deleted points without building HNSW for anything, several times faster."""
        return False

    def ping(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        return None

    async def aensure_collection(self, dimension: int) -> bool:
        faults.check("qdrant")
        return await asyncio.to_thread(self.ensure_collection, dimension)

    async def aupsert(self, points: Sequence[VectorPoint]) -> None:
        faults.check("qdrant")
        await asyncio.to_thread(self.upsert, points)

    async def asearch(self, vector, limit: int = 20, filters: VectorFilter | None = None,
                      score_threshold: float | None = None) -> list[VectorHit]:
        faults.check("qdrant")
        return await asyncio.to_thread(self.search, vector, limit, filters, score_threshold)

    async def asearch_batch(self, vectors: Sequence, limit: int = 20, filters: VectorFilter | None = None,
                            score_threshold: float | None = None) -> list[list[VectorHit]]:
        faults.check("qdrant")
        return await asyncio.to_thread(self.search_batch, vectors, limit, filters, score_threshold)

    async def asearch_keywords(self, keywords: KeywordVector, limit: int = 20, filters: VectorFilter | None = None,
                               score_threshold: float | None = None) -> list[VectorHit]:
        faults.check("qdrant")
        return await asyncio.to_thread(self.search_keywords, keywords, limit, filters, score_threshold)

    async def acount(self, filters: VectorFilter | None = None) -> int:
        faults.check("qdrant")
        return await asyncio.to_thread(self.count, filters)

    async def aretrieve(self, record_ids: Iterable[str], with_vectors: bool = False) -> list[dict[str, Any]]:
        faults.check("qdrant")
        return await asyncio.to_thread(self.retrieve, list(record_ids), with_vectors)

    async def aexpire(self, before: datetime | None = None, keep: int | None = None) -> dict[str, int]:
        faults.check("qdrant")
        return await asyncio.to_thread(self.expire, before, keep)

    async def aping(self) -> bool:
        faults.check("qdrant")
        return await asyncio.to_thread(self.ping)


# -- embedded: Qdrant Edge ----------------------------------------------------------------

_shards: dict[str, Any] = {}
_shards_lock = threading.Lock()
# Points written while a child process builds the index are kept to be written again into the
# indexed copy; past this many the build is given up (memory), and the next one starts afresh.
CHILD_BUILD_JOURNAL_LIMIT = 100_000
DELETIONS_PER_JOURNALED_POINT = 20
# An indexing threshold (KB of vectors per segment) no segment reaches: a compaction.
NEVER_INDEX_KB = 1 << 40


class _SwapGuard:
    """Many users of a shard at once, or one swap of the shard object with nobody using it."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._users = 0
        self._swapping = False

    @contextmanager
    def use(self):
        with self._condition:
            while self._swapping:
                self._condition.wait()
            self._users += 1
        try:
            yield
        finally:
            with self._condition:
                self._users -= 1
                if not self._users:
                    self._condition.notify_all()

    @contextmanager
    def swap(self):
        with self._condition:
            while self._swapping:
                self._condition.wait()
            self._swapping = True
            while self._users:
                self._condition.wait()
        try:
            yield
        finally:
            with self._condition:
                self._swapping = False
                self._condition.notify_all()


class _Journal:
    """What is written to a shard while a child builds its indexed copy, in order: upserts of
    points and deletions of point ids, written again into the copy at the swap."""

    def __init__(self) -> None:
        self.operations: list[tuple[str, list]] = []
        self.size = 0
        self.overflowed = False

    def add(self, points: list) -> None:
        self._add("upsert", points)

    def delete(self, ids: list) -> None:
        self._add("delete", ids)

    def _add(self, kind: str, items: list) -> None:
        if self.overflowed:
            return
        # A deleted point is an id (tens of bytes); a written one is its vector and payload.
        weight = len(items) if kind == "upsert" else len(items) / DELETIONS_PER_JOURNALED_POINT
        if self.size + weight > CHILD_BUILD_JOURNAL_LIMIT:
            self.overflowed, self.operations = True, []
            return
        self.size += weight
        self.operations.append((kind, items))

    def replay(self, shard) -> None:
        import qdrant_edge as qe

        for kind, items in self.operations:
            shard.update(qe.UpdateOperation.upsert_points(items) if kind == "upsert"
                         else qe.UpdateOperation.delete_points(items))


def _edge_filter(filters: VectorFilter | None):
    import qdrant_edge as qe

    if filters is None or filters.is_empty():
        return None
    must: list = []
    if filters.services:
        must.append(qe.FieldCondition("service", match=qe.MatchAny(list(filters.services))))
    if filters.levels:
        must.append(qe.FieldCondition("level", match=qe.MatchAny([str(level).upper() for level in filters.levels])))
    if filters.since or filters.until:
        must.append(qe.FieldCondition("timestamp", range=qe.RangeDateTime(
            gte=_iso(filters.since) if filters.since else None,
            lt=_iso(filters.until) if filters.until else None)))
    if filters.pattern_ids:
        must.append(qe.FieldCondition("pattern_id", match=qe.MatchAny(
            [to_stored_pattern_id(p) for p in filters.pattern_ids])))
    must_not = []
    if filters.novel is not None:
        (must if filters.novel else must_not).append(qe.FieldCondition("novelty", match=qe.MatchValue("novel")))
    if filters.exclude_record_ids:
        must_not.append(qe.HasIdCondition({point_id(r) for r in filters.exclude_record_ids}))
    return qe.Filter(must=must or None, must_not=must_not or None)


class EdgeVectorStore(VectorStore):
    """Qdrant Edge in-process. Writes are searchable at once; `optimize` builds HNSW for them."""

    backend = "edge"

    def __init__(self, data_dir: Path | str, collection: str = "log_embeddings",
                 hnsw_m: int = 16, hnsw_ef_construct: int = 64, search_threads: int | None = None) -> None:
        if not collection or "/" in collection or collection.startswith("."):
            raise ValueError(f"invalid collection name {collection!r}")
        self.collection = collection
        self.path = (Path(data_dir) / "qdrant" / collection).resolve()
        self.hnsw_m = hnsw_m
        self.hnsw_ef_construct = hnsw_ef_construct
        self.search_threads = search_threads
        self._optimize_lock = threading.Lock()
        self._opened = False

    @property
    def shard(self):
        with _shards_lock:
            entry = _shards.get(str(self.path))
        if entry is None:
            raise VectorStoreError(f"collection {self.collection!r} is not open; call ensure_collection first")
        return entry[0]

    @contextmanager
    def _use(self):
        """The shard and its registry entry, held so that a swap (a build in a child) waits."""
        with _shards_lock:
            entry = _shards.get(str(self.path))
        if entry is None:
            raise VectorStoreError(f"collection {self.collection!r} is not open; call ensure_collection first")
        with entry[4].use():
            yield entry[0], entry

    def _config(self, dimension: int, keywords: bool = True):
        import qdrant_edge as qe

        return qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine),
            sparse_vectors={KEYWORDS: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)} if keywords else None,
            hnsw_config=qe.HnswIndexConfig(m=self.hnsw_m, ef_construct=self.hnsw_ef_construct,
                                           full_scan_threshold=10_000, max_indexing_threads=0),
            max_search_threads=self.search_threads,
        )

    def ensure_collection(self, dimension: int) -> bool:
        import qdrant_edge as qe

        created = False
        with _shards_lock:
            entry = _shards.get(str(self.path))
            if entry is None:
                _recover_child_build(self.path)
                if self.path.exists() and any(self.path.iterdir()):
                    try:
                        # Loading with our config makes the engine check the stored vectors' size.
                        shard = _load_edge(self.path, self._config(dimension), self._config(dimension, False))
                    except Exception as exc:
                        raise VectorStoreError(
                            f"collection {self.collection!r} at {self.path} does not fit {dimension}-dimensional "
                            f"cosine vectors ({exc}): use another QDRANT_COLLECTION or remove the directory "
                            "to re-embed") from exc
                else:
                    self.path.mkdir(parents=True, exist_ok=True)
                    shard = qe.EdgeShard.create(str(self.path), self._config(dimension))
                    created = True
                # [shard, dimension, users, has keywords, swap guard, journal of a build in a child]
                entry = _shards[str(self.path)] = [shard, dimension, 0, _edge_has_keywords(self.path), _SwapGuard(),
                                                   None]
            if not self._opened:
                # Services in one process share the shard; the last one to close it closes it.
                entry[2] += 1
                self._opened = True
        shard, existing = entry[0], entry[1]
        if existing != dimension:
            raise VectorStoreError(
                f"collection {self.collection!r} at {self.path} holds {existing}-dimensional vectors, "
                f"not {dimension}: use another QDRANT_COLLECTION or remove the directory to re-embed")
        schema = shard.info().payload_schema
        types = {"keyword": qe.PayloadSchemaType.Keyword, "integer": qe.PayloadSchemaType.Integer,
                 "datetime": qe.PayloadSchemaType.Datetime, "bool": qe.PayloadSchemaType.Bool}
        for name, kind in PAYLOAD_INDEXES.items():
            if name not in schema:
                shard.update(qe.UpdateOperation.create_field_index(name, types[kind]))
        return created

    def dimension(self) -> int | None:
        with _shards_lock:
            entry = _shards.get(str(self.path))
        return entry[1] if entry else None

    def has_keywords(self) -> bool:
        with _shards_lock:
            entry = _shards.get(str(self.path))
        return bool(entry and entry[3])

    @tracing.traced("qdrant upsert", **{"db.system": "qdrant"})
    def upsert(self, points: Sequence[VectorPoint]) -> None:
        import qdrant_edge as qe

        if not points:
            return
        keywords = self.has_keywords()
        # Copies of one error share their keyword vector: convert each object once.
        converted: dict[int, Any] = {}

        def vector(p: VectorPoint):
            if not keywords or p.keywords is None:
                return _as_list(p.vector)
            sparse = converted.get(id(p.keywords))
            if sparse is None:
                sparse = converted[id(p.keywords)] = qe.SparseVector(p.keywords.indices, p.keywords.values)
            return {"": _as_list(p.vector), KEYWORDS: sparse}

        edge_points = [qe.Point(point_id(p.record_id), vector(p), _payload_in(p)) for p in points]
        with self._use() as (shard, entry):
            shard.update(qe.UpdateOperation.upsert_points(edge_points))
            if entry[5] is not None:
                entry[5].add(edge_points)

    @tracing.traced("qdrant keyword search", **{"db.system": "qdrant"})
    def search_keywords(self, keywords: KeywordVector, limit: int = 20, filters: VectorFilter | None = None,
                        score_threshold: float | None = None) -> list[VectorHit]:
        import qdrant_edge as qe

        if not self.has_keywords() or not keywords.indices:
            return []
        with self._use() as (shard, _):
            hits = shard.query(qe.QueryRequest(
                limit=limit, query=qe.Query.Nearest(qe.SparseVector(keywords.indices, keywords.values),
                                                    using=KEYWORDS),
                filter=_edge_filter(filters), with_payload=True, score_threshold=score_threshold))
        return [VectorHit(record_id=str((hit.payload or {}).get("record_id", "")), score=float(hit.score),
                          payload=_payload_out(hit.payload), point_id=str(hit.id)) for hit in hits]

    @tracing.traced("qdrant search", **{"db.system": "qdrant"})
    def search_batch(self, vectors: Sequence, limit: int = 20, filters: VectorFilter | None = None,
                     score_threshold: float | None = None) -> list[list[VectorHit]]:
        import qdrant_edge as qe

        if not len(vectors):
            return []
        edge_filter = _edge_filter(filters)
        requests = [qe.QueryRequest(limit=limit, query=qe.Query.Nearest(_as_list(v)), filter=edge_filter,
                                    with_payload=True, score_threshold=score_threshold) for v in vectors]
        with self._use() as (shard, _):
            if len(requests) == 1:
                results = [shard.query(requests[0])]
            else:
                results = shard.query_batch(qe.QueryBatchRequest(requests))
        return [[VectorHit(record_id=str((hit.payload or {}).get("record_id", "")), score=float(hit.score),
                           payload=_payload_out(hit.payload), point_id=str(hit.id)) for hit in hits]
                for hits in results]

    def count(self, filters: VectorFilter | None = None) -> int:
        import qdrant_edge as qe

        with self._use() as (shard, _):
            return int(shard.count(qe.CountRequest(exact=True, filter=_edge_filter(filters))))

    def retrieve(self, record_ids: Iterable[str], with_vectors: bool = False) -> list[dict[str, Any]]:
        ids = [point_id(r) for r in record_ids]
        if not ids:
            return []
        with self._use() as (shard, _):
            records = shard.retrieve(ids, with_payload=True, with_vector=with_vectors)
        out = []
        for record in records:
            item = {"point_id": str(record.id), "payload": _payload_out(record.payload)}
            if with_vectors:
                vector = record.vector
                item["vector"] = vector.get("", next(iter(vector.values()))) if isinstance(vector, dict) else vector
            out.append(item)
        return out

    def _oldest_ids(self, limit: int, before: datetime | None = None) -> list:
        import qdrant_edge as qe

        condition = None
        if before is not None:
            condition = qe.Filter(must=[qe.FieldCondition("timestamp", range=qe.RangeDateTime(lt=_iso(before)))])
        with self._use() as (shard, _):
            records, _ = shard.scroll(qe.ScrollRequest(
                limit=limit, filter=condition, with_payload=False, with_vector=False,
                order_by=qe.OrderBy("timestamp", direction=qe.Direction.Asc)))
        return [record.id for record in records]

    def _delete_ids(self, ids: list) -> None:
        import qdrant_edge as qe

        with self._use() as (shard, entry):
            shard.update(qe.UpdateOperation.delete_points(ids))
            if entry[5] is not None:
                entry[5].delete(ids)

    def index_state(self) -> tuple[int, int] | None:
        with self._use() as (shard, _):
            info = shard.info()
        return int(info.points_count), int(info.indexed_vectors_count)

    @property
    def _upkeep_path(self) -> Path:
        # Beside the shard, not in it: a build copies the shard's directory.
        return self.path.with_name(self.path.name + ".upkeep.json")

    def load_upkeep(self) -> dict[str, Any]:
        try:
            state = json.loads(self._upkeep_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", self._upkeep_path, exc)
            return {}
        return state if isinstance(state, dict) else {}

    def save_upkeep(self, state: dict[str, Any]) -> None:
        path = self._upkeep_path
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        try:
            partial.write_text(json.dumps(state))
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)

    def optimize(self, in_child: bool = False, index: bool = True) -> bool:
        # One build at a time. qdrant-edge-py 0.9 keeps the GIL while building, so in process
        # the calling process pauses for the whole build; `in_child` builds on a copy in a child
        # process and swaps it in (`_optimize_in_child`).
        if not self._optimize_lock.acquire(blocking=False):
            return False
        try:
            if in_child:
                return self._optimize_in_child(index)
            with self._use() as (shard, _):
                return bool(shard.optimize())
        finally:
            self._optimize_lock.release()

    def _optimize_in_child(self, index: bool = True) -> bool:
        """Build the HNSW index in a child process (its own GIL) on a copy of the shard, then
        swap the indexed copy in. Searches and writes go on meanwhile; what is written during
        the build is written again into the copy at the swap. Pauses this shard's users (not
        the process) twice: for the copy and for opening the indexed copy (about a second each
        at 20,000 points, bench/vectors_offload.py)."""
        with _shards_lock:
            entry = _shards.get(str(self.path))
        if entry is None:
            raise VectorStoreError(f"collection {self.collection!r} is not open; call ensure_collection first")
        building, previous = _build_paths(self.path)
        shutil.rmtree(building, ignore_errors=True)
        with entry[4].swap():
            entry[0].flush()
            shutil.copytree(self.path, building)
            entry[5] = _Journal()
        try:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                pool.submit(_build_index_in_child, str(building), entry[1], self.hnsw_m, self.hnsw_ef_construct,
                            bool(entry[3]), index).result()
        except BaseException:
            entry[5] = None
            shutil.rmtree(building, ignore_errors=True)
            raise
        with entry[4].swap():
            journal, entry[5] = entry[5], None
            if journal.overflowed:
                log.warning("index build for %s given up: more than %d points arrived meanwhile", self.path,
                            CHILD_BUILD_JOURNAL_LIMIT)
                shutil.rmtree(building, ignore_errors=True)
                return False
            import qdrant_edge as qe

            entry[0].flush()
            entry[0].close()
            self.path.rename(previous)
            building.rename(self.path)
            try:
                shard = qe.EdgeShard.load(str(self.path), self._config(entry[1], bool(entry[3])))
            except Exception:
                # Keep serving from the unindexed shard, as before the build.
                self.path.rename(building)
                previous.rename(self.path)
                entry[0] = qe.EdgeShard.load(str(self.path), self._config(entry[1], bool(entry[3])))
                shutil.rmtree(building, ignore_errors=True)
                raise
            journal.replay(shard)
            entry[0] = shard
        shutil.rmtree(previous, ignore_errors=True)
        _give_back_freed_heap()
        return True

    def ping(self) -> bool:
        with _shards_lock:
            entry = _shards.get(str(self.path))
        # Not opened yet (the collection is created on the first batch): nothing can be down.
        if entry is not None:
            entry[0].info()
        return True

    def close(self) -> None:
        with _shards_lock:
            entry = _shards.get(str(self.path))
            if entry is None or not self._opened:
                return
            self._opened = False
            entry[2] -= 1
            if entry[2] > 0:
                entry[0].flush()
                return
            del _shards[str(self.path)]
        entry[0].flush()
        entry[0].close()


def _load_edge(path: Path, config, dense_only_config):
    """Open a stored shard; one made before keyword vectors existed opens without them."""
    import qdrant_edge as qe

    try:
        return qe.EdgeShard.load(str(path), config)
    except Exception as exc:
        if KEYWORDS not in str(exc):
            raise
        log.warning("collection at %s has no keyword vectors (made by an older logpipe): searches use "
                    "vectors only; remove the directory and replay to get hybrid search", path)
        shard = qe.EdgeShard.load(str(path), dense_only_config)
        _without_keywords.add(str(path))
        return shard


def _give_back_freed_heap() -> None:
    """The shard just replaced freed its heap, but glibc keeps freed pages in its arenas, where
    the next shard's differently sized allocations reuse them only in part: RSS crept up by a
    MB or two per swap (bench/vector_memory.py --retention-cycles). malloc_trim returns the free
    pages to the system. Not glibc (musl, macOS): nothing to do."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _build_paths(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + ".building"), path.with_name(path.name + ".previous")


def _recover_child_build(path: Path) -> None:
    """After a crash during a build in a child: a half-built copy is dropped; a crash in the
    middle of the swap leaves the previous shard, which comes back if the new one is missing."""
    building, previous = _build_paths(path)
    if previous.exists() and not path.exists():
        previous.rename(path)
    shutil.rmtree(building, ignore_errors=True)
    shutil.rmtree(previous, ignore_errors=True)


def _build_index_in_child(path: str, dimension: int, hnsw_m: int, hnsw_ef_construct: int, keywords: bool,
                          index: bool = True) -> bool:
    """Runs in a spawned child process: its GIL is its own for the whole build. Without
    `index`, the engine's optimizers only rewrite (vacuum, merge) segments: no segment reaches
    the indexing threshold, so none gets an HNSW graph."""
    store = EdgeVectorStore.__new__(EdgeVectorStore)
    store.hnsw_m, store.hnsw_ef_construct, store.search_threads = hnsw_m, hnsw_ef_construct, None
    import qdrant_edge as qe

    config = store._config(dimension, keywords)
    if not index:
        config = qe.EdgeConfig(vectors=config.vectors, sparse_vectors=config.sparse_vectors,
                               hnsw_config=config.hnsw_config, max_search_threads=config.max_search_threads,
                               optimizers=qe.EdgeOptimizersConfig(indexing_threshold=NEVER_INDEX_KB))
    shard = qe.EdgeShard.load(path, config)
    try:
        return bool(shard.optimize())
    finally:
        shard.flush()
        shard.close()


# Shards opened without keyword vectors (the engine does not report its sparse config).
_without_keywords: set[str] = set()


def _edge_has_keywords(path: Path) -> bool:
    return str(path) not in _without_keywords


# -- production: Qdrant server --------------------------------------------------------------

def _server_filter(filters: VectorFilter | None):
    from qdrant_client import models

    if filters is None or filters.is_empty():
        return None
    must: list = []
    if filters.services:
        must.append(models.FieldCondition(key="service", match=models.MatchAny(any=list(filters.services))))
    if filters.levels:
        must.append(models.FieldCondition(key="level", match=models.MatchAny(
            any=[str(level).upper() for level in filters.levels])))
    if filters.since or filters.until:
        must.append(models.FieldCondition(key="timestamp", range=models.DatetimeRange(
            gte=_iso(filters.since) if filters.since else None,
            lt=_iso(filters.until) if filters.until else None)))
    if filters.pattern_ids:
        must.append(models.FieldCondition(key="pattern_id", match=models.MatchAny(
            any=[to_stored_pattern_id(p) for p in filters.pattern_ids])))
    must_not = []
    if filters.novel is not None:
        (must if filters.novel else must_not).append(
            models.FieldCondition(key="novelty", match=models.MatchValue(value="novel")))
    if filters.exclude_record_ids:
        must_not.append(models.HasIdCondition(has_id=[point_id(r) for r in filters.exclude_record_ids]))
    return models.Filter(must=must or None, must_not=must_not or None)


class ServerVectorStore(VectorStore):
    """A Qdrant server through `qdrant-client` (any `QdrantClient` works, local mode included)."""

    backend = "server"

    def __init__(self, url: str = "", collection: str = "log_embeddings", api_key: str = "",
                 client: Any = None, timeout_s: int = 10) -> None:
        from qdrant_client import QdrantClient

        self.collection = collection
        self.url = url
        self.client = client or QdrantClient(url=url, api_key=api_key or None, timeout=timeout_s)
        self._has_keywords: bool | None = None

    def ensure_collection(self, dimension: int) -> bool:
        from qdrant_client import models

        created = False
        if not self.client.collection_exists(self.collection):
            try:
                self.client.create_collection(
                    self.collection,
                    vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
                    sparse_vectors_config={KEYWORDS: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                )
                created = True
            except Exception:
                # Another replica may have created it a moment ago.
                if not self.client.collection_exists(self.collection):
                    raise
        existing = self.dimension()
        if existing is not None and existing != dimension:
            raise VectorStoreError(
                f"collection {self.collection!r} holds {existing}-dimensional vectors, not {dimension}: "
                "use another QDRANT_COLLECTION or re-embed")
        schema = self.client.get_collection(self.collection).payload_schema or {}
        types = {"keyword": models.PayloadSchemaType.KEYWORD, "integer": models.PayloadSchemaType.INTEGER,
                 "datetime": models.PayloadSchemaType.DATETIME, "bool": models.PayloadSchemaType.BOOL}
        for name, kind in PAYLOAD_INDEXES.items():
            if name not in schema:
                self.client.create_payload_index(self.collection, name, field_schema=types[kind], wait=True)
        return created

    def has_keywords(self) -> bool:
        if self._has_keywords is None:
            sparse = self.client.get_collection(self.collection).config.params.sparse_vectors or {}
            self._has_keywords = KEYWORDS in sparse
        return self._has_keywords

    def dimension(self) -> int | None:
        vectors = self.client.get_collection(self.collection).config.params.vectors
        size = getattr(vectors, "size", None)
        if size is None and isinstance(vectors, dict) and vectors:
            size = next(iter(vectors.values())).size
        return int(size) if size else None

    @tracing.traced("qdrant upsert", **{"db.system": "qdrant"})
    def upsert(self, points: Sequence[VectorPoint]) -> None:
        from qdrant_client import models

        if not points:
            return
        keywords = self.has_keywords()

        def vector(p: VectorPoint):
            if not keywords or p.keywords is None:
                return _as_list(p.vector)
            return {"": _as_list(p.vector),
                    KEYWORDS: models.SparseVector(indices=p.keywords.indices, values=p.keywords.values)}

        self.client.upsert(self.collection, wait=True, points=[
            models.PointStruct(id=point_id(p.record_id), vector=vector(p), payload=_payload_in(p))
            for p in points])

    @tracing.traced("qdrant keyword search", **{"db.system": "qdrant"})
    def search_keywords(self, keywords: KeywordVector, limit: int = 20, filters: VectorFilter | None = None,
                        score_threshold: float | None = None) -> list[VectorHit]:
        from qdrant_client import models

        if not self.has_keywords() or not keywords.indices:
            return []
        response = self.client.query_points(
            self.collection, query=models.SparseVector(indices=keywords.indices, values=keywords.values),
            using=KEYWORDS, limit=limit, query_filter=_server_filter(filters), with_payload=True,
            score_threshold=score_threshold)
        return [VectorHit(record_id=str((hit.payload or {}).get("record_id", "")), score=float(hit.score),
                          payload=_payload_out(hit.payload), point_id=str(hit.id)) for hit in response.points]

    @tracing.traced("qdrant search", **{"db.system": "qdrant"})
    def search_batch(self, vectors: Sequence, limit: int = 20, filters: VectorFilter | None = None,
                     score_threshold: float | None = None) -> list[list[VectorHit]]:
        from qdrant_client import models

        if not len(vectors):
            return []
        query_filter = _server_filter(filters)
        responses = self.client.query_batch_points(self.collection, requests=[
            models.QueryRequest(query=_as_list(v), limit=limit, filter=query_filter, with_payload=True,
                                score_threshold=score_threshold) for v in vectors])
        return [[VectorHit(record_id=str((hit.payload or {}).get("record_id", "")), score=float(hit.score),
                           payload=_payload_out(hit.payload), point_id=str(hit.id)) for hit in response.points]
                for response in responses]

    def count(self, filters: VectorFilter | None = None) -> int:
        return int(self.client.count(self.collection, count_filter=_server_filter(filters), exact=True).count)

    def retrieve(self, record_ids: Iterable[str], with_vectors: bool = False) -> list[dict[str, Any]]:
        ids = [point_id(r) for r in record_ids]
        if not ids:
            return []
        records = self.client.retrieve(self.collection, ids=ids, with_payload=True, with_vectors=with_vectors)
        out = []
        for record in records:
            item = {"point_id": str(record.id), "payload": _payload_out(record.payload)}
            if with_vectors:
                vector = record.vector
                item["vector"] = vector.get("") if isinstance(vector, dict) else vector
            out.append(item)
        return out

    def _oldest_ids(self, limit: int, before: datetime | None = None) -> list:
        from qdrant_client import models

        condition = None
        if before is not None:
            condition = models.Filter(must=[models.FieldCondition(
                key="timestamp", range=models.DatetimeRange(lt=_iso(before)))])
        records, _ = self.client.scroll(self.collection, scroll_filter=condition, limit=limit, with_payload=False,
                                        with_vectors=False,
                                        order_by=models.OrderBy(key="timestamp", direction=models.Direction.ASC))
        return [record.id for record in records]

    def _delete_ids(self, ids: list) -> None:
        from qdrant_client import models

        self.client.delete(self.collection, points_selector=models.PointIdsList(points=ids), wait=True)

    def ping(self) -> bool:
        self.client.get_collections()
        return True

    def close(self) -> None:
        self.client.close()


def open_vector_store(qdrant_url: str, collection: str, data_dir: Path | str, api_key: str = "") -> VectorStore:
    """The server when QDRANT_URL is set, else the embedded engine under DATA_DIR/qdrant."""
    if qdrant_url:
        return ServerVectorStore(qdrant_url, collection, api_key=api_key)
    return EdgeVectorStore(data_dir, collection)


def ensure_collection(qdrant_url: str, collection: str, data_dir: Path | str, dimension: int,
                      api_key: str = "") -> bool:
    """Create the collection (cosine, `dimension`, payload indexes) if missing; True when created."""
    store = open_vector_store(qdrant_url, collection, data_dir, api_key)
    return store.ensure_collection(dimension)
