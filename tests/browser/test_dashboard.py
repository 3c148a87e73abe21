"""The dashboard in a real browser: Debian's Chromium, driven by npm playwright-core (e2e.mjs),
against `logpipe run all` with its own Tansu broker, the generator producing and a real token.

The dashboard must be built first (`make test` runs `npm ci` and `npm run build` before pytest);
this module builds nothing. Screenshots of every page land in tests/browser/artifacts/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from logpipe.core.broker import EmbeddedBroker, free_port

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "services" / "logpipe" / "gateway" / "static"
FRONTEND = ROOT / "frontend"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = os.environ.get("LOGPIPE_CHROMIUM", "/usr/bin/chromium")
SERVICES = ("gateway", "generator", "ingest", "embedder", "vectorizer", "analyzer")


def _require_tools() -> None:
    if not (STATIC / "index.html").is_file():
        pytest.fail(f"the dashboard is not built ({STATIC}/index.html); run: cd frontend && npm ci && npm run build")
    if not (FRONTEND / "node_modules" / "playwright-core").is_dir():
        pytest.fail("frontend/node_modules is missing; run: cd frontend && npm ci")
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing; run scripts/system-deps.sh (apt-get install -y chromium)")
    if shutil.which("node") is None:
        pytest.fail("node is not installed")


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "logpipe.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """`logpipe run all --generate` on free ports; yields its gateway URL and two real tokens."""
    _require_tools()
    data = tmp_path_factory.mktemp("dashboard-data")
    broker = EmbeddedBroker(port=free_port()).start()
    ports = {name: free_port() for name in SERVICES}
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "services"), os.environ.get("PYTHONPATH")])),
        "LOGPIPE_DATA_DIR": str(data),
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "GATEWAY_FRONTEND_DIR": str(STATIC),
        "GATEWAY_ANALYZER_URL": f"http://127.0.0.1:{ports['analyzer']}",
        "GATEWAY_EMBEDDER_URL": f"http://127.0.0.1:{ports['embedder']}",
        "GATEWAY_INGEST_URL": f"http://127.0.0.1:{ports['ingest']}",
        "GATEWAY_VECTORIZER_URL": f"http://127.0.0.1:{ports['vectorizer']}",
        "GENERATOR_RATE_PER_SECOND": "60",
        "GENERATOR_ERROR_RATE_PERCENTAGE": "15",
        "GENERATOR_INCIDENTS": "none",
        "INGEST_BATCH_TIMEOUT_SECONDS": "1",
        "INGEST_SESSION_TIMEOUT_MS": "2000",
        "INGEST_HEARTBEAT_INTERVAL_MS": "500",
        "VECTORIZER_SESSION_TIMEOUT_MS": "2000",
        "VECTORIZER_HEARTBEAT_INTERVAL_MS": "500",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
    }
    admin = json.loads(_cli(env, "tokens", "create", "--name", "browser-e2e", "--scope", "admin", "--json"))["token"]
    bound = json.loads(_cli(env, "tokens", "create", "--name", "team-viewer", "--scope", "read",
                            "--pipeline", "default", "--json"))["token"]
    process = subprocess.Popen([sys.executable, "-m", "logpipe.cli", "run", "all", "--generate"], env=env,
                               cwd=data, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    headers = {"Authorization": f"Bearer {admin}"}
    try:
        deadline = time.monotonic() + 240
        errors = 0
        while errors == 0:
            assert process.poll() is None, "logpipe run all exited:\n" + "".join(output[-60:])
            assert time.monotonic() < deadline, "no ERROR log reached the gateway:\n" + "".join(output[-60:])
            try:
                answer = httpx.get(f"{gateway}/api/logs", params={"level": "ERROR", "limit": 1}, headers=headers, timeout=10)
                errors = answer.json().get("total") or 0 if answer.status_code == 200 else 0
            except httpx.HTTPError:
                pass
            time.sleep(1)
        yield {"url": gateway, "token": admin, "bound_token": bound, "output": output}
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        broker.stop()


def test_every_page_in_chromium(platform):
    """Runs e2e.mjs: every page, the checks of issue #21, axe on each page, screenshots."""
    ARTIFACTS.mkdir(exist_ok=True)
    marker = uuid.uuid4().hex[:12]
    env = {
        **os.environ,
        "LOGPIPE_URL": platform["url"],
        "LOGPIPE_TOKEN": platform["token"],
        "LOGPIPE_BOUND_TOKEN": platform["bound_token"],
        "LOGPIPE_CHROMIUM": CHROMIUM,
        "LOGPIPE_ARTIFACTS": str(ARTIFACTS),
        "LOGPIPE_MARKER": marker,
    }
    done = subprocess.run(["node", str(Path(__file__).with_name("e2e.mjs"))], cwd=FRONTEND, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    print(done.stdout)
    print(done.stderr, file=sys.stderr)
    assert done.returncode == 0, (done.stdout[-6000:] + "\n" + done.stderr[-4000:]
                                  + "\n--- logpipe run all ---\n" + "".join(platform["output"][-40:]))
    for page in ("explore", "patterns", "anomalies", "services", "search", "reports", "report", "pipeline", "token-prompt"):
        assert (ARTIFACTS / f"{page}.png").stat().st_size > 10_000, page
