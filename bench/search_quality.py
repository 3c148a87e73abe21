"""Retrieval quality of semantic search on questions worded the way a person on call types them.

    .venv/bin/python bench/search_quality.py [--per-family 120] [--search-points 100000] [--optimize]

1. Logs: the generator's error and warning families (13, with error types, loggers, HTTP
   routes and statuses, stack traces on some) from every service that emits them, spread
   over three days, each given its pattern id by the pattern miner as ingest does.
2. Each method's collection is filled by the vectorizer's own batch pipeline
   (`VectorizerPipeline.process`: decode, mask, embed each distinct text once through a cold
   cache, novelty, upsert into embedded Qdrant), timed: that is the speed printed beside it.
3. Questions (below) are written in other words than the logs: synonyms, the thing behind an
   abbreviation, the product behind a component, the symptom rather than the cause. A hit is
   relevant when its log belongs to the question's family. TUNE was looked at while the method
   was chosen; HELD_OUT was written at the same time and not looked at while tuning;
   HELD_OUT_HARD (the four kinds of the issue, harder) was written later, before the next
   round of retrieval changes, and is scored per kind too; TUNE_MORE was added to tune that
   round on; HELD_OUT_FRESH (same kinds) was written before the round after that, to check
   that changes made for HELD_OUT_HARD's failure classes generalise.
4. Every question runs through `semantic_search`, the function behind
   `POST /api/search/semantic` (the route only parses filters and serialises the hits; the
   route itself is covered by tests/gateway/test_gateway_search.py). In process because the
   embedded Qdrant engine belongs to one process, as in `logpipe run all`.
5. Speed goals: the vectorizer's logs/s on --throughput-logs generator records of which 80 %
   repeat an earlier one, message-only (before) and the default, alternating, with their ratio;
   search p50/p95 of vector and hybrid search at --search-points points (the chosen collection
   padded with jittered copies of its points), without and (--optimize) with the HNSW index.

Prints one JSON object: per method P@10, MRR, nDCG@10 (tune, held-out) with vectorized logs/s;
logs/s at 80 % duplicates before issue #22 and now (alternating runs, with their ratio); search
latency at --search-points points.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
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
import logpipe.ai.search as search_module  # noqa: E402
from logpipe.ai.search import semantic_search  # noqa: E402
from logpipe.generator.service import INCIDENT_ONLY, SERVICE_FAMILIES, LogFactory  # noqa: E402
from logpipe.patterns import build_miner  # noqa: E402
from logpipe.patterns.masking import mask_many  # noqa: E402
from logpipe.stores.cache import MemoryCache  # noqa: E402
from logpipe.stores.vectors import EdgeVectorStore, VectorPoint  # noqa: E402
from logpipe.vectorizer.service import QueueMessage, VectorizerPipeline  # noqa: E402

T0 = datetime(2026, 11, 23, 0, 0, tzinfo=timezone.utc)
INCIDENT_SERVICES = {"tls_expired": ["order-service", "payment-service"],
                     "disk_full": ["inventory-service", "notification-service"]}

# (question, family). Worded as a person would, avoiding the words of the log line.
TUNE = [
    ("postgres stopped answering and the pool gives up waiting", "db_timeout"),
    ("DB conn hangs then fails", "db_timeout"),
    ("queries on the database taking forever", "slow_query"),
    ("calls to another service being sent again after a pause", "retrying"),
    ("pod getting close to its RAM limit", "memory_high"),
    ("one client hammering us with too many calls per minute", "rate_limit"),
    ("users cannot log in, wrong password", "auth_failed"),
    ("bad gateway errors from a backend", "http_5xx"),
    ("customers' cards rejected at checkout", "payment_declined"),
    ("NPE in the order processing code", "null_pointer"),
    ("cannot send messages to the message queue, broker down", "kafka_publish_failed"),
    ("process got OOM killed", "out_of_memory"),
    ("SSL cert expired on the database connection", "tls_expired"),
    ("volume ran out of storage space", "disk_full"),
    ("upstream service returning internal server errors", "http_5xx"),
    ("event bus publishing broken", "kafka_publish_failed"),
]
HELD_OUT = [
    ("can't reach the SQL server in time", "db_timeout"),
    ("sluggish SQL statements over the latency budget", "slow_query"),
    ("memory pressure warning on a container", "memory_high"),
    ("sign-in rejected because of bad creds", "auth_failed"),
    ("gateway timeout from a downstream microservice", "http_5xx"),
    ("transactions refused by the card processor", "payment_declined"),
    ("code dereferenced a null object and crashed", "null_pointer"),
    ("producer cannot deliver to kafka", "kafka_publish_failed"),
    ("the kernel killed the JVM for using too much RAM", "out_of_memory"),
    ("x509 certificate not valid anymore", "tls_expired"),
    ("no free space on the data partition", "disk_full"),
    ("throttling kicking in for a noisy IP", "rate_limit"),
    ("flaky dependency, the request is attempted once more", "retrying"),
]
# More questions to tune on, of the same four kinds, written with HELD_OUT_HARD's baseline
# in hand (the first TUNE set scored 1.0 and could no longer choose between changes). They
# avoid HELD_OUT_HARD's wording and products; tuning in the next round looks only at TUNE and
# TUNE_MORE.
TUNE_MORE = [
    ("storage device has zero bytes remaining", "disk_full"),
    ("clients over their request quota", "rate_limit"),
    ("issuer said no to the purchase", "payment_declined"),
    ("database lookups far slower than normal", "slow_query"),
    ("ETIMEDOUT opening a connection to the DB", "db_timeout"),
    ("503 service unavailable from a dependency", "http_5xx"),
    ("401 unauthorized on sign in", "auth_failed"),
    ("GC pressure, heap usage high", "memory_high"),
    ("MSK cluster rejecting our events", "kafka_publish_failed"),
    ("Adyen refused the payment", "payment_declined"),
    ("Kubernetes killed the container for exceeding its memory", "out_of_memory"),
    ("PgBouncer connections time out", "db_timeout"),
    ("users bounce off the sign-in page with an error", "auth_failed"),
    ("pages fail to load because a dependency is down", "http_5xx"),
    ("requests succeed only on the second try", "retrying"),
    ("unhandled exception because a variable was never set", "null_pointer"),
    ("secure connection to the database breaks since the cert date passed", "tls_expired"),
]
# (question, family, kind): a second, harder held-out set for the open gaps of issue #22,
# written before any retrieval change of that round and committed alone. The four kinds are
# the failures: a synonym, the thing an abbreviation stands for, the product behind a
# component, the symptom rather than the cause. Two questions per family, mostly avoiding every
# word of the log line, its error type and logger. Never tune on it.
HELD_OUT_HARD = [
    ("reads against the datastore crawl for seconds", "slow_query", "synonym"),
    ("login refused, the user typed the wrong secret", "auth_failed", "synonym"),
    ("charges bounced by the bank", "payment_declined", "synonym"),
    ("a call to a peer is reissued after a short wait", "retrying", "synonym"),
    ("the filesystem is completely used up and writes are refused", "disk_full", "synonym"),
    ("object reference was empty when the invoice was built", "null_pointer", "synonym"),
    ("pod exited with 137, OOMKilled", "out_of_memory", "abbreviation"),
    ("HTTP 429s for one caller", "rate_limit", "abbreviation"),
    ("RSS close to the cgroup cap", "memory_high", "abbreviation"),
    ("JDBC can't get a conn before the deadline", "db_timeout", "abbreviation"),
    ("5xx from a dependency behind the LB", "http_5xx", "abbreviation"),
    ("ENOSPC on the data mount", "disk_full", "abbreviation"),
    ("Postgres reads exceeding the SLO", "slow_query", "product"),
    ("Stripe refusing the charge", "payment_declined", "product"),
    ("Redpanda producer cannot write, no leader for the partition", "kafka_publish_failed", "product"),
    ("LDAP bind rejected for a user", "auth_failed", "product"),
    ("Let's Encrypt cert lapsed on the database link", "tls_expired", "product"),
    ("JVM heap nearly at Xmx", "memory_high", "product"),
    ("notification emails stop going out, events never leave the service", "kafka_publish_failed", "symptom"),
    ("the java process vanished and dmesg says it was reaped", "out_of_memory", "symptom"),
    ("one address about to be cut off for sending too much", "rate_limit", "symptom"),
    ("checkout crashes when a field is missing", "null_pointer", "symptom"),
    ("clients see bad gateway and service unavailable pages", "http_5xx", "symptom"),
    ("the app stalls waiting for the database and then gives up", "db_timeout", "symptom"),
    ("clients refuse to connect: the server's validity date is in the past", "tls_expired", "symptom"),
    ("the same request shows up two or three times downstream", "retrying", "symptom"),
]
# (question, family, kind): a third held-out set, written for the round that made the index
# build by default (2026-12-07) before any retrieval change of that round, by a writer who had
# read HELD_OUT_HARD but not the glossary's entries for it, and committed alone. Two per family,
# the same four kinds. It checks that what that round changes on HELD_OUT_HARD's failure
# classes generalises; never tune on it.
HELD_OUT_FRESH = [
    ("the relational store takes ages to hand back rows", "slow_query", "synonym"),
    ("DB query p99 way above target", "slow_query", "abbreviation"),
    ("Okta login denied", "auth_failed", "product"),
    ("login page keeps saying try again", "auth_failed", "symptom"),
    ("the buyer's money transfer was turned down", "payment_declined", "synonym"),
    ("Braintree rejected the card", "payment_declined", "product"),
    ("second and third attempts at talking to another service", "retrying", "synonym"),
    ("the same job logs several attempts before it goes through", "retrying", "symptom"),
    ("storage is exhausted, nothing more can be saved", "disk_full", "synonym"),
    ("FS full on the node, 0 bytes avail", "disk_full", "abbreviation"),
    ("accessed a member of something that did not exist", "null_pointer", "synonym"),
    ("NRE thrown in the billing worker", "null_pointer", "abbreviation"),
    ("OOM on a worker node", "out_of_memory", "abbreviation"),
    ("service restarts over and over, memory climbs until it dies", "out_of_memory", "symptom"),
    ("RPS cap hit by a single IP", "rate_limit", "abbreviation"),
    ("a customer is told to slow down", "rate_limit", "symptom"),
    ("mem util over 90 pct of the container limit", "memory_high", "abbreviation"),
    ("memory graph creeping toward the limit", "memory_high", "symptom"),
    ("HikariCP couldn't hand out a connection in time", "db_timeout", "product"),
    ("pages hang on anything that reads from the database then error out", "db_timeout", "symptom"),
    ("Envoy returns 503 for the backend", "http_5xx", "product"),
    ("a remote service answered with a server fault", "http_5xx", "synonym"),
    ("Confluent cluster refuses produced records", "kafka_publish_failed", "product"),
    ("orders stuck because nothing is written to the event stream", "kafka_publish_failed", "symptom"),
    ("TLS cert EOL on the postgres conn", "tls_expired", "abbreviation"),
    ("cert-manager certificate ran out on the database endpoint", "tls_expired", "product"),
]
QUESTION_SETS = {"tune": TUNE, "tune_more": TUNE_MORE, "held_out": HELD_OUT, "held_out_hard": [(q, f) for q, f, _ in HELD_OUT_HARD],
                 "held_out_fresh": [(q, f) for q, f, _ in HELD_OUT_FRESH]}

# name -> (vectorizer options, search method, logpipe.ai.search constants set for the run).
# "message vector" is logpipe before issue #22; the plain-RRF rows are the search before query
# expansion and the cosine margin (their keyword vectors use today's glossary all the same).
PLAIN_RRF = {"QUERY_EXPANSION": False, "COSINE_MARGIN": None}
METHODS = {
    "message vector": (dict(embed_context=False, keywords=False), "vector", PLAIN_RRF),
    "message+context vector": (dict(embed_context=True, keywords=True), "vector", {}),
    "message+context keyword": (dict(embed_context=True, keywords=True), "keyword", {}),
    "hybrid: message vector + message+context keyword (plain RRF)": (dict(embed_context=False, keywords=True),
                                                                    "hybrid", PLAIN_RRF),
    "hybrid: message+context vector + keyword (plain RRF)": (dict(embed_context=True, keywords=True), "hybrid",
                                                             PLAIN_RRF),
    "hybrid: expanded query, RRF with cosine margin (default)": (dict(embed_context=True, keywords=True), "hybrid",
                                                                 {}),
}
CHOSEN = "hybrid: expanded query, RRF with cosine margin (default)"


def generate_logs(per_family: int, seed: int) -> tuple[list[bytes], dict[str, str]]:
    """Forwarded records as ingest puts them on vectorization-queue, and record id -> family."""
    factory = LogFactory(seed=seed)
    rng = random.Random(seed)
    # Every family a service speaks at WARN or above: what ingest forwards to the vectorizer.
    pairs = [(service, family) for service, kinds in SERVICE_FAMILIES.items() for family in kinds["ok"] + kinds["error"]
             if factory.one(service=service, family=family)["level"] in ("WARN", "ERROR", "FATAL")]
    pairs += [(service, family) for family, services in INCIDENT_SERVICES.items() for service in services]
    assert {family for _, family in pairs} >= INCIDENT_ONLY
    records = []
    for service, family in pairs:
        for _ in range(per_family):
            moment = T0 + timedelta(seconds=rng.uniform(0, 3 * 86400))
            records.append(factory.one(moment=moment, service=service, family=family))
    records.sort(key=lambda record: record["timestamp"])
    miner = build_miner()
    for record, masked in zip(records, mask_many([record["message"] for record in records])):
        record["pattern_id"] = miner.add(masked).id
    families = {record["record_id"]: record["attributes"]["family"] for record in records}
    return [orjson.dumps(record) for record in records], families


async def vectorize(values: list[bytes], store: EdgeVectorStore, backend, options: dict, batch_size: int) -> dict:
    embedder = Embedder(backend, MemoryCache())  # cold cache: every distinct text costs the model once
    pipeline = VectorizerPipeline(embedder.embed, store, mask=mask_many, **options)
    messages = [QueueMessage(v, "vectorization-queue", 0, i) for i, v in enumerate(values)]
    started = time.perf_counter()
    distinct = 0
    for start in range(0, len(messages), batch_size):
        outcome = await pipeline.process(messages[start:start + batch_size])
        if outcome.dead_letters:
            raise RuntimeError(f"unexpected dead letters: {outcome.dead_letters[0].error}")
        pipeline.remember(outcome)
        distinct += outcome.distinct_texts
    elapsed = time.perf_counter() - started
    return {"logs_per_s": round(len(values) / elapsed), "model_texts": distinct}


def duplicated_logs(count: int, duplicate_share: float, seed: int) -> list[bytes]:
    """Generator error records where `duplicate_share` repeat an earlier one (message and
    context alike, a new record id): the vectorizer's 80 %-duplicates speed goal."""
    factory = LogFactory(seed=seed)
    rng = random.Random(seed)
    pairs = [(service, family) for service, kinds in SERVICE_FAMILIES.items() for family in kinds["error"]]
    seen: list[dict] = []
    values = []
    for index in range(count):
        if seen and rng.random() < duplicate_share:
            record = dict(rng.choice(seen), record_id=f"dup-{seed}-{index}")
        else:
            service, family = rng.choice(pairs)
            record = factory.one(moment=T0 + timedelta(milliseconds=index), service=service, family=family)
            seen.append(record)
        values.append(orjson.dumps(record))
    return values


async def throughput(backend, data_dir: str, logs: int, batch_size: int, seed: int) -> dict:
    """logs/s at 80 % duplicates: before issue #22 (message only), the default, and keywords
    without the embedded context, alternating (best of two each)."""
    values = duplicated_logs(logs, 0.8, seed)
    options = {"message vector (before)": dict(embed_context=False, keywords=False), "chosen (defaults)": {},
               "message vector + keywords": dict(embed_context=False, keywords=True)}
    runs: dict[str, list[float]] = {name: [] for name in options}
    for round_ in range(2):
        for name in runs:
            store = EdgeVectorStore(data_dir, f"throughput_{round_}_{len(runs[name])}_{name[:7]}")
            runs[name].append((await vectorize(values, store, backend, options[name], batch_size))["logs_per_s"])
            store.close()
    best = {name: max(speeds) for name, speeds in runs.items()}
    return {"logs": logs, "duplicates": 0.8, "logs_per_s": runs,
            "ratio_to_before": {name: round(best[name] / best["message vector (before)"], 3) for name in runs}}


def scores(ranked_families: list[str], family: str, relevant_total: int) -> tuple[float, float, float]:
    top = ranked_families[:10]
    precision = sum(f == family for f in top) / 10
    reciprocal = next((1 / rank for rank, f in enumerate(ranked_families, start=1) if f == family), 0.0)
    dcg = sum(1 / math.log2(rank + 1) for rank, f in enumerate(top, start=1) if f == family)
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(10, relevant_total) + 1))
    return precision, reciprocal, dcg / ideal if ideal else 0.0


async def evaluate(store, embedder, method: str, families: dict[str, str], counts: dict[str, int]) -> dict:
    out = {}
    misses = []
    kinds = {question: kind for question, _, kind in HELD_OUT_HARD + HELD_OUT_FRESH}
    for name, questions in QUESTION_SETS.items():
        rows = []
        for question, family in questions:
            hits = await semantic_search(question, embedder, store, 20, method=method)
            ranked = [families.get(hit["record_id"], "?") for hit in hits]
            rows.append(scores(ranked, family, counts[family]))
            if rows[-1][0] < 0.9:
                misses.append({"set": name, "question": question, "family": family, "p@10": rows[-1][0],
                               "top3": ranked[:3]})
        out[name] = {"p@10": round(float(np.mean([r[0] for r in rows])), 3),
                     "mrr": round(float(np.mean([r[1] for r in rows])), 3),
                     "ndcg@10": round(float(np.mean([r[2] for r in rows])), 3), "questions": len(rows)}
        if name in ("held_out_hard", "held_out_fresh"):
            by_kind: dict[str, list[float]] = {}
            for (question, _), row in zip(questions, rows):
                by_kind.setdefault(kinds[question], []).append(row[0])
            out[name]["p@10_by_kind"] = {kind: round(float(np.mean(values)), 3) for kind, values in by_kind.items()}
    out["misses"] = misses
    return out


async def search_latency(store: EdgeVectorStore, embedder, target: int, seed: int, optimize: bool) -> dict:
    """Pad the collection with jittered copies of its points up to `target`, then time searches."""
    rng = np.random.default_rng(seed)
    existing = store.count()
    originals = store.shard.scroll(__import__("qdrant_edge").ScrollRequest(limit=existing, with_payload=True,
                                                                           with_vector=True))[0]
    from logpipe.ai.search import keyword_vector
    copies, made = [], existing
    started = time.perf_counter()
    while made < target:
        record = originals[made % len(originals)]
        vector = np.asarray(record.vector[""], dtype=np.float32) + rng.normal(0, 0.02, 384).astype(np.float32)
        payload = dict(record.payload)
        payload["record_id"] = f"pad-{made}"
        copies.append(VectorPoint(f"pad-{made}", vector / np.linalg.norm(vector), payload,
                                  keyword_vector(payload.get("message", ""))))
        made += 1
        if len(copies) == 5000 or made == target:
            await store.aupsert(copies)
            copies = []
    pad_s = time.perf_counter() - started
    questions = [q for q, _ in TUNE + HELD_OUT]  # the latency figures before the hard set existed

    async def timings() -> dict:
        out = {}
        for label, filters in (("no filter", {}), ("service+level filter", {"service": "order-service",
                                                                            "level": ["ERROR", "FATAL"]})):
            for method in ("vector", "hybrid"):
                samples = []
                for round_ in range(3):  # the query embedding is cached after the first round
                    for question in questions:
                        began = time.perf_counter()
                        await semantic_search(question, embedder, store, 20, method=method, **filters)
                        samples.append((time.perf_counter() - began) * 1000)
                out[f"{method}, {label}"] = {"p50_ms": round(float(np.percentile(samples, 50)), 1),
                                             "p95_ms": round(float(np.percentile(samples, 95)), 1)}
        return out

    result = {"points": store.count(), "pad_s": round(pad_s, 1), "semantic_search": await timings()}
    if optimize:
        began = time.perf_counter()
        store.optimize()
        result["hnsw_build_s"] = round(time.perf_counter() - began, 1)
        result["semantic_search_after_hnsw"] = await timings()
    return result


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-family", type=int, default=120, help="logs per (service, family)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--search-points", type=int, default=100_000, help="0 skips the latency part")
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--throughput-logs", type=int, default=20_000, help="0 skips the 80 %%-duplicates run")
    parser.add_argument("--show-misses", action="store_true")
    parser.add_argument("--methods", default="", help="comma-separated method names (or their beginnings) to run (default: all)")
    parser.add_argument("--search-constant", action="append", default=[], metavar="NAME=JSON",
                        help="set a logpipe.ai.search constant for every method, e.g. COSINE_MARGIN=0.08")
    parser.add_argument("--optimize", action="store_true",
                        help="also time searches after building the HNSW index (minutes at 100k points)")
    args = parser.parse_args()

    for assignment in args.search_constant:
        name, _, value = assignment.partition("=")
        if not hasattr(search_module, name):
            parser.error(f"logpipe.ai.search has no {name}")
        setattr(search_module, name, json.loads(value))
    values, families = generate_logs(args.per_family, args.seed)
    counts: dict[str, int] = {}
    for family in families.values():
        counts[family] = counts.get(family, 0) + 1
    result = {"logs": len(values), "families": len(counts),
              "questions": {name: len(questions) for name, questions in QUESTION_SETS.items()},
              "methods": {}}
    with tempfile.TemporaryDirectory(prefix="logpipe-search-quality-") as data_dir:
        # The ONNX export is cached under LOGPIPE_DATA_DIR/models when that is set.
        backend = local_backend(os.environ.get("LOGPIPE_DATA_DIR") or data_dir, prefer="onnx", threads=2)
        query_embedder = Embedder(backend, MemoryCache())
        stores: dict[str, tuple[EdgeVectorStore, dict]] = {}
        # A name's beginning is enough (names hold commas): "hybrid: expanded" is the default.
        wanted = [name.strip() for name in args.methods.split(",") if name.strip()]
        chosen_methods = [name for name in METHODS if any(name.startswith(w) for w in wanted)] or list(METHODS)
        for name in chosen_methods:
            options, method, constants = METHODS[name]
            key = json.dumps(options, sort_keys=True)
            if key not in stores:
                store = EdgeVectorStore(data_dir, f"quality_{len(stores)}")
                speed = await vectorize(values, store, backend, options, args.batch_size)
                stores[key] = (store, speed)
            store, speed = stores[key]
            defaults = {constant: getattr(search_module, constant) for constant in constants}
            for constant, value in constants.items():
                setattr(search_module, constant, value)
            try:
                quality = await evaluate(store, query_embedder, method, families, counts)
            finally:
                for constant, value in defaults.items():
                    setattr(search_module, constant, value)
            misses = quality.pop("misses")
            result["methods"][name] = {**quality, "vectorized_logs_per_s": speed["logs_per_s"],
                                       "model_texts": speed["model_texts"]}
            if args.show_misses:
                result["methods"][name]["misses"] = misses
        if args.throughput_logs:
            result["vectorize_80pct_duplicates"] = await throughput(backend, data_dir, args.throughput_logs,
                                                                    args.batch_size, args.seed)
        if args.search_points:
            hybrid_store = stores[json.dumps(METHODS[CHOSEN][0], sort_keys=True)][0]
            result["latency"] = await search_latency(hybrid_store, query_embedder, args.search_points, args.seed,
                                                     args.optimize)
        for store, _ in stores.values():
            store.close()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
