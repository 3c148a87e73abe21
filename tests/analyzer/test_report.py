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
