"""The analyzer's REST API, schedule and CLI, with their real stores."""

from __future__ import annotations

import contextlib
import json
from datetime import date, timedelta

import httpx
import pytest

from logpipe.ai.llm import NoLLM
from logpipe.analyzer.app import create_app, next_runs
from logpipe.analyzer.settings import Settings
from logpipe.stores import sql
from logpipe.stores.sql import NightlyReport
from support import wait_for


@contextlib.asynccontextmanager
async def client_for(app):
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://analyzer") as client:
            yield client


async def wait_done(client, report_id: str, timeout: float = 120) -> dict:
    last: dict = {}

    async def finished() -> dict | None:
        last.update((await client.get(f"/reports/{report_id}")).json())
        return dict(last) if last["status"] in ("completed", "failed") else None

    return await wait_for(finished, timeout, message=lambda: str(last))


@pytest.fixture
def app(world, sqlite_engine, analyzer_settings, embedding_backend):
    return create_app(analyzer_settings, store=world.store, engine=sqlite_engine, embed=embedding_backend.embed,
                      llm=NoLLM())


async def test_post_analyze_runs_in_the_background_and_reports_can_be_read_and_exported(app, world):
    async with client_for(app) as client:
        assert (await client.get("/reports/latest")).status_code == 404
        response = await client.post("/analyze", json={"window_hours": 24, "end": world.day_end(7).isoformat()})
        assert response.status_code == 202
        accepted = response.json()
        assert set(accepted) == {"report_id", "status"} and accepted["status"] == "pending"
        report_id = accepted["report_id"]

        body = await wait_done(client, report_id)
        assert body["status"] == "completed", body["error"]
        assert body["report"]["report_id"] == report_id
        assert body["anomaly_count"] == len(body["report"]["anomalies"]) == 4
        assert body["summary_model"] == "deterministic" and body["llm_model"] is None
        assert body["window_end"].startswith(world.day_end(7).strftime("%Y-%m-%dT00:00:00"))

        latest = (await client.get("/reports/latest")).json()
        assert latest["report_id"] == report_id

        today = world.day_end(7).date()  # the window's (UTC) day, not the local date
        listed = (await client.get("/reports", params={"date_from": today.isoformat(),
                                                      "date_to": today.isoformat()})).json()
        assert [r["report_id"] for r in listed["reports"]] == [report_id] and "report" not in listed["reports"][0]
        later = (await client.get("/reports", params={"date_from": (today + timedelta(days=1)).isoformat()})).json()
        assert later["reports"] == []
        bad_range = await client.get("/reports", params={"date_from": "2026-02-02", "date_to": "2026-02-01"})
        assert bad_range.status_code == 422

        markdown = await client.get(f"/reports/{report_id}.md")
        assert markdown.status_code == 200 and markdown.headers["content-type"].startswith("text/markdown")
        assert markdown.text.startswith(f"# logpipe analysis {report_id}")
        assert "## Incidents" in markdown.text and "service_quiet" in markdown.text
        assert "attachment" in markdown.headers["content-disposition"]
        exported = await client.get(f"/reports/{report_id}.json")
        assert exported.headers["content-type"] == "application/json"
        assert json.loads(exported.content) == body["report"]


async def test_bad_requests_get_clear_errors(app):
    async with client_for(app) as client:
        assert (await client.post("/analyze", json={"window_hours": -1})).status_code == 422
        assert (await client.post("/analyze", json={"window_hours": 10_000})).status_code == 422
        assert (await client.post("/analyze", json={"services": [""]})).status_code == 422
        assert (await client.get("/reports/nope")).status_code == 404
        assert (await client.get("/reports/nope.md")).status_code == 404
        assert (await client.get("/reports", params={"date_from": "yesterday"})).status_code == 422


async def test_exports_of_an_unfinished_run_say_so(app, sqlite_engine):
    async with client_for(app) as client:
        row = app.state.analyzer.create_run(24)  # created, never started
        response = await client.get(f"/reports/{row.id}.json")
        assert response.status_code == 409 and "pending" in response.json()["detail"]
        assert (await client.get(f"/reports/{row.id}")).json()["report"] is None


async def test_health_and_metrics(app, world):
    async with client_for(app) as client:
        health = await client.get("/health")
        assert health.status_code == 200
        assert health.json()["dependencies"] == {"clickhouse": "connected", "sql": "connected"}
        report_id = (await client.post("/analyze", json={"end": world.day_end(3).isoformat()})).json()["report_id"]
        await wait_done(client, report_id)
        metrics = (await client.get("/metrics")).text
        assert 'logpipe_analyzer_runs_total{status="completed"}' in metrics
        assert "logpipe_analyzer_run_seconds_count" in metrics


async def test_a_run_interrupted_by_a_restart_is_marked_failed(world, sqlite_engine, analyzer_settings):
    app = create_app(analyzer_settings, store=world.store, engine=sqlite_engine, embed=None, llm=NoLLM())
    with sql.session(sqlite_engine) as db:
        stale = NightlyReport(status="running", window_start=world.start, window_end=world.day_end(0))
        db.add(stale)
        db.commit()
    async with client_for(app) as client:
        body = (await client.get(f"/reports/{stale.id}")).json()
    assert body["status"] == "failed" and "interrupted" in body["error"]


async def test_the_cron_schedule_starts_runs(world, sqlite_engine, tmp_path):
    # croniter's sixth field is seconds: every second, so the test need not wait a minute.
    settings = Settings(LOGPIPE_DATA_DIR=str(tmp_path), llm_backend="none", ANALYSIS_SCHEDULE_CRON="* * * * * */1",
                        window_hours=1)
    app = create_app(settings, store=world.store, engine=sqlite_engine, embed=None, llm=NoLLM())
    async with client_for(app) as client:
        seen: list = []

        async def scheduled_run_completed() -> list | None:
            seen[:] = (await client.get("/reports")).json()["reports"]
            done = any(r["trigger"] == "schedule" and r["status"] == "completed" for r in seen)
            return list(seen) if done else None

        reports = await wait_for(scheduled_run_completed, 60, interval=0.1,
                                 message=lambda: f"no scheduled run completed: {seen}")
        scheduled = next(r for r in reports if r["trigger"] == "schedule")
        assert scheduled["window_hours"] == 1


def test_schedule_settings():
    assert Settings().schedule_cron == "0 2 * * *"
    runs = next_runs("0 2 * * *", 2)
    assert [r.hour for r in runs] == [2, 2] and (runs[1] - runs[0]).days == 1
    with pytest.raises(ValueError, match="not a valid cron"):
        Settings(ANALYSIS_SCHEDULE_CRON="every night")
    with pytest.raises(ValueError):
        Settings(llm_backend="gpt")


def test_logpipe_analyze_runs_once_and_prints_the_report(world, tmp_path, monkeypatch, capsys, embedding_backend):
    from logpipe.cli import main

    monkeypatch.setenv("CLICKHOUSE_URL", world.store.dsn)
    monkeypatch.setenv("CLICKHOUSE_DATABASE", world.store.database)
    monkeypatch.setenv("LOGPIPE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ANALYZER_LLM_BACKEND", "none")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    main(["analyze", "--end", world.day_end(7).isoformat(), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "completed" and len(report["anomalies"]) == 4
    engine = sql.engine(f"sqlite:///{tmp_path / 'logpipe.db'}")
    with sql.session(engine) as db:
        row = db.get(NightlyReport, report["report_id"])
    assert row.trigger == "cli" and row.status == "completed"

    main(["analyze", "--end", world.day_end(7).isoformat(), "--services", "shipping"])
    line = json.loads(capsys.readouterr().out)
    assert line["status"] == "completed" and line["summary_model"] == "deterministic"

    with pytest.raises(SystemExit, match="not an ISO 8601"):
        main(["analyze", "--end", "tomorrow"])
