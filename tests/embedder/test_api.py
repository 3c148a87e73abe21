"""The embedder service over HTTP, with the real model and a real Redis cache."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from logpipe.embedder.app import create_app
from logpipe.embedder.settings import Settings


@pytest.fixture
async def client(tmp_path, redis_url, embedding_backend):
    settings = Settings(data_dir=tmp_path, redis_url=redis_url, embedder_cache_ttl_seconds=120)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://embedder") as http:
            assert (await http.post("/cache/clear")).status_code == 200
            yield http


async def test_embed_one_and_batch(client, embedding_backend):
    one = await client.post("/embed", json={"text": "Database connection timeout"})
    assert one.status_code == 200
    body = one.json()
    assert body["dimension"] == 384 and body["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    vector = np.array(body["embedding"], dtype=np.float32)
    assert vector.shape == (384,) and abs(np.linalg.norm(vector) - 1) < 1e-4
    np.testing.assert_allclose(vector, embedding_backend.embed(["Database connection timeout"])[0], atol=1e-5)

    batch = await client.post("/embed/batch", json={"texts": ["a failure", "Database connection timeout", "a failure"]})
    assert batch.status_code == 200
    data = batch.json()
    assert data["count"] == 3 and len(data["embeddings"]) == 3
    np.testing.assert_allclose(data["embeddings"][1], body["embedding"], atol=1e-6)


async def test_stats_show_cache_hits_and_misses(client):
    await client.post("/embed/batch", json={"texts": ["alpha error", "beta error"]})
    await client.post("/embed/batch", json={"texts": ["alpha error", "beta error", "gamma error"]})
    stats = (await client.get("/stats")).json()
    assert stats["requests"] == 2 and stats["texts"] == 5
    assert stats["cache"] == {"backend": "redis", "hits": 2, "misses": 3, "hit_rate": 0.4, "entries": 3}
    assert stats["model"] and stats["dimension"] == 384 and stats["backend"] == "onnx"
    assert stats["latency"]["mean_ms"] > 0

    cleared = await client.post("/cache/clear")
    assert cleared.json() == {"cleared": 3}
    await client.post("/embed", json={"text": "alpha error"})
    stats = (await client.get("/stats")).json()
    assert stats["cache"]["misses"] == 4 and stats["cache"]["entries"] == 1


@pytest.mark.parametrize("path,body,status,message", [
    ("/embed/batch", {"texts": ["x"] * 101}, 413, "101 texts in one request; the limit is 100"),
    ("/embed/batch", {"texts": ["ok", "y" * 8193]}, 413, "text 1 is 8193 characters; the limit is 8192"),
    ("/embed", {"text": "y" * 8193}, 413, "the limit is 8192"),
    ("/embed/batch", {"texts": []}, 422, "at least one text"),
    ("/embed", {"text": "   "}, 422, "empty"),
])
async def test_limits_are_refused_with_a_clear_message(client, path, body, status, message):
    response = await client.post(path, json=body)
    assert response.status_code == status
    assert message in response.json()["error"]


async def test_malformed_bodies_get_422(client):
    assert (await client.post("/embed", json={"texts": "wrong field"})).status_code == 422
    assert (await client.post("/embed/batch", json={"texts": "not a list"})).status_code == 422


async def test_oversized_body_is_refused_before_parsing(client):
    response = await client.post("/embed/batch", content=b"x" * (9 << 20), headers={"content-type": "application/json"})
    assert response.status_code == 413


async def test_health_and_metrics(client):
    health = await client.get("/health")
    assert health.status_code == 200
    assert health.json()["dependencies"] == {"model": "connected", "redis": "connected"}
    await client.post("/embed", json={"text": "metrics please"})
    metrics = (await client.get("/metrics")).text
    assert "logpipe_embedder_texts_total" in metrics
    assert 'logpipe_embedder_cache_lookups_total{result="miss"}' in metrics


async def test_matryoshka_dimension_setting(tmp_path, embedding_backend):
    app = create_app(Settings(data_dir=tmp_path, embedder_dimension=128))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://e") as http:
            body = (await http.post("/embed", json={"text": "short vectors"})).json()
            assert body["dimension"] == 128 and len(body["embedding"]) == 128
            assert abs(np.linalg.norm(body["embedding"]) - 1) < 1e-4
            stats = (await http.get("/stats")).json()
            assert stats["cache"]["backend"] == "memory"


async def test_redis_down_degrades_but_embeds(tmp_path, embedding_backend):
    from logpipe.core.broker import free_port

    app = create_app(Settings(data_dir=tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://e") as http:
            assert (await http.post("/embed", json={"text": "still works"})).status_code == 200
            health = (await http.get("/health")).json()
            assert health["status"] == "degraded" and health["dependencies"]["redis"] == "disconnected"
            assert (await http.post("/cache/clear")).status_code == 503
