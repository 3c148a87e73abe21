"""The services' own ports (generator, ingest, embedder, vectorizer, analyzer): every route that
changes state or costs compute asks for a token when the service listens beyond loopback
(logpipe.tokens.ServiceGuard), and takes the service token or an API token with its scope.

Every operation of each service's OpenAPI document is called, so a route added later without
the guard fails here. The apps are built with their real settings and routers; their stores are
not opened (the guard answers before a handler runs). The real analyzer and embedder behind
the real gateway, guarded as in the chart: tests/gateway/test_gateway_security.py."""

from __future__ import annotations

import importlib
import secrets

import httpx
import pytest
from fastapi.testclient import TestClient

from logpipe.tokens import create_token, open_engine

SERVICES = ("generator", "ingest", "embedder", "vectorizer", "analyzer")
# Reading a service's counters (/stats) or probing it costs nothing and changes nothing.
OPEN = {("get", "/health"), ("get", "/stats")}
# What an API token needs on each guarded route (the service token stands for every scope).
READ_SCOPE = {("post", "/embed"), ("post", "/embed/batch"), ("get", "/reports/latest"), ("get", "/reports"),
              ("get", "/reports/{report_id}.md"), ("get", "/reports/{report_id}.json"),
              ("get", "/reports/{report_id}")}
SERVICE_TOKEN = secrets.token_urlsafe(32)


def build(name: str, tmp_path, **overrides):
    app_module = importlib.import_module(f"logpipe.{name}.app")
    settings_module = importlib.import_module(f"logpipe.{name}.settings")
    options = dict(host="0.0.0.0", service_token=SERVICE_TOKEN, data_dir=tmp_path, pipeline="team-a")
    options.update(overrides)
    app = app_module.create_app(settings_module.Settings(**options))
    # No lifespan: nothing is opened, so a request the guard lets through fails in its handler
    # (500) or in validation (422): either way it was not refused (401/403).
    return app, TestClient(app, raise_server_exceptions=False)


def operations(app) -> list[tuple[str, str]]:
    return [(method, path) for path, item in app.openapi()["paths"].items() for method in item]


def call(client: TestClient, method: str, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.request(method, path.replace("{report_id}", "r1"), headers=headers)


@pytest.mark.parametrize("name", SERVICES)
def test_state_changing_routes_refuse_callers_without_a_token(name, tmp_path):
    app, client = build(name, tmp_path)
    guarded = [op for op in operations(app) if op not in OPEN]
    assert guarded, name
    for method, path in operations(app):
        anonymous = call(client, method, path)
        if (method, path) in OPEN:
            assert anonymous.status_code not in (401, 403), (name, method, path)
            continue
        assert anonymous.status_code == 401, (name, method, path, anonymous.text)
        assert anonymous.headers["www-authenticate"] == "Bearer"
        for wrong in ("nope", SERVICE_TOKEN[:-1] + ("A" if SERVICE_TOKEN[-1] != "A" else "B"),
                      "lpt_000000000000_" + "x" * 43):
            assert call(client, method, path, wrong).status_code == 401, (name, method, path, wrong)
        # Errors never echo what was presented.
        assert SERVICE_TOKEN not in anonymous.text
        assert call(client, method, path, SERVICE_TOKEN).status_code not in (401, 403), (name, method, path)


def test_every_expensive_route_of_each_service_is_guarded(tmp_path):
    guarded = {name: sorted(op for op in operations(build(name, tmp_path)[0]) if op not in OPEN)
               for name in SERVICES}
    assert guarded == {
        "generator": [("post", "/start"), ("post", "/stop"), ("put", "/control")],
        "ingest": [("post", "/flush")],
        "embedder": [("post", "/cache/clear"), ("post", "/embed"), ("post", "/embed/batch")],
        "vectorizer": [("post", "/process")],
        "analyzer": sorted([("post", "/analyze"), *[op for op in READ_SCOPE if op[1].startswith("/reports")]]),
    }


@pytest.mark.parametrize("name", SERVICES)
def test_api_tokens_of_the_shared_store_work_with_their_scope_and_pipeline(name, tmp_path):
    engine = open_engine(type("S", (), {"database_url": "", "data_dir": tmp_path})())
    admin = create_token(engine, "ops", ["admin"]).token
    reader = create_token(engine, "viewer", ["read"]).token
    same_pipeline = create_token(engine, "team-a-ops", ["admin"], pipeline="team-a").token
    other_pipeline = create_token(engine, "team-b-ops", ["admin"], pipeline="team-b").token
    app, client = build(name, tmp_path)
    for method, path in operations(app):
        if (method, path) in OPEN:
            continue
        assert call(client, method, path, admin).status_code not in (401, 403), (name, method, path)
        assert call(client, method, path, same_pipeline).status_code not in (401, 403), (name, method, path)
        refused = call(client, method, path, other_pipeline)
        assert refused.status_code == 403 and "team-b" in refused.json()["detail"], (name, method, path)
        read = call(client, method, path, reader)
        if (method, path) in READ_SCOPE:
            assert read.status_code not in (401, 403), (name, method, path)
        else:
            assert read.status_code == 403 and "admin" in read.json()["detail"], (name, method, path)


@pytest.mark.parametrize("host, mode, required", [
    ("127.0.0.1", "auto", False), ("localhost", "auto", False), ("::1", "auto", False),
    ("0.0.0.0", "auto", True), ("10.1.2.3", "auto", True), ("127.0.0.1", "on", True), ("0.0.0.0", "off", False),
])
def test_loopback_alone_needs_no_token_unless_asked(host, mode, required, tmp_path):
    _, client = build("generator", tmp_path, host=host, service_auth=mode, service_token="")
    answer = client.put("/control", json={"rate_per_second": 5})
    assert (answer.status_code == 401) is required, (host, mode, answer.status_code)


def test_a_short_service_token_is_refused_at_start(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="at least 32 characters"):
        build("embedder", tmp_path, service_token="short")


def test_services_in_one_process_share_a_fresh_service_token(monkeypatch):
    from logpipe.runner import shared_service_token

    monkeypatch.delenv("LOGPIPE_SERVICE_TOKEN", raising=False)
    first, second = shared_service_token(["embedder", "gateway"]), shared_service_token(["embedder", "gateway"])
    assert len(first["service_token"]) >= 32 and first != second
    assert shared_service_token(["embedder"]) == {}  # one service per process: configured, or none
    monkeypatch.setenv("LOGPIPE_SERVICE_TOKEN", "c" * 40)
    assert shared_service_token(["embedder", "gateway"]) == {}  # the configured one is used as is
