"""Semantic search and novelty with the real model and the real embedded Qdrant."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from logpipe.ai.embeddings import Embedder
from logpipe.ai.search import SearchError, judge_novelty, nearest_earlier_errors, semantic_search
from logpipe.stores.cache import MemoryCache
from logpipe.stores.vectors import EdgeVectorStore, VectorHit, VectorPoint

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)

DATABASE = [
    "Database connection timeout after {n} ms to postgres-primary:5432",
    "could not connect to database server: connection refused (host=db-{n}.internal port=5432)",
    "SQL connection pool exhausted: timed out waiting {n}s for a free database connection",
    "psycopg.OperationalError: connection to database 'orders' timed out",
]
UNRELATED = [
    "Payment declined for order {n}: card expired",
    "Image thumbnail generation failed: unsupported format webp",
    "User {n} entered an invalid password too many times; account locked",
    "Disk quota exceeded on volume /var/lib/uploads ({n}% used)",
    "Template rendering error: missing variable 'first_name' in welcome email",
    "Rate limit exceeded for API key ending in {n}",
]


def generated_logs(seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    logs = []
    for index in range(120):
        database = index % 4 == 0
        template = rng.choice(DATABASE if database else UNRELATED)
        logs.append({
            "record_id": f"r{index}", "message": template.format(n=rng.randint(1, 9999)),
            "service": "orders" if database else rng.choice(["checkout", "media", "auth", "mailer"]),
            "level": "ERROR" if index % 3 else "WARN", "timestamp": T0 + timedelta(minutes=index),
            "trace_id": f"{index:032x}", "pattern_id": 100 + DATABASE.index(template) if database else 0,
            "category": "database" if database else "other",
        })
    return logs


@pytest.fixture
async def indexed(embedding_backend, tmp_path):
    embedder = Embedder(embedding_backend, MemoryCache())
    store = EdgeVectorStore(tmp_path, "search_logs")
    store.ensure_collection(embedder.dimension)
    logs = generated_logs()
    vectors = await embedder.embed([log["message"] for log in logs])
    store.upsert([VectorPoint(log["record_id"], vector, {k: v for k, v in log.items() if k != "category"})
                  for log, vector in zip(logs, vectors)])
    yield embedder, store, {log["record_id"]: log for log in logs}
    store.close()


async def test_database_query_ranks_database_errors_first(indexed):
    embedder, store, logs = indexed
    hits = await semantic_search("database connection timeout", embedder, store, top_k=20)
    assert len(hits) == 20 and [h["rank"] for h in hits] == list(range(1, 21))
    categories = [logs[h["record_id"]]["category"] for h in hits]
    # 30 database errors exist: every one of the top 20 is one of them.
    assert categories == ["database"] * 20, [h["payload"]["message"] for h in hits]
    best_other = max(h["score"] for h in await semantic_search(
        "database connection timeout", embedder, store, top_k=200) if logs[h["record_id"]]["category"] == "other")
    assert hits[-1]["score"] > best_other
    first = hits[0]["payload"]
    assert set(first) >= {"timestamp", "service", "level", "message", "trace_id", "pattern_id", "record_id"}


async def test_filters_narrow_the_hits(indexed):
    embedder, store, logs = indexed
    hits = await semantic_search("database connection timeout", embedder, store, top_k=200,
                                 service="orders", level="warn")
    expected = {r for r, log in logs.items() if log["service"] == "orders" and log["level"] == "WARN"}
    assert {h["record_id"] for h in hits} == expected
    window = await semantic_search("payment", embedder, store, top_k=200,
                                   since=T0 + timedelta(minutes=30), until=T0 + timedelta(minutes=60))
    assert {h["record_id"] for h in window} == {f"r{i}" for i in range(30, 60)}
    pattern = await semantic_search("anything", embedder, store, top_k=200, pattern_id=100)
    assert pattern and all(h["payload"]["pattern_id"] == 100 for h in pattern)


@pytest.mark.parametrize("kwargs,message", [
    ({"query": ""}, "non-empty"),
    ({"query": "x", "top_k": 0}, "top_k"),
    ({"query": "x", "top_k": 201}, "top_k"),
    ({"query": "x" * 8193}, "limit"),
    ({"query": "x", "level": "LOUD"}, "level"),
    ({"query": "x", "since": T0, "until": T0}, "before"),
    ({"query": "x", "pattern_id": "abc"}, "integer"),
])
async def test_bad_queries_say_why(indexed, kwargs, message):
    embedder, store, _ = indexed
    query = kwargs.pop("query")
    with pytest.raises(SearchError, match=message):
        await semantic_search(query, embedder, store, **kwargs)


def test_judge_novelty_counts_earlier_messages_in_the_batch():
    a = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    b = np.array([0.0, 1.0, 0.0], dtype=np.float32)
    near_a = np.array([0.96, 0.28, 0.0], dtype=np.float32)
    stored = [VectorHit("old-1", 0.95, {}), None, None]
    verdicts = judge_novelty(np.stack([a, b, near_a]), ["x", "y", "z"], stored, threshold=0.8)
    assert [v.novel for v in verdicts] == [False, True, False]
    assert verdicts[0].nearest_record_id == "old-1"
    assert verdicts[1].nearest_record_id == "x" and verdicts[1].nearest_score == pytest.approx(0.0)
    assert verdicts[2].nearest_record_id == "x" and verdicts[2].nearest_score == pytest.approx(0.96)


async def test_a_new_kind_of_error_is_novel_and_a_known_one_is_not(indexed):
    embedder, store, _ = indexed
    texts = ["could not connect to database server: connection refused (host=db-77.internal port=5432)",
             "TLS handshake failed: certificate for ldap.internal expired"]
    vectors = await embedder.embed(texts)
    nearest = await nearest_earlier_errors(store, vectors, ["new-1", "new-2"])
    verdicts = judge_novelty(vectors, ["new-1", "new-2"], nearest, threshold=0.75)
    assert [v.novel for v in verdicts] == [False, True]
    assert nearest[0].payload["level"] in ("ERROR", "FATAL")
