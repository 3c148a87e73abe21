"""The Markdown export of a report (GET /reports/{id}.md, `logpipe analyze --markdown`)."""

from __future__ import annotations

from typing import Any

from logpipe.analyzer.report import DETERMINISTIC
from logpipe.analyzer.text import plural, shorten, table_cell
from logpipe.analyzer.windows import format_span, format_time


def render_markdown(report: dict[str, Any]) -> str:
    window = report["window"]
    lines = [f"# logpipe analysis {report.get('report_id', '')}", "",
             f"Window: {window['start']} to {window['end']} ({window['hours']:g} h), pipeline "
             f"`{report.get('pipeline', 'default')}`" + (f", services {', '.join(report['services'])}"
                                                         if report.get("services") else ""), ""]
    models = report.get("models", {})
    lines += ["## Summary", "", report["summary"]["text"], "",
              f"_Written by: {models.get('summary', DETERMINISTIC)}. Cites: "
              f"{', '.join(report['summary']['pattern_ids']) or 'none'}._", ""]
    totals = report["totals"]
    lines += ["| logs | errors+warnings | FATAL | ERROR | WARN | patterns | services with errors |",
              "|---:|---:|---:|---:|---:|---:|---:|",
              f"| {totals['logs']} | {totals['errors']} | {totals['fatal']} | {totals['error']} | {totals['warn']} | "
              f"{totals['patterns']} | {totals['error_services']} |", ""]
    lines += ["## Incidents", ""]
    if report.get("judged_from"):
        lines += [f"_No logs before this window: hours were judged only from {format_time(report['judged_from'])} "
                  f"on, against each other, and not at all until three whole hours had passed since the first "
                  f"log._", ""]
    if report["anomalies"]:
        lines += ["| severity | kind | service | pattern | when | observed | expected | excess | z | group | what |",
                  "|---|---|---|---|---|---:|---:|---:|---:|---|---|"]
        for a in report["anomalies"]:
            when = format_span(a["start"], a["end"]) if a.get("start") and a.get("end") else format_time(a["bucket"])
            lines.append(f"| {a['severity']} | {a['kind']} | {a['service']} | {a['pattern_id'] or '-'} | {when} | "
                         f"{a.get('observed_total', a['observed']):,.0f} | {a.get('expected_total', a['expected']):,.0f} | "
                         f"{a.get('excess', 0):+,.0f} | {a['z_score']} | {a.get('related_group') or '-'} | "
                         f"{table_cell(a['description'])} |")
    else:
        lines.append("None: every service and pattern stayed within what these hours usually hold.")
    if report.get("related"):
        by_incident = {a["incident_id"]: a for a in report["anomalies"]}
        lines += ["", "## Related incidents", ""]
        for group in report["related"]:
            root = by_incident[group["root_incident_id"]]
            traces = f", {plural(group['shared_traces'], 'shared trace')}" if group["shared_traces"] else ""
            lines.append(f"- **{group['group_id']}** {plural(len(group['incident_ids']), 'incident')} in "
                         f"{', '.join(group['services'])} {format_span(group['start'], group['end'])}{traces}; "
                         f"candidate root cause: {table_cell(root['description'])}")
    lines += ["", "## Recommendations", "", f"_Written by: {models.get('recommendations', DETERMINISTIC)}._", ""]
    for r in report["recommendations"]:
        cites = f" (patterns {', '.join(r['pattern_ids'])})" if r["pattern_ids"] else ""
        lines.append(f"- **{r['priority']}**: {r['action']}. {r['rationale']}{cites} _[{r['model']}]_")
    if not report["recommendations"]:
        lines.append("- Nothing needs action.")
    lines += ["", "## Root-cause candidates", ""]
    for root in report["root_cause_candidates"]:
        lines.append(f"- `{root['pattern_id']}` {table_cell(shorten(root['template'], 100))} in "
                     f"{', '.join(root['services'])}: first in {root['traces']} shared traces, leads "
                     f"{root['bursts']} bursts")
    if not report["root_cause_candidates"]:
        lines.append("- None found (no shared traces or joint bursts).")
    lines += ["", "## Insights", "", f"_Written by: {models.get('insights', DETERMINISTIC)}._", ""]
    for insight in report["insights"]:
        lines.append(f"- **{insight['cluster_id'] or 'general'}** {insight['title']}: {insight['text']} "
                     f"(patterns {', '.join(insight['pattern_ids'])}) _[{insight['model']}]_")
    if not report["insights"]:
        lines.append("- No cluster needs attention.")
    lines += ["", "## Top patterns", "", "| pattern | level | count | trend | services | template |",
              "|---|---|---:|---|---|---|"]
    for p in report["top_patterns"]:
        lines.append(f"| {p['pattern_id']} | {p['level']} | {p['count']} | {p['trend']} | {', '.join(p['services'])} | "
                     f"{table_cell(shorten(p['template'], 100))} |")
    lines += ["", "## New patterns", ""]
    for p in report["new_patterns"]:
        lines.append(f"- `{p['pattern_id']}` ({p['level']}, {', '.join(p['services'])}, "
                     f"first {format_time(p['first_seen'])},"
                     f" {p['count']} times): {table_cell(shorten(p['template'], 120))}")
    if not report["new_patterns"]:
        lines.append("- None.")
    if report.get("gone_patterns"):
        lines += ["", "## Gone patterns", ""]
        for p in report["gone_patterns"]:
            lines.append(f"- `{p['pattern_id']}` ({p['level']}, {', '.join(p['services'])}): none in the window, "
                         f"about {p['expected']:,.0f} expected: {table_cell(shorten(p['template'], 120))}")
    novel = report.get("novel_errors") or {}
    lines += ["", "## Novel errors", ""]
    if novel.get("error"):
        lines.append(f"- Not read: {novel['error']}.")
    for group in novel.get("patterns", [])[:20]:
        lines.append(f"- {group['count']} in `{group['pattern_id']}` ({', '.join(group['services'])}, first "
                     f"{format_time(group['first_seen'])}): {table_cell(shorten(group['example'], 120))}")
    if not novel.get("patterns") and not novel.get("error"):
        lines.append("- None: every error resembled an earlier one.")
    lines += ["", "## Cross-service clusters", ""]
    if report.get("clusters_error"):
        lines.append(f"- Not computed: {report['clusters_error']}.")
    for c in report["clusters"]:
        lines.append(f"- **{c['cluster_id']}** {', '.join(c['services'])} ({c['count']} events, patterns "
                     f"{', '.join(c['pattern_ids'])}): {table_cell(shorten(c['template'], 100))}")
    if not report["clusters"] and not report.get("clusters_error"):
        lines.append("- None.")
    lines += ["", "## Affected services", "", "| service | errors | patterns | anomalies | worst |",
              "|---|---:|---:|---:|---|"]
    for s in report["affected_services"]:
        lines.append(f"| {s['service']} | {s['errors']} | {s['patterns']} | {s['anomalies']} | "
                     f"{s['worst_severity'] or '-'} |")
    llm = report.get("llm") or {}
    lines += ["", "## How this report was made", "",
              f"- LLM: {llm.get('model') or 'none'}" + (f" ({llm['error']})" if llm.get("error") else "") +
              (f", {llm.get('dropped_claims', 0)} uncited claims dropped" if llm.get("model") else ""),
              f"- Analysis took {report.get('timings', {}).get('analysis_seconds', 0):.2f} s, "
              f"LLM {report.get('timings', {}).get('llm_seconds', 0):.2f} s", ""]
    return "\n".join(lines)
