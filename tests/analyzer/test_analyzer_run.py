"""Whole runs over real chdb and real SQL (SQLite and PostgreSQL), with the real embedding model."""

from __future__ import annotations

import statistics
from datetime import timedelta

import pytest
from sqlmodel import select

from support import OllamaServer, OpenAIServer
from logpipe.ai.llm import NoLLM, OllamaLLM, OpenAICompatibleLLM
from logpipe.analyzer.baselines import VOLUME
from logpipe.analyzer.llm_report import REPORT_SCHEMA
from logpipe.analyzer.runner import Analyzer
from logpipe.analyzer.windows import iso
from logpipe.stores import sql
from logpipe.stores.sql import Anomaly, Baseline, ErrorPattern, NightlyReport


def pid(spec) -> str:
    return str(spec.pattern_id)


@pytest.fixture
def analyzer(world, sql_engine, analyzer_settings, embedding_backend):
    return Analyzer(analyzer_settings, world.store, sql_engine, embed=embedding_backend.embed, llm=NoLLM())


def flagged(row: NightlyReport) -> set[tuple[str, str, str]]:
    return {(a["kind"], a["service"], a["pattern_id"]) for a in row.report["anomalies"]}


def test_quiet_days_flag_nothing_and_the_incident_day_flags_exactly_the_incident(world, analyzer, sql_engine):
    quiet_reports = [analyzer.run(24, end=world.day_end(day)) for day in range(7)]
    assert all(r.status == "completed" for r in quiet_reports), [r.error for r in quiet_reports]
    # Once baselines exist (three days), a quiet day is quiet.
    for report in quiet_reports[3:]:
        assert report.report["anomalies"] == [], report.report["anomalies"]
        assert report.anomaly_count == 0
    # Cold-start days judge hours against the same day only: nothing severe may come of that.
    for report in quiet_reports[:3]:
        assert all(a["severity"] in ("low", "medium") for a in report.report["anomalies"])

    row = analyzer.run(24, end=world.day_end(7))
    assert row.status == "completed", row.error
    anomalies = {(a["kind"], a["service"], a["pattern_id"]): a for a in row.report["anomalies"]}
    assert set(anomalies) == {
        ("pattern_spike", "payments", pid(world.timeout_payments)),
        ("pattern_spike", "checkout", pid(world.payment_step_checkout)),
        ("new_pattern", "orders", pid(world.migration_orders)),
        ("service_quiet", "shipping", ""),
    }
    spike = anomalies[("pattern_spike", "payments", pid(world.timeout_payments))]
    assert spike["severity"] in ("high", "critical")
    assert spike["bucket"].startswith((world.incident_day + timedelta(hours=14)).strftime("%Y-%m-%dT14")) or \
        spike["bucket"].startswith((world.incident_day + timedelta(hours=15)).strftime("%Y-%m-%dT15"))
    assert spike["observed"] > 5 * spike["expected"]
    assert anomalies[("new_pattern", "orders", pid(world.migration_orders))]["severity"] == "critical"  # FATAL
    quiet = anomalies[("service_quiet", "shipping", "")]
    assert quiet["severity"] in ("high", "critical") and quiet["hours"] == 4

    # The cascade: the payments timeout comes first in the shared traces.
    roots = row.report["root_cause_candidates"]
    assert roots[0]["pattern_id"] == pid(world.timeout_payments)
    assert roots[0]["leads"][0]["pattern_id"] == pid(world.payment_step_checkout)
    assert roots[0]["traces"] > 100
    # Near-duplicate templates in two services form one cross-service cluster (real embeddings).
    cross = [c for c in row.report["clusters"] if c["cross_service"]]
    assert any({pid(world.refused_checkout), pid(world.refused_orders)} <= set(c["pattern_ids"]) for c in cross)
    assert not any(pid(world.timeout_payments) in c["pattern_ids"] and pid(world.refused_checkout) in c["pattern_ids"]
                   for c in row.report["clusters"])
    assert [p["pattern_id"] for p in row.report["new_patterns"]] == [pid(world.migration_orders)]
    top = {p["pattern_id"]: p for p in row.report["top_patterns"]}
    assert top[pid(world.timeout_payments)]["trend"] == "rising"
    assert top[pid(world.migration_orders)]["trend"] == "new"

    # The deterministic report is a full product: summary, steps, and who wrote them.
    assert row.report["models"] == {"summary": "deterministic", "insights": "deterministic",
                                    "recommendations": "deterministic"}
    assert row.summary_model == "deterministic" and "4 incidents" in row.summary
    actions = " ".join(r["action"] for r in row.report["recommendations"])
    assert "shipping is running" in actions and "Start the investigation" in actions and "new pattern" in actions
    assert row.report["affected_services"][0]["worst_severity"] == "critical"

    # What a user finds in SQL.
    with sql.session(sql_engine) as db:
        stored = db.exec(select(Anomaly).where(Anomaly.report_id == row.id)).all()
        assert {(a.kind, a.service, a.pattern_id) for a in stored} == set(anomalies)
        patterns = db.exec(select(ErrorPattern).where(ErrorPattern.report_id == row.id)).all()
        by_id = {p.pattern_id: p for p in patterns}
        assert by_id[pid(world.migration_orders)].is_new and by_id[pid(world.migration_orders)].level == "FATAL"
        assert by_id[pid(world.timeout_payments)].services == ["payments"]
        assert db.get(NightlyReport, row.id).markdown.startswith(f"# logpipe analysis {row.id}")


def hourly_counts(store, service_name: str, day_start) -> list[int]:
    rows = store.query(
        f"SELECT toHour(timestamp) AS h, count() FROM {store.table('logs')} WHERE service = {{s:String}} "
        "AND timestamp >= {a:DateTime64(3, 'UTC')} AND timestamp < {b:DateTime64(3, 'UTC')} GROUP BY h ORDER BY h",
        {"s": service_name, "a": day_start.strftime("%Y-%m-%d %H:%M:%S"),
         "b": (day_start + timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")})
    counts = dict(rows)
    return [counts.get(h, 0) for h in range(24)]


def test_baselines_update_across_runs_and_never_count_an_hour_twice(world, analyzer, sql_engine):
    day0, day1 = world.start, world.start + timedelta(days=1)

    def baseline(hour: int) -> Baseline:
        with sql.session(sql_engine) as db:
            return db.get(Baseline, ("default", "payments", VOLUME, hour))

    analyzer.run(24, end=world.day_end(0))
    first = hourly_counts(world.store, "payments", day0)
    assert baseline(13).samples == 1 and baseline(13).mean == first[13]

    analyzer.run(24, end=world.day_end(0))  # the same window again: nothing learnt twice
    assert baseline(13).samples == 1

    analyzer.run(12, end=world.day_end(0) + timedelta(hours=12))  # overlaps nothing learnt yet: hours 0..11
    assert baseline(5).samples == 2 and baseline(13).samples == 1

    analyzer.run(24, end=world.day_end(1))
    second = hourly_counts(world.store, "payments", day1)
    b13 = baseline(13)
    assert b13.samples == 2
    assert b13.mean == pytest.approx(statistics.mean([first[13], second[13]]))
    assert b13.m2 / (b13.samples - 1) == pytest.approx(statistics.variance([first[13], second[13]]))
    # Pattern baselines too, for every hour of the day, zero-count hours included.
    with sql.session(sql_engine) as db:
        rows = db.exec(select(Baseline).where(Baseline.service == "payments",
                                              Baseline.pattern_id == pid(world.timeout_payments))).all()
    assert sorted(r.hour_of_day for r in rows) == list(range(24))
    assert all(r.samples == 2 for r in rows)


def test_services_filter_limits_the_run(world, analyzer):
    row = analyzer.run(24, services=["shipping"], end=world.day_end(7))
    assert row.status == "completed"
    assert {p["pattern_id"] for p in row.report["top_patterns"]} == {
        str(p.pattern_id) for p in world.patterns if p.service == "shipping"}
    assert {a["service"] for a in row.report["anomalies"]} <= {"shipping"}
    assert row.report["services"] == ["shipping"]


def test_pattern_aliases_fold_merged_patterns_into_the_survivor(world, analyzer):
    merged, survivor = world.refused_orders.pattern_id, world.refused_checkout.pattern_id
    world.store.command(f"INSERT INTO {world.store.table('pattern_aliases')} (alias_id, pattern_id) "
                        f"VALUES ({merged}, {survivor})")
    try:
        row = analyzer.run(24, end=world.day_end(2))
    finally:
        world.store.command(f"TRUNCATE TABLE {world.store.table('pattern_aliases')}")
    ids = {p["pattern_id"] for p in row.report["top_patterns"]}
    assert str(merged) not in ids and str(survivor) in ids
    survivor_row = next(p for p in row.report["top_patterns"] if p["pattern_id"] == str(survivor))
    assert survivor_row["services"] == ["checkout", "orders"]


def test_ollama_writes_the_report_and_uncited_claims_are_dropped(world, sql_engine, analyzer_settings,
                                                                embedding_backend):
    with OllamaServer() as server:
        llm = OllamaLLM(server.url, "llama3.1:8b", timeout=10)
        row = Analyzer(analyzer_settings, world.store, sql_engine, embedding_backend.embed, llm).run(
            24, end=world.day_end(7))
    assert row.status == "completed"
    [request] = server.requests
    assert request["stream"] is False and request["format"] == REPORT_SCHEMA
    assert request["messages"][0]["role"] == "system"
    report = row.report
    assert report["models"] == {"summary": "ollama:llama3.1:8b", "insights": "ollama:llama3.1:8b",
                                "recommendations": "ollama:llama3.1:8b"}
    assert report["summary"]["text"].startswith("LLM summary")
    assert row.summary_model == "ollama:llama3.1:8b" and row.llm_model == "ollama:llama3.1:8b"
    assert [i["title"] for i in report["insights"]] == ["Shared failure"]
    llm_actions = [r["action"] for r in report["recommendations"] if r["model"] != "deterministic"]
    assert llm_actions == ["LLM: roll back the deploy"]
    # The quiet service cites no pattern, so the rule-based step for it stays.
    assert any("shipping" in r["action"] and r["model"] == "deterministic" for r in report["recommendations"])
    assert report["llm"]["dropped_claims"] == 3
    assert report["llm"]["generation_seconds"] == pytest.approx(2.5)
    assert "_[ollama:llama3.1:8b]_" in row.markdown


def test_llm_timeout_still_completes_with_the_deterministic_report(world, sqlite_engine, analyzer_settings,
                                                                   embedding_backend):
    with OllamaServer(delay=3) as server:
        llm = OllamaLLM(server.url, "llama3.1:8b", timeout=0.5)
        row = Analyzer(analyzer_settings, world.store, sqlite_engine, embedding_backend.embed, llm).run(
            24, end=world.day_end(7))
    assert row.status == "completed"
    assert row.report["models"]["summary"] == "deterministic"
    assert "Timeout" in row.report["llm"]["error"]
    assert row.report["anomalies"] and row.summary_model == "deterministic" and row.llm_model == ""
    assert "Timeout" in row.markdown


def test_openai_compatible_server_writes_the_report(world, sqlite_engine, analyzer_settings, embedding_backend):
    with OpenAIServer(api_key="secret-1") as server:
        llm = OpenAICompatibleLLM(server.url, "qwen2.5-7b", api_key="secret-1", timeout=10)
        row = Analyzer(analyzer_settings, world.store, sqlite_engine, embedding_backend.embed, llm).run(
            24, end=world.day_end(7))
    assert row.report["models"]["summary"] == "openai:qwen2.5-7b"
    assert server.requests[0]["response_format"]["json_schema"]["schema"] == REPORT_SCHEMA


def test_an_llm_that_cites_nothing_real_leaves_every_part_deterministic(world, sqlite_engine, analyzer_settings,
                                                                       embedding_backend):
    def invented(body):
        return {"executive_summary": {"text": "All good", "pattern_ids": ["1"]}, "cluster_insights": [],
                "recommendations": [{"priority": "high", "action": "x", "rationale": "y", "pattern_ids": ["2"]}]}

    with OllamaServer(invented) as server:
        llm = OllamaLLM(server.url, "llama3.1:8b", timeout=10)
        row = Analyzer(analyzer_settings, world.store, sqlite_engine, embedding_backend.embed, llm).run(
            24, end=world.day_end(7))
    assert row.report["models"] == {"summary": "deterministic", "insights": "deterministic",
                                    "recommendations": "deterministic"}
    assert row.report["llm"]["dropped_claims"] == 2
    assert row.summary != "All good"


def test_an_empty_window_gives_an_empty_report(world, sqlite_engine, analyzer_settings):
    row = Analyzer(analyzer_settings, world.store, sqlite_engine, None, NoLLM()).run(
        24, end=world.start - timedelta(days=30))
    assert row.status == "completed"
    assert row.report["totals"]["logs"] == 0 and row.report["anomalies"] == []
    assert "No anomalies" in row.summary


def test_a_run_that_cannot_read_clickhouse_is_recorded_as_failed(chdb_dsn, sqlite_engine, analyzer_settings):
    from logpipe.stores.clickhouse import ClickHouseStore

    missing = ClickHouseStore(chdb_dsn, database="analysis_missing_db")  # schema never applied
    row = Analyzer(analyzer_settings, missing, sqlite_engine, None, NoLLM()).run(24)
    assert row.status == "failed" and "analysis_missing_db" in row.error
    with sql.session(sqlite_engine) as db:
        stored = db.get(NightlyReport, row.id)
    assert stored.status == "failed" and stored.finished_at is not None and stored.report == {}


def comparable(row: NightlyReport) -> tuple[list[dict], str, str]:
    """What a rerun must repeat: the incidents and the report's text, ids and run times aside."""
    markdown = row.markdown.replace(row.id, "<id>")
    markdown = "\n".join(line for line in markdown.splitlines() if not line.startswith("- Analysis took"))
    return row.report["anomalies"], row.summary, markdown


def test_the_same_window_twice_gives_the_same_incidents_and_a_new_pattern_stays_new(world, sqlite_engine,
                                                                                    analyzer_settings):
    analyzer = Analyzer(analyzer_settings, world.store, sqlite_engine, embed=None, llm=NoLLM())
    # A run earlier in the day sees the new FATAL pattern first...
    early = analyzer.run(17, end=world.incident_day + timedelta(hours=17))
    [seen_early] = early.report["new_patterns"]
    assert seen_early["pattern_id"] == pid(world.migration_orders)
    # ...and the whole day, twice, still calls it new, first seen at the same time.
    first = analyzer.run(24, end=world.day_end(7))
    second = analyzer.run(24, end=world.day_end(7))
    assert first.status == second.status == "completed"
    assert comparable(first) == comparable(second)
    for row in (first, second):
        [new] = [a for a in row.report["anomalies"] if a["kind"] == "new_pattern"]
        assert new["pattern_id"] == pid(world.migration_orders)
        assert new["start"] == seen_early["first_seen"]
        assert not any(a["kind"] == "pattern_spike" and a["pattern_id"] == new["pattern_id"]
                       for a in row.report["anomalies"])

    incidents = {(a["kind"], a["service"]): a for a in first.report["anomalies"]}
    # The two-hour cascade is one incident each in payments and checkout, from 14:00 to 16:00,
    # grouped as one cause led by the payment provider's timeouts (shared traces).
    spike = incidents[("pattern_spike", "payments")]
    day = world.incident_day
    assert spike["start"].startswith(f"{day:%Y-%m-%d}T14:00") and spike["end"].startswith(f"{day:%Y-%m-%d}T16:00")
    assert spike["hours"] == 2 and spike["excess"] > 5 * spike["expected_total"] > 0
    follower = incidents[("pattern_spike", "checkout")]
    assert spike["related_group"] == follower["related_group"] != ""
    [group] = [g for g in first.report["related"] if g["group_id"] == spike["related_group"]]
    assert group["root_incident_id"] == spike["incident_id"] and group["shared_traces"] > 100
    assert "Probably one cause" in first.summary
    # shipping stopped at 20:00 and never came back.
    quiet = incidents[("service_quiet", "shipping")]
    assert quiet["ongoing"] and quiet["start"].startswith(f"{day:%Y-%m-%d}T20:00")
    assert "shipping has sent no logs since" in quiet["description"] and "4 hours" in quiet["description"]
    # Trends agree with the counts beside them.
    for pattern in first.report["top_patterns"]:
        if pattern["trend"] == "rising":
            assert pattern["count"] >= 1.5 * pattern["expected"]
        elif pattern["trend"] == "stable" and pattern["expected"] is not None:
            assert pattern["count"] < max(1.5 * pattern["expected"], pattern["expected"] + 10)
    # What the API and the events read: the anomalies table, incident columns filled in.
    with sql.session(sqlite_engine) as db:
        stored = {(a.kind, a.service): a for a in db.exec(select(Anomaly).where(Anomaly.report_id == first.id)).all()}
    row = stored[("pattern_spike", "payments")]
    assert row.incident_id == spike["incident_id"] and row.hours == 2 and row.related_group == spike["related_group"]
    assert row.start.hour == 14 and row.end.hour == 16 and row.peak == row.bucket
    assert row.excess == pytest.approx(spike["excess"], abs=0.01)
    assert stored[("service_quiet", "shipping")].ongoing is True


@pytest.fixture
def fresh_store(chdb_dsn):
    """A pipeline whose first log arrived inside the analysed window: no history at all."""
    import uuid

    from logpipe.stores.clickhouse import ClickHouseStore

    store = ClickHouseStore(chdb_dsn, database=f"fresh_{uuid.uuid4().hex[:10]}")
    store.apply_schema(ttl_days=3650)
    yield store
    store.command(f"DROP DATABASE IF EXISTS {store.database} SYNC")


def fresh_scenario(start, hours, incidents=()):
    from logpipe.analyzer import synthetic as syn

    timeout = syn.PatternSpec("payments", "Timeout calling payment-provider after {n} ms", "ERROR", 12)
    patterns = [timeout, syn.PatternSpec("checkout", "Cart validation failed for item {n}", "WARN", 25)]
    return timeout, syn.Scenario(start=start, hours=hours, patterns=patterns, seed=11,
                                 volume_per_hour={"checkout": 300, "payments": 250},
                                 incidents=[syn.Incident(timeout, **kw) for kw in incidents])


def test_a_fresh_platform_is_not_a_spike_over_the_hours_before_it_existed(fresh_store, sqlite_engine,
                                                                           analyzer_settings):
    """The first analysis after `make dev` used to flag every service's volume as a spike
    "expected about 0": the hours before the first log were taken for silence."""
    from logpipe.analyzer import synthetic as syn

    end = syn.start_of_day() + timedelta(hours=12)
    _, scenario = fresh_scenario(end - timedelta(hours=2), 2)
    fresh_store.insert_arrow("logs", syn.build(scenario))
    row = Analyzer(analyzer_settings, fresh_store, sqlite_engine, None, NoLLM()).run(24, end=end)
    assert row.status == "completed", row.error
    assert row.report["totals"]["logs"] > 1000
    assert row.report["anomalies"] == [], [a["description"] for a in row.report["anomalies"]]
    assert row.report["has_history"] is False
    assert row.report["judged_from"] == iso(end - timedelta(hours=1))
    assert "judged only from" in row.markdown


def test_a_fresh_platform_still_finds_a_spike_once_it_has_hours_to_compare(fresh_store, sqlite_engine,
                                                                         analyzer_settings):
    from logpipe.analyzer import synthetic as syn

    end = syn.start_of_day() + timedelta(hours=20)
    timeout, scenario = fresh_scenario(end - timedelta(hours=9), 9,
                                       [{"start_hour": 6, "hours": 1, "factor": 15}])
    fresh_store.insert_arrow("logs", syn.build(scenario))
    row = Analyzer(analyzer_settings, fresh_store, sqlite_engine, None, NoLLM()).run(24, end=end)
    assert row.status == "completed", row.error
    found = {(a["kind"], a["service"], a["pattern_id"]) for a in row.report["anomalies"]}
    assert ("pattern_spike", "payments", str(timeout.pattern_id)) in found, row.report["anomalies"]
    # Nothing about the quiet hours before the first log, nor a volume spike over them.
    assert not {kind for kind, *_ in found} & {"service_quiet", "volume_drop", "pattern_drop"}
    assert all(a["start"] >= row.report["judged_from"] for a in row.report["anomalies"])
