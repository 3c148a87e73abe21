"""The LLM's part of a report: the facts it is shown, the prompt and JSON schema, the
validation that keeps only claims citing known pattern ids, and the merge into the report."""

from __future__ import annotations

from typing import Any

from logpipe.analyzer.text import shorten


SYSTEM_PROMPT = (
    "You are a site reliability engineer writing the nightly log analysis for the on-call team. "
    "You get facts computed from the logs: error patterns (each with an id), anomalies (incidents with a "
    "start, an end and the excess over what those hours usually hold; drops and silences of whole services), "
    "groups of related incidents, clusters of similar errors across services, root-cause candidates and "
    "patterns that went silent. Give times as the facts do, in UTC. Write an executive "
    "summary, one insight per cluster worth attention, and concrete recommendations. Every claim must "
    "cite the pattern ids it rests on, copied exactly from the facts; do not invent ids, numbers or services. "
    "Novel errors are errors unlike any earlier error by meaning (embedding similarity)."
)

_CITATIONS = {"type": "array", "items": {"type": "string"}, "minItems": 1}
REPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["executive_summary", "cluster_insights", "recommendations"],
    "properties": {
        "executive_summary": {
            "type": "object", "additionalProperties": False, "required": ["text", "pattern_ids"],
            "properties": {"text": {"type": "string"}, "pattern_ids": _CITATIONS},
        },
        "cluster_insights": {
            "type": "array",
            "items": {"type": "object", "additionalProperties": False,
                      "required": ["cluster_id", "title", "text", "pattern_ids"],
                      "properties": {"cluster_id": {"type": "string"}, "title": {"type": "string"},
                                     "text": {"type": "string"}, "pattern_ids": _CITATIONS}},
        },
        "recommendations": {
            "type": "array",
            "items": {"type": "object", "additionalProperties": False,
                      "required": ["priority", "action", "rationale", "pattern_ids"],
                      "properties": {"priority": {"type": "string", "enum": ["high", "medium", "low"]},
                                     "action": {"type": "string"}, "rationale": {"type": "string"},
                                     "pattern_ids": _CITATIONS}},
        },
    },
}


def llm_facts(report: dict[str, Any], limit: int = 30) -> dict[str, Any]:
    """The compact facts the model sees (and the only pattern ids it may cite)."""
    def pattern(p: dict[str, Any]) -> dict[str, Any]:
        return {"id": p["pattern_id"], "template": shorten(p["template"], 200), "level": p["level"],
                "count": p["count"], "services": p["services"], "trend": p["trend"], "expected": p["expected"],
                "new": p["is_new"], "cluster": p["cluster_id"]}

    return {
        "window": report["window"],
        "totals": report["totals"],
        "patterns": [pattern(p) for p in report["top_patterns"][:limit]],
        "anomalies": [{k: a.get(k) for k in ("kind", "service", "pattern_id", "severity", "start", "end", "ongoing",
                                             "observed_total", "expected_total", "excess", "z_score",
                                             "related_group", "description")} for a in report["anomalies"][:limit]],
        "related": [{"group": g["group_id"], "services": g["services"], "pattern_ids": g["pattern_ids"][:10],
                     "start": g["start"], "root": g["root"], "shared_traces": g["shared_traces"]}
                    for g in report.get("related", [])[:10]],
        "gone_patterns": [{"id": p["pattern_id"], "template": shorten(p["template"], 200), "services": p["services"],
                           "expected": p["expected"]} for p in report.get("gone_patterns", [])[:10]],
        "clusters": [{"id": c["cluster_id"], "pattern_ids": c["pattern_ids"][:10], "services": c["services"],
                      "count": c["count"], "template": shorten(c["template"], 200)} for c in report["clusters"][:15]],
        "root_cause_candidates": [{"pattern_id": r["pattern_id"], "services": r["services"], "leads": r["leads"][:5],
                                   "traces": r["traces"], "bursts": r["bursts"]}
                                  for r in report["root_cause_candidates"][:5]],
        "new_patterns": [p["pattern_id"] for p in report["new_patterns"][:limit]],
        "novel_errors": [{"pattern_id": g["pattern_id"], "count": g["count"], "services": g["services"],
                          "example": shorten(g["example"], 200)}
                         for g in (report.get("novel_errors") or {}).get("patterns", [])[:10]
                         if g["pattern_id"] != "0"],
        "affected_services": report["affected_services"][:20],
    }


def llm_prompt(facts: dict[str, Any]) -> str:
    import orjson

    return ("Facts from the log store (JSON):\n" + orjson.dumps(facts).decode() +
            "\n\nAnswer with JSON that matches the schema. Cite pattern ids exactly as given.")


def known_pattern_ids(facts: dict[str, Any]) -> set[str]:
    known = {p["id"] for p in facts["patterns"]}
    known.update(a["pattern_id"] for a in facts["anomalies"] if a["pattern_id"])
    for cluster in facts["clusters"]:
        known.update(cluster["pattern_ids"])
    for root in facts["root_cause_candidates"]:
        known.add(root["pattern_id"])
        known.update(lead["pattern_id"] for lead in root["leads"])
    known.update(facts["new_patterns"])
    known.update(g["pattern_id"] for g in facts.get("novel_errors", []))
    for group in facts.get("related", []):
        known.update(group["pattern_ids"])
        if group["root"]["pattern_id"]:
            known.add(group["root"]["pattern_id"])
    known.update(p["id"] for p in facts.get("gone_patterns", []))
    return known


def _citations(value: Any) -> list[str] | None:
    if not isinstance(value, list) or not value:
        return None
    return [str(item).strip() for item in value]


def validate_llm_answer(answer: dict[str, Any], known: set[str], known_clusters: set[str],
                        model: str) -> tuple[dict[str, Any], int]:
    """Keep the claims that cite only pattern ids the model was given; returns (kept, dropped)."""
    dropped = 0
    kept: dict[str, Any] = {"summary": None, "insights": [], "recommendations": []}

    def grounded(item: Any, *fields: str) -> list[str] | None:
        if not isinstance(item, dict) or any(not isinstance(item.get(f), str) or not item[f].strip() for f in fields):
            return None
        ids = _citations(item.get("pattern_ids"))
        if ids is None or any(i not in known for i in ids):
            return None
        return list(dict.fromkeys(ids))

    summary = answer.get("executive_summary")
    ids = grounded(summary, "text")
    if ids is None:
        dropped += 1 if summary is not None else 0
    else:
        kept["summary"] = {"text": summary["text"].strip(), "pattern_ids": ids, "model": model}
    for item in answer.get("cluster_insights") or []:
        ids = grounded(item, "text")
        if ids is None:
            dropped += 1
            continue
        cluster = str(item.get("cluster_id", "")).strip()
        kept["insights"].append({"cluster_id": cluster if cluster in known_clusters else "",
                                 "title": str(item.get("title", "")).strip(), "text": item["text"].strip(),
                                 "pattern_ids": ids, "model": model})
    for item in answer.get("recommendations") or []:
        ids = grounded(item, "action")
        priority = item.get("priority") if isinstance(item, dict) else None
        if ids is None or priority not in ("high", "medium", "low"):
            dropped += 1
            continue
        kept["recommendations"].append({"priority": priority, "action": item["action"].strip(),
                                        "rationale": str(item.get("rationale", "")).strip(),
                                        "pattern_ids": ids, "model": model})
    return kept, dropped


def merge_llm_answer(report: dict[str, Any], kept: dict[str, Any], model: str) -> None:
    """Replace each deterministic part the model answered for; a part it failed keeps the rules'
    version and says so in `models`. Rule-based steps citing no pattern (a quiet service) stay."""
    if kept["summary"]:
        report["summary"] = kept["summary"]
        report["models"]["summary"] = model
    if kept["insights"]:
        report["insights"] = kept["insights"]
        report["models"]["insights"] = model
    if kept["recommendations"]:
        unpatterned = [r for r in report["recommendations"] if not r["pattern_ids"]]
        report["recommendations"] = unpatterned + kept["recommendations"]
        report["models"]["recommendations"] = model
