"""Request metering shared by every service: counts per route and status, errors, latency."""

from __future__ import annotations

import httpx
from fastapi import HTTPException
from prometheus_client import REGISTRY

from logpipe.core.health import Health
from logpipe.core.http import create_service_app


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_requests_are_counted_per_route_template_and_status_and_failures_are_errors():
    health = Health("metered")
    app = create_service_app("metered", health)

    @app.get("/items/{item}")
    async def item(item: int) -> dict:
        if item == 0:
            raise HTTPException(404, "no such item")
        if item == 13:
            raise RuntimeError("boom")
        return {"item": item}

    ok = dict(service="metered", method="GET", route="/items/{item}", status="200")
    before = {status: sample("logpipe_http_requests_total", **{**ok, "status": status}) for status in ("200", "404", "500")}
    seconds_before = sample("logpipe_http_request_seconds_count", service="metered", route="/items/{item}")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://metered") as client:
        assert (await client.get("/items/1")).status_code == 200
        assert (await client.get("/items/2")).status_code == 200
        assert (await client.get("/items/0")).status_code == 404
        assert (await client.get("/items/13")).status_code == 500
        await client.get("/health")
        await client.get("/metrics")

    after = {status: sample("logpipe_http_requests_total", **{**ok, "status": status}) for status in ("200", "404", "500")}
    assert {s: after[s] - before[s] for s in after} == {"200": 2, "404": 1, "500": 1}
    assert sample("logpipe_http_request_seconds_count", service="metered", route="/items/{item}") - seconds_before == 4
    # Probes and scrapes are not requests; a raised exception is an error.
    assert (health.requests_total, health.errors_total) == (4, 1)
