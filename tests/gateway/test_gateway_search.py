"""POST /api/search/semantic: the query goes to the embedder service, the search to the embedded Qdrant."""

from __future__ import annotations

import httpx

from gateway_support import DIMENSION, ServerThread, fake_embedder_app, gateway_settings, hashed, start_gateway


async def test_semantic_search_ranks_by_meaning_and_filters(kafka_bootstrap, topics, clickhouse, tmp_path):
    from logpipe.core.broker import free_port
    from logpipe.stores.vectors import VectorPoint, open_vector_store

    logs = [
        ("a1", "checkout", "ERROR", "database connection timeout while charging card", 11),
        ("a2", "payments", "ERROR", "database connection refused by primary", 12),
        ("a3", "checkout", "WARN", "cart is empty on submit", 13),
        ("a4", "search", "ERROR", "index shard unavailable", 14),
    ]
    store = open_vector_store("", "log_embeddings", tmp_path)
    store.ensure_collection(DIMENSION)
    store.upsert([VectorPoint(record_id, hashed(message), {
        "service": service, "level": level, "message": message, "pattern_id": pattern_id,
        "timestamp": "2026-11-25T10:00:00.000Z"}) for record_id, service, level, message, pattern_id in logs])

    embedder = ServerThread(fake_embedder_app(), free_port()).start()
    settings = gateway_settings(kafka_bootstrap, topics.prefix, clickhouse, tmp_path, embedder_url=embedder.url)
    gateway, server = start_gateway(settings)
    try:
        async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read")) as client:
            response = await client.post("/api/search/semantic",
                                         json={"query": "database connection timeout", "top_k": 3})
            assert response.status_code == 200, response.text
            results = response.json()["results"]
            assert [hit["record_id"] for hit in results][:2] == ["a1", "a2"]
            assert results[0]["rank"] == 1 and results[0]["score"] > results[1]["score"]
            assert results[0]["payload"]["service"] == "checkout" and results[0]["payload"]["pattern_id"] == 11

            response = await client.post("/api/search/semantic", json={
                "query": "database connection timeout", "top_k": 5, "filters": {"service": "payments"}})
            assert [hit["record_id"] for hit in response.json()["results"]] == ["a2"]
            response = await client.post("/api/search/semantic", json={
                "query": "cart", "filters": {"level": ["WARN"]}})
            assert [hit["record_id"] for hit in response.json()["results"]] == ["a3"]

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
