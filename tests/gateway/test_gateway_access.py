"""Access control: tokens hashed at rest, 401/403 on every protected route and WebSocket, pipelines."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import websockets

from gateway_support import insert_logs, make_rows
from logpipe.gateway import auth

PUBLIC = {("GET", "/health"), ("GET", "/metrics"), ("GET", "/openapi.json"), ("GET", "/docs"),
          ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc")}
INGEST_ROUTES = {"/api/ingest", "/v1/logs", "/loki/api/v1/push"}
ADMIN_ROUTES = {"/api/analyze", "/api/tokens", "/api/tokens/{token_id}"}
WEBSOCKETS = ("/ws/logs", "/ws/events")


def protected_routes(app) -> list[tuple[str, str, str]]:
    """(method, concrete path, needed scope) for every HTTP operation in the OpenAPI schema."""
    routes = []
    for path, operations in app.openapi()["paths"].items():
        for method in operations:
            method = method.upper()
            if (method, path) in PUBLIC:
                continue
            scope = "ingest" if path in INGEST_ROUTES else "admin" if path in ADMIN_ROUTES else "read"
            concrete = path.replace("{report_id}", "r1").replace("{token_id}", "abcdefabcdef")
            routes.append((method, concrete, scope))
    return routes


def test_tokens_are_hashed_at_rest_and_revocable(tmp_path):
    from logpipe.core.settings import CommonSettings

    settings = CommonSettings(data_dir=tmp_path)
    engine = auth.open_engine(settings)
    created = auth.create_token(engine, "ci", ["read", "ingest"], pipeline="team-a")
    assert created.token.startswith("lpt_") and len(created.token) > 50
    principal = auth.verify_token(engine, created.token)
    assert principal.scopes == {"read", "ingest"} and principal.pipeline == "team-a"
    assert principal.allows("read") and not principal.allows("admin")

    database = tmp_path / "logpipe.db"
    with sqlite3.connect(database) as connection:
        stored = connection.execute("SELECT token_hash FROM api_tokens WHERE id = ?", (created.id,)).fetchone()[0]
    assert stored == hashlib.sha256(created.token.encode()).hexdigest()
    secret = created.token.split("_", 2)[2]  # lpt_<id>_<secret>; the secret itself may hold "_"
    assert len(secret) == 43
    for path in tmp_path.iterdir():
        assert secret.encode() not in path.read_bytes()

    tampered = created.token[:-1] + ("A" if created.token[-1] != "A" else "B")
    assert auth.verify_token(engine, tampered) is None
    assert auth.verify_token(engine, "lpt_000000000000_" + secret) is None
    assert auth.verify_token(engine, "") is None
    assert auth.revoke_token(engine, created.id) is True
    assert auth.verify_token(engine, created.token) is None
    assert auth.revoke_token(engine, created.id) is False

    with pytest.raises(ValueError, match="unknown scope"):
        auth.create_token(engine, "x", ["write"])
    with pytest.raises(ValueError, match="at least one scope"):
        auth.create_token(engine, "x", [])


def test_bootstrap_token_only_when_none_exists(tmp_path):
    from logpipe.core.settings import CommonSettings

    settings = CommonSettings(data_dir=tmp_path)
    first = auth.ensure_bootstrap_token(settings)
    assert first and auth.verify_token(auth.open_engine(settings), first).allows("admin")
    assert auth.ensure_bootstrap_token(settings) is None


def test_cli_create_list_revoke(tmp_path, monkeypatch, capsys):
    from logpipe.cli import main

    monkeypatch.setenv("LOGPIPE_DATA_DIR", str(tmp_path))
    main(["tokens", "create", "--name", "fluent-bit", "--scope", "ingest", "--pipeline", "team-a"])
    token = capsys.readouterr().out.strip()
    principal = auth.verify_token(auth.open_engine(type("S", (), {"database_url": "", "data_dir": tmp_path})()),
                                  token)
    assert principal.scopes == {"ingest"} and principal.pipeline == "team-a"
    main(["tokens", "list"])
    listing = capsys.readouterr().out
    assert principal.token_id in listing and "fluent-bit" in listing and "active" in listing
    assert token not in listing
    main(["tokens", "revoke", principal.token_id])
    capsys.readouterr()
    main(["tokens", "list", "--all"])
    assert "revoked" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no active token"):
        main(["tokens", "revoke", principal.token_id])
    with pytest.raises(SystemExit, match="unknown scope"):
        main(["tokens", "create", "--name", "x", "--scope", "superuser"])


async def test_every_protected_route_needs_a_token_with_the_right_scope(gateway):
    routes = protected_routes(gateway.app)
    paths = {path for _, path, _ in routes}
    assert {"/api/logs", "/api/search/semantic", "/api/reports", "/api/reports/r1", "/api/analyze",
            "/api/patterns", "/api/anomalies", "/api/metrics", "/api/services", "/api/ingest", "/v1/logs",
            "/loki/api/v1/push"} <= paths
    wrong = {"read": "ingest", "ingest": "read", "admin": "read"}
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        for method, path, scope in routes:
            response = await client.request(method, path)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers.get("www-authenticate") == "Bearer"
            response = await client.request(method, path, headers={"Authorization": "Bearer lpt_nope"})
            assert response.status_code == 401, (method, path)
            response = await client.request(method, path, headers=gateway.headers(wrong[scope]))
            assert response.status_code == 403, (method, path, response.text)
            assert scope in response.json()["detail"]
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200


async def test_websockets_refuse_missing_bad_and_wrong_scope_tokens(gateway):
    for path in WEBSOCKETS:
        for token, status in ((None, 401), ("lpt_bad", 401), (gateway.tokens["ingest"], 403),
                              (gateway.tokens["bound"], 403)):
            url = gateway.ws_url + path + (f"?token={token}" if token else "")
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                async with websockets.connect(url, open_timeout=10):
                    pass
            assert refused.value.response.status_code == status, (path, token, status)
        # The header works as well as the query parameter.
        async with websockets.connect(gateway.ws_url + path, additional_headers=gateway.headers("read"),
                                      open_timeout=10) as socket:
            hello = await socket.recv()
            assert '"subscribed"' in hello


async def test_pipeline_bound_token_sees_only_its_pipeline(gateway, clickhouse):
    now = datetime.now(timezone.utc)
    insert_logs(clickhouse, make_rows(5, start=now - timedelta(minutes=3), pipeline="team-a", service="a-svc")
                + [dict(row, record_id=f"b{i}") for i, row in enumerate(
                    make_rows(7, start=now - timedelta(minutes=3), pipeline="team-b", service="b-svc"))])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        everything = (await client.get("/api/logs", headers=gateway.headers("read"))).json()
        assert everything["total"] == 12
        mine = (await client.get("/api/logs", headers=gateway.headers("bound"))).json()
        assert mine["total"] == 5 and {log["pipeline"] for log in mine["logs"]} == {"team-a"}
        refused = await client.get("/api/logs", params={"pipeline": "team-b"}, headers=gateway.headers("bound"))
        assert refused.status_code == 403 and "team-a" in refused.json()["detail"]
        services = (await client.get("/api/services", headers=gateway.headers("bound"))).json()
        assert [s["service"] for s in services["services"]] == ["a-svc"]
        # A token bound to another pipeline cannot ingest into this gateway's pipeline.
        response = await client.post("/api/ingest", content=b'{"message": "x"}',
                                     headers=gateway.headers("bound_other"))
        assert response.status_code == 403


async def test_revoked_token_stops_working(gateway):
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        created = await client.post("/api/tokens", json={"name": "temp", "scopes": ["read"]},
                                    headers=gateway.headers("admin"))
        assert created.status_code == 201
        token = created.json()["token"]
        assert (await client.get("/api/services", headers={"Authorization": f"Bearer {token}"})).status_code == 200
        listed = (await client.get("/api/tokens", headers=gateway.headers("admin"))).json()
        assert all("token" not in item for item in listed) and "temp" in {item["name"] for item in listed}
        response = await client.delete(f"/api/tokens/{created.json()['id']}", headers=gateway.headers("admin"))
        assert response.status_code == 204
        assert (await client.get("/api/services", headers={"Authorization": f"Bearer {token}"})).status_code == 401
        # HTTP Basic with the token as password (what Loki clients send) is accepted too.
        basic = httpx.BasicAuth("logpipe", gateway.tokens["read"])
        assert (await client.get("/api/services", auth=basic)).status_code == 200
