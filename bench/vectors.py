"""Vectors: vectorizer throughput, raw model speed, and filtered search latency, in one run.

    .venv/bin/python bench/vectors.py [--logs 20000] [--batch-size 1000] [--search-points 100000]

1. vectorized error logs/s: the vectorizer's batch pipeline (decode, mask, embed each distinct
   text once through the cold cache, novelty search, upsert into embedded Qdrant) over
   generated error logs where 80% of the messages repeat an earlier one. In process, no Kafka.
   Run twice: as configured (variables masked, the default) and with masking off, where every
   distinct message costs a model call.
2. raw model texts/s: the local model (ONNX Runtime) on distinct log messages, no cache.
3. search p50/p95 at --search-points vectors with a payload filter (service + level, and a
   time range), Qdrant Edge; also end to end through `semantic_search` (query embedding
   included). The points are real embeddings of log messages plus small noise, so they
   cluster like real logs without embedding 100,000 texts first.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import orjson

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from logpipe.ai.embeddings import Embedder, local_backend  # noqa: E402
from logpipe.ai.search import semantic_search  # noqa: E402
from logpipe.patterns.masking import mask_many  # noqa: E402
from logpipe.stores.cache import MemoryCache  # noqa: E402
from logpipe.stores.vectors import EdgeVectorStore, VectorFilter, VectorPoint  # noqa: E402
from logpipe.vectorizer.service import QueueMessage, VectorizerPipeline  # noqa: E402

T0 = datetime(2026, 11, 25, 0, 0, tzinfo=timezone.utc)
SERVICES = [f"service-{i:02d}" for i in range(20)]
WORDS = ["orders", "inventory", "payments", "users", "sessions", "carts", "invoices", "shipments", "reviews",
         "coupons", "ledger", "catalog", "search", "profile", "billing", "audit", "tokens", "media"]
TEMPLATES = [
    "Database connection timeout after {n}ms to {host}:5432 (table {word})",
    "Deadlock detected while updating {word} row {n}; transaction rolled back",
    "HTTP {status} from upstream {host} on POST /api/v1/{word}/{n}",
    "Payment gateway declined transaction {hex}: insufficient funds",
    "NullPointerException in {Word}Service.process at line {n}",
    "Failed to publish to Kafka topic {word}-events: broker {small} not available",
    "OutOfMemoryError: Java heap space while loading {word} cache ({n}kB)",
    "SSL handshake failed with {host}: certificate expired {n} days ago",
    "No space left on device /var/lib/{word} ({small}MB free)",
    "Authentication failed for user {user}: invalid credentials from {ip}",
    "Redis command timed out after {n}ms (key {word}:{hex})",
    "Slow query on {word}: {n}ms exceeds the 500ms budget",
    "Retry {small}/5 for {word} sync job {hex} failed: connection reset by peer",
    "Rate limit exceeded for client {ip} on /api/{word} ({n} req/min)",
    "gRPC call {Word}.Get failed: DEADLINE_EXCEEDED after {n}ms",
    "Failed to parse {word} payload at offset {n}: unexpected token '}}'",
]


def random_message(rng: random.Random) -> str:
    word = rng.choice(WORDS)
    return rng.choice(TEMPLATES).format(
        n=rng.randint(1, 99999), host=f"{word}-db-{rng.randint(1, 40)}.internal", word=word,
        Word=word.capitalize(), status=rng.choice([500, 502, 503, 504]), hex=f"{rng.getrandbits(48):012x}",
        small=rng.randint(0, 9), user=f"user{rng.randint(1, 5000)}",
        ip=f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}")


def error_logs(count: int, duplicate_share: float, seed: int) -> tuple[list[bytes], int]:
    """`count` forwarded error records; `duplicate_share` of them repeat an earlier message."""
    rng = random.Random(seed)
    seen: list[str] = []
    values = []
    for index in range(count):
        if seen and rng.random() < duplicate_share:
            message = rng.choice(seen)
        else:
            message = random_message(rng)
            seen.append(message)
        values.append(orjson.dumps({
            "record_id": f"bench-{seed}-{index}", "message": message, "level": rng.choice(["ERROR", "ERROR", "WARN"]),
            "service": rng.choice(SERVICES), "timestamp": (T0 + timedelta(milliseconds=index)).isoformat(),
            "trace_id": f"{rng.getrandbits(128):032x}", "pattern_id": rng.randint(1, 500)}))
    return values, len(set(seen))


async def vectorizer_throughput(backend, data_dir: str, logs: int, batch_size: int, mask: bool, seed: int) -> dict:
    values, distinct = error_logs(logs, 0.8, seed)
    messages = [QueueMessage(v, "vectorization-queue", 0, i) for i, v in enumerate(values)]
    embedder = Embedder(backend, MemoryCache())  # cold cache: every distinct text costs the model once
    store = EdgeVectorStore(data_dir, f"throughput_{'masked' if mask else 'raw'}")
    pipeline = VectorizerPipeline(embedder.embed, store, mask=mask_many if mask else None)
    upserted = novel = 0
    started = time.perf_counter()
    for start in range(0, len(messages), batch_size):
        outcome = await pipeline.process(messages[start:start + batch_size])
        if outcome.dead_letters:
            raise RuntimeError(f"unexpected dead letters: {outcome.dead_letters[0].error}")
        pipeline.remember(outcome)  # as the service does once the batch is committed
        upserted += outcome.upserted
        novel += len(outcome.novel_events)
    elapsed = time.perf_counter() - started
    points = store.count()
    store.close()
    assert points == logs, f"{points} points for {logs} logs"
    return {"logs_per_s": round(upserted / elapsed, 1), "logs": logs, "distinct_messages": distinct,
            "model_texts": embedder.stats.cache_misses, "novel": novel, "seconds": round(elapsed, 2)}


def model_throughput(backend, texts: int, seed: int) -> dict:
    rng = random.Random(seed + 99)
    sample = list(dict.fromkeys(random_message(rng) for _ in range(texts)))
    backend.embed(sample[:32])  # warm up
    started = time.perf_counter()
    backend.embed(sample)
    elapsed = time.perf_counter() - started
    return {"texts_per_s": round(len(sample) / elapsed, 1), "texts": len(sample), "backend": backend.name}


async def search_latency(backend, data_dir: str, points: int, queries: int, optimize: bool, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    text_rng = random.Random(seed)
    centers_text = list(dict.fromkeys(random_message(text_rng) for _ in range(400)))
    centers = backend.embed(centers_text)
    store = EdgeVectorStore(data_dir, "search_bench")
    store.ensure_collection(centers.shape[1])
    started = time.perf_counter()
    chunk = 2000
    for start in range(0, points, chunk):
        size = min(chunk, points - start)
        which = rng.integers(0, len(centers), size)
        vectors = centers[which] + rng.normal(0, 0.02, (size, centers.shape[1])).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store.upsert([VectorPoint(f"p{start + i}", vectors[i], {
            "timestamp": T0 + timedelta(seconds=int(start + i)), "service": SERVICES[(start + i) % len(SERVICES)],
            "level": "ERROR" if (start + i) % 3 else "WARN", "message": centers_text[which[i]],
            "pattern_id": int(which[i]), "trace_id": "", "record_id": f"p{start + i}"}) for i in range(size)])
    load_s = time.perf_counter() - started
    build_s = None
    if optimize:
        started = time.perf_counter()
        store.optimize()
        build_s = round(time.perf_counter() - started, 1)

    query_texts = list(dict.fromkeys(random_message(text_rng) for _ in range(queries)))
    query_vectors = backend.embed(query_texts)
    span = timedelta(seconds=points)
    filters = [
        VectorFilter(services=[SERVICES[i % len(SERVICES)]], levels=["ERROR"]) for i in range(len(query_vectors))]
    ranged = [VectorFilter(levels=["ERROR"], since=T0 + span * 0.25, until=T0 + span * 0.75)
              for _ in range(len(query_vectors))]

    def measure(vector_filters) -> tuple[float, float, int]:
        latencies = []
        hits = 0
        for vector, vector_filter in zip(query_vectors, vector_filters):
            begin = time.perf_counter()
            result = store.search(vector, 20, vector_filter)
            latencies.append(time.perf_counter() - begin)
            hits += len(result)
        return (round(float(np.percentile(latencies, 50)) * 1000, 2),
                round(float(np.percentile(latencies, 95)) * 1000, 2), hits)

    measure(filters[:10])  # warm up
    service_p50, service_p95, hits = measure(filters)
    range_p50, range_p95, _ = measure(ranged)
    if hits != 20 * len(query_vectors):
        raise RuntimeError(f"filtered searches returned {hits} hits, expected {20 * len(query_vectors)}")

    embedder = Embedder(backend, MemoryCache())
    end_to_end = []
    for index, text in enumerate(query_texts):
        begin = time.perf_counter()
        await semantic_search(text + " (query)", embedder, store, 20, service=SERVICES[index % len(SERVICES)],
                              level="ERROR")
        end_to_end.append(time.perf_counter() - begin)
    store.close()
    return {
        "points": points, "queries": len(query_vectors), "load_points_per_s": round(points / load_s, 1),
        "hnsw_build_s": build_s,
        "service_level_filter_p50_ms": service_p50, "service_level_filter_p95_ms": service_p95,
        "time_range_filter_p50_ms": range_p50, "time_range_filter_p95_ms": range_p95,
        "semantic_search_p50_ms": round(float(np.percentile(end_to_end, 50)) * 1000, 2),
        "semantic_search_p95_ms": round(float(np.percentile(end_to_end, 95)) * 1000, 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=int, default=20_000, help="error logs for the throughput run")
    parser.add_argument("--raw-logs", type=int, default=5_000, help="error logs for the run without masking")
    parser.add_argument("--batch-size", type=int, default=1000, help="vectorizer batch size")
    parser.add_argument("--model-texts", type=int, default=512)
    parser.add_argument("--search-points", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--optimize", action="store_true", help="build the HNSW index before searching")
    parser.add_argument("--threads", type=int, default=2, help="model threads")
    parser.add_argument("--data-dir", default=None, help="where the ONNX export and Qdrant data go")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="logpipe-bench-vectors-") as tmp:
        data_dir = args.data_dir or tmp
        backend = local_backend(data_dir, prefer="onnx", threads=args.threads)
        model = model_throughput(backend, args.model_texts, args.seed)
        masked = await vectorizer_throughput(backend, tmp, args.logs, args.batch_size, True, args.seed)
        raw = await vectorizer_throughput(backend, tmp, args.raw_logs, args.batch_size, False, args.seed + 1)
        search = await search_latency(backend, tmp, args.search_points, args.queries, args.optimize, args.seed)
    result = {
        "bench": "vectors",
        "cpus": os.cpu_count(),
        "vectorized_logs_per_s": masked["logs_per_s"],
        "vectorized_logs_per_s_unmasked": raw["logs_per_s"],
        "model_texts_per_s": model["texts_per_s"],
        "search_p50_ms": search["service_level_filter_p50_ms"],
        "search_p95_ms": search["service_level_filter_p95_ms"],
        "duplicate_share": 0.8,
        "batch_size": args.batch_size,
        "vectorizer": masked,
        "vectorizer_unmasked": raw,
        "model": model,
        "search": search,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
