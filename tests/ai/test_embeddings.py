"""Embeddings with the real model: ONNX vs sentence-transformers, Matryoshka, cache, TEI contract."""

from __future__ import annotations

import numpy as np
import pytest

from logpipe.ai.embeddings import (
    Embedder,
    EmbeddingError,
    TeiBackend,
    TorchBackend,
    bundled_model_dir,
    normalize_text,
    truncate_dimension,
)
from logpipe.stores.cache import MemoryCache, RedisCache, cache_key

TEXTS = [
    "Database connection timeout after 30000 ms to postgres-primary:5432",
    "payment declined: card expired",
    "GET /api/v1/users 200 12ms",
    "NullPointerException in OrderService.checkout",
    "a" * 3000,  # longer than the model's 256 tokens: truncated the same way on both paths
]


def test_onnx_matches_sentence_transformers(embedding_backend):
    assert embedding_backend.name == "onnx", "the ONNX export should work here"
    onnx_vectors = embedding_backend.embed(TEXTS)
    torch_vectors = TorchBackend(bundled_model_dir()).embed(TEXTS)
    assert onnx_vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(onnx_vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(onnx_vectors, torch_vectors, atol=2e-4)


def test_onnx_export_is_reused(embedding_backend, tmp_path):
    from logpipe.ai.embeddings import export_onnx

    path = embedding_backend.onnx_path
    mtime = path.stat().st_mtime_ns
    assert export_onnx(bundled_model_dir(), path.parent.parent) == path
    assert path.stat().st_mtime_ns == mtime


def test_a_model_stripped_of_its_weights_embeds_with_its_export(embedding_backend, tmp_path):
    """What the image does (Dockerfile, builder stage): the torch weights go, the fingerprint
    stays, and the ONNX backend finds the export made before and embeds as before."""
    from logpipe.ai.embeddings import OnnxBackend, strip_model_weights

    source = bundled_model_dir()
    stripped = tmp_path / source.name  # the export is named after the model's directory
    stripped.mkdir()
    for item in source.iterdir():
        (stripped / item.name).symlink_to(item)
    export_dir = embedding_backend.onnx_path.parent.parent
    assert strip_model_weights(stripped) == embedding_backend.onnx_path.parent.name.rsplit("-", 1)[1]
    assert not (stripped / "model.safetensors").exists() and (source / "model.safetensors").exists()
    backend = OnnxBackend(stripped, export_dir)
    assert backend.onnx_path == embedding_backend.onnx_path
    np.testing.assert_allclose(backend.embed(TEXTS[:2]), embedding_backend.embed(TEXTS[:2]), atol=1e-6)


def test_batch_order_does_not_change_vectors(embedding_backend):
    one_by_one = np.stack([embedding_backend.embed([t])[0] for t in TEXTS])
    np.testing.assert_allclose(embedding_backend.embed(TEXTS), one_by_one, atol=1e-5)


def test_matryoshka_truncation_renormalises():
    vectors = np.random.default_rng(1).standard_normal((3, 384)).astype(np.float32)
    short = truncate_dimension(vectors, 128)
    assert short.shape == (3, 128)
    np.testing.assert_allclose(np.linalg.norm(short, axis=1), 1.0, atol=1e-6)
    direction = vectors[:, :128] / np.linalg.norm(vectors[:, :128], axis=1, keepdims=True)
    np.testing.assert_allclose(short, direction, atol=1e-6)
    assert truncate_dimension(vectors, None) is vectors


async def test_embedder_caches_in_redis_and_dedupes(embedding_backend, redis_url):
    cache = RedisCache(redis_url)
    await cache.clear()
    embedder = Embedder(embedding_backend, cache)
    first = await embedder.embed(["disk full on /var", "disk  full on /var ", "oom killed"])
    # Whitespace differences are the same text: two distinct texts, both misses.
    assert embedder.stats.cache_misses == 2 and embedder.stats.cache_hits == 0
    np.testing.assert_array_equal(first[0], first[1])
    second = await embedder.embed(["oom killed", "disk full on /var"])
    assert embedder.stats.cache_hits == 2 and embedder.stats.model_calls == 1
    np.testing.assert_allclose(second[0], first[2])
    raw = (await cache.get_many([cache_key(embedder.model, 384, "oom killed")]))[0]
    np.testing.assert_allclose(np.frombuffer(raw, dtype=np.float32), first[2])
    with pytest.raises(ValueError):
        await embedder.embed(["   "])
    await embedder.close()


async def test_matryoshka_embedder_keys_cache_by_dimension(embedding_backend):
    cache = MemoryCache()
    full = Embedder(embedding_backend, cache)
    short = Embedder(embedding_backend, cache, dimension=64)
    a = await full.embed(["kafka broker unavailable"])
    b = await short.embed(["kafka broker unavailable"])
    assert a.shape == (1, 384) and b.shape == (1, 64)
    assert short.stats.cache_misses == 1  # not served the 384-d entry
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="outside"):
        Embedder(embedding_backend, cache, dimension=1000)


def test_normalize_text():
    assert normalize_text("  a\tb \n c ") == "a b c"


def test_tei_contract(tei_server, embedding_backend):
    backend = TeiBackend(tei_server["url"], batch_size=2)
    assert backend.model == "sentence-transformers/all-MiniLM-L6-v2"  # read from /info
    vectors = backend.embed(TEXTS[:3])
    np.testing.assert_allclose(vectors, embedding_backend.embed(TEXTS[:3]), atol=1e-5)
    # The request shapes TEI expects: a list of inputs per call, at most batch_size each.
    embed_calls = [body for body in tei_server["requests"]]
    assert [len(body["inputs"]) for body in embed_calls] == [2, 1]
    assert all(body["normalize"] is True and body["truncate"] is True for body in embed_calls)
    assert backend.dimension == 384


def test_tei_errors_are_embedding_errors(tei_server):
    backend = TeiBackend(tei_server["url"], model_name="given-name")
    assert backend.model == "given-name"
    tei_server["fail"]["status"] = 503
    with pytest.raises(EmbeddingError, match="TEI"):
        backend.embed(["anything"])


def test_tei_unreachable(tmp_path):
    from logpipe.core.broker import free_port

    backend = TeiBackend(f"http://127.0.0.1:{free_port()}", model_name="m", timeout_s=2)
    with pytest.raises(EmbeddingError):
        backend.embed(["anything"])
