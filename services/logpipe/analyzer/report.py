"""The deterministic report: a complete product on its own, and the facts an LLM is given.

Pattern ids are ClickHouse UInt64; here they are decimal strings, because JSON readers
(browsers) lose precision on integers above 2**53.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from logpipe.analyzer.anomalies import AnomalyFinding
from logpipe.analyzer.baselines import BaselineKey, BaselineStat
from logpipe.analyzer.correlation import root_cause_candidates
from logpipe.analyzer.novelty import summarize_novel_errors
from logpipe.analyzer.text import plural, shorten
from logpipe.analyzer.thresholds import SEVERITIES, SEVERITY_RANK, Thresholds
from logpipe.analyzer.trends import pattern_trend, pattern_view
from logpipe.analyzer.windows import format_span, format_time, iso, utc

DETERMINISTIC = "deterministic"  # the `model` of every part written by rules, not by an LLM


def affected_services(patterns: dict[str, dict[str, Any]], anomalies: Sequence[dict[str, Any]],
                      service_errors: dict[str, int]) -> list[dict[str, Any]]:
    by_service: dict[str, dict[str, Any]] = {}
    for service, errors in service_errors.items():
        by_service[service] = {"service": service, "errors": int(errors), "patterns": 0, "anomalies": 0,
                               "worst_severity": None}
    for pattern in patterns.values():
        for service in pattern["services"]:
            by_service.setdefault(service, {"service": service, "errors": 0, "patterns": 0, "anomalies": 0,
                                            "worst_severity": None})["patterns"] += 1
    for anomaly in anomalies:
        item = by_service.setdefault(anomaly["service"], {"service": anomaly["service"], "errors": 0, "patterns": 0,
                                                          "anomalies": 0, "worst_severity": None})
        item["anomalies"] += 1
        worst = item["worst_severity"]
        if worst is None or SEVERITY_RANK[anomaly["severity"]] > SEVERITY_RANK[worst]:
            item["worst_severity"] = anomaly["severity"]
    return sorted(by_service.values(),
                  key=lambda s: (-(SEVERITY_RANK[s["worst_severity"]] + 1 if s["worst_severity"] else 0),
                                 -s["errors"], s["service"]))


def deterministic_summary(report: dict[str, Any]) -> dict[str, Any]:
    totals = report["totals"]
    anomalies = report["anomalies"]
    by_severity = {name: sum(1 for a in anomalies if a["severity"] == name) for name in SEVERITIES}
    hours = report["window"]["hours"]
    span = format_span(report["window"]["start"], report["window"]["end"])
    parts = [f"{span[0].upper()}{span[1:]} ({hours:g} h): "
             f"{plural(totals['errors'], 'error and warning', 'errors and warnings')} ({totals['fatal']} FATAL, "
             f"{totals['error']} ERROR, {totals['warn']} WARN) in {plural(totals['error_services'], 'service')}, "
             f"grouped into {plural(totals['patterns'], 'pattern')}, out of {plural(totals['logs'], 'log')}."]
    cited: list[str] = []
    if anomalies:
        counts = ", ".join(f"{by_severity[name]} {name}" for name in reversed(SEVERITIES) if by_severity[name])
        parts.append(f"{plural(len(anomalies), 'incident')} ({counts}).")
        worst = anomalies[0]
        parts.append(f"Most severe: {worst['description']}.")
        if worst["pattern_id"]:
            cited.append(worst["pattern_id"])
    else:
        parts.append("No anomalies: every service and pattern stayed within what these hours usually hold.")
    for group in report.get("related", [])[:2]:
        root = next(a for a in anomalies if a["incident_id"] == group["root_incident_id"])
        others = len(group["incident_ids"]) - 1
        parts.append(f"Probably one cause: {plural(others + 1, 'incident')} in {', '.join(group['services'])} "
                     f"started together from {format_time(group['start'])}, first {root['kind'].replace('_', ' ')} "
                     f"in {root['service']}" + (f" (pattern {root['pattern_id']})" if root["pattern_id"] else "") + ".")
        cited.extend(group["pattern_ids"][:3])
    if report["new_patterns"]:
        count = len(report["new_patterns"])
        parts.append(f"{plural(count, 'new pattern')} appeared.")
        cited.extend(p["pattern_id"] for p in report["new_patterns"][:3])
    novel = report.get("novel_errors") or {}
    if novel.get("count"):
        groups = novel["patterns"]
        parts.append(f"{plural(novel['count'], 'error')} unlike any earlier error, in "
                     f"{plural(len(groups), 'pattern')}.")
        cited.extend(g["pattern_id"] for g in groups[:2] if g["pattern_id"] != "0")
    quiet = [a["service"] for a in anomalies if a["kind"] == "service_quiet"]
    if quiet:
        parts.append(f"Silent: {', '.join(dict.fromkeys(quiet))}.")
    gone = report.get("gone_patterns") or []
    if gone:
        parts.append(f"{plural(len(gone), 'usual pattern')} did not occur at all.")
        cited.extend(p["pattern_id"] for p in gone[:2])
    roots = report["root_cause_candidates"]
    if roots:
        parts.append(f"Likely starting point: '{shorten(roots[0]['template'], 80)}' in "
                     f"{', '.join(roots[0]['services'])}.")
        cited.append(roots[0]["pattern_id"])
    if report["top_patterns"]:
        top = report["top_patterns"][0]
        parts.append(f"Top pattern: '{shorten(top['template'], 80)}' ({plural(top['count'], 'time')}, {top['trend']}).")
        cited.append(top["pattern_id"])
    return {"text": " ".join(parts), "pattern_ids": list(dict.fromkeys(cited)), "model": DETERMINISTIC}


def deterministic_insights(report: dict[str, Any], limit: int = 10) -> list[dict[str, Any]]:
    patterns = {p["pattern_id"]: p for p in report["top_patterns"]}
    anomalous = {a["pattern_id"] for a in report["anomalies"] if a["pattern_id"]}
    insights = []
    for cluster in report["clusters"]:
        if not (cluster["cross_service"] or anomalous.intersection(cluster["pattern_ids"])):
            continue
        members = [patterns[p] for p in cluster["pattern_ids"] if p in patterns]
        trends = sorted({m["trend"] for m in members})
        text = (f"{len(cluster['pattern_ids'])} similar patterns ({cluster['count']} events) in "
                f"{', '.join(cluster['services'])}: '{shorten(cluster['template'], 100)}'. Trend: {', '.join(trends)}.")
        if cluster["cross_service"]:
            text += " The same failure in several services usually means a shared dependency."
        insights.append({"cluster_id": cluster["cluster_id"], "title": shorten(cluster["template"], 80), "text": text,
                         "pattern_ids": cluster["pattern_ids"], "model": DETERMINISTIC})
        if len(insights) >= limit:
            break
    return insights


def deterministic_recommendations(report: dict[str, Any], limit: int = 12) -> list[dict[str, Any]]:
    """Next steps from rules: what to look at first, and why."""
    recommendations: list[dict[str, Any]] = []
    seen: set[tuple[str, ...]] = set()

    def add(priority: str, action: str, rationale: str, pattern_ids: list[str]) -> None:
        key = (action,)
        if key not in seen:
            seen.add(key)
            recommendations.append({"priority": priority, "action": action, "rationale": rationale,
                                    "pattern_ids": pattern_ids, "model": DETERMINISTIC})

    patterns = {p["pattern_id"]: p for p in report["top_patterns"]}
    by_incident = {a["incident_id"]: a for a in report["anomalies"]}
    for group in report.get("related", [])[:3]:
        root = by_incident[group["root_incident_id"]]
        add("high", f"Start with {root['service']}: {len(group['incident_ids'])} incidents in "
                    f"{', '.join(group['services'])} began together",
            f"First: {root['description']}"
            + (f"; {group['shared_traces']} shared traces lead from it." if group["shared_traces"] else "."),
            list(group["pattern_ids"][:5]))
    for anomaly in report["anomalies"]:
        if anomaly["kind"] in ("service_quiet", "volume_drop"):
            add("high" if SEVERITY_RANK[anomaly["severity"]] >= 2 else "medium",
                f"Check that {anomaly['service']} is running and that its logs reach logpipe",
                anomaly["description"], [])
    for root in report["root_cause_candidates"][:3]:
        followers = ", ".join(lead["pattern_id"] for lead in root["leads"][:3])
        add("high", f"Start the investigation with '{shorten(root['template'], 80)}' in {', '.join(root['services'])}",
            f"It comes first in {root['traces']} shared traces and {root['bursts']} bursts, before patterns "
            f"{followers}.", [root["pattern_id"], *[lead["pattern_id"] for lead in root["leads"][:3]]])
    for anomaly in report["anomalies"]:
        if anomaly["kind"] == "pattern_spike" and SEVERITY_RANK[anomaly["severity"]] >= 1:
            template = patterns.get(anomaly["pattern_id"], {}).get("template", anomaly["pattern_id"])
            add("high" if SEVERITY_RANK[anomaly["severity"]] >= 2 else "medium",
                f"Investigate the spike of '{shorten(template, 80)}' in {anomaly['service']}",
                f"{anomaly['description']} (z = {anomaly['z_score']}).", [anomaly["pattern_id"]])
    for pattern in report["new_patterns"][:5]:
        version = f" (versions {', '.join(pattern['versions'])})" if pattern.get("versions") else ""
        add("high" if pattern["level"] == "FATAL" else "medium",
            f"Triage the new pattern '{shorten(pattern['template'], 80)}' in {', '.join(pattern['services'])}",
            f"First seen {format_time(pattern['first_seen'])}{version}, {pattern['count']} times since; "
            "new errors often follow a deploy or a config change.", [pattern["pattern_id"]])
    new_ids = {p["pattern_id"] for p in report["new_patterns"]}
    for group in (report.get("novel_errors") or {}).get("patterns", [])[:3]:
        if group["pattern_id"] in new_ids or group["pattern_id"] == "0":
            continue
        add("medium", f"Read the errors unlike any before in '{shorten(group['template'], 80)}' "
                      f"({', '.join(group['services'])})",
            f"{group['count']} of them in the window: a known pattern failing in a new way.", [group["pattern_id"]])
    for cluster in report["clusters"]:
        if cluster["cross_service"]:
            add("medium", f"Look for a shared dependency of {', '.join(cluster['services'])}",
                f"Near-identical errors in {len(cluster['services'])} services: '{shorten(cluster['template'], 80)}'.",
                cluster["pattern_ids"])
    for pattern in report["top_patterns"]:
        if pattern["level"] == "FATAL":
            add("high", f"Fix the fatal error '{shorten(pattern['template'], 80)}' in {', '.join(pattern['services'])}",
                f"{pattern['count']} FATAL events in the window.", [pattern["pattern_id"]])
    noisy = [p for p in report["top_patterns"][:3] if p["trend"] == "stable" and p["level"] == "WARN"]
    for pattern in noisy:
        add("low", f"Reduce the noise of '{shorten(pattern['template'], 80)}'",
            f"A steady {pattern['count']} warnings per window hide new problems.", [pattern["pattern_id"]])
    order = {"high": 0, "medium": 1, "low": 2}
    recommendations.sort(key=lambda r: order[r["priority"]])
    return recommendations[:limit]


def assemble_report(*, report_id: str, pipeline: str, window_start: datetime, window_end: datetime,
                    services: Sequence[str] | None, totals: dict[str, int], patterns: dict[str, dict[str, Any]],
                    clusters: list[dict[str, Any]], anomalies: list[AnomalyFinding],
                    trace_pairs: list[dict[str, Any]], burst_pairs: list[dict[str, Any]],
                    baselines: dict[BaselineKey, BaselineStat], buckets: Sequence[tuple[datetime, bool]],
                    service_errors: dict[str, int], thresholds: Thresholds = Thresholds(),
                    top: int = 25, novel_errors: dict[str, Any] | None = None,
                    fractions: dict[datetime, float] | None = None, gone: Sequence[dict[str, Any]] = (),
                    related: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The deterministic report: a complete product on its own, and the facts an LLM is given."""
    cluster_of = {p: c["cluster_id"] for c in clusters for p in c["pattern_ids"]}
    spiked = {a.pattern_id for a in anomalies if a.kind == "pattern_spike"}
    ranked = sorted(patterns.values(), key=lambda p: (-int(p["count"]), p["pattern_id"]))
    top_patterns = []
    for info in ranked:
        trend, expected = pattern_trend(info["pattern_id"], info["services"], int(info["count"]),
                                        bool(info.get("is_new")), baselines, buckets, thresholds, fractions)
        if trend == "stable" and expected is None and info["pattern_id"] in spiked:
            trend = "rising"  # no history to total against, but it spiked in this window
        info["trend"], info["expected"] = trend, expected
        info["cluster_id"] = cluster_of.get(info["pattern_id"], "")
    anomaly_dicts = [a.to_dict() for a in anomalies]
    anomalous = {a.pattern_id for a in anomalies if a.pattern_id}
    for info in ranked:
        if len(top_patterns) < top or info["pattern_id"] in anomalous:
            top_patterns.append(pattern_view(info))
    new_patterns = [pattern_view(p) for p in ranked if p.get("is_new")]
    report = {
        "report_id": report_id,
        "pipeline": pipeline,
        "window": {"start": iso(window_start), "end": iso(window_end),
                   "hours": round((utc(window_end) - utc(window_start)).total_seconds() / 3600, 3)},
        "services": list(services or []),
        "totals": totals,
        "top_patterns": top_patterns,
        "clusters": [c for c in clusters if c["cross_service"] or len(c["pattern_ids"]) > 1][:50],
        "anomalies": anomaly_dicts,
        "new_patterns": new_patterns,
        "gone_patterns": [pattern_view({**g, "trend": "gone"}) for g in gone],
        "related": list(related),
        "novel_errors": novel_errors or summarize_novel_errors([], patterns, error="not read"),
        "co_occurrence": {"traces": list(trace_pairs[:50]), "bursts": list(burst_pairs[:50])},
        "root_cause_candidates": root_cause_candidates(trace_pairs, burst_pairs, patterns),
        "affected_services": affected_services(patterns, anomaly_dicts, service_errors),
    }
    report["summary"] = deterministic_summary(report)
    report["insights"] = deterministic_insights(report)
    report["recommendations"] = deterministic_recommendations(report)
    report["models"] = {"summary": DETERMINISTIC, "insights": DETERMINISTIC, "recommendations": DETERMINISTIC}
    return report
