"""The report: the LLM's citations checked (llm_report), the deterministic parts (report) and the
Markdown export (markdown)."""

from __future__ import annotations

from logpipe.analyzer.llm_report import known_pattern_ids, merge_llm_answer, validate_llm_answer
from logpipe.analyzer.markdown import render_markdown
from logpipe.analyzer.report import deterministic_insights, deterministic_recommendations, deterministic_summary


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


def test_the_llm_may_cite_related_and_gone_patterns_it_was_shown_and_nothing_else():
    from logpipe.analyzer.llm_report import llm_facts

    report = minimal_report()
    report["anomalies"] = [{"kind": "pattern_spike", "service": "db", "pattern_id": "11", "severity": "high",
                            "start": "2026-05-04T03:00:00.000Z", "end": "2026-05-04T05:00:00.000Z", "ongoing": False,
                            "observed_total": 500, "expected_total": 20, "excess": 480, "z_score": 20,
                            "related_group": "R1", "description": "db: 'timeout' 500 times"}]
    report["related"] = [{"group_id": "R1", "services": ["checkout", "db"], "pattern_ids": ["11", "12"],
                          "start": "2026-05-04T03:00:00.000Z", "shared_traces": 40,
                          "root": {"kind": "pattern_spike", "service": "db", "pattern_id": "11"}}]
    report["gone_patterns"] = [{"pattern_id": "13", "template": "cache warmed", "services": ["api"], "expected": 50}]
    facts = llm_facts(report)
    assert facts["anomalies"][0]["excess"] == 480 and facts["related"][0]["root"]["service"] == "db"
    known = known_pattern_ids(facts)
    assert {"11", "12", "13"} <= known and "14" not in known
    answer = {"executive_summary": {"text": "db timeouts caused checkout retries", "pattern_ids": ["11", "12"]},
              "cluster_insights": [],
              "recommendations": [{"priority": "high", "action": "x", "rationale": "r", "pattern_ids": ["14"]}]}
    kept, dropped = validate_llm_answer(answer, known, set(), "ollama:m")
    assert kept["summary"]["pattern_ids"] == ["11", "12"] and kept["recommendations"] == [] and dropped == 1


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
    for heading in ("# logpipe analysis r1", "## Summary", "## Incidents", "## Recommendations", "## Top patterns",
                    "## Affected services"):
        assert heading in markdown
    assert "disk \\| full" in markdown  # a pipe in a template does not break the table
    kept = {"summary": {"text": "LLM says", "pattern_ids": ["1"], "model": "ollama:m"}, "insights": [],
            "recommendations": []}
    merge_llm_answer(report, kept, "ollama:m")
    assert report["models"] == {"summary": "ollama:m", "insights": "deterministic", "recommendations": "deterministic"}
