"""The /health contract: healthy, degraded (a non-critical dependency down), unhealthy (503)."""

from __future__ import annotations

import httpx

from logpipe.core.health import Health
from logpipe.core.http import create_service_app


async def get_health(health: Health) -> httpx.Response:
    app = create_service_app("demo", health)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo") as client:
        await client.get("/nothing-here")  # counted as a request (404), not an error
        return await client.get("/health")


async def test_healthy():
    health = Health("demo")
    health.add("clickhouse", lambda: True)

    async def kafka() -> bool:
        return True

    health.add("kafka", kafka)
    response = await get_health(health)
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "healthy" and body["service"] == "demo"
    assert body["dependencies"] == {"clickhouse": "connected", "kafka": "connected"}
    assert body["metrics"] == {"requests_total": 1, "errors_total": 0}
    assert body["uptime_seconds"] >= 0 and body["version"]


async def test_degraded_when_a_non_critical_dependency_is_down():
    health = Health("demo")
    health.add("clickhouse", lambda: True)
    health.add("redis", lambda: False, critical=False)
    response = await get_health(health)
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["dependencies"]["redis"] == "disconnected"


async def test_unhealthy_is_503_and_a_raising_probe_counts_as_down():
    def broken() -> bool:
        raise ConnectionError("refused")

    health = Health("demo")
    health.add("clickhouse", broken)
    response = await get_health(health)
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"
