"""The endpoints the dashboard reads: whoami, the log histogram, pattern sparklines, service
series, and the dashboard's own static serving; over the real gateway, chdb and Tansu."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest

from gateway_support import gateway_settings, insert_logs, make_rows, start_gateway


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_whoami_names_the_token_and_its_pipeline(gateway):
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        bound = await client.get("/api/whoami", headers=gateway.headers("bound"))
        assert bound.status_code == 200
        assert bound.json() == {"name": "team-a", "scopes": ["read"], "pipeline": "team-a"}
        admin = (await client.get("/api/whoami", headers=gateway.headers("admin"))).json()
        assert admin == {"name": "admin", "scopes": ["admin"], "pipeline": None}
        assert (await client.get("/api/whoami")).status_code == 401
        wrong = await client.get("/api/whoami", headers={"Authorization": "Bearer lpt_not-a-token"})
        assert wrong.status_code == 401
        # An ingest-only token is valid but may not read: the dashboard must tell it apart.
        assert (await client.get("/api/whoami", headers=gateway.headers("ingest"))).status_code == 403


def seed_mixed(clickhouse, now: datetime) -> None:
    """300 logs over the last 50 minutes: three services, four levels, two patterns, two pipelines."""
    insert_logs(clickhouse, make_rows(
        300, start=now - timedelta(minutes=50), step_ms=10_000,
        service=lambda i: ("api", "db", "web")[i % 3],
        level=lambda i: ("INFO", "INFO", "WARN", "ERROR", "DEBUG")[i % 5],
        message=lambda i: f"request {i} {'timed out' if i % 4 == 0 else 'ok'}",
        pattern_id=lambda i: 7 if i % 2 else 8,
        pipeline=lambda i: "team-a" if i % 10 == 0 else "default",
        trace_id=lambda i: f"trace-{i % 25}"))


@pytest.mark.parametrize("buckets", [1, 7, 60, 500])
async def test_histogram_totals_equal_the_log_totals(gateway, clickhouse, buckets):
    now = datetime.now(timezone.utc)
    seed_mixed(clickhouse, now)
    start, end = now - timedelta(minutes=47, seconds=13), now - timedelta(minutes=3, seconds=1)
    filters = [{}, {"level": "ERROR,WARN"}, {"service": "db"}, {"contains": "TIMED OUT"},
               {"trace_id": "trace-3"}, {"pattern_id": 7, "service": ["api", "web"]}, {"pipeline": "team-a"}]
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read"), timeout=30) as client:
        for extra in filters:
            params = {"start": iso(start), "end": iso(end), **extra}
            logs = (await client.get("/api/logs", params={**params, "limit": 1})).json()
            response = await client.get("/api/logs/histogram", params={**params, "buckets": buckets})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["total"] == logs["total"] > 0, extra
            assert sum(bucket["total"] for bucket in body["buckets"]) == body["total"]
            assert all(sum(b["counts"].values()) == b["total"] for b in body["buckets"])
            assert all(set(b["counts"]) == set(body["levels"]) for b in body["buckets"])
            # Aligned, contiguous buckets covering [start, end), no more than asked for.
            step = timedelta(seconds=body["step_seconds"])
            starts = [parse(b["start"]) for b in body["buckets"]]
            assert 1 <= len(starts) <= buckets
            assert all(b - a == step for a, b in zip(starts, starts[1:]))
            assert all(int(s.timestamp()) % body["step_seconds"] == 0 for s in starts)
            assert starts[0] <= start < starts[0] + step and starts[-1] < end <= starts[-1] + step
            assert (parse(body["start"]), parse(body["end"])) == (start.replace(microsecond=start.microsecond // 1000 * 1000),
                                                                    end.replace(microsecond=end.microsecond // 1000 * 1000))
        errors = (await client.get("/api/logs/histogram", params={
            "start": iso(start), "end": iso(end), "level": "ERROR", "buckets": buckets})).json()
        assert errors["levels"] == ["ERROR"]


async def test_histogram_defaults_to_the_last_hour_and_refuses_bad_input(gateway, clickhouse):
    now = datetime.now(timezone.utc)
    insert_logs(clickhouse, make_rows(10, start=now - timedelta(minutes=30), step_ms=60_000)
                + [dict(row, record_id=f"old{i}") for i, row in enumerate(
                    make_rows(5, start=now - timedelta(hours=3), step_ms=1000))])
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read")) as client:
        body = (await client.get("/api/logs/histogram")).json()
        # An hour that does not start on a minute needs 61 one-minute buckets: 60 asked gives 2 minutes.
        assert body["total"] == 10 and body["step_seconds"] == 120 and len(body["buckets"]) == 31
        assert timedelta(minutes=59) < parse(body["end"]) - parse(body["start"]) <= timedelta(hours=1)
        assert body["levels"] == ["INFO"]
        wide = (await client.get("/api/logs/histogram", params={"since": "6h", "buckets": 12})).json()
        assert wide["total"] == 15 and wide["step_seconds"] == 3600 and len(wide["buckets"]) == 7
        for params in ({"buckets": 0}, {"buckets": 501}, {"level": "LOUD"}, {"since": "yesterday"},
                       {"start": iso(now), "end": iso(now - timedelta(hours=1))}):
            response = await client.get("/api/logs/histogram", params=params)
            assert response.status_code in (400, 422), (params, response.text)


async def test_pattern_sparklines_growth_and_new(gateway, clickhouse):
    end = datetime.now(timezone.utc).replace(microsecond=0)
    start = end - timedelta(hours=1)
    previous = start - timedelta(hours=1)
    # Pattern 1: 10 logs in the previous hour, 30 now (growth 2.0). Pattern 2: only now (new).
    # Pattern 3: only in the previous hour (not listed).
    rows = (make_rows(10, start=previous + timedelta(minutes=1), step_ms=60_000, pattern_id=1)
            + make_rows(30, start=start, step_ms=119_000, pattern_id=1)
            + make_rows(12, start=end - timedelta(minutes=12), step_ms=60_000, pattern_id=2, service="db",
                        level="ERROR")
            + make_rows(4, start=previous, step_ms=1000, pattern_id=3))
    insert_logs(clickhouse, [dict(row, record_id=f"x{i}") for i, row in enumerate(rows)])
    clickhouse.insert_rows("patterns", [[1, "request <*> ok"], [2, "disk <*> full"]], ["pattern_id", "template"])
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read")) as client:
        params = {"start": iso(start), "end": iso(end), "sparkline_buckets": 12}
        body = (await client.get("/api/patterns", params=params)).json()
        by_id = {p["pattern_id"]: p for p in body["patterns"]}
        assert set(by_id) == {1, 2} and body["total"] == 42
        assert by_id[1]["count"] == 30 and by_id[1]["growth"] == 2.0 and by_id[1]["is_new"] is False
        assert by_id[2]["count"] == 12 and by_id[2]["growth"] is None and by_id[2]["is_new"] is True
        assert by_id[1]["share"] == round(30 / 42, 6) and by_id[2]["template"] == "disk <*> full"
        for pattern in by_id.values():
            assert len(pattern["sparkline"]) == 12 and sum(pattern["sparkline"]) == pattern["count"]
        # The 12 logs of pattern 2 came in the last 12 minutes: the last 5-minute slices hold them all.
        assert by_id[2]["sparkline"][:9] == [0] * 9
        assert by_id[1]["sparkline"] == [sum(1 for i in range(30) if k * 300 <= i * 119 < (k + 1) * 300)
                                          for k in range(12)]
        # Without sparkline_buckets, no sparkline; the picks narrow the list, not the total.
        plain = (await client.get("/api/patterns", params={"start": iso(start), "end": iso(end)})).json()
        assert "sparkline" not in plain["patterns"][0]
        picked = (await client.get("/api/patterns", params={**params, "contains": "DISK"})).json()
        assert [p["pattern_id"] for p in picked["patterns"]] == [2] and picked["other_count"] == 30
        picked = (await client.get("/api/patterns", params={**params, "pattern_id": 1})).json()
        assert [p["pattern_id"] for p in picked["patterns"]] == [1]
        grouped = (await client.get("/api/patterns", params={**params, "group_by": "service"})).json()
        assert {(p["pattern_id"], p["service"]) for p in grouped["patterns"]} == {(1, "api"), (2, "db")}
        too_many = await client.get("/api/patterns", params={**params, "sparkline_buckets": 97})
        assert too_many.status_code == 422


async def test_services_series_and_quiet(gateway, clickhouse):
    now = datetime.now(timezone.utc)
    # checkout logs all along; payments only in the window before this one (quiet, silent);
    # search stopped 8 minutes ago, inside the window but before its last quarter (quiet).
    insert_logs(clickhouse, make_rows(60, start=now - timedelta(minutes=19, seconds=50), step_ms=20_000,
                                      service="checkout", level=lambda i: "ERROR" if i % 3 == 0 else "INFO")
                + [dict(row, record_id=f"p{i}") for i, row in enumerate(
                    make_rows(6, start=now - timedelta(minutes=18), step_ms=60_000, service="payments"))]
                + [dict(row, record_id=f"s{i}") for i, row in enumerate(
                    make_rows(5, start=now - timedelta(minutes=9), step_ms=10_000, service="search"))])
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("read")) as client:
        body = (await client.get("/api/services", params={"window_minutes": 10, "series_buckets": 5})).json()
        by_name = {s["service"]: s for s in body["services"]}
        assert set(by_name) == {"checkout", "payments", "search"}
        checkout, payments, search = by_name["checkout"], by_name["payments"], by_name["search"]
        assert checkout["quiet"] is False and payments["quiet"] is True and search["quiet"] is True
        assert payments["status"] == "silent" and payments["logs"] == 0
        for service in by_name.values():
            series = service["series"]
            assert len(series) == 5 and sum(point["logs"] for point in series) == service["logs"]
            assert sum(point["errors"] for point in series) == service["errors"]
            starts = [parse(point["start"]) for point in series]
            assert all(b - a == timedelta(minutes=2) for a, b in zip(starts, starts[1:]))
        assert checkout["logs"] == 30 and [p["logs"] for p in checkout["series"]] == [6, 6, 6, 6, 6]
        assert [p["logs"] for p in search["series"]] == [5, 0, 0, 0, 0]
        plain = (await client.get("/api/services", params={"window_minutes": 10})).json()
        assert all("series" not in s for s in plain["services"])


async def test_a_bound_token_sees_only_its_pipeline(gateway, clickhouse):
    now = datetime.now(timezone.utc)
    seed_mixed(clickhouse, now)
    headers = gateway.headers("bound")
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers) as client:
        histogram = (await client.get("/api/logs/histogram")).json()
        assert histogram["total"] == 30  # every tenth of 300 is team-a's
        assert (await client.get("/api/logs/histogram", params={"pipeline": "default"})).status_code == 403
        patterns = (await client.get("/api/patterns", params={"sparkline_buckets": 4})).json()
        assert patterns["total"] == 30 and sum(p["count"] for p in patterns["patterns"]) == 30
        assert (await client.get("/api/patterns", params={"pipeline": "default"})).status_code == 403
        services = (await client.get("/api/services", params={"window_minutes": 60, "series_buckets": 6})).json()
        assert sum(s["logs"] for s in services["services"]) == 30 and services["pipeline"] == "team-a"
        assert (await client.get("/api/services", params={"pipeline": "default"})).status_code == 403


async def test_the_dashboard_is_served_with_cache_and_security_headers(kafka_bootstrap, topics, clickhouse, tmp_path):
    site = tmp_path / "site"
    (site / "assets").mkdir(parents=True)
    (site / "index.html").write_text('<!doctype html><script type="module" src="/assets/index-abc123.js"></script>')
    (site / "assets" / "index-abc123.js").write_text("console.log('logpipe')")
    gateway, server = start_gateway(gateway_settings(kafka_bootstrap, topics.prefix, clickhouse, tmp_path,
                                                     frontend_dir=site))
    try:
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            for path in ("/", "/patterns", "/logs/explore?level=ERROR", "/index.html"):
                page = await client.get(path)
                assert page.status_code == 200 and "index-abc123.js" in page.text, path
                assert page.headers["cache-control"] == "no-cache"
                csp = page.headers["content-security-policy"]
                assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
                assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
                assert page.headers["x-content-type-options"] == "nosniff"
                assert page.headers["referrer-policy"] == "no-referrer"
            asset = await client.get("/assets/index-abc123.js")
            assert asset.status_code == 200 and asset.text == "console.log('logpipe')"
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert asset.headers["x-content-type-options"] == "nosniff"
            # A missing asset or API path is a 404, never index.html parsed as a script.
            for path in ("/assets/index-old999.js", "/api/nothing-here", "/assets/..%2F..%2F..%2F..%2Fetc%2Fpasswd"):
                missing = await client.get(path)
                assert missing.status_code == 404 and "index-abc123" not in missing.text, path
            # The API itself is not given the dashboard's headers or fallback.
            api = await client.get("/api/whoami", headers=gateway.headers("read"))
            assert api.status_code == 200 and "content-security-policy" not in api.headers
    finally:
        server.stop()
