"""Semantic search over log embeddings, and novel-error detection.

Used by the gateway (search) and the vectorizer (novelty); both hand in an embedder and a
vector store, so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, Sequence

import numpy as np

from logpipe.core.record import normalize_level
from logpipe.stores.vectors import VectorFilter, VectorHit, VectorStore

DEFAULT_TOP_K = 20
MAX_TOP_K = 200
MAX_QUERY_CHARS = 8192
# The levels whose earlier occurrences decide whether an error is new.
NOVELTY_LEVELS = ("ERROR", "FATAL")


class TextEmbedder(Protocol):
    async def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class SearchError(ValueError):
    """The query cannot run as asked (the message says why); HTTP callers answer 422."""


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(v) for v in value if str(v)]


def build_filter(service: str | Sequence[str] | None = None, level: str | Sequence[str] | None = None,
                 since: datetime | str | None = None, until: datetime | str | None = None,
                 pattern_id: int | Sequence[int] | None = None) -> VectorFilter:
    levels = []
    for name in _as_list(level):
        canonical = normalize_level(name)
        if canonical is None:
            raise SearchError(f"unknown level {name!r}")
        levels.append(str(canonical))
    if isinstance(since, datetime) and isinstance(until, datetime) and since >= until:
        raise SearchError("`since` must be before `until`")
    patterns: list[int] = []
    if pattern_id is not None:
        for value in ([pattern_id] if isinstance(pattern_id, (int, str)) else pattern_id):
            try:
                number = int(value)
            except (TypeError, ValueError) as exc:
                raise SearchError(f"pattern_id must be an integer, not {value!r}") from exc
            if not 0 <= number < 1 << 64:
                raise SearchError(f"pattern_id {number} is outside the UInt64 range")
            patterns.append(number)
    return VectorFilter(services=_as_list(service), levels=levels, since=since, until=until,
                        pattern_ids=patterns)


async def semantic_search(query: str, embedder: TextEmbedder, store: VectorStore, top_k: int = DEFAULT_TOP_K,
                          *, service: str | Sequence[str] | None = None, level: str | Sequence[str] | None = None,
                          since: datetime | str | None = None, until: datetime | str | None = None,
                          pattern_id: int | Sequence[int] | None = None,
                          min_score: float | None = None) -> list[dict[str, Any]]:
    """The logs most similar in meaning to `query`, narrowed by metadata; best first.

    Each hit: `{"rank", "score", "record_id", "payload": {timestamp, service, level, message,
    trace_id, pattern_id, record_id, ...}}`. The score is cosine similarity (1 = same meaning).
    """
    if not isinstance(query, str) or not query.strip():
        raise SearchError("query must be a non-empty string")
    if len(query) > MAX_QUERY_CHARS:
        raise SearchError(f"query is {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
    if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise SearchError(f"top_k must be between 1 and {MAX_TOP_K}")
    filters = build_filter(service, level, since, until, pattern_id)
    vector = (await embedder.embed([query]))[0]
    hits = await store.asearch(vector, top_k, filters, min_score)
    return [{"rank": rank, "score": round(hit.score, 6), "record_id": hit.record_id, "payload": hit.payload}
            for rank, hit in enumerate(hits, start=1)]


@dataclass
class NoveltyVerdict:
    novel: bool
    nearest_record_id: str | None
    nearest_score: float | None


def judge_novelty(vectors: np.ndarray, record_ids: Sequence[str], stored_nearest: Sequence[VectorHit | None],
                  threshold: float) -> list[NoveltyVerdict]:
    """Novel = the best match among earlier errors scores below `threshold`.

    "Earlier" covers what is stored and the messages before this one in the same batch, so
    a burst of one new error yields one novel event, not one per copy.
    """
    verdicts: list[NoveltyVerdict] = []
    for index, vector in enumerate(vectors):
        best_id, best_score = None, None
        stored = stored_nearest[index]
        if stored is not None:
            best_id, best_score = stored.record_id, stored.score
        if index:
            similarities = vectors[:index] @ vector
            earlier = int(np.argmax(similarities))
            if best_score is None or similarities[earlier] > best_score:
                best_id, best_score = record_ids[earlier], float(similarities[earlier])
        novel = best_score is None or best_score < threshold
        verdicts.append(NoveltyVerdict(novel, best_id, None if best_score is None else round(float(best_score), 6)))
    return verdicts


async def nearest_earlier_errors(store: VectorStore, vectors: np.ndarray, exclude_record_ids: Sequence[str],
                                 levels: Sequence[str] = NOVELTY_LEVELS) -> list[VectorHit | None]:
    """For each vector, its closest stored error (this batch's own records excluded, so a
    replayed batch is judged as it was the first time)."""
    if not len(vectors):
        return []
    filters = VectorFilter(levels=list(levels), exclude_record_ids=list(exclude_record_ids))
    results = await store.asearch_batch(list(vectors), 1, filters)
    return [hits[0] if hits else None for hits in results]
