"""POST /api/search/semantic: the query goes to the embedder service (the real model), the search
to the embedded Qdrant."""

from __future__ import annotations

import httpx

from gateway_support import embedder_service, gateway_settings, start_gateway

# Worded so that meaning, not shared words, finds the neighbours: the query says "database
# unreachable", the database errors say "postgres", "connection refused", "pool exhausted".
LOGS = [
    ("db1", "checkout", "ERROR", "could not connect to postgres-primary:5432: connection refused", 11),
    ("db2", "payments", "ERROR", "SQL connection pool exhausted, no free connection after 30 s", 12),
    ("db3", "payments", "WARN", "retrying the query: server closed the connection unexpectedly", 13),
    ("cart", "checkout", "WARN", "cart is empty on submit", 14),
    ("card", "payments", "ERROR", "card declined: expired on 2026-10", 15),
    ("thumb", "media", "ERROR", "thumbnail generation failed: unsupported image format webp", 16),
    ("login", "auth", "WARN", "user entered a wrong password three times; account locked", 17),
]
DATABASE = {"db1", "db2", "db3"}


async def test_semantic_search_finds_errors_by_meaning_and_filters(kafka_bootstrap, topics, clickhouse, tmp_path,
                                                                  embedding_backend):
    from logpipe.ai.search import keyword_vector
    from logpipe.stores.vectors import VectorPoint, open_vector_store

    store = open_vector_store("", "log_embeddings", tmp_path)
    store.ensure_collection(embedding_backend.dimension)
    vectors = embedding_backend.embed([message for _, _, _, message, _ in LOGS])
    store.upsert([VectorPoint(record_id, vector, {
        "service": service, "level": level, "message": message, "pattern_id": pattern_id,
        "timestamp": "2026-11-25T10:00:00.000Z"}, keyword_vector(f"{message} {service}"))
        for (record_id, service, level, message, pattern_id), vector in zip(LOGS, vectors)])

    # The pattern catalogue knows the first database error's template (ingest writes it there).
    from logpipe.patterns.store import PatternStore

    PatternStore(clickhouse).save([(11, "could not connect to <*>: connection refused")], {})

    embedder = embedder_service(tmp_path)
    settings = gateway_settings(kafka_bootstrap, topics.prefix, clickhouse, tmp_path, embedder_url=embedder.url)
    gateway, server = start_gateway(settings)
    try:
        async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read")) as client:
            response = await client.post("/api/search/semantic",
                                         json={"query": "the database is unreachable", "top_k": 7})
            assert response.status_code == 200, response.text
            results = response.json()["results"]
            ranked = [hit["record_id"] for hit in results]
            assert len(ranked) == len(LOGS) and [hit["rank"] for hit in results] == list(range(1, 8))
            # Every database error ranks above everything else.
            assert set(ranked[:3]) == DATABASE, [(hit["record_id"], hit["score"]) for hit in results]
            assert results[2]["score"] > results[3]["score"]
            stored = {record_id: (service, message) for record_id, service, _, message, _ in LOGS}
            assert all((hit["payload"]["service"], hit["payload"]["message"]) == stored[hit["record_id"]]
                       for hit in results)
            # Each hit says its pattern and how it matched: by meaning, by shared words, or both.
            patterns = {record_id: pattern_id for record_id, *_, pattern_id in LOGS}
            assert all(hit["pattern_id"] == patterns[hit["record_id"]] for hit in results)
            templates = {hit["record_id"]: hit["template"] for hit in results}
            assert templates.pop("db1") == "could not connect to <*>: connection refused"
            assert set(templates.values()) == {None}
            # "database" is no word of these logs, but "postgres" and "SQL" are: spelled out as one.
            both = {hit["record_id"] for hit in results if hit["match"] == "both"}
            assert both == {"db1", "db2"} and {hit["match"] for hit in results} == {"both", "vector"}, results
            assert all((hit["keyword_score"] is None) == (hit["match"] == "vector") for hit in results)

            response = await client.post("/api/search/semantic", json={"query": "DB connection pool", "top_k": 3})
            hits = response.json()["results"]
            assert response.status_code == 200 and hits[0]["record_id"] == "db2", hits
            assert hits[0]["match"] == "both" and hits[0]["keyword_score"] > 0 and hits[0]["fused_score"] > 0
            assert hits[0]["score"] == hits[0]["vector_score"] and 0 < hits[0]["score"] <= 1

            response = await client.post("/api/search/semantic", json={
                "query": "the database is unreachable", "top_k": 5, "filters": {"service": "payments"}})
            assert {hit["record_id"] for hit in response.json()["results"][:2]} == {"db2", "db3"}
            assert {hit["payload"]["service"] for hit in response.json()["results"]} == {"payments"}
            response = await client.post("/api/search/semantic", json={
                "query": "shopping basket has no items", "filters": {"level": ["WARN"]}})
            hits = response.json()["results"]
            assert hits[0]["record_id"] == "cart" and {hit["payload"]["level"] for hit in hits} == {"WARN"}

            for filters, fragment in (({"level": "LOUD"}, "level"), ({"colour": "red"}, "unknown filter"),
                                      ({"start": "last tuesday"}, "ISO 8601")):
                response = await client.post("/api/search/semantic", json={"query": "x", "filters": filters})
                assert response.status_code == 400 and fragment in response.json()["detail"], response.text
            assert (await client.post("/api/search/semantic", json={"query": ""})).status_code == 422
        async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("bound")) as client:
            response = await client.post("/api/search/semantic", json={"query": "database"})
            assert response.status_code == 403
    finally:
        server.stop()
        embedder.stop()


async def test_semantic_search_without_an_embedder_is_503(gateway):
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read")) as client:
        response = await client.post("/api/search/semantic", json={"query": "anything"})
    assert response.status_code == 503 and "embedder" in response.json()["detail"]
