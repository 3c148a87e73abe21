"""The embedder's request rules and its /stats view: plain values in, plain values out."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel


class EmbedRequest(BaseModel):
    text: str


class EmbedBatchRequest(BaseModel):
    texts: list[str]


class RequestRejected(Exception):
    """A request outside the limits; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_texts(texts: list[str], max_texts: int, max_chars: int) -> None:
    if not texts:
        raise RequestRejected(422, "texts must hold at least one text")
    if len(texts) > max_texts:
        raise RequestRejected(413, f"{len(texts)} texts in one request; the limit is {max_texts} "
                                   "(split the batch)")
    for index, text in enumerate(texts):
        if len(text) > max_chars:
            raise RequestRejected(413, f"text {index} is {len(text)} characters; the limit is {max_chars}")
        if not text.strip():
            raise RequestRejected(422, f"text {index} is empty or whitespace only")


def stats_view(stats: Any, *, model: str, dimension: int, backend: str, cache_kind: str,
               cache_entries: int | None) -> dict[str, Any]:
    return {
        "requests": stats.requests,
        "texts": stats.texts,
        "errors": stats.errors,
        "cache": {"backend": cache_kind, "hits": stats.cache_hits, "misses": stats.cache_misses,
                  "hit_rate": stats.cache_hit_rate, "entries": cache_entries},
        "model": model,
        "backend": backend,
        "dimension": dimension,
        "model_calls": stats.model_calls,
        "latency": {
            "mean_ms": round(1000 * stats.latency_seconds_total / stats.requests, 3) if stats.requests else 0.0,
            "model_texts_per_second": round(stats.cache_misses / stats.model_seconds, 1) if stats.model_seconds else 0.0,
        },
        "uptime_seconds": round(time.time() - stats.started_at, 3),
    }
