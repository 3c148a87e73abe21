"""The vectorizer's batch logic against the real embedded Qdrant (and the real model where it matters)."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta, timezone

import numpy as np
import orjson
import pytest

from logpipe.ai.embeddings import EmbedderUnavailable, EmbeddingError
from logpipe.core.circuit import DependencyUnavailable
from logpipe.patterns.masking import mask_many
from logpipe.stores import faults
from logpipe.stores.vectors import EdgeVectorStore, VectorFilter
from logpipe.vectorizer.service import QueueMessage, VectorizerPipeline, decode, with_retries

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)


def record(index: int, message: str, level: str = "ERROR", service: str = "orders", **extra) -> dict:
    return {"record_id": f"rec-{index}", "message": message, "level": level, "service": service,
            "timestamp": (T0 + timedelta(seconds=index)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "trace_id": f"{index:032x}", "pattern_id": 7, **extra}


def messages(records: list[dict | bytes]) -> list[QueueMessage]:
    return [QueueMessage(r if isinstance(r, bytes) else orjson.dumps(r), "q", 0, offset)
            for offset, r in enumerate(records)]


class CountingEmbedder:
    """Deterministic unit vectors per text, counting what it was asked (or failing on demand)."""

    # 64 dimensions: two unrelated texts land near-orthogonal (cosine sd 0.125), never above a
    # 0.75 novelty threshold by chance.
    def __init__(self, dimension: int = 64, fail_times: int = 0,
                 error: Exception = ConnectionError("embedder unavailable")) -> None:
        self.dimension = dimension
        self.fail_times = fail_times
        self.error = error
        self.calls: list[list[str]] = []

    async def embed(self, texts):
        self.calls.append(list(texts))
        if self.fail_times:
            self.fail_times -= 1
            raise self.error
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
            vector = np.random.default_rng(seed).standard_normal(self.dimension)
            rows.append(vector / np.linalg.norm(vector))
        return np.array(rows, dtype=np.float32)


@pytest.fixture
def store(tmp_path):
    instance = EdgeVectorStore(tmp_path, "vectorizer_test")
    yield instance
    instance.close()


async def no_sleep(_seconds):
    return None


async def test_each_distinct_message_is_embedded_once(store):
    embedder = CountingEmbedder()
    pipeline = VectorizerPipeline(embedder.embed, store, sleep=no_sleep)
    batch = [record(i, "Connection refused" if i % 5 else "Disk full") for i in range(10)]
    outcome = await pipeline.process(messages(batch))
    assert embedder.calls == [["Disk full", "Connection refused"]]
    assert outcome.upserted == 10 and outcome.reused == 8 and outcome.distinct_texts == 2
    assert store.count() == 10
    [point] = store.retrieve(["rec-3"])
    payload = point["payload"]
    assert {k: payload[k] for k in ("service", "level", "message", "trace_id", "pattern_id", "record_id",
                                    "timestamp")} == {
        "service": "orders", "level": "ERROR", "message": "Connection refused", "trace_id": f"{3:032x}",
        "pattern_id": 7, "record_id": "rec-3", "timestamp": "2026-11-25T08:00:03.000Z"}


async def test_masking_lets_values_share_one_embedding(store):
    embedder = CountingEmbedder()
    pipeline = VectorizerPipeline(embedder.embed, store, mask=mask_many, sleep=no_sleep)
    batch = [record(i, f"Timeout after {1000 + i} ms talking to 10.0.0.{i}") for i in range(6)]
    outcome = await pipeline.process(messages(batch))
    assert len(embedder.calls[0]) == 1 and outcome.reused == 5
    # The payload keeps the original message.
    assert store.retrieve(["rec-2"])[0]["payload"]["message"] == "Timeout after 1002 ms talking to 10.0.0.2"


async def test_reprocessing_a_batch_is_idempotent(store):
    pipeline = VectorizerPipeline(CountingEmbedder().embed, store, sleep=no_sleep)
    batch = messages([record(i, f"error kind {i % 3}") for i in range(9)])
    first = await pipeline.process(batch)
    again = await pipeline.process(batch)
    assert store.count() == 9
    # A replay is judged as the first delivery was: same novel records.
    assert [e["record_id"] for e in first.novel_events] == [e["record_id"] for e in again.novel_events]


async def test_an_embedder_refusing_the_texts_is_retried_then_dead_lettered(store):
    embedder = CountingEmbedder(fail_times=10, error=EmbeddingError("embedder answered 422: text refused"))
    delays = []

    async def record_sleep(seconds):
        delays.append(seconds)

    pipeline = VectorizerPipeline(embedder.embed, store, retry_attempts=3, retry_base_seconds=0.5,
                                  sleep=record_sleep)
    raw = [record(1, "boom"), record(2, "bang")]
    outcome = await pipeline.process(messages(raw))
    assert len(embedder.calls) == 4 and delays == [0.5, 1.0, 2.0]
    assert outcome.upserted == 0 and outcome.retries == {"embed": 3}
    assert [d.stage for d in outcome.dead_letters] == ["embed", "embed"]
    letter = orjson.loads(outcome.dead_letters[0].to_bytes())
    assert base64.b64decode(letter["original_base64"]) == orjson.dumps(raw[0])
    assert letter["error"] == "EmbeddingError: embedder answered 422: text refused" and letter["stage"] == "embed"
    assert letter["time"].endswith("Z") and letter["source"] == {"topic": "q", "partition": 0, "offset": 0,
                                                                 "timestamp_ms": None}
    assert store.dimension() is None  # nothing was embedded, so no collection was even needed


@pytest.mark.parametrize("error", [ConnectionError("connection refused"), TimeoutError("timed out"),
                                   EmbedderUnavailable("embedder at http://e answered 503: loading")])
async def test_an_embedder_outage_is_raised_for_the_consumer_to_hold_not_dead_lettered(store, error):
    embedder = CountingEmbedder(fail_times=10, error=error)
    pipeline = VectorizerPipeline(embedder.embed, store, retry_attempts=2, sleep=no_sleep)
    with pytest.raises(DependencyUnavailable) as raised:
        await pipeline.process(messages([record(1, "boom"), record(2, "bang")]))
    assert raised.value.dependency == "embedder" and len(embedder.calls) == 3
    # Once it is back, the same batch goes through whole.
    embedder.fail_times = 0
    outcome = await pipeline.process(messages([record(1, "boom"), record(2, "bang")]))
    assert outcome.upserted == 2 and not outcome.dead_letters and store.count() == 2


async def test_a_qdrant_outage_is_raised_not_dead_lettered(store):
    pipeline = VectorizerPipeline(CountingEmbedder().embed, store, retry_attempts=1, sleep=no_sleep)
    with faults.outage("qdrant"):
        with pytest.raises(DependencyUnavailable) as raised:
            await pipeline.process(messages([record(1, "x"), record(2, "y")]))
    assert raised.value.dependency == "qdrant"
    outcome = await pipeline.process(messages([record(1, "x"), record(2, "y")]))
    assert outcome.upserted == 2 and not outcome.dead_letters and store.count() == 2


async def test_embedder_recovering_within_retries_loses_nothing(store):
    embedder = CountingEmbedder(fail_times=2)
    pipeline = VectorizerPipeline(embedder.embed, store, sleep=no_sleep)
    outcome = await pipeline.process(messages([record(1, "flaky")]))
    assert outcome.upserted == 1 and not outcome.dead_letters and outcome.retries == {"embed": 2}


async def test_failing_store_dead_letters_with_stage_upsert(store):
    class BrokenStore:
        collection = "broken"

        async def aensure_collection(self, dimension):
            return False

        async def asearch_batch(self, vectors, limit, filters=None, score_threshold=None):
            return [[] for _ in vectors]

        async def aupsert(self, points):
            raise ValueError("point rejected: payload too large")

    pipeline = VectorizerPipeline(CountingEmbedder().embed, BrokenStore(), retry_attempts=1, sleep=no_sleep)
    outcome = await pipeline.process(messages([record(1, "x")]))
    assert [d.stage for d in outcome.dead_letters] == ["upsert"] and outcome.novel_events == []


def test_bad_records_become_dead_letters_not_exceptions():
    items, dead = decode(messages([
        b"not json", b"[1, 2]", orjson.dumps({"message": "no id"}),
        orjson.dumps({"record_id": "r", "message": "   "}),
        orjson.dumps({"record_id": "r", "message": "m", "level": "LOUD"}),
        orjson.dumps({"record_id": "r", "message": "m", "pattern_id": -1}),
        orjson.dumps({"record_id": "ok", "message": "fine", "level": "err"}),
    ]))
    assert [i.record["record_id"] for i in items] == ["ok"] and items[0].record["level"] == "ERROR"
    assert len(dead) == 6 and all(d.stage == "decode" for d in dead)
    assert "JSON" in dead[0].error and "object" in dead[1].error and "record_id" in dead[2].error


async def test_novel_errors_with_the_real_model(store, embedding_backend):
    from logpipe.ai.embeddings import Embedder

    embedder = Embedder(embedding_backend)
    pipeline = VectorizerPipeline(embedder.embed, store, novelty_threshold=0.75, mask=mask_many, sleep=no_sleep)
    known = [record(i, f"Database connection timeout after {100 + i} ms to postgres-primary:5432")
             for i in range(5)]
    first = await pipeline.process(messages(known))
    # A first-ever error is novel once, not once per copy.
    assert [e["record_id"] for e in first.novel_events] == ["rec-0"]
    assert first.novel_events[0]["nearest"] is None

    later = [record(10, "Database connection timeout after 999 ms to postgres-replica:5432"),
             record(11, "TLS handshake failed: certificate for ldap.internal has expired", service="auth"),
             record(12, "TLS handshake failed: certificate for ldap.internal has expired", service="auth"),
             record(13, "Cache warmup finished slowly", level="WARN")]
    second = await pipeline.process(messages(later))
    assert [e["record_id"] for e in second.novel_events] == ["rec-11"]
    event = second.novel_events[0]
    assert event["service"] == "auth" and event["similarity"] < 0.75
    assert event["nearest"]["record_id"].startswith("rec-") and event["nearest"]["message"]
    stored = store.retrieve(["rec-11"])[0]["payload"]
    assert stored["novel"] is True and stored["nearest_record_id"] == event["nearest"]["record_id"]
    assert store.count(VectorFilter(novel=True)) == 2
    assert store.retrieve(["rec-12"])[0]["payload"]["novel"] is False


async def test_with_retries_gives_up_after_attempts():
    calls = []

    async def failing():
        calls.append(1)
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        await with_retries(failing, 3, 0.1, sleep=no_sleep)
    assert len(calls) == 4


async def test_known_texts_skip_the_search_but_keep_the_verdict(store):
    class SearchCounting(EdgeVectorStore):
        searches = 0

        def search_batch(self, vectors, limit=20, filters=None, score_threshold=None):
            type(self).searches += len(vectors)
            return super().search_batch(vectors, limit, filters, score_threshold)

    counted = SearchCounting(store.path.parent.parent, "counted")
    pipeline = VectorizerPipeline(CountingEmbedder().embed, counted, sleep=no_sleep)
    first = await pipeline.process(messages([record(i, f"kind {i % 2}") for i in range(4)]))
    pipeline.remember(first)
    assert SearchCounting.searches == 2 and len(first.novel_events) == 2
    again = await pipeline.process(messages([record(10 + i, f"kind {i % 2}") for i in range(4)]
                                            + [record(20, "kind 2")]))
    pipeline.remember(again)
    assert SearchCounting.searches == 3  # only the new text was searched
    assert [e["record_id"] for e in again.novel_events] == ["rec-20"]
    counted.close()


async def test_a_huge_message_is_embedded_from_its_start_and_stored_whole(store):
    embedder = CountingEmbedder()
    pipeline = VectorizerPipeline(embedder.embed, store, sleep=no_sleep)
    huge = "OutOfMemoryError " + "at frame\n" * 20_000
    outcome = await pipeline.process(messages([record(1, huge)]))
    assert outcome.upserted == 1 and len(embedder.calls[0][0]) == 2048
    assert store.retrieve(["rec-1"])[0]["payload"]["message"] == huge[:8192]


async def test_the_context_is_embedded_and_every_point_carries_its_keywords(store):
    from logpipe.ai.search import query_keyword_vector

    embedder = CountingEmbedder()
    pipeline = VectorizerPipeline(embedder.embed, store, mask=mask_many, sleep=no_sleep)
    stack = ("java.sql.SQLTimeoutException: timed out\n"
             "    at com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:181)")
    batch = [record(i, f"Database connection timeout after {500 + i}ms", error_type="SQLTimeoutException",
                    logger="db.pool", stack_trace=stack) for i in range(3)]
    batch.append(record(3, "HTTP 502 from upstream billing on GET /api/v1/orders/77", service="gateway",
                        error_type="UpstreamError", http_status=502, http_method="GET",
                        http_path="/api/v1/orders/77"))
    outcome = await pipeline.process(messages(batch))
    assert outcome.upserted == 4
    # Copies of one error still share one embedding; the route stays out of the embedded text.
    assert embedder.calls == [[
        "Database connection timeout after <*> (sql timeout exception; db.pool; at zaxxer hikari pool hikari pool "
        "get connection)",
        "HTTP <*> from upstream billing on GET <*> (upstream error; 502 bad gateway)"]]
    # The keyword side finds what the log never spelled out: "Postgres pool" is not in it, the
    # HikariPool frame is; "bad gateway" is the name of status 502.
    hits = store.search_keywords(query_keyword_vector("hikari connection pool"), 10)
    assert {hit.record_id for hit in hits} == {"rec-0", "rec-1", "rec-2"}
    assert [hit.record_id for hit in store.search_keywords(query_keyword_vector("bad gateway"), 10)] == ["rec-3"]
    assert store.retrieve(["rec-3"])[0]["payload"]["message"] == batch[3]["message"]


async def test_context_and_keywords_can_be_switched_off(store):
    from logpipe.ai.search import query_keyword_vector

    embedder = CountingEmbedder()
    pipeline = VectorizerPipeline(embedder.embed, store, sleep=no_sleep, embed_context=False, keywords=False)
    await pipeline.process(messages([record(1, "Payment declined", error_type="PaymentDeclined")]))
    assert embedder.calls == [["Payment declined"]]
    assert store.search_keywords(query_keyword_vector("payment declined"), 10) == []
    assert store.count() == 1
