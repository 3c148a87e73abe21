"""Semantic search over log embeddings, and novel-error detection.

Used by the gateway (search) and the vectorizer (novelty); both hand in an embedder and a
vector store, so neither imports the other.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime
from http import HTTPStatus
from typing import Any, Literal, Protocol, Sequence

import numpy as np

from logpipe.ai.glossary import GLOSSARY, MODEL_WORDS
from logpipe.core.record import normalize_level
from logpipe.stores.vectors import KeywordVector, VectorFilter, VectorHit, VectorStore

DEFAULT_TOP_K = 20
MAX_TOP_K = 200
MAX_QUERY_CHARS = 8192
# The levels whose earlier occurrences decide whether an error is new.
NOVELTY_LEVELS = ("ERROR", "FATAL")
SearchMethod = Literal["hybrid", "vector", "keyword"]
SEARCH_METHODS = ("hybrid", "vector", "keyword")
# Reciprocal rank fusion constant (Cormack et al. 2009): large enough that one list's top hit
# cannot drown the other list's consensus.
RRF_K = 60
# Each side of the hybrid ranks this many candidates before fusion (at least top_k).
FUSION_CANDIDATES = 50
# A keyword hit scoring below this shares only words most logs have (Qdrant's IDF is about 0.7
# for a word in every other log, near 0 for one in all): no evidence, and fused in it pushes
# noise up (measured on the tuning questions, docs/vectors.md).
KEYWORD_MIN_SCORE = 1.0
# Hybrid hits whose cosine similarity lies more than this below the best candidate's are
# ranked after the rest (None: plain reciprocal rank fusion). 0.05 is the middle of the range
# (0.02-0.08) that scored best on the tuning questions (docs/vectors.md).
COSINE_MARGIN: float | None = 0.05
# Embed the question with what its glossary words stand for (`expand_query`).
QUERY_EXPANSION = True
# BM25's term-frequency saturation; document length is not normalised (log texts are short).
BM25_K1 = 1.2


# -- what a log record says, in words -------------------------------------------------------

_ROUTE_ID = re.compile(r"/(?:\d+|[0-9a-f]{8,}|[0-9a-f-]{36})(?=/|$)", re.IGNORECASE)
_NAMESPACE_WORDS = frozenset({"java", "javax", "com", "org", "net", "io", "lang", "impl"})
_FRAME = re.compile(r"^\s*at\s+([\w$.]+)", re.MULTILINE)


def split_identifier(name: str) -> str:
    """`java.sql.SQLTimeoutException` -> `sql timeout exception`: the words a person would type."""
    words = []
    for part in re.split(r"[^A-Za-z0-9]+", name):
        words += _CAMEL.findall(part)
    return " ".join(word.lower() for word in words
                    if len(word) > 1 and not word.isdigit() and word.lower() not in _NAMESPACE_WORDS)


def record_context(record: dict[str, Any], route: bool = True) -> str:
    """The words around a log's message that say what failed: the error type, the HTTP status
    and route, the logger and the first stack frame. (Not the service: copies of one error in
    many services then share one embedding; the keyword side adds the service name.)
    `route=False` leaves the route out: the embedded text then repeats as often as the error.

    Embedded (and indexed for keywords) after the message, so "the Postgres pool" finds a
    `HikariPool` frame and "bad gateway" finds an HTTP 502 whose message only says 502.
    """
    error_type, status, logger, stack = (record.get("error_type"), record.get("http_status"), record.get("logger"),
                                         record.get("stack_trace"))
    path = record.get("http_path") if route else None
    return _context(error_type if isinstance(error_type, str) else None,
                    status if isinstance(status, int) and not isinstance(status, bool) else None,
                    str(record.get("http_method") or "") if isinstance(path, str) and path else None,
                    path if isinstance(path, str) else None,
                    logger if isinstance(logger, str) else None,
                    stack[:4096] if isinstance(stack, str) else None)


@lru_cache(maxsize=16_384)
def _context(error_type: str | None, status: int | None, method: str | None, path: str | None, logger: str | None,
             stack: str | None) -> str:
    # Copies of one error carry the same context: each is worked out once per process.
    parts = []
    if error_type:
        parts.append(split_identifier(error_type))
    if status is not None and status >= 400:
        try:
            parts.append(f"{status} {HTTPStatus(status).phrase.lower()}")
        except ValueError:
            parts.append(str(status))
    if path:
        parts.append(f"{method} {_ROUTE_ID.sub('/{id}', path.split('?', 1)[0])}".strip())
    if logger:
        parts.append(logger)
    if stack:
        frame = _FRAME.search(stack)
        if frame:
            parts.append(f"at {split_identifier(frame.group(1))}")
    return "; ".join(parts)


# -- keywords: sparse vectors that Qdrant scores with BM25-style weights ---------------------

_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_TOKEN = re.compile(r"[A-Za-z0-9]+")
_STOPWORDS = frozenset("""a an and are as at be been but by can cannot can't did do does doing for from get got
has have how i if in into is it its me my no not of on or our so some than that the their them then there these
they this to too us was we were what when where which while who why will with you your keeps keep getting seem
seems something anything again after before any all just still being""".split())
def _stem(word: str) -> str:
    # A light suffix strip applied alike to logs and questions ("timeouts" ~ "timeout",
    # "expired" ~ "expire"); a full stemmer is not a dependency worth its weight here.
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        word = word[:-3]
    elif len(word) > 4 and word.endswith("ed"):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if len(word) > 4 and word.endswith("e"):
        word = word[:-1]
    return word


# Lower-case beginnings of glossary words, so only a token that can start one pays for the
# two-word check.
_GLOSSARY_HEADS = frozenset(key[:cut] for key in GLOSSARY for cut in range(1, len(key)))


def _glossary_tokens(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """(token, its parts) for each word of `text`: a glossary word stays whole, anything else
    is split at case changes; two words that spell a glossary word together ("sign-in",
    "log on") count as that word."""
    tokens = _TOKEN.findall(text)
    out: list[tuple[str, tuple[str, ...]]] = []
    index = 0
    while index < len(tokens):
        lowered, parts = _token_parts(tokens[index])
        if index + 1 < len(tokens) and lowered in _GLOSSARY_HEADS and lowered not in GLOSSARY:
            joined = lowered + tokens[index + 1].lower()
            if joined in GLOSSARY:
                out.append((joined, (joined,)))
                index += 2
                continue
        out.append((lowered, parts))
        index += 1
    return out


@lru_cache(maxsize=65_536)
def _token_parts(token: str) -> tuple[str, tuple[str, ...]]:
    lowered = token.lower()
    return lowered, (lowered,) if lowered in GLOSSARY else tuple(p.lower() for p in _CAMEL.findall(token))


@lru_cache(maxsize=65_536)
def _part_terms(part: str) -> tuple[str, ...]:
    # Log words repeat endlessly: each is looked up, expanded and stemmed once per process.
    if part in GLOSSARY:
        return tuple(word if word.isdigit() else _stem(word) for word in GLOSSARY[part].split()
                     if word not in _STOPWORDS)
    if part.isdigit():
        return (part,) if len(part) == 3 and part[0] in "45" else ()
    return (_stem(part),) if len(part) >= 2 and part not in _STOPWORDS else ()


def keyword_terms(text: str) -> list[str]:
    """The words of `text` as the keyword index sees them: identifiers split, lower case, stop
    words and bare numbers dropped (except HTTP statuses), abbreviations expanded, stemmed."""
    terms: list[str] = []
    for _, parts in _glossary_tokens(text):
        for part in parts:
            terms += _part_terms(part)
    return terms


def expand_query(text: str) -> str:
    """The question as the vector side embeds it: followed by what its abbreviations, products
    and HTTP statuses stand for (`GLOSSARY`), so "OOMKilled pod" is embedded with "out memory
    killed". Words the model knows (`MODEL_WORDS`) are left to it. Unchanged when no other
    word is in the glossary."""
    tokens = _glossary_tokens(text)
    present = {word for lowered, parts in tokens for word in (lowered, *parts)}
    present |= {p.lower() for token in _TOKEN.findall(text) for p in _CAMEL.findall(token)}
    added: list[str] = []
    for _, parts in tokens:
        for part in parts:
            if part in MODEL_WORDS:
                continue
            for word in GLOSSARY.get(part, "").split():
                if word not in present and word not in added:
                    added.append(word)
    return f"{text} ({' '.join(added)})" if added else text


def term_index(term: str) -> int:
    # A stable hash (not Python's salted hash): logs and questions in other processes agree.
    return zlib.crc32(term.encode()) & 0x7FFFFFFF


def keyword_vector(text: str) -> KeywordVector | None:
    """BM25's saturated term frequency per hashed term; Qdrant's IDF modifier adds the rest."""
    counts: dict[int, int] = {}
    for term in keyword_terms(text):
        index = term_index(term)
        counts[index] = counts.get(index, 0) + 1
    if not counts:
        return None
    indices = sorted(counts)
    return KeywordVector(indices, [counts[i] * (BM25_K1 + 1) / (counts[i] + BM25_K1) for i in indices])


def query_keyword_vector(text: str) -> KeywordVector | None:
    # Each distinct query word once: IDF alone weights the question's words.
    indices = sorted({term_index(term) for term in keyword_terms(text)})
    return KeywordVector(indices, [1.0] * len(indices)) if indices else None


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
                          min_score: float | None = None, method: SearchMethod = "hybrid") -> list[dict[str, Any]]:
    """The logs most similar in meaning to `query`, narrowed by metadata; best first.

    Each hit: `{"rank", "score", "record_id", "payload": {timestamp, service, level, message,
    trace_id, pattern_id, record_id, ...}, "pattern_id", "match", "vector_score", "keyword_score",
    "fused_score"}`. `score` is the cosine similarity to the query (1 = same meaning);
    `match` says which search found the hit: "vector", "keyword" or "both".

    `method="hybrid"` (the default) ranks by reciprocal rank fusion of the vector search and a
    keyword search (BM25-like weights over the message and its context); "vector" and
    "keyword" run one side alone. A collection without keyword vectors (created before they
    existed) answers hybrid searches from the vector side.
    """
    if not isinstance(query, str) or not query.strip():
        raise SearchError("query must be a non-empty string")
    if len(query) > MAX_QUERY_CHARS:
        raise SearchError(f"query is {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
    if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise SearchError(f"top_k must be between 1 and {MAX_TOP_K}")
    if method not in SEARCH_METHODS:
        raise SearchError(f"method must be one of {', '.join(SEARCH_METHODS)}, not {method!r}")
    filters = build_filter(service, level, since, until, pattern_id)
    vector = np.asarray((await embedder.embed([expand_query(query) if QUERY_EXPANSION else query]))[0],
                        dtype=np.float32)
    candidates = top_k if method == "vector" else max(top_k, FUSION_CANDIDATES)
    dense: list[VectorHit] = []
    if method != "keyword":
        dense = await store.asearch(vector, candidates, filters, None if method == "hybrid" else min_score)
    sparse: list[VectorHit] = []
    keywords = query_keyword_vector(query) if method != "vector" else None
    if keywords is not None:
        sparse = await store.asearch_keywords(keywords, candidates, filters, KEYWORD_MIN_SCORE)
    return await _fuse(vector, dense, sparse, store, top_k, min_score,
                       COSINE_MARGIN if method == "hybrid" else None)


async def _fuse(query_vector: np.ndarray, dense: list[VectorHit], sparse: list[VectorHit], store: VectorStore,
                top_k: int, min_score: float | None, cosine_margin: float | None = None) -> list[dict[str, Any]]:
    """Reciprocal rank fusion: each list adds 1 / (RRF_K + rank) for the hits it holds; with
    `cosine_margin`, hits far below the best cosine come after the others."""
    fused: dict[str, dict[str, Any]] = {}
    for side, hits in (("vector", dense), ("keyword", sparse)):
        for rank, hit in enumerate(hits, start=1):
            entry = fused.setdefault(hit.record_id, {"hit": hit, "fused": 0.0, "vector": None, "keyword": None})
            entry["fused"] += 1.0 / (RRF_K + rank)
            entry[side] = hit.score
    # A hit only the keyword side found still gets its cosine similarity: `score` means one thing.
    missing = [record_id for record_id, entry in fused.items() if entry["vector"] is None]
    if missing:
        for item in await store.aretrieve(missing, with_vectors=True):
            record_id = item["payload"].get("record_id")
            stored = item.get("vector")
            if record_id in fused and stored is not None:
                fused[record_id]["vector"] = float(np.dot(np.asarray(stored, dtype=np.float32), query_vector))
    # Score normalisation against the best meaning: rank fusion alone interleaves the two lists
    # when they disagree, so half the top 10 can be a family the keyword side found on one
    # shared word ("gateway") while its meaning is elsewhere. A hit whose cosine lies more than
    # the margin below the best candidate's comes after every hit within it.
    cosines = [entry["vector"] for entry in fused.values() if entry["vector"] is not None]
    floor = max(cosines) - cosine_margin if cosines and cosine_margin is not None else None

    def order(entry: dict[str, Any]) -> tuple:
        below = floor is not None and (entry["vector"] if entry["vector"] is not None else -1.0) < floor
        return (below, -entry["fused"], -(entry["vector"] or 0.0))

    ranked = sorted(fused.values(), key=order)
    results = []
    for entry in ranked:
        score = entry["vector"] if entry["vector"] is not None else 0.0
        if min_score is not None and score < min_score:
            continue
        results.append((entry, entry["hit"], score))
        if len(results) == top_k:
            break
    dense_ids = {hit.record_id for hit in dense}
    sparse_ids = {hit.record_id for hit in sparse}
    out = []
    for rank, (entry, hit, score) in enumerate(results, start=1):
        found_by_vector, found_by_keyword = hit.record_id in dense_ids, hit.record_id in sparse_ids
        match = "both" if found_by_vector and found_by_keyword else "vector" if found_by_vector else "keyword"
        out.append({"rank": rank, "score": round(score, 6), "record_id": hit.record_id, "payload": hit.payload,
                    "pattern_id": hit.payload.get("pattern_id"), "match": match,
                    "vector_score": round(score, 6),
                    "keyword_score": None if entry["keyword"] is None else round(entry["keyword"], 6),
                    "fused_score": round(entry["fused"], 6)})
    return out


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
