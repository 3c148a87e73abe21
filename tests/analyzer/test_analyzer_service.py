"""The pure analysis logic, with plain values."""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from logpipe.analyzer.anomalies import find_anomalies, z_score
from logpipe.analyzer.baselines import VOLUME, BaselineStat, update_baselines
from logpipe.analyzer.correlation import build_clusters, cluster_by_similarity, find_bursts, root_cause_candidates
from logpipe.analyzer.llm_report import known_pattern_ids, merge_llm_answer, validate_llm_answer
from logpipe.analyzer.markdown import render_markdown
from logpipe.analyzer.report import deterministic_insights, deterministic_recommendations, deterministic_summary
from logpipe.analyzer.thresholds import Thresholds
from logpipe.analyzer.windows import window_buckets

DAY = datetime(2026, 5, 4, tzinfo=timezone.utc)
BUCKETS = window_buckets(DAY, DAY + timedelta(days=1))


def hours(values) -> dict[datetime, int]:
    return {DAY + timedelta(hours=h): v for h, v in enumerate(values) if v}


def baseline_of(values_by_day: list[list[int]], key=("api", "7")) -> dict:
    baselines: dict = {}
    for day, values in enumerate(values_by_day):
        start = DAY - timedelta(days=len(values_by_day) - day)
        buckets = window_buckets(start, start + timedelta(days=1))
        counts = {start + timedelta(hours=h): v for h, v in enumerate(values)}
        baselines.update(update_baselines(baselines, {key: counts}, buckets))
    return baselines


def test_window_buckets_mark_partial_hours():
    buckets = window_buckets(DAY + timedelta(minutes=30), DAY + timedelta(hours=2, minutes=10))
    assert buckets == [(DAY, False), (DAY + timedelta(hours=1), True), (DAY + timedelta(hours=2), False)]
    assert len(BUCKETS) == 24 and all(complete for _, complete in BUCKETS)


def test_welford_baseline_matches_mean_and_variance_and_skips_known_hours():
    days = [[10 + d + h % 3 for h in range(24)] for d in range(5)]
    baselines = baseline_of(days)
    stat = baselines[("api", "7", 5)]
    column = [day[5] for day in days]
    assert stat.samples == 5
    assert stat.mean == pytest.approx(statistics.mean(column))
    assert stat.stddev == pytest.approx(statistics.stdev(column))
    # Folding the same (already learnt) day in again changes nothing.
    last = DAY - timedelta(days=1)
    again = update_baselines(baselines, {("api", "7"): {last + timedelta(hours=5): 999}},
                                     window_buckets(last, DAY))
    assert again == {}


def test_baselines_learn_zero_hours_skip_incidents_and_respect_the_service_filter():
    baselines = {("api", "7", 3): BaselineStat(4, 10.0, 8.0, DAY - timedelta(days=1))}
    skip = {("api", "7", DAY + timedelta(hours=4))}
    changed = update_baselines(baselines, {("db", "9"): hours([5] * 24)}, BUCKETS, services=["api"],
                                       skip=skip)
    assert all(key[0] == "api" for key in changed)
    assert changed[("api", "7", 3)].samples == 5 and changed[("api", "7", 3)].mean == pytest.approx(8.0)  # a 0 hour
    assert changed[("api", "7", 4)].samples == 0 and changed[("api", "7", 4)].last_bucket == DAY + timedelta(hours=4)
    assert baselines[("api", "7", 3)].samples == 4  # the input is not modified


def test_severity_grows_with_distance():
    thresholds = Thresholds()
    assert thresholds.severity(3.9) is None
    assert [thresholds.severity(z) for z in (4, 6, 9, 14)] == ["low", "medium", "high", "critical"]
    assert z_score(20, 20, 0) == pytest.approx(0)
    assert z_score(80, 20, 0) > z_score(40, 20, 0) > 0
    assert z_score(40, 20, 10) < z_score(40, 20, 0)  # a noisy history widens


def test_a_spike_against_the_baseline_is_flagged_once_at_its_worst_hour():
    history = [[20] * 24 for _ in range(5)]
    history[1][14] = 24  # some noise
    baselines = baseline_of(history)
    today = [20] * 24
    today[14], today[15] = 200, 90
    found = find_anomalies({("api", "7"): hours(today)}, {}, baselines, BUCKETS, {})
    [spike] = found
    assert (spike.kind, spike.service, spike.pattern_id) == ("pattern_spike", "api", "7")
    assert spike.bucket == DAY + timedelta(hours=14) and spike.observed == 200 and spike.hours == 2
    assert spike.severity == "critical"
    assert spike.expected == pytest.approx(20.8)


def test_a_quiet_day_and_small_or_falling_counts_flag_nothing():
    baselines = baseline_of([[20] * 24 for _ in range(5)])
    rng = np.random.default_rng(1)
    today = list(rng.poisson(20, 24))
    today[3] = 8  # fewer errors are good news
    assert find_anomalies({("api", "7"): hours(today)}, {}, baselines, BUCKETS, {}) == []
    # A rare pattern going from 1 to 6 an hour is noise, not an incident (min_count).
    rare = baseline_of([[1] * 24 for _ in range(5)])
    assert find_anomalies({("api", "7"): hours([6] * 24)}, {}, rare, BUCKETS, {}) == []


def test_cold_start_judges_an_hour_against_the_rest_of_the_window():
    today = [30] * 24
    today[9], today[10] = 400, 380  # a two-hour incident does not hide itself
    [spike] = find_anomalies({("api", "7"): hours(today)}, {}, {}, BUCKETS, {})
    assert spike.severity == "critical" and spike.expected == 30


def test_service_going_quiet_and_volume_spikes():
    volume_history = baseline_of([[1000] * 24 for _ in range(5)], key=("api", VOLUME))
    quiet_today = [1000] * 20 + [0] * 4
    [quiet] = find_anomalies({}, {"api": hours(quiet_today)}, volume_history, BUCKETS, {})
    assert (quiet.kind, quiet.service, quiet.hours, quiet.severity) == ("service_quiet", "api", 4, "critical")
    assert quiet.bucket == DAY + timedelta(hours=20) and quiet.expected == pytest.approx(4000)
    # A service known from the baselines that wrote nothing at all is quiet too.
    [silent] = find_anomalies({}, {}, volume_history, BUCKETS, {})
    assert silent.kind == "service_quiet" and silent.hours == 24
    busy = [1000] * 24
    busy[12] = 5000
    [spike] = find_anomalies({}, {"api": hours(busy)}, volume_history, BUCKETS, {})
    assert spike.kind == "volume_spike" and spike.severity == "critical"
    assert find_anomalies({}, {"api": hours([1000] * 24)}, volume_history, BUCKETS, {}) == []


def test_new_patterns_are_flagged_by_how_loud_they_are():
    new = {"5": {"services": ["db"], "count": 12, "level": "ERROR", "first_seen": DAY, "example": "x"},
           "6": {"services": ["db"], "count": 12, "level": "FATAL", "first_seen": DAY, "example": "y"},
           "8": {"services": ["db"], "count": 500, "level": "WARN", "first_seen": DAY, "example": "z"}}
    found = {a.pattern_id: a for a in find_anomalies({("db", "5"): hours([12])}, {}, {}, BUCKETS, new)}
    assert {a.kind for a in found.values()} == {"new_pattern"}  # not also a spike over nothing
    assert found["5"].severity == "low" and found["6"].severity == "high" and found["8"].severity == "critical"


def test_clusters_come_from_vector_similarity():
    vectors = np.array([[1, 0, 0], [0.95, 0.05, 0], [0, 1, 0], [0, 0.97, 0.1], [0, 0, 1]], dtype=np.float32)
    groups = cluster_by_similarity(["a", "b", "c", "d", "e"], vectors, 0.9)
    assert sorted(map(sorted, groups)) == [["a", "b"], ["c", "d"], ["e"]]
    patterns = {p: {"pattern_id": p, "count": n, "services": s, "template": p}
                for p, n, s in [("a", 5, ["x"]), ("b", 9, ["y"]), ("c", 1, ["x"]), ("d", 2, ["x"]), ("e", 1, ["z"])]}
    clusters = build_clusters(groups, patterns)
    assert clusters[0]["cross_service"] and clusters[0]["pattern_ids"] == ["b", "a"]
    assert clusters[0]["services"] == ["x", "y"] and clusters[0]["cluster_id"] == "C1"
    assert not clusters[1]["cross_service"]  # one service: near-duplicates, not a cross-service cluster


def test_joint_bursts_name_the_pattern_that_started_first():
    minutes = [DAY + timedelta(minutes=m) for m in range(120)]
    counts = np.ones((3, 120))
    counts[0, 50:55] = 60
    counts[1, 52:57] = 40  # follows two minutes later
    counts[2, 90:92] = 50  # bursts alone
    pairs = find_bursts(["a", "b", "c"], minutes, counts)
    assert [(p["root_pattern_id"], p["pattern_id"], p["lead_minutes"]) for p in pairs] == [("a", "b", 2)]
    patterns = {p: {"pattern_id": p, "count": 1, "services": ["s"], "template": p} for p in "abc"}
    traces = [{"root_pattern_id": "c", "pattern_id": "a", "traces": 3}]
    roots = root_cause_candidates(traces, pairs, patterns)
    assert [r["pattern_id"] for r in roots] == ["a", "c"]


def facts_with(ids: list[str]) -> dict:
    return {"patterns": [{"id": i} for i in ids], "anomalies": [], "clusters": [], "root_cause_candidates": [],
            "new_patterns": []}


def test_llm_claims_citing_unknown_or_no_ids_are_dropped():
    known = known_pattern_ids(facts_with(["1", "2"]))
    answer = {
        "executive_summary": {"text": "Summary", "pattern_ids": ["1", "3"]},
        "cluster_insights": [{"cluster_id": "C1", "title": "t", "text": "ok", "pattern_ids": ["2"]},
                             {"cluster_id": "C7", "title": "t", "text": "none", "pattern_ids": []}],
        "recommendations": [{"priority": "high", "action": "do", "rationale": "r", "pattern_ids": [2]},
                            {"priority": "urgent", "action": "do", "rationale": "r", "pattern_ids": ["1"]},
                            "not an object"],
    }
    kept, dropped = validate_llm_answer(answer, known, {"C1"}, "ollama:m")
    assert kept["summary"] is None
    assert [i["text"] for i in kept["insights"]] == ["ok"]
    assert [(r["action"], r["pattern_ids"]) for r in kept["recommendations"]] == [("do", ["2"])]
    assert dropped == 4


def minimal_report() -> dict:
    return {
        "report_id": "r1", "pipeline": "default", "services": [],
        "window": {"start": "2026-05-04T00:00:00.000Z", "end": "2026-05-05T00:00:00.000Z", "hours": 24},
        "totals": {"logs": 10, "errors": 3, "fatal": 0, "error": 2, "warn": 1, "patterns": 1, "error_services": 1,
                   "services": 1},
        "top_patterns": [{"pattern_id": "1", "template": "disk | full", "example": "disk | full", "level": "ERROR",
                          "count": 3, "services": ["api"], "first_seen": None, "last_seen": None,
                          "trend": "stable", "expected": None, "is_new": False, "cluster_id": "", "versions": []}],
        "clusters": [], "anomalies": [], "new_patterns": [], "root_cause_candidates": [],
        "affected_services": [{"service": "api", "errors": 3, "patterns": 1, "anomalies": 0, "worst_severity": None}],
    }


def test_deterministic_parts_and_markdown_export():
    report = minimal_report()
    report["summary"] = deterministic_summary(report)
    report["insights"] = deterministic_insights(report)
    report["recommendations"] = deterministic_recommendations(report)
    report["models"] = {"summary": "deterministic", "insights": "deterministic", "recommendations": "deterministic"}
    assert "No anomalies" in report["summary"]["text"] and report["summary"]["pattern_ids"] == ["1"]
    markdown = render_markdown(report)
    for heading in ("# logpipe analysis r1", "## Summary", "## Anomalies", "## Recommendations", "## Top patterns",
                    "## Affected services"):
        assert heading in markdown
    assert "disk \\| full" in markdown  # a pipe in a template does not break the table
    kept = {"summary": {"text": "LLM says", "pattern_ids": ["1"], "model": "ollama:m"}, "insights": [],
            "recommendations": []}
    merge_llm_answer(report, kept, "ollama:m")
    assert report["models"] == {"summary": "ollama:m", "insights": "deterministic", "recommendations": "deterministic"}
