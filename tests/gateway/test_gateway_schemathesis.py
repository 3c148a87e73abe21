"""Schemathesis over the gateway's OpenAPI schema: no generated request, valid or not, gets a 5xx;
with no token or a token without the operation's scope, none gets a 2xx; a token bound to one
pipeline never sees another pipeline's logs. The WebSockets (not in the OpenAPI document) are
called directly with every kind of token and with generated filters.

Runs against the real app (uvicorn) with its real dependencies: Tansu, chdb, SQLite, the
analyzer service and the embedder service with the real model.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime, timedelta, timezone

import schemathesis
import websockets
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from gateway_support import ServerThread, embedder_service, gateway_settings, insert_logs, make_rows, start_gateway

# More with GATEWAY_FUZZ_EXAMPLES=200 for a deeper, slower run.
EXAMPLES_PER_OPERATION = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "30"))
# Callers other than admin: the answer depends on the token before the input, so fewer suffice.
EXAMPLES_PER_CALLER = int(os.environ.get("GATEWAY_FUZZ_CALLER_EXAMPLES", "6"))
# Rows of the pipeline a bound token must never see (service and message markers).
FOREIGN_MARKERS = ("svc-team-b", "bravo-event", "svc-default", "default-event")


@schemathesis.serializer("application/x-ndjson", "application/x-protobuf")
def raw_body(_ctx, value):
    # The ingest bodies are declared as raw strings or bytes; send whatever was generated as is.
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return json.dumps(value, default=str).encode()


def fuzz(schema_dict: dict, base_url: str, headers: dict[str, str]) -> list[str]:
    schema = schemathesis.openapi.from_dict(schema_dict)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)
            examples = 5 if operation.path == "/api/analyze" else EXAMPLES_PER_OPERATION

            @given(case=strategy)
            @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            def check(case):
                response = case.call(base_url=base_url, headers=headers, timeout=60)
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} {case.query} -> "
                                    f"{response.status_code}: {response.text[:300]}")

            try:
                check()
            except Unsatisfiable:
                # Negative mode has nothing to break in an operation without parameters or body.
                assert mode is GenerationMode.NEGATIVE, operation.path
    return failures


def required_scopes() -> dict[tuple[str, str], str]:
    """(METHOD, path) -> the scope its `require(...)` dependency asks for, read off the routes."""
    from logpipe.gateway import routers

    def scope_of(dependant) -> str | None:
        for dependency in dependant.dependencies:
            name = getattr(dependency.call, "__name__", "")
            if name.startswith("require_"):
                return name.removeprefix("require_")
            found = scope_of(dependency)
            if found:
                return found
        return None

    scopes = {}
    for router in routers.ALL:
        for route in router.routes:
            scope = scope_of(route.dependant) if hasattr(route, "dependant") else None
            for method in getattr(route, "methods", None) or ():
                if scope:
                    scopes[(method, route.path)] = scope
    return scopes


def fuzz_as(schema_dict: dict, base_url: str, caller: str, token: str | None, scopes: frozenset[str],
            required: dict[tuple[str, str], str]) -> tuple[list[str], dict[str, int]]:
    """Positive requests to every operation as one caller; the answer must fit the caller's scope."""
    schema = schemathesis.openapi.from_dict(schema_dict)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    failures: list[str] = []
    statuses: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        needed = required.get((operation.method.upper(), operation.path))
        allowed = needed is None or "admin" in scopes or needed in scopes

        @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
        @settings(max_examples=EXAMPLES_PER_CALLER, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call(base_url=base_url, headers=headers, timeout=60)
            where = f"{caller}: {case.method} {case.formatted_path} {case.query} -> {response.status_code}"
            if needed is not None:
                key = "refused" if response.status_code in (401, 403) else f"{response.status_code // 100}xx"
                statuses[key] = statuses.get(key, 0) + 1
            if response.status_code >= 500:
                failures.append(f"{where}: {response.text[:300]}")
            elif not allowed and response.status_code not in ((401,) if token is None else (403,)):
                failures.append(f"{where} without the {needed!r} scope: {response.text[:300]}")
            elif caller == "bound" and any(marker in response.text for marker in FOREIGN_MARKERS):
                failures.append(f"{where}: another pipeline's data: {response.text[:300]}")
            if caller == "bound" and "alpha-event" in response.text:
                statuses["own pipeline's logs"] = statuses.get("own pipeline's logs", 0) + 1

        check()
    return failures, statuses


async def websocket_status(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """101 and the first message when the handshake is accepted, else the refusal's status and body."""
    try:
        async with websockets.connect(url, additional_headers=headers, open_timeout=15) as socket:
            return 101, await asyncio.wait_for(socket.recv(), 15)
    except websockets.exceptions.InvalidStatus as refused:
        return refused.response.status_code, refused.response.body.decode(errors="replace")


async def check_websockets(gateway) -> list[str]:
    failures = []
    expected = {None: 401, "lpt_000000000000_" + "x" * 43: 401, "ingest": 403, "bound": 403, "bound_other": 403,
                "read": 101, "admin": 101, "bound_default": 101}
    for path in ("/ws/logs", "/ws/events"):
        for who, status in expected.items():
            token = gateway.tokens.get(who, who)
            for url, headers in ((gateway.ws_url + path + (f"?token={token}" if token else ""), None),
                                 (gateway.ws_url + path, {"Authorization": f"Bearer {token}"} if token else None)):
                got, body = await websocket_status(url, headers)
                if got != status or (got == 101 and '"subscribed"' not in body):
                    failures.append(f"{path} as {who}: {got} (expected {status}) {body[:200]}")
    # Generated filters on the live tail: a clear 4xx or a subscription, never a 5xx.
    texts = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)
    filters = st.dictionaries(st.sampled_from(["level", "service", "contains", "token", "unknown"]), texts, max_size=4)
    examples: list[dict[str, str]] = []

    @given(params=filters)
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def collect(params):
        examples.append(params)

    collect()
    from urllib.parse import urlencode

    for params in examples:
        got, body = await websocket_status(f"{gateway.ws_url}/ws/logs?{urlencode(params)}", gateway.headers("read"))
        if got >= 500 or got not in (101, 400, 401):
            failures.append(f"/ws/logs?{urlencode(params)}: {got} {body[:200]}")
    return failures


async def test_no_generated_request_gets_a_5xx(kafka_bootstrap, topics, clickhouse, tmp_path, embedding_backend):
    from logpipe.analyzer.app import create_app as create_analyzer
    from logpipe.analyzer.settings import Settings as AnalyzerSettings
    from logpipe.core.broker import free_port
    from logpipe.stores.vectors import open_vector_store

    now = datetime.now(timezone.utc)
    insert_logs(clickhouse, make_rows(500, start=now - timedelta(hours=2), step_ms=10_000,
                                      level=lambda i: ("INFO", "WARN", "ERROR")[i % 3],
                                      service=lambda i: ("api", "db")[i % 2], pattern_id=lambda i: i % 7,
                                      pipeline="team-a", message=lambda i: f"alpha-event {i}"))
    # Two more pipelines' logs, which a token bound to team-a must never see.
    for pipeline, service, message, prefix in (("team-b", "svc-team-b", "bravo-event", "b"),
                                               ("default", "svc-default", "default-event", "d")):
        insert_logs(clickhouse, [dict(row, record_id=f"{prefix}{i}") for i, row in enumerate(make_rows(
            200, start=now - timedelta(hours=2), step_ms=30_000, level=lambda i: ("INFO", "ERROR")[i % 2],
            service=service, pipeline=pipeline, pattern_id=lambda i: 100 + i % 3,
            message=lambda i, m=message: f"{m} {i}"))])
    open_vector_store("", "log_embeddings", tmp_path).ensure_collection(embedding_backend.dimension)
    analyzer = ServerThread(create_analyzer(
        AnalyzerSettings(clickhouse_url=clickhouse.dsn, clickhouse_database=clickhouse.database,
                         data_dir=tmp_path, schedule_cron="", llm_backend="none"),
        store=clickhouse, embed=embedding_backend.embed), free_port()).start()
    embedder = embedder_service(tmp_path)
    # Rate limits off: the checks below are about what each token may do, not how often.
    gateway, server = start_gateway(gateway_settings(kafka_bootstrap, topics.prefix, clickhouse, tmp_path,
                                                     analyzer_url=analyzer.url, embedder_url=embedder.url,
                                                     rate_limit_anonymous_per_s=0, rate_limit_ingest_per_s=0))
    from logpipe.gateway.auth import create_token, open_engine

    gateway.tokens["bound_default"] = create_token(open_engine(gateway.settings), "default-viewer", ["read"],
                                                   pipeline="default").token
    try:
        schema = gateway.app.openapi()
        assert {"/api/logs", "/api/search/semantic", "/api/ingest", "/v1/logs", "/loki/api/v1/push"} <= set(schema["paths"])
        failures = await asyncio.to_thread(fuzz, schema, gateway.url, gateway.headers("admin"))
        assert not failures, "\n".join(failures[:20])

        required = required_scopes()
        assert required[("GET", "/api/logs")] == "read" and required[("POST", "/v1/logs")] == "ingest"
        assert required[("POST", "/api/tokens")] == "admin"
        callers = {"anonymous": (None, frozenset()), "read": (gateway.tokens["read"], frozenset({"read"})),
                   "ingest": (gateway.tokens["ingest"], frozenset({"ingest"})),
                   "bound": (gateway.tokens["bound"], frozenset({"read"}))}
        seen = {}
        for caller, (token, scopes) in callers.items():
            failures, statuses = seen[caller] = await asyncio.to_thread(fuzz_as, schema, gateway.url, caller, token,
                                                                        scopes, required)
            assert not failures, "\n".join(failures[:20])
            # The checks ran against real answers: refusals for each caller, successes for readers.
            assert statuses.get("refused"), (caller, statuses)
            assert statuses.get("2xx") or caller not in ("read", "bound"), (caller, statuses)
        # The bound token did read its own pipeline's logs: the absence of the others means something.
        assert seen["bound"][1].get("own pipeline's logs"), seen["bound"]
        failures = await check_websockets(gateway)
        assert not failures, "\n".join(failures[:20])
    finally:
        server.stop()
        embedder.stop()
        analyzer.stop()
