"""The dashboard's typed API client cannot drift from the gateway: its generated types
(frontend/src/api/schema.d.ts) must equal what openapi-typescript makes of the current app's
OpenAPI document. After changing an endpoint: `make frontend-api`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from logpipe.gateway.app import create_app
from logpipe.gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = ROOT / "frontend"


def test_generated_client_types_match_the_gateway(tmp_path):
    if shutil.which("node") is None or not (FRONTEND / "node_modules" / "openapi-typescript").is_dir():
        pytest.fail("node and frontend/node_modules are needed: cd frontend && npm ci")
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(create_app(Settings()).openapi()))
    generated = tmp_path / "schema.d.ts"
    done = subprocess.run(["node", "scripts/gen-api.mjs", str(document), str(generated)], cwd=FRONTEND,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    committed = (FRONTEND / "src" / "api" / "schema.d.ts").read_text()
    assert generated.read_text() == committed, (
        "frontend/src/api/schema.d.ts is stale: run `make frontend-api` and commit the result")


def test_client_paths_exist_in_the_gateway():
    """Every path the client calls is one the gateway serves (a renamed route fails here)."""
    source = "\n".join(path.read_text() for path in (FRONTEND / "src").rglob("*.ts*") if ".test." not in path.name
                       and path.name != "schema.d.ts")
    served = set(create_app(Settings()).openapi()["paths"])
    called = set(re.findall(r'"(/api/[a-z/{}_]+)"', source))
    assert called, "no API path found in the client"
    assert called <= served, sorted(called - served)
