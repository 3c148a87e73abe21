"""The installed wheel (what the container image carries) finds its data files: the SQL
schema and the dashboard build are package data read through `importlib.resources`, never
through the checkout's folders.

The wheel is built from this checkout and installed into a fresh virtualenv in a temporary
directory outside it. That virtualenv gets the third-party dependencies from the project's
virtualenv through a `.pth` line (a path added that way is not scanned for `.pth` files, so
the checkout's editable install is not seen); `logpipe` itself comes only from the wheel,
which the test checks before anything else.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import httpx
import orjson
import pytest

from logpipe.core.broker import free_port
from logpipe.generator.service import LogFactory, encode

from support import produce, wait_for

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv outside the checkout with only the built wheel of logpipe in it."""
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools reuses an in-tree build/ folder, whose stale modules would
    # end up in the wheel.
    source = root / "source"
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name if source.exists() else _mkdir(source) / name)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    for folder in project["tool"]["setuptools"]["packages"]["find"]["where"]:
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = root / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(wheels), str(source)], check=True, cwd=root)
    [wheel] = wheels.glob("logpipe-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "logpipe/sql/clickhouse/001_logs.sql" in names, names

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "logpipe-test-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, cwd=root)
    return venv


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _env(venv: Path, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "LOGPIPE_SQL_DIR")}
    env.update({"PATH": f"{venv / 'bin'}:{env.get('PATH', '')}", "LOGPIPE_DATA_DIR": str(data_dir),
                "HF_HUB_OFFLINE": "1", "LOG_FORMAT": "json", **extra})
    return env


def test_the_wheel_is_what_runs(installed, tmp_path):
    where = subprocess.run([str(installed / "bin" / "python"), "-c",
                            "import logpipe, logpipe.stores.clickhouse as c; print(logpipe.__file__); print(c.sql_dir())"],
                           check=True, capture_output=True, text=True, cwd=tmp_path, env=_env(installed, tmp_path)).stdout
    package, sql = where.split()
    assert Path(package).is_relative_to(installed) and Path(sql).is_relative_to(installed)
    assert not Path(package).is_relative_to(REPO)
    assert sorted(path.name for path in Path(sql).glob("*.sql")) == sorted(
        path.name for path in (REPO / "services" / "logpipe" / "sql" / "clickhouse").glob("*.sql"))


async def test_schema_and_ingest_run_from_the_installed_wheel(installed, tmp_path, kafka_bootstrap, topic_prefix):
    data = tmp_path / "data"
    env = _env(installed, data, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, TOPIC_PREFIX=topic_prefix)
    schema = subprocess.run([str(installed / "bin" / "logpipe"), "schema"], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=180)
    assert schema.returncode == 0, schema.stderr[-3000:]
    done = orjson.loads(schema.stdout.strip().splitlines()[-1])
    assert done["ready"] is True and done["clickhouse"] == "logpipe"
    assert f"{topic_prefix}raw-logs" in done["topics_created"]

    port = free_port()
    ingest = subprocess.Popen([str(installed / "bin" / "logpipe"), "run", "ingest"], cwd=tmp_path,
                              env={**env, "INGEST_PORT": str(port), "INGEST_BATCH_TIMEOUT_SECONDS": "0.5",
                                   "INGEST_SESSION_TIMEOUT_MS": "2000", "INGEST_HEARTBEAT_INTERVAL_MS": "500",
                                   "INGEST_GROUP_ID": f"wheel-{topic_prefix}"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"

    def answers(path: str):
        try:
            response = httpx.get(base + path, timeout=5)
        except httpx.HTTPError:
            assert ingest.poll() is None, ingest.stdout.read()[-3000:]
            return None
        return response.json() if response.status_code == 200 else None

    try:
        health = await wait_for(lambda: answers("/health"), timeout=120)
        assert health["service"] == "ingest" and health["status"] in ("healthy", "degraded"), health
        records = LogFactory(seed=7).batch(25)
        await produce(kafka_bootstrap, f"{topic_prefix}raw-logs", [encode(record) for record in records])
        stats = await wait_for(lambda: (found := answers("/stats")) and found.get("written", 0) >= 25 and found,
                               timeout=90)
        assert stats["written"] == 25 and stats["dlq"] == 0, stats
    finally:
        ingest.terminate()
        try:
            ingest.wait(30)
        except subprocess.TimeoutExpired:
            ingest.kill()
            ingest.wait(10)
