"""Every Grafana panel's PromQL, run against a real Prometheus (Debian's package, on loopback)
scraping `logpipe run all` with traffic flowing: each expression returns at least one series,
and each metric it names is one the services export.

The operator cannot run here (no cluster): its panels are checked by `promtool` (syntax) and
against the metric names the operator package declares (tests/deploy/test_dashboards.py::
test_every_expression_is_valid_promql)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from logpipe.core.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "charts" / "logpipe" / "dashboards"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
# Grafana replaces $__rate_interval with four scrape intervals at least; the test scrapes
# every second.
RATE_INTERVAL = "15s"
OPERATOR_METRICS = {"logpipe_operator_reconciles_total", "logpipe_operator_errors_total",
                    "logpipe_operator_reconcile_seconds_bucket", "logpipe_operator_scaling_decisions_total",
                    "logpipe_operator_consumer_lag", "logpipe_operator_incoming_records_per_second"}
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "max", "or", "on", "vector", "le",
                "without", "and", "unless", "min", "avg", "count", "topk"}


def panel_expressions() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                found.append((path.stem, panel["title"], target["expr"]))
    return found


def metric_names(expression: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expression)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_labels)
    without_groupings = re.sub(r"\b(by|on|without)\s*\([^)]*\)", "", without_ranges)
    names = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", without_groupings))
    return {name for name in names if name.startswith("logpipe_")} | \
        {name for name in names - PROMQL_WORDS if not name.startswith("logpipe_") and not name.isdigit()}


def promql(expression: str) -> str:
    return expression.replace("$__rate_interval", RATE_INTERVAL)


def test_every_expression_is_valid_promql(tmp_path):
    if PROMTOOL is None:
        pytest.fail("promtool is missing: install Debian's prometheus (scripts/system-deps.sh)")
    expressions = panel_expressions()
    assert {dashboard for dashboard, _, _ in expressions} == {"overview", "ingest", "vectors", "analysis", "api",
                                                             "operator"}
    rules = {"groups": [{"name": "panels", "rules": [
        {"record": f"panel:{index}", "expr": promql(expression)} for index, (_, _, expression) in enumerate(expressions)]}]}
    path = tmp_path / "panels.rules.json"
    path.write_text(json.dumps(rules))
    checked = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for dashboard, title, expression in expressions:
        names = metric_names(expression)
        assert names and all(name.startswith("logpipe_") for name in names), (dashboard, title, names)
        if dashboard == "operator":
            assert names <= OPERATOR_METRICS, (title, names - OPERATOR_METRICS)


def _wait(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met in {timeout} s")
        time.sleep(interval)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).json().get("status") in ("healthy", "degraded")
    except (httpx.HTTPError, ValueError):
        return False


@pytest.mark.slow
async def test_every_panel_returns_series_from_a_real_prometheus(tmp_path, kafka_bootstrap, topics, topic_prefix):
    if PROMETHEUS is None:
        pytest.fail("prometheus is missing: install Debian's prometheus (scripts/system-deps.sh)")
    from support import produce

    ports = {name: free_port() for name in ("gateway", "generator", "ingest", "embedder", "vectorizer", "analyzer")}
    env = {
        **os.environ,
        "LOGPIPE_DATA_DIR": str(tmp_path / "data"),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TOPIC_PREFIX": topic_prefix,
        "GENERATOR_RATE_PER_SECOND": "200",
        "GENERATOR_ERROR_RATE_PERCENTAGE": "20",
        "GENERATOR_INCIDENTS": "none",
        "INGEST_BATCH_TIMEOUT_SECONDS": "0.5",
        "INGEST_SESSION_TIMEOUT_MS": "2000",
        "INGEST_HEARTBEAT_INTERVAL_MS": "500",
        "VECTORIZER_SESSION_TIMEOUT_MS": "2000",
        "VECTORIZER_HEARTBEAT_INTERVAL_MS": "500",
        "GATEWAY_LAG_SAMPLE_S": "1",
        # The vectors' retention within the test's minutes: a pass each second and a cap the
        # generator's errors pass, so points expire and the index is rebuilt (docs/vectors.md).
        "VECTORIZER_RETENTION_INTERVAL_SECONDS": "1",
        "VECTORIZER_MAX_POINTS": "200",
        "VECTORIZER_OPTIMIZE_AFTER_POINTS": "100",
        "ANALYZER_LLM_BACKEND": "none",
        **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
    }
    created = subprocess.run([sys.executable, "-m", "logpipe.cli", "tokens", "create", "--name", "dashboards",
                              "--scope", "admin", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=120)
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)["token"]
    log_path = tmp_path / "logpipe.log"
    platform = subprocess.Popen([sys.executable, "-m", "logpipe.cli", "run", "all", "--generate"], env=env,
                                cwd=tmp_path, stdout=log_path.open("w"), stderr=subprocess.STDOUT)
    prometheus = None
    try:
        for name, port in ports.items():
            _wait(lambda: platform.poll() is None and _healthy(f"http://127.0.0.1:{port}/health"), 240,
                  f"{name} healthy\n{log_path.read_text()[-3000:]}")

        prometheus_port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                               for name, port in ports.items()]}))
        prometheus = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                       f"--web.listen-address=127.0.0.1:{prometheus_port}"],
                                      stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"))
        api = f"http://127.0.0.1:{prometheus_port}/api/v1"

        # Traffic beyond the generator's: the API (2xx and 4xx), the embedder's own endpoint
        # (cache misses then hits), an analysis run, and one malformed record for the DLQ.
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        auth = {"Authorization": f"Bearer {token}"}
        lines = "\n".join(json.dumps({"service": "checkout", "level": "ERROR",
                                      "message": f"payment declined for order {n}"}) for n in range(20))
        accepted = httpx.post(f"{gateway}/api/ingest", content=lines, headers=auth, timeout=30)
        assert accepted.status_code == 200, accepted.text
        assert httpx.get(f"{gateway}/api/logs", timeout=10).status_code == 401
        await produce(kafka_bootstrap, topics.raw_logs, [b"this is not a log record {"])
        embedder = f"http://127.0.0.1:{ports['embedder']}"
        for _ in range(2):
            assert httpx.post(f"{embedder}/embed", json={"text": "disk full on /var"}, timeout=60).status_code == 200
        run = httpx.post(f"http://127.0.0.1:{ports['analyzer']}/analyze", json={"window_hours": 1}, timeout=60)
        assert run.status_code == 202, run.text
        report = run.json()["report_id"]
        _wait(lambda: httpx.get(f"http://127.0.0.1:{ports['analyzer']}/reports/{report}", timeout=30)
              .json().get("status") in ("completed", "failed"), 180, "analysis run finished", interval=1)

        live = [(d, t, e) for d, t, e in panel_expressions() if d != "operator"]
        missing: dict[str, str] = {}

        def every_panel_has_data() -> bool:
            httpx.get(f"{gateway}/api/logs", params={"limit": 1}, headers=auth, timeout=10)
            missing.clear()
            for dashboard, title, expression in live:
                answer = httpx.get(f"{api}/query", params={"query": promql(expression)}, timeout=10).json()
                assert answer["status"] == "success", (dashboard, title, answer)
                if not answer["data"]["result"]:
                    missing[f"{dashboard}/{title}"] = expression
            return not missing

        try:
            _wait(every_panel_has_data, 120, "every panel has a series", interval=2)
        except AssertionError:
            raise AssertionError(f"panels without data: {json.dumps(missing, indent=1)}") from None

        # Each metric a panel names is one the services export (not a typo kept alive by `or`):
        # a series, or a family the scrapes declared (a labelled counter before its first event).
        exported = set(httpx.get(f"{api}/label/__name__/values", timeout=10).json()["data"])
        exported |= set(httpx.get(f"{api}/metadata", timeout=10).json()["data"])
        for dashboard, title, expression in live:
            unknown = {name for name in metric_names(expression)
                       if name not in exported and re.sub(r"_(bucket|sum|count)$", "", name) not in exported}
            assert not unknown, (dashboard, title, unknown)
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=30)
        platform.send_signal(signal.SIGINT)
        try:
            platform.wait(timeout=90)
        except subprocess.TimeoutExpired:
            platform.kill()
            platform.wait()
