"""API security beyond access control (test_gateway_access.py): rate limits with 429 and
Retry-After, tokens compared only as hashes in constant time, no secret in logs, error bodies or
/metrics, and the services' own guarded ports reached by the gateway with the service token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets

import httpx
import pytest
import websockets

from gateway_support import ServerThread, gateway_settings, start_gateway
from logpipe import tokens
from logpipe.gateway.limits import RateLimiter

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def test_token_bucket_allows_a_burst_then_the_rate_per_key():
    now = [100.0]
    limiter = RateLimiter(2.0, 3, max_keys=2, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a") == pytest.approx(0.5)  # one token comes back every 1/rate s
    assert limiter.take("b") == 0  # another key has its own bucket
    now[0] += 0.5
    assert limiter.take("a") == 0 and limiter.take("a") == pytest.approx(0.5)
    now[0] += 60
    assert [limiter.take("a") for _ in range(4)][-1] > 0  # refills up to the burst, no further
    limiter.take("c")
    assert len(limiter._buckets) == 2  # bounded memory: the least recently used key went
    assert RateLimiter(0, 1).take("x") == 0  # rate 0: off


async def test_ingest_routes_answer_429_with_retry_after_per_token(kafka_bootstrap, topics, clickhouse, tmp_path):
    settings = gateway_settings(kafka_bootstrap, topics.prefix, clickhouse, tmp_path,
                                rate_limit_ingest_per_s=0.5, rate_limit_ingest_burst=2)
    gateway, server = start_gateway(settings)
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            answers = []
            for path, body, content_type in (("/api/ingest", b'{"message": "one"}', "application/x-ndjson"),
                                             ("/v1/logs", b'{"resourceLogs": []}', "application/json"),
                                             ("/loki/api/v1/push", b'{"streams": []}', "application/json")):
                answers.append(await client.post(path, content=body, headers={
                    **gateway.headers("ingest"), "Content-Type": content_type}))
            assert [answer.status_code < 300 for answer in answers[:2]] == [True, True], [a.text for a in answers]
            limited = answers[2]
            assert limited.status_code == 429, limited.text
            assert int(limited.headers["retry-after"]) >= 1
            assert "ingest request rate" in limited.json()["detail"]
            # The bucket is the token's own: another token still gets in.
            other = await client.post("/api/ingest", content=b'{"message": "two"}', headers=gateway.headers("admin"))
            assert other.status_code == 200, other.text
            # Reads are not charged to the ingest budget.
            assert (await client.get("/api/services", headers=gateway.headers("ingest"))).status_code == 403
            metrics = (await client.get("/metrics")).text
            assert re.search(r'logpipe_gateway_rate_limited_total\{limit="ingest"\} [1-9]', metrics)
    finally:
        server.stop()


async def test_requests_without_a_valid_token_are_limited_per_client_address(
        kafka_bootstrap, topics, clickhouse, tmp_path):
    settings = gateway_settings(kafka_bootstrap, topics.prefix, clickhouse, tmp_path,
                                rate_limit_anonymous_per_s=0.2, rate_limit_anonymous_burst=4)
    gateway, server = start_gateway(settings)
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            assert [(await client.get(path)).status_code for path in ("/health", "/", "/openapi.json")] == [200] * 3
            # A wrong token is charged to the same address' bucket (each guess costs a lookup).
            assert (await client.get("/api/whoami", headers={"Authorization": "Bearer lpt_000000000000_" + "x" * 43})
                    ).status_code == 401
            for path in ("/health", "/api/whoami", "/docs"):
                limited = await client.get(path)
                assert limited.status_code == 429, (path, limited.text)
                assert int(limited.headers["retry-after"]) >= 1
            wrong = await client.get("/api/whoami", headers={"Authorization": "Bearer lpt_000000000000_" + "y" * 43})
            assert wrong.status_code == 429 and wrong.headers["retry-after"]
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                async with websockets.connect(gateway.ws_url + "/ws/logs", open_timeout=10):
                    pass
            assert refused.value.response.status_code == 429
            assert refused.value.response.headers["retry-after"]
            # A token, even a valid one, buys no way round the limit where no token is needed.
            assert (await client.get("/health", headers=gateway.headers("read"))).status_code == 429
            assert (await client.get("/openapi.json", headers={"Authorization": "Bearer junk"})).status_code == 429
            # A valid token is not held back by the address' anonymous budget.
            whoami = await client.get("/api/whoami", headers=gateway.headers("read"))
            assert whoami.status_code == 200 and whoami.json()["name"] == "reader"
            async with websockets.connect(gateway.ws_url + f"/ws/logs?token={gateway.tokens['read']}",
                                          open_timeout=10) as socket:
                assert '"subscribed"' in await socket.recv()
            # Another client (told apart behind a trusted proxy) has its own bucket.
            elsewhere = await client.get("/health", headers={"X-Forwarded-For": "10.20.30.40"})
            assert elsewhere.status_code == 200
    finally:
        server.stop()


def test_token_store_compares_only_hashes_in_constant_time(tmp_path, monkeypatch):
    """Every decision on a presented token goes through hmac.compare_digest on two SHA-256
    hashes: with the comparison answering False, even the right token is refused."""
    from logpipe.core.settings import CommonSettings, ServiceSettings

    engine = tokens.open_engine(CommonSettings(data_dir=tmp_path))
    created = tokens.create_token(engine, "ci", ["read"])
    service_token = secrets.token_urlsafe(32)
    seen: list[tuple[str, str]] = []
    verdict = {"forced": None}
    real = hmac.compare_digest

    def spy(a, b):
        seen.append((a, b))
        return real(a, b) if verdict["forced"] is None else verdict["forced"]

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    expected = hashlib.sha256(created.token.encode()).hexdigest()

    assert tokens.verify_token(engine, created.token).name == "ci"
    verifier = tokens.TokenVerifier(engine, cache_s=60)
    assert verifier.verify(created.token).name == "ci"  # from the store
    assert verifier.verify(created.token).name == "ci"  # from the cache
    guard = tokens.ServiceGuard(ServiceSettings(host="0.0.0.0", service_token=service_token, data_dir=tmp_path))
    import asyncio

    assert asyncio.run(guard.authenticate(service_token, "admin")) is None
    assert asyncio.run(guard.authenticate(created.token, "read")) is None
    assert seen and all(HEX64.match(a) and HEX64.match(b) for a, b in seen), seen
    assert (expected, expected) in seen
    secret = created.token.split("_", 2)[2]
    assert not any(secret in a or secret in b or service_token in a or service_token in b for a, b in seen)
    # The cache is keyed by the public id and holds the hash, never the token.
    assert list(verifier._cache) == [created.id] and verifier._cache[created.id][1] == expected

    # The comparison decides: forced False, the right tokens are refused on every path.
    verdict["forced"] = False
    calls = len(seen)
    assert tokens.verify_token(engine, created.token) is None
    assert verifier.verify(created.token) is None
    assert asyncio.run(guard.authenticate(service_token, "admin"))[0] == 401
    assert len(seen) > calls
    # A wrong secret for a cached id goes to the store and does not evict the right entry.
    verdict["forced"] = None
    wrong = created.token[:-1] + ("A" if created.token[-1] != "A" else "B")
    assert verifier.verify(wrong) is None and verifier._cache[created.id][1] == expected
    assert verifier.verify(created.token).name == "ci"


class Capture(logging.Handler):
    """Every record the server side logs (the gateway runs in its own thread; this test's own
    clients, which log the URLs they send, run in the main thread and are left out)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.threadName == "MainThread":
            return
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(text + " " + repr({k: v for k, v in record.__dict__.items() if k not in ("msg", "args")}))


async def test_no_token_appears_in_logs_error_bodies_or_metrics(kafka_bootstrap, topics, clickhouse, tmp_path):
    capture = Capture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    # An earlier test may have run uvicorn in this process with its own logging config, which
    # stops "uvicorn" propagating (and log_level may have raised its level): as in a service,
    # where logpipe's config leaves them propagating to the root handler, for this test.
    uvicorn_loggers = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(logger.propagate, logger.level, logger.disabled) for logger in uvicorn_loggers]
    for logger in uvicorn_loggers:
        logger.propagate, logger.disabled = True, False
        logger.setLevel(logging.NOTSET)
    gateway, server = start_gateway(gateway_settings(kafka_bootstrap, topics.prefix, clickhouse, tmp_path))
    bodies: list[str] = []
    created_token = ""
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            created = await client.post("/api/tokens", json={"name": "temp", "scopes": ["ingest"]},
                                        headers=gateway.headers("admin"))
            assert created.status_code == 201 and created.headers["cache-control"] == "no-store"
            created_token = created.json()["token"]
            known = [*gateway.tokens.values(), created_token]
            wrong_secret = known[0][:-4] + "abcd"
            attempts = [
                ("GET", "/api/logs", {"Authorization": f"Bearer {gateway.tokens['read']}"}, None),
                ("GET", "/api/logs", {"Authorization": f"Bearer {wrong_secret}"}, None),
                ("GET", "/api/tokens", {"Authorization": f"Bearer {gateway.tokens['read']}"}, None),
                ("GET", "/api/logs", {"Authorization": "Basic " + base64.b64encode(
                    f"x:{gateway.tokens['ingest']}".encode()).decode()}, None),
                ("GET", "/api/logs", {"X-Api-Token": created_token}, None),
                ("POST", "/api/ingest", {"Authorization": f"Bearer {created_token}"}, b'{"message": "ok"}'),
                ("POST", "/api/ingest", {"Authorization": f"Bearer {created_token}"}, b'{"message": '),
                ("POST", "/api/ingest", {"Authorization": f"Bearer {gateway.tokens['bound_other']}"}, b'{"m": 1}'),
                ("POST", "/api/analyze", {"Authorization": f"Bearer {gateway.tokens['admin']}"}, b"{}"),
                ("GET", f"/api/logs?token={gateway.tokens['read']}", {}, None),
                ("GET", "/api/reports/nope", {"Authorization": f"Bearer {gateway.tokens['read']}"}, None),
            ]
            for method, path, headers, body in attempts:
                answer = await client.request(method, path, headers=headers, content=body)
                bodies.append(f"{answer.status_code} {answer.headers} {answer.text}")
            deleted = await client.delete(f"/api/tokens/{created.json()['id']}", headers=gateway.headers("admin"))
            assert deleted.status_code == 204
            revoked = await client.get("/api/logs", headers={"Authorization": f"Bearer {created_token}"})
            assert revoked.status_code == 401
            bodies.append(revoked.text)
            for token in (gateway.tokens["read"], gateway.tokens["ingest"], wrong_secret, created_token):
                try:
                    async with websockets.connect(f"{gateway.ws_url}/ws/logs?level=ERROR&token={token}",
                                                  open_timeout=10) as socket:
                        bodies.append(await socket.recv())
                except websockets.exceptions.InvalidStatus as refused:
                    bodies.append(refused.response.body.decode(errors="replace"))
            metrics = (await client.get("/metrics")).text
    finally:
        server.stop()
        root.removeHandler(capture)
        root.setLevel(previous)
        for logger, (propagate, level, disabled) in zip(uvicorn_loggers, saved):
            logger.propagate, logger.disabled = propagate, disabled
            logger.setLevel(level)
    logs = "\n".join(capture.lines)
    assert "WebSocket /ws/logs" in logs  # uvicorn logged the tail's URL: with its token redacted
    assert "token=[redacted]" in logs
    for token in (*known, wrong_secret):
        secret = token.split("_", 2)[2]
        for where, text in (("logs", logs), ("metrics", metrics), ("responses", "\n".join(bodies))):
            assert secret not in text, (where, token)


async def test_gateway_reaches_guarded_analyzer_and_embedder_with_the_service_token(
        kafka_bootstrap, topics, clickhouse, tmp_path, embedding_backend):
    """The real analyzer and embedder configured as in the chart (every interface, a service
    token) behind the real gateway: semantic search and POST /api/analyze go through; a direct
    call without a token does not; API tokens of the shared store work with their scope."""
    from logpipe.analyzer.app import create_app as create_analyzer
    from logpipe.analyzer.settings import Settings as AnalyzerSettings
    from logpipe.core.broker import free_port
    from logpipe.embedder.app import create_app as create_embedder
    from logpipe.embedder.settings import Settings as EmbedderSettings
    from logpipe.stores.vectors import open_vector_store

    service_token = secrets.token_urlsafe(32)
    guarded = dict(host="0.0.0.0", service_token=service_token)
    open_vector_store("", "log_embeddings", tmp_path).ensure_collection(embedding_backend.dimension)
    analyzer = ServerThread(create_analyzer(
        AnalyzerSettings(clickhouse_url=clickhouse.dsn, clickhouse_database=clickhouse.database, data_dir=tmp_path,
                         schedule_cron="", llm_backend="none", **guarded),
        store=clickhouse, embed=embedding_backend.embed), free_port()).start()
    port = free_port()
    embedder = ServerThread(create_embedder(EmbedderSettings(LOGPIPE_DATA_DIR=str(tmp_path), port=port, **guarded)),
                            port).start()
    gateway, server = start_gateway(gateway_settings(kafka_bootstrap, topics.prefix, clickhouse, tmp_path,
                                                     analyzer_url=analyzer.url, embedder_url=embedder.url,
                                                     service_token=service_token))
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            assert (await client.post(f"{analyzer.url}/analyze", json={})).status_code == 401
            assert (await client.post(f"{embedder.url}/embed", json={"text": "x"})).status_code == 401
            assert (await client.get(f"{analyzer.url}/reports")).status_code == 401
            started = await client.post(f"{gateway.url}/api/analyze", json={"window_hours": 1},
                                        headers=gateway.headers("admin"))
            assert started.status_code == 202 and started.json()["report_id"], started.text
            found = await client.post(f"{gateway.url}/api/search/semantic", json={"query": "payment declined"},
                                      headers=gateway.headers("read"))
            assert found.status_code == 200, found.text
            # The analyzer shares the gateway's token store (same data directory here).
            direct = await client.post(f"{analyzer.url}/analyze", json={}, headers=gateway.headers("admin"))
            assert direct.status_code == 202, direct.text
            denied = await client.post(f"{analyzer.url}/analyze", json={}, headers=gateway.headers("read"))
            assert denied.status_code == 403 and "admin" in denied.json()["detail"]
            embedded = await client.post(f"{embedder.url}/embed", json={"text": "x"}, headers=gateway.headers("read"))
            assert embedded.status_code == 200 and len(embedded.json()["embedding"]) == embedding_backend.dimension
    finally:
        server.stop()
        embedder.stop()
        analyzer.stop()
