"""Each dependency away for 30 s while logs flow: back-off, circuit open (on /health and
/metrics), consumption paused where the dependency is on the write path, no offset committed
for unwritten data, and full recovery with nothing lost.

One platform for the module, outages one after the other: Tansu, ingest (chdb), the embedder
service over real HTTP (with a real Redis cache), the vectorizer (embedded Qdrant), the analyzer
(real PostgreSQL). Redis, PostgreSQL and the embedder are real processes/servers, stopped and
started again on the same port. chdb and qdrant-edge run inside this process and cannot be
stopped: their outage is injected at the store boundary (`logpipe.stores.faults`), which makes
every call of that store raise, as a server that is away does.

Every test ends with the count check: distinct record_id in ClickHouse = produced (and no
duplicate rows), every forwarded log (WARN/ERROR/FATAL) exactly one Qdrant point, and the
groups' committed offsets = what was produced and forwarded.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import httpx
import orjson
import pytest
import pytest_asyncio

from logpipe.core.broker import free_port
from logpipe.core.topics import Topics, ensure_topics
from logpipe.stores import faults
from reliability.outage_support import (
    EmbedderServer,
    PostgresProcess,
    RedisProcess,
    SteadyProducer,
    committed_total,
    metric_value,
    stored_counts,
    stored_ids,
)
from support import running_ingest, wait_for

OUTAGE_SECONDS = 30.0

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow, pytest.mark.timeout(200)]


@dataclass
class Platform:
    bootstrap: str
    topics: Topics
    clickhouse: Any
    producer: SteadyProducer
    redis: RedisProcess
    postgres: PostgresProcess
    embedder: EmbedderServer
    ingest: httpx.AsyncClient
    vectorizer: httpx.AsyncClient
    analyzer: httpx.AsyncClient
    gateway: httpx.AsyncClient
    tokens: dict[str, str]
    apps: dict[str, Any]
    groups: dict[str, str]
    results: list[dict] = field(default_factory=list)

    @property
    def ingestor(self):
        return self.apps["ingest"].state.ingestor

    @property
    def vectorizer_service(self):
        return self.apps["vectorizer"].state.vectorizer

    def points(self) -> int:
        store = self.apps["vectorizer"].state.vector_store
        return store.count() if self.vectorizer_service.pipeline.collection_ready else 0


def _client(app, name: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}", timeout=30)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(kafka_bootstrap, chdb_dsn, tmp_path_factory, embedding_backend):
    # `embedding_backend` loads the model once per session; the embedder service (same model,
    # runtime, threads and batch size) reuses that process-wide instance instead of exporting again.
    from logpipe.ai.llm import NoLLM
    from logpipe.analyzer.app import create_app as create_analyzer
    from logpipe.analyzer.settings import Settings as AnalyzerSettings
    from logpipe.embedder.settings import Settings as EmbedderSettings
    from logpipe.gateway.app import create_app as create_gateway
    from logpipe.gateway.settings import Settings as GatewaySettings
    from logpipe.tokens import create_token, open_engine
    from logpipe.stores import sql
    from logpipe.stores.clickhouse import ClickHouseStore
    from logpipe.vectorizer.app import create_app as create_vectorizer
    from logpipe.vectorizer.settings import Settings as VectorizerSettings

    prefix = f"t{uuid.uuid4().hex[:10]}-"
    topics = Topics(prefix)
    await ensure_topics(kafka_bootstrap, topics, partitions=4)
    clickhouse = ClickHouseStore(chdb_dsn, database=f"outages_{uuid.uuid4().hex[:10]}")
    clickhouse.apply_schema(ttl_days=90)
    # The model's ONNX export is made once here and shared by the embedder and the analyzer.
    models = tmp_path_factory.mktemp("outage-models")
    redis = RedisProcess(free_port(), tmp_path_factory.mktemp("outage-redis")).start()
    postgres = PostgresProcess()
    database_url = postgres.url(postgres.create_database())
    embedder = EmbedderServer(EmbedderSettings(data_dir=models, redis_url=redis.url, cache_retry_base_seconds=0.2,
                                               cache_retry_max_seconds=1.0), free_port())
    await embedder.start()
    groups = {"ingest": f"ingest-{prefix}", "vectorizer": f"vectorizer-{prefix}"}
    vectorizer_app = create_vectorizer(VectorizerSettings(
        kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, data_dir=tmp_path_factory.mktemp("outage-v"),
        embedder_url=embedder.url, batch_size=200, batch_timeout_seconds=0.5, session_timeout_ms=2000,
        heartbeat_interval_ms=500, group_id=groups["vectorizer"], retry_attempts=1, retry_base_seconds=0.05,
        retry_max_seconds=1.0, qdrant_collection="outages"))
    engine = sql.engine(database_url)
    analyzer_app = create_analyzer(
        AnalyzerSettings(LOGPIPE_DATA_DIR=str(models), llm_backend="none", ANALYSIS_SCHEDULE_CRON="",
                         novel_errors_enabled=False, retry_base_seconds=0.5, retry_max_seconds=2.0),
        store=clickhouse, engine=engine, embed=None, llm=NoLLM())
    gateway_app = create_gateway(GatewaySettings(
        kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, clickhouse_url=clickhouse.dsn,
        clickhouse_database=clickhouse.database, database_url=database_url, data_dir=tmp_path_factory.mktemp("outage-g"),
        embedder_url=embedder.url, analyzer_url=f"http://127.0.0.1:{free_port()}", pipeline="default",
        frontend_dir=models / "no-dashboard"))
    token_engine = open_engine(database_url)
    # "shipper" ships before PostgreSQL goes away (verified), "late" only while it is away.
    tokens = {name: create_token(token_engine, name, ["ingest"]).token for name in ("shipper", "late")}
    try:
        async with running_ingest(kafka_bootstrap, prefix, clickhouse, group_id=groups["ingest"],
                                  retry_base_seconds=0.1, retry_max_seconds=1.0) as ingest_app, \
                vectorizer_app.router.lifespan_context(vectorizer_app), \
                analyzer_app.router.lifespan_context(analyzer_app), \
                gateway_app.router.lifespan_context(gateway_app), \
                _client(ingest_app, "ingest") as ingest, _client(vectorizer_app, "vectorizer") as vectorizer, \
                _client(analyzer_app, "analyzer") as analyzer, _client(gateway_app, "gateway") as gateway:
            yield Platform(kafka_bootstrap, topics, clickhouse, SteadyProducer(kafka_bootstrap, topics.raw_logs),
                           redis, postgres, embedder, ingest, vectorizer, analyzer, gateway, tokens,
                           {"ingest": ingest_app, "vectorizer": vectorizer_app, "analyzer": analyzer_app,
                            "gateway": gateway_app}, groups)
    finally:
        await embedder.stop()
        redis.kill()
        engine.dispose()
        token_engine.dispose()
        postgres.remove()
        clickhouse.command(f"DROP DATABASE IF EXISTS {clickhouse.database} SYNC")
        clickhouse.close()


# --- the shape every outage test shares ---------------------------------------------------------
async def flowing(p: Platform) -> None:
    """Logs are produced and arrive (ingest writes) before the outage starts."""
    p.producer.start()
    written = p.ingestor.stats.written
    await wait_for(lambda: p.ingestor.stats.written > written, timeout=30, message="no logs flowing")


async def hold(started: float, check: Callable[[], Awaitable[None]]) -> int:
    """Keep the dependency away until OUTAGE_SECONDS after `started`, running `check` about
    once a second meanwhile (the invariants must hold for the whole outage); how many checks."""
    checks = 0
    while time.monotonic() - started < OUTAGE_SECONDS:
        await check()
        checks += 1
        await asyncio.sleep(min(1.0, max(0.0, OUTAGE_SECONDS - (time.monotonic() - started))))
    await check()
    return checks + 1


async def recovered_and_complete(p: Platform, flow_after_seconds: float = 1.0) -> dict:
    """Logs keep flowing a little after recovery, then everything produced must be stored once,
    every forwarded log be one point, and both groups have committed all of it."""
    written = p.ingestor.stats.written
    await wait_for(lambda: p.ingestor.stats.written > written, timeout=30, message="no logs after recovery")
    await asyncio.sleep(flow_after_seconds)  # the producer's pace: a few more ticks after recovery
    await p.producer.stop()
    produced, forwarded = p.producer.produced, p.producer.forwarded

    await wait_for(lambda: stored_counts(p.clickhouse)[1] >= produced, timeout=60,
                   message=lambda: f"stored {stored_counts(p.clickhouse)} of {produced} produced")
    await wait_for(lambda: p.points() >= forwarded, timeout=90,
                   message=lambda: f"{p.points()} points of {forwarded} forwarded")

    async def committed_everything() -> bool:
        return (await committed_total(p.bootstrap, p.groups["ingest"], p.topics.raw_logs) == produced and
                await committed_total(p.bootstrap, p.groups["vectorizer"], p.topics.vectorization_queue) == forwarded)

    await wait_for(committed_everything, timeout=30, message="offsets not committed after recovery")
    rows, distinct = stored_counts(p.clickhouse)
    assert rows == distinct == produced, (rows, distinct, produced)
    assert stored_ids(p.clickhouse) == p.producer.record_ids
    assert p.points() == forwarded
    assert p.ingestor.stats.dlq == 0 and p.vectorizer_service.stats.dlq == 0
    return {"produced": produced, "stored": distinct, "rows": rows, "forwarded": forwarded, "points": p.points()}


async def health(client: httpx.AsyncClient) -> dict:
    return (await client.get("/health")).json()


async def metric(client: httpx.AsyncClient, name: str, **labels: str) -> float | None:
    return metric_value((await client.get("/metrics")).text, name, **labels)


def report(p: Platform, dependency: str, how: str, **numbers) -> None:
    p.results.append({"dependency": dependency, "how": how, **numbers})
    print(f"\nOUTAGE {dependency}: {how}: {numbers}")


# --- the outages --------------------------------------------------------------------------------
async def test_clickhouse_away_pauses_ingest_commits_nothing_then_recovers(platform):
    p = platform
    await flowing(p)
    breaker = p.ingestor.breaker
    started = time.monotonic()
    faults.start("clickhouse", "outage test")
    try:
        await wait_for(lambda: breaker.is_open, timeout=15, message="the ClickHouse circuit did not open")
        body = await health(p.ingest)
        assert body["status"] == "unhealthy" and body["dependencies"]["clickhouse"] == "disconnected", body
        assert body["circuits"]["clickhouse"] == "open" and "clickhouse unavailable" in body["reasons"]["circuit:clickhouse"]
        assert await metric(p.ingest, "logpipe_circuit_open", service="ingest", dependency="clickhouse") == 1
        retries_at_open = await metric(p.ingest, "logpipe_dependency_retries_total", service="ingest",
                                       dependency="clickhouse")
        await wait_for(lambda: p.ingestor.consumer.stats.paused, timeout=5, message="ingest did not pause")
        committed = await committed_total(p.bootstrap, p.groups["ingest"], p.topics.raw_logs)
        written = p.ingestor.stats.written
        buffered: list[int] = []

        async def still_held() -> None:
            # Paused, nothing written, nothing more committed, memory bounded by the pause.
            assert breaker.is_open and p.ingestor.consumer.stats.paused
            assert p.ingestor.stats.written == written
            assert await committed_total(p.bootstrap, p.groups["ingest"], p.topics.raw_logs) == committed <= written
            buffered.append(p.ingestor.buffered)

        checks = await hold(started, still_held)
        retries = await metric(p.ingest, "logpipe_dependency_retries_total", service="ingest", dependency="clickhouse")
        # Backing off: a few tries a second at most, not a busy loop.
        assert retries_at_open < retries < retries_at_open + OUTAGE_SECONDS * 5
    finally:
        faults.end("clickhouse")
    down_for = time.monotonic() - started
    await wait_for(lambda: breaker.state == "closed", timeout=15, message="the circuit did not close")
    assert (await health(p.ingest))["status"] == "healthy"
    assert await metric(p.ingest, "logpipe_circuit_open", service="ingest", dependency="clickhouse") == 0
    counts = await recovered_and_complete(p)
    report(p, "clickhouse", "faults.outage('clickhouse') (chdb in-process)", down_seconds=round(down_for, 1),
           checks=checks, retries=int(retries), committed_while_down=committed, max_buffered=max(buffered), **counts)


async def test_embedder_stopped_pauses_the_vectorizer_ingest_goes_on(platform):
    p = platform
    await flowing(p)
    breaker = p.vectorizer_service.circuits["embedder"]
    started = time.monotonic()
    await p.embedder.stop()
    try:
        await wait_for(lambda: breaker.is_open, timeout=15, message="the embedder circuit did not open")
        body = await health(p.vectorizer)
        assert body["status"] == "unhealthy" and body["dependencies"]["embedder"] == "disconnected", body
        assert body["circuits"]["embedder"] == "open" and "unreachable" in body["reasons"]["circuit:embedder"]
        assert await metric(p.vectorizer, "logpipe_circuit_open", service="vectorizer", dependency="embedder") == 1
        await wait_for(lambda: p.vectorizer_service.consumer.stats.paused, timeout=5, message="not paused")
        committed = await committed_total(p.bootstrap, p.groups["vectorizer"], p.topics.vectorization_queue)
        vectorized = p.vectorizer_service.stats.vectorized
        written_at_open = p.ingestor.stats.written

        async def still_held() -> None:
            assert breaker.is_open and p.vectorizer_service.consumer.stats.paused
            assert p.vectorizer_service.stats.vectorized == vectorized and p.vectorizer_service.stats.dlq == 0
            assert await committed_total(p.bootstrap, p.groups["vectorizer"],
                                         p.topics.vectorization_queue) == committed <= vectorized

        checks = await hold(started, still_held)
        # The other consumers are not held up: ingest kept storing logs all along.
        assert p.ingestor.stats.written > written_at_open
        assert (await health(p.ingest))["status"] == "healthy"
        retries = await metric(p.vectorizer, "logpipe_dependency_retries_total", service="vectorizer",
                               dependency="embedder")
    finally:
        if p.embedder.server is None:
            await p.embedder.start()  # the same port
    down_for = time.monotonic() - started
    await wait_for(lambda: breaker.state == "closed", timeout=30, message="the circuit did not close")
    assert (await health(p.vectorizer))["circuits"]["embedder"] == "closed"
    counts = await recovered_and_complete(p)
    report(p, "embedder", "uvicorn server stopped, started again on the same port", down_seconds=round(down_for, 1),
           checks=checks, retries=int(retries), committed_while_down=committed, **counts)


async def test_qdrant_away_pauses_the_vectorizer_then_every_error_is_one_point(platform):
    p = platform
    await flowing(p)
    breaker = p.vectorizer_service.circuits["qdrant"]
    started = time.monotonic()
    faults.start("qdrant", "outage test")
    try:
        await wait_for(lambda: breaker.is_open, timeout=15, message="the Qdrant circuit did not open")
        body = await health(p.vectorizer)
        assert body["status"] == "unhealthy" and body["dependencies"]["qdrant"] == "disconnected", body
        assert body["circuits"]["qdrant"] == "open" and "qdrant unavailable" in body["reasons"]["circuit:qdrant"]
        assert await metric(p.vectorizer, "logpipe_circuit_open", service="vectorizer", dependency="qdrant") == 1
        await wait_for(lambda: p.vectorizer_service.consumer.stats.paused, timeout=5, message="not paused")
        committed = await committed_total(p.bootstrap, p.groups["vectorizer"], p.topics.vectorization_queue)
        vectorized = p.vectorizer_service.stats.vectorized

        async def still_held() -> None:
            assert breaker.is_open and p.vectorizer_service.consumer.stats.paused
            assert p.vectorizer_service.stats.vectorized == vectorized and p.vectorizer_service.stats.dlq == 0
            assert await committed_total(p.bootstrap, p.groups["vectorizer"],
                                         p.topics.vectorization_queue) == committed <= vectorized

        checks = await hold(started, still_held)
        retries = await metric(p.vectorizer, "logpipe_dependency_retries_total", service="vectorizer",
                               dependency="qdrant")
    finally:
        faults.end("qdrant")
    down_for = time.monotonic() - started
    await wait_for(lambda: breaker.state == "closed", timeout=15, message="the circuit did not close")
    counts = await recovered_and_complete(p)
    report(p, "qdrant", "faults.outage('qdrant') (qdrant-edge in-process)", down_seconds=round(down_for, 1),
           checks=checks, retries=int(retries), committed_while_down=committed, **counts)


async def test_redis_killed_the_cache_is_skipped_embeddings_go_on(platform):
    """Redis is a cache: while it is away the embedder computes every text (the circuit skips
    Redis instead of waiting on it), so the vectorizer is not paused and nothing waits."""
    p = platform
    await flowing(p)
    embedder_app = p.embedder.app
    breaker = embedder_app.state.health.circuits["redis"]
    cache = embedder_app.state.embedder.cache
    started = time.monotonic()
    p.redis.kill()
    try:
        await wait_for(lambda: breaker.is_open, timeout=15, message="the Redis circuit did not open")
        async with httpx.AsyncClient(base_url=p.embedder.url, timeout=10) as embedder:
            body = await health(embedder)
            assert body["status"] == "degraded" and body["dependencies"]["redis"] == "disconnected", body
            assert body["circuits"]["redis"] == "open" and "circuit:redis" in body["reasons"]
            assert await metric(embedder, "logpipe_circuit_open", service="embedder", dependency="redis") == 1
        vectorized = p.vectorizer_service.stats.vectorized
        skipped = cache.skipped

        async def going_on() -> None:
            assert breaker.state != "closed"
            assert not p.vectorizer_service.consumer.stats.paused

        checks = await hold(started, going_on)
        # Errors kept becoming points, and Redis was mostly not even asked.
        assert p.vectorizer_service.stats.vectorized > vectorized
        assert cache.skipped > skipped
        retries = breaker.retries_total
    finally:
        if p.redis.process.poll() is not None:
            p.redis.start()  # the same port, empty (no persistence)
    down_for = time.monotonic() - started
    await wait_for(lambda: breaker.state == "closed", timeout=30, message="the circuit did not close")
    counts = await recovered_and_complete(p)
    # The cache fills again.
    assert await cache.size() > 0
    report(p, "redis", "redis-server SIGKILLed, started again on the same port", down_seconds=round(down_for, 1),
           checks=checks, retries=retries, skipped_cache_calls=cache.skipped - skipped, **counts)


async def ship(p: Platform, token: str, count: int) -> httpx.Response:
    """`count` INFO logs through the gateway's JSON-lines route; counted as produced if accepted."""
    ids = [f"gw-{uuid.uuid4().hex}" for _ in range(count)]
    body = "\n".join(orjson.dumps({"service": "shipper", "level": "INFO", "message": f"shipped line {i}",
                                    "record_id": record_id}).decode() for i, record_id in enumerate(ids))
    response = await p.gateway.post("/api/ingest", content=body, headers={"Authorization": f"Bearer {token}"})
    if response.status_code == 200:
        p.producer.record_ids.update(ids)
    return response


async def test_postgres_stopped_logs_still_flow_analyze_answers_503_then_the_run_completes(platform):
    """PostgreSQL holds the analyzer's runs and the gateway's tokens; no log is stored in it.
    While it is away logs keep flowing (a shipper's recently verified token still works at the
    gateway), starting an analysis answers 503 with Retry-After, and both show the circuit."""
    p = platform
    await flowing(p)
    assert (await ship(p, p.tokens["shipper"], 20)).status_code == 200  # verified while PostgreSQL is up
    analyzer_circuit = p.apps["analyzer"].state.health.circuits["sql"]
    gateway_circuit = p.apps["gateway"].state.health.circuits["sql"]
    started = time.monotonic()
    p.postgres.stop()
    shipped_while_down = 0
    try:
        for _ in range(analyzer_circuit.threshold):
            answer = await p.analyzer.post("/analyze", json={"window_hours": 1})
            assert answer.status_code == 503 and int(answer.headers["Retry-After"]) >= 1, answer.text
            # A token the gateway never verified cannot be checked now: 503, not 401 or 500.
            refused = await ship(p, p.tokens["late"], 1)
            assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1, refused.text
        assert analyzer_circuit.is_open and gateway_circuit.is_open
        body = await health(p.analyzer)
        assert body["status"] == "unhealthy" and body["dependencies"]["sql"] == "disconnected", body
        assert body["circuits"]["sql"] == "open" and "circuit:sql" in body["reasons"]
        assert await metric(p.analyzer, "logpipe_circuit_open", service="analyzer", dependency="sql") == 1
        body = await health(p.gateway)
        assert body["status"] == "degraded" and body["circuits"]["sql"] == "open", body
        assert await metric(p.gateway, "logpipe_circuit_open", service="gateway", dependency="sql") == 1
        written = p.ingestor.stats.written

        async def logs_flow() -> None:
            nonlocal shipped_while_down
            assert (await health(p.ingest))["status"] == "healthy"
            shipped = await ship(p, p.tokens["shipper"], 5)
            assert shipped.status_code == 200, shipped.text
            shipped_while_down += 5

        checks = await hold(started, logs_flow)
        assert p.ingestor.stats.written > written
    finally:
        p.postgres.start()  # the same port and data
    down_for = time.monotonic() - started

    async def recovered() -> bool:
        return ((await health(p.analyzer))["status"] == "healthy" and
                (await health(p.gateway))["circuits"]["sql"] == "closed")

    await wait_for(recovered, timeout=30, message="the analyzer or the gateway did not recover")
    assert analyzer_circuit.state == "closed"
    assert (await ship(p, p.tokens["late"], 5)).status_code == 200
    counts = await recovered_and_complete(p)
    accepted = await p.analyzer.post("/analyze", json={"window_hours": 2})
    assert accepted.status_code == 202, accepted.text
    report_id = accepted.json()["report_id"]

    async def finished() -> dict | None:
        body = (await p.analyzer.get(f"/reports/{report_id}")).json()
        return body if body["status"] in ("completed", "failed") else None

    done = await wait_for(finished, timeout=120, interval=0.5)
    assert done["status"] == "completed", done
    # The run saw every log, those stored while PostgreSQL was away included.
    assert done["total_logs"] == counts["produced"], done
    report(p, "postgresql", "pg_ctl stop -m immediate, started again on the same port and data",
           down_seconds=round(down_for, 1), checks=checks, refused_with_503=analyzer_circuit.threshold,
           shipped_through_gateway_while_down=shipped_while_down, report_total_logs=done["total_logs"], **counts)
