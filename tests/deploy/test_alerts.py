"""The chart's alerting rules (charts/logpipe/alerts/logpipe.rules.yaml, shipped as a
PrometheusRule with `prometheusRule.enabled`): exactly what the chart renders is checked by
`promtool check rules` and run by `promtool test rules` (Debian's Prometheus) on input series
where each alert must fire and its look-alikes must not; every metric the rules name is one the
services declare."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy.test_chart import render

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool")
ENABLED = {"prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}}}

# (input series, evaluation time, alert, the labels of each alert expected then, its summary).
# An empty expectation means the alert must not fire at that time.
CASES = [
    # Ingest 175,000 behind and still falling behind fires; a group as far behind but catching up
    # does not.
    ([("logpipe_kafka_consumer_lag{group='shop.ingest',topic='shop.raw-logs',partition='0'}", "50000+5000x40"),
      ("logpipe_kafka_consumer_lag{group='web.ingest',topic='web.raw-logs',partition='0'}", "300000-5000x40")],
     "25m", "LogpipeIngestFallingBehind",
     [({"group": "shop.ingest", "severity": "warning"},
       "Ingest group shop.ingest is 175000 logs behind on raw-logs and still falling behind")]),
    # Not before it has lasted 10 minutes.
    ([("logpipe_kafka_consumer_lag{group='shop.ingest',topic='shop.raw-logs',partition='0'}", "50000+5000x40")],
     "15m", "LogpipeIngestFallingBehind", []),
    ([("logpipe_kafka_consumer_lag{group='shop.vectorizer',topic='shop.vectorization-queue',partition='1'}",
       "10000+1000x40"),
      ("logpipe_kafka_consumer_lag{group='shop.ingest',topic='shop.raw-logs',partition='1'}", "10000+1000x40")],
     "25m", "LogpipeVectorizerFallingBehind",
     [({"group": "shop.vectorizer", "severity": "warning"},
       "Vectorizer group shop.vectorizer is 35000 errors behind and still falling behind")]),
    # A LogPipeline's consumers, as the operator's scaler sees them: growing fires, shrinking does not.
    ([("logpipe_operator_consumer_lag{pipeline='shop/checkout',component='ingest'}", "80000+3000x40"),
      ("logpipe_operator_consumer_lag{pipeline='shop/checkout',component='vectorizer'}", "400000-3000x40")],
     "25m", "LogpipePipelineFallingBehind",
     [({"pipeline": "shop/checkout", "component": "ingest", "severity": "warning"},
       "The ingest of LogPipeline shop/checkout is 155000 records behind and still falling behind")]),
    # An open circuit for 8 minutes fires; one open for the last 3 does not (yet).
    ([("logpipe_circuit_open{service='ingest',dependency='clickhouse'}", "0 0 1x10"),
      ("logpipe_circuit_open{service='vectorizer',dependency='qdrant'}", "0x6 1x3")],
     "10m", "LogpipeCircuitOpen",
     [({"service": "ingest", "dependency": "clickhouse", "severity": "critical"},
       "ingest cannot reach clickhouse: its circuit has been open for 5 minutes")]),
    ([("logpipe_consumer_stalled{service='vectorizer'}", "1x10"), ("logpipe_consumer_stalled{service='ingest'}", "0x10")],
     "8m", "LogpipeConsumerStalled",
     [({"service": "vectorizer", "severity": "critical"},
       "vectorizer owns no partitions and has not rejoined its group for 5 minutes")]),
    ([("logpipe_ingest_dlq_total", "0 0 0 3 3 3"),
      ("logpipe_vectorizer_dlq_total{stage='embed'}", "0 0 0 0 1 1")],
     "5m", "LogpipeDeadLetters",
     [({"service": "ingest", "severity": "warning"}, "ingest dead-lettered records in the last 15 minutes"),
      ({"service": "vectorizer", "severity": "warning"}, "vectorizer dead-lettered records in the last 15 minutes")]),
    # Nothing dead-lettered for the last 15 minutes: quiet again.
    ([("logpipe_ingest_dlq_total", "3x30")], "25m", "LogpipeDeadLetters", []),
    # 10 of 110 requests a minute answered 5xx (9 %) fires; the analyzer's 1 of 101 does not.
    ([("logpipe_http_requests_total{service='gateway',method='GET',route='/api/logs',status='500'}", "0+10x20"),
      ("logpipe_http_requests_total{service='gateway',method='GET',route='/api/logs',status='200'}", "0+100x20"),
      ("logpipe_http_requests_total{service='analyzer',method='GET',route='/reports',status='503'}", "0+1x20"),
      ("logpipe_http_requests_total{service='analyzer',method='GET',route='/reports',status='200'}", "0+100x20")],
     "17m", "LogpipeHttpErrors",
     [({"service": "gateway", "severity": "warning"}, "gateway answers more than 5 % of its requests with a 5xx")]),
    ([("logpipe_analyzer_runs_total{status='failed'}", "0 1x10"), ("logpipe_analyzer_runs_total{status='completed'}", "0+1x10")],
     "5m", "LogpipeAnalysisFailed", [({"severity": "warning"}, "An analysis run failed in the last 6 hours")]),
    ([("logpipe_analyzer_runs_total{status='completed'}", "0+1x10")], "5m", "LogpipeAnalysisFailed", []),
    ([("logpipe_vectorizer_index_builds_total{outcome='failed'}", "0 1 2 3 3 3"),
      ("logpipe_vectorizer_index_builds_total{outcome='built'}", "0+1x5")],
     "5m", "LogpipeVectorIndexBuildsFailing",
     [({"severity": "warning"}, "Vector index builds keep failing: at least 3 in the last hour")]),
    ([("logpipe_vectorizer_index_builds_total{outcome='failed'}", "0 1 1 1 1 1")], "5m",
     "LogpipeVectorIndexBuildsFailing", []),
    ([("logpipe_vectorizer_deleted_points_held{instance='a'}", "150000x40"),
      ("logpipe_vectorizer_points{instance='a'}", "100000x40"),
      ("logpipe_vectorizer_deleted_points_held{instance='b'}", "50000x40"),
      ("logpipe_vectorizer_points{instance='b'}", "100000x40")],
     "35m", "LogpipeVectorMemoryHeld",
     [({"instance": "a", "severity": "warning"},
       "The embedded vector store holds more deleted points than live ones for 30 minutes")]),
    ([("logpipe_vectorizer_novel_errors_total", "0 0 2 2")], "3m", "LogpipeNovelErrors",
     [({"severity": "info"}, "Errors unlike any seen before appeared in the last 15 minutes")]),
]


def rendered_rules() -> list[dict]:
    rules = [doc for doc in render(ENABLED) if doc["kind"] == "PrometheusRule"]
    assert len(rules) == 1
    return rules[0]["spec"]["groups"]


def _promtool() -> str:
    if PROMTOOL is None:
        pytest.fail("promtool is missing: install Debian's prometheus (scripts/system-deps.sh)")
    return PROMTOOL


def test_the_rules_are_off_by_default_and_rendered_as_shipped():
    assert not [doc for doc in render() if doc["kind"] == "PrometheusRule"]
    shipped = yaml.safe_load((ROOT / "charts" / "logpipe" / "alerts" / "logpipe.rules.yaml").read_text())
    assert rendered_rules() == shipped["groups"]
    # Prometheus' own templates reach the PrometheusRule untouched by Helm.
    summaries = [rule["annotations"]["summary"] for group in rendered_rules() for rule in group["rules"]]
    assert any("{{ $labels.group }}" in summary for summary in summaries)


def test_additional_labels_reach_every_alert():
    groups = [doc for doc in render({"prometheusRule": {"enabled": True, "additionalLabels": {"team": "platform"}}})
              if doc["kind"] == "PrometheusRule"][0]["spec"]["groups"]
    for rule in groups[0]["rules"]:
        assert rule["labels"]["team"] == "platform" and rule["labels"]["severity"], rule["alert"]


def test_every_alert_fires_on_its_case_and_not_on_its_look_alikes(tmp_path):
    promtool = _promtool()
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rendered_rules()}, sort_keys=False))
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    by_name = {rule["alert"]: rule for group in rendered_rules() for rule in group["rules"]}
    firing = {alert for _, _, alert, expected in CASES if expected}
    assert firing == set(by_name), f"alerts without a case where they fire: {set(by_name) - firing}"
    tests = []
    for series, at, alert, expected in CASES:
        annotations = by_name[alert]["annotations"]
        assert "{{" not in annotations.get("description", ""), alert  # compared as written
        tests.append({
            "interval": "1m",
            "input_series": [{"series": name.replace("'", '"'), "values": values} for name, values in series],
            "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": [
                {"exp_labels": labels,
                 "exp_annotations": {key: value for key, value in
                                     {"summary": summary, "description": annotations.get("description")}.items()
                                     if value is not None}}
                for labels, summary in expected]}]})
    spec = tmp_path / "alerts_test.yaml"
    spec.write_text(yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "1m", "tests": tests},
                                   sort_keys=False))
    done = subprocess.run([promtool, "test", "rules", str(spec)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]


def declared_metrics() -> set[str]:
    """Every metric name the services and the operator declare (counter, gauge, histogram)."""
    names = set()
    for folder in (ROOT / "services" / "logpipe", ROOT / "operator" / "logpipe_operator"):
        for path in folder.rglob("*.py"):
            names |= set(re.findall(r'(?:counter|gauge|histogram)\(\s*"(logpipe_[a-z0-9_]+)"', path.read_text(),
                                    flags=re.IGNORECASE))
    return names


def test_every_metric_an_alert_names_is_declared():
    declared = declared_metrics()
    assert {"logpipe_kafka_consumer_lag", "logpipe_vectorizer_points", "logpipe_circuit_open",
            "logpipe_operator_consumer_lag"} <= declared
    for group in rendered_rules():
        for rule in group["rules"]:
            without_strings = re.sub(r'"[^"]*"', '""', rule["expr"])
            named = set(re.findall(r"\blogpipe_[a-z0-9_]+", without_strings))
            assert named and named <= declared, (rule["alert"], named - declared)
