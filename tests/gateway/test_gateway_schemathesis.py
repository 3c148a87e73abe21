"""Schemathesis over the gateway's OpenAPI schema: no generated request, valid or not, gets a 5xx.

Runs against the real app (uvicorn) with its real dependencies: Tansu, chdb, SQLite, the
analyzer service and the embedder service with the real model.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime, timedelta, timezone

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from gateway_support import ServerThread, embedder_service, gateway_settings, insert_logs, make_rows, start_gateway

# More with GATEWAY_FUZZ_EXAMPLES=200 for a deeper, slower run.
EXAMPLES_PER_OPERATION = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "30"))


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


async def test_no_generated_request_gets_a_5xx(kafka_bootstrap, topics, clickhouse, tmp_path, embedding_backend):
    from logpipe.analyzer.app import create_app as create_analyzer
    from logpipe.analyzer.settings import Settings as AnalyzerSettings
    from logpipe.core.broker import free_port
    from logpipe.stores.vectors import open_vector_store

    now = datetime.now(timezone.utc)
    insert_logs(clickhouse, make_rows(500, start=now - timedelta(hours=2), step_ms=10_000,
                                      level=lambda i: ("INFO", "WARN", "ERROR")[i % 3],
                                      service=lambda i: ("api", "db")[i % 2], pattern_id=lambda i: i % 7))
    open_vector_store("", "log_embeddings", tmp_path).ensure_collection(embedding_backend.dimension)
    analyzer = ServerThread(create_analyzer(
        AnalyzerSettings(clickhouse_url=clickhouse.dsn, clickhouse_database=clickhouse.database,
                         data_dir=tmp_path, schedule_cron="", llm_backend="none"),
        store=clickhouse, embed=embedding_backend.embed), free_port()).start()
    embedder = embedder_service(tmp_path)
    gateway, server = start_gateway(gateway_settings(kafka_bootstrap, topics.prefix, clickhouse, tmp_path,
                                                     analyzer_url=analyzer.url, embedder_url=embedder.url))
    try:
        schema = gateway.app.openapi()
        assert {"/api/logs", "/api/search/semantic", "/api/ingest", "/v1/logs", "/loki/api/v1/push"} <= set(schema["paths"])
        failures = await asyncio.to_thread(fuzz, schema, gateway.url, gateway.headers("admin"))
        assert not failures, "\n".join(failures[:20])
    finally:
        server.stop()
        embedder.stop()
        analyzer.stop()
