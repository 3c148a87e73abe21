"""The operator under `kopf.testing.KopfRunner` against kmock (a Kubernetes API emulator), with
the real broker (Tansu) and the embedded stores (chdb, Qdrant Edge) in this process.

The operator reads its settings when the handlers module is imported, so its environment (fast
timers and retries) is set here first.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import aiohttp.web
import jsonpatch
import kmock
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "logpipelines.logpipe.io.yaml"
LOGPIPELINES = "logpipe.io/v1alpha1/logpipelines"

_workdir = Path(tempfile.mkdtemp(prefix="logpipe-operator-tests-"))
KUBECONFIG = _workdir / "kubeconfig"
os.environ["KUBECONFIG"] = str(KUBECONFIG)
os.environ.update({
    "OPERATOR_SCALE_INTERVAL_SECONDS": "1",
    "OPERATOR_RETRY_BASE_SECONDS": "1",
    "OPERATOR_RETRY_MAX_SECONDS": "2",
    "OPERATOR_KAFKA_TIMEOUT_SECONDS": "3",
    "OPERATOR_DATA_DIR": str(_workdir / "data"),
})



@pytest.fixture(scope="session", autouse=True)
def _remove_workdir():
    yield
    shutil.rmtree(_workdir, ignore_errors=True)


class Emulator(kmock.KubernetesEmulator):
    """kmock plus the metadata the API server owns: uid, creationTimestamp, a generation bumped
    on spec changes, a resourceVersion bumped on every write; a failed JSON-patch test is 422."""

    _versions = itertools.count(1)
    _latest = [0]  # the last resourceVersion given (an attrs class takes no new attributes)

    def _next_version(self) -> str:
        self._latest[0] = next(self._versions)
        return str(self._latest[0])

    async def _serve_list(self, request: kmock.Request):
        payload = await super()._serve_list(request)
        payload["metadata"]["resourceVersion"] = str(self._latest[0])
        return payload

    async def _serve_watch(self, request: kmock.Request):
        """A watch from a list's resourceVersion starts after it, as the API server's does
        (kmock replays every object, which Kopf would handle twice)."""
        since = request.params.get("resourceVersion", "")
        async for event in super()._serve_watch(request):
            if (since.isdigit() and isinstance(event, dict) and event.get("type") == "ADDED"
                    and int(event["object"]["metadata"].get("resourceVersion") or 0) <= int(since)):
                continue
            yield event

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.resource is not None and request.action == kmock.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            meta.setdefault("namespace", request.namespace)
            if not meta.get("name") and meta.get("generateName"):  # Kopf's events
                meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:10]}"
            meta.update(uid=str(uuid.uuid4()), generation=1, resourceVersion=self._next_version(),
                        creationTimestamp=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        elif request.resource is not None and request.action == kmock.action.UPDATE and request.name:
            key = (request.resource, request.namespace, request.name)
            stored = self.objects[key] if key in self.objects else None
            if stored is not None and not stored.deleted:
                old = stored.raw
                version = self._next_version()
                if isinstance(request.data, list):
                    try:
                        new = jsonpatch.apply_patch(old, request.data, in_place=False)
                    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                        return aiohttp.web.json_response(
                            {"kind": "Status", "status": "Failure", "reason": "Invalid", "code": 422,
                             "message": str(exc)}, status=422)
                    request.data.append({"op": "replace", "path": "/metadata/resourceVersion", "value": version})
                    if new.get("spec") != old.get("spec"):
                        request.data.append({"op": "replace", "path": "/metadata/generation",
                                             "value": old["metadata"].get("generation", 1) + 1})
                elif isinstance(request.data, dict):
                    meta = request.data.setdefault("metadata", {}) if request.data.get("metadata") is not None else None
                    if meta is None:
                        meta = request.data["metadata"] = {}
                    meta["resourceVersion"] = version
                    if "spec" in request.data and request.subresource != "status":
                        from kmock._internal.dicts import merge_patch_dict

                        if merge_patch_dict(old, {"spec": request.data["spec"]}).get("spec") != old.get("spec"):
                            meta["generation"] = old["metadata"].get("generation", 1) + 1
        return await super()._handle(request)


@pytest.fixture
async def k8s():
    """The emulated API with built-in kinds, the LogPipeline resource and KEDA's ScaledObject."""
    handler = Emulator()
    handler.resources.load_bundled()
    crd = yaml.safe_load(CRD_PATH.read_text())
    handler.resources[LOGPIPELINES] = kmock.ResourceInfo(
        kind=crd["spec"]["names"]["kind"], singular="logpipeline", namespaced=True, shortnames=["lp"],
        verbs=["list", "watch", "get", "create", "update", "patch", "delete"], subresources=["status"])
    handler.resources["keda.sh/v1alpha1/scaledobjects"] = kmock.ResourceInfo(
        kind="ScaledObject", namespaced=True, verbs=["list", "watch", "get", "create", "update", "patch", "delete"])
    async with handler, kmock.Server(handler) as server:
        KUBECONFIG.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
            "clusters": [{"name": "kmock", "cluster": {"server": f"http://127.0.0.1:{server.port}"}}],
            "users": [{"name": "kmock", "user": {"token": "kmock-test-only"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock", "namespace": "default"}}],
        }))
        session = aiohttp.ClientSession(base_url=f"http://127.0.0.1:{server.port}")
        try:
            yield Cluster(handler, session)
        finally:
            await session.close()


class Cluster:
    def __init__(self, handler: Emulator, session: aiohttp.ClientSession) -> None:
        self.handler = handler
        self.session = session


@pytest.fixture
async def operator(k8s):
    """The operator running (in its own thread and loop) against the emulator."""
    from kopf.testing import KopfRunner

    from logpipe.core.broker import free_port

    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    runner = KopfRunner(["run", "-A", "--standalone", f"--liveness={liveness}",
                         "-m", "logpipe_operator.handlers"], timeout=60)
    runner.liveness = liveness
    # KopfRunner blocks its caller while starting and stopping; the emulator lives in this loop.
    await asyncio.to_thread(runner.__enter__)
    try:
        yield runner
    finally:
        await asyncio.to_thread(runner.__exit__, None, None, None)
    assert runner.exception is None or isinstance(runner.exception, SystemExit), runner.exception


class Api:
    """What `kubectl` would do, against the emulator (asynchronous: kmock serves from this loop)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def _session(self) -> aiohttp.ClientSession:
        return self.cluster.session

    async def create(self, path: str, body: dict) -> dict:
        response = await self._session().post(path, json=body)
        assert response.status < 300, await response.text()
        return await response.json()

    async def get(self, path: str) -> dict | None:
        response = await self._session().get(path)
        if response.status == 404:
            return None
        assert response.status < 300, await response.text()
        return await response.json()

    async def patch(self, path: str, body: dict) -> dict:
        response = await self._session().patch(path, data=json.dumps(body),
                                               headers={"Content-Type": "application/merge-patch+json"})
        assert response.status < 300, await response.text()
        return await response.json()

    async def delete(self, path: str) -> None:
        response = await self._session().delete(path)
        assert response.status < 300 or response.status == 404, await response.text()


@pytest.fixture
def api(k8s) -> Api:
    return Api(k8s)
