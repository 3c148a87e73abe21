"""embedder's HTTP routes: thin wrappers over `Embedder` and the request rules."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from logpipe.ai.embeddings import Embedder, EmbeddingError
from logpipe.core import metrics
from logpipe.core.http import requires_token
from logpipe.embedder.service import EmbedBatchRequest, EmbedRequest, RequestRejected, check_texts, stats_view

TEXTS = metrics.counter("logpipe_embedder_texts_total", "Texts embedded (cache hits included)")
CACHE = metrics.counter("logpipe_embedder_cache_lookups_total", "Cache lookups by result", ("result",))
MODEL_SECONDS = metrics.counter("logpipe_embedder_model_seconds_total", "Seconds spent in the model")
REJECTED = metrics.counter("logpipe_embedder_rejected_total", "Requests refused by the limits", ("status",))

router = APIRouter(tags=["embedder"])


def _json(body: dict, status: int = 200) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json")


async def _embed(request: Request, texts: list[str]):
    embedder: Embedder = request.app.state.embedder
    settings = request.app.state.settings
    check_texts(texts, settings.max_batch_texts, settings.max_text_chars)
    before = (embedder.stats.cache_hits, embedder.stats.cache_misses, embedder.stats.model_seconds)
    vectors = await embedder.embed(texts)
    TEXTS.inc(len(texts))
    CACHE.labels("hit").inc(embedder.stats.cache_hits - before[0])
    CACHE.labels("miss").inc(embedder.stats.cache_misses - before[1])
    MODEL_SECONDS.inc(embedder.stats.model_seconds - before[2])
    return embedder, vectors


def _refusal(exc: Exception) -> JSONResponse:
    if isinstance(exc, RequestRejected):
        REJECTED.labels(str(exc.status)).inc()
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    if isinstance(exc, ValueError):
        REJECTED.labels("422").inc()
        return JSONResponse({"error": str(exc)}, status_code=422)
    return JSONResponse({"error": f"embedding failed: {exc}"}, status_code=503)


@router.post("/embed", dependencies=[Depends(requires_token("read"))])
async def embed(body: EmbedRequest, request: Request) -> Response:
    try:
        embedder, vectors = await _embed(request, [body.text])
    except (RequestRejected, ValueError, EmbeddingError) as exc:
        return _refusal(exc)
    return _json({"embedding": vectors[0], "model": embedder.model, "dimension": embedder.dimension})


@router.post("/embed/batch", dependencies=[Depends(requires_token("read"))])
async def embed_batch(body: EmbedBatchRequest, request: Request) -> Response:
    try:
        embedder, vectors = await _embed(request, body.texts)
    except (RequestRejected, ValueError, EmbeddingError) as exc:
        return _refusal(exc)
    return _json({"embeddings": vectors, "model": embedder.model, "dimension": embedder.dimension,
                  "count": len(body.texts)})


@router.get("/stats")
async def stats(request: Request) -> dict:
    embedder: Embedder = request.app.state.embedder
    try:
        entries = await embedder.cache.size() if embedder.cache is not None else None
    except Exception:  # noqa: BLE001 - stats must answer while Redis is down
        entries = None
    return stats_view(embedder.stats, model=embedder.model, dimension=embedder.dimension,
                      backend=embedder.backend.name, cache_kind=getattr(embedder.cache, "kind", "none"),
                      cache_entries=entries)


@router.post("/cache/clear", dependencies=[Depends(requires_token("admin"))])
async def clear_cache(request: Request) -> JSONResponse:
    embedder: Embedder = request.app.state.embedder
    if embedder.cache is None:
        return JSONResponse({"cleared": 0})
    try:
        removed = await embedder.cache.clear()
    except Exception as exc:  # noqa: BLE001 - say plainly that nothing was cleared
        return JSONResponse({"error": f"cache not cleared: {type(exc).__name__}: {exc}"}, status_code=503)
    return JSONResponse({"cleared": removed})
