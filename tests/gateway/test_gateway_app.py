"""The gateway app itself: the dashboard at /, CORS, health, `logpipe run gateway` wiring."""

from __future__ import annotations

import httpx

from gateway_support import gateway_settings, start_gateway


async def test_serves_the_dashboard_and_keeps_the_api_protected(kafka_bootstrap, topics, clickhouse, tmp_path):
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>logpipe</title><div id=root></div>")
    (dist / "assets" / "app.js").write_text("console.log('logpipe')")
    settings = gateway_settings(kafka_bootstrap, topics.prefix, clickhouse, tmp_path, frontend_dir=dist,
                                cors_origins="http://localhost:5173")
    gateway, server = start_gateway(settings)
    try:
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            index = await client.get("/")
            assert index.status_code == 200 and "<title>logpipe</title>" in index.text
            asset = await client.get("/assets/app.js")
            assert asset.status_code == 200 and "console.log" in asset.text
            # Client-side routes of the single-page app load the same index.
            assert "<div id=root>" in (await client.get("/logs/live")).text
            assert (await client.get("/../../etc/passwd")).status_code in (200, 404)
            assert "root:" not in (await client.get("/..%2f..%2fetc%2fpasswd")).text
            # The dashboard is public; its data is not.
            assert (await client.get("/api/logs")).status_code == 401
            assert (await client.get("/api/nothing-here", headers=gateway.headers("read"))).status_code == 404

            preflight = await client.options("/api/logs", headers={
                "Origin": "http://localhost:5173", "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "Authorization"})
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == "http://localhost:5173"
            stranger = await client.options("/api/logs", headers={
                "Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
            assert "access-control-allow-origin" not in stranger.headers
        store = gateway.app.state.store
        assert store._idle, "the gateway has used ClickHouse"
    finally:
        server.stop()
    # Stopping closes the store's ClickHouse handles (HTTP sessions against a server).
    assert store._idle == []


async def test_without_a_dashboard_build_root_points_to_the_docs_and_no_cors(gateway):
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        root = await client.get("/")
        assert root.status_code == 200 and root.json()["docs"] == "/docs"
        assert "not built" in root.json()["dashboard"]
        assert (await client.get("/some/page")).status_code == 404
        response = await client.get("/health", headers={"Origin": "http://localhost:5173"})
        assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
        body = response.json()
        assert body["service"] == "gateway" and body["dependencies"] == {
            "clickhouse": "connected", "kafka": "connected", "sql": "connected"}
        docs = await client.get("/openapi.json")
        assert docs.status_code == 200 and "/api/logs" in docs.json()["paths"]


def test_cli_knows_the_gateway_and_its_subcommand():
    from logpipe.cli import build_parser
    from logpipe.runner import SERVICES, load_service, service_available

    assert "gateway" in SERVICES and service_available("gateway")
    create_app, settings_cls = load_service("gateway")
    assert settings_cls().port == 8000
    args = build_parser().parse_args(["tokens", "create", "--name", "x", "--scope", "read"])
    assert args.func.__module__ == "logpipe.gateway.cli"
