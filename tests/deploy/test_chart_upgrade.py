"""The generated credentials survive `helm upgrade`, `helm uninstall` and a new `helm install`.

Helm itself (helm-python-sdk's Helm v4 library) installs, upgrades and uninstalls the chart
against kmock, a Kubernetes API emulator on 127.0.0.1, so the chart's `lookup` reads the Secret
the install created, as it would on a cluster. What the emulator does not do is not claimed:
no admission, no OpenAPI validation (Helm's is turned off; test_chart.py validates every
manifest against the real Kubernetes schemas), no controllers, and Helm keeps its release
records in memory (the emulator cannot decode the protobuf Helm writes them in).
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import uuid
from pathlib import Path

import helm_python
import kmock
import pytest
import yaml
from helm_python import _native

CHART = Path(__file__).resolve().parents[2] / "charts" / "logpipe"
NAMESPACE = "logpipe"
RELEASE = "logpipe"
SECRET = f"{RELEASE}-credentials"


class Emulator(kmock.KubernetesEmulator):
    """kmock plus what Helm needs from an API server: server-side apply creates a missing object,
    objects get uid/resourceVersion/creationTimestamp, and the core group's resource list names
    its group version `v1` (kmock writes `/v1`, which client-go cannot map)."""

    _versions = itertools.count(1)

    async def _handle(self, request: kmock.Request):
        if request.resource is not None and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            applied = "apply-patch" in request.headers.get("Content-Type", "")
            key = (request.resource, request.namespace, request.name)
            created = request.action == kmock.action.CREATE or (
                request.action == kmock.action.UPDATE and applied
                and (key not in self.objects or self.objects[key].deleted))
            meta["resourceVersion"] = str(next(self._versions))
            if created:
                meta.setdefault("namespace", request.namespace)
                meta.update(uid=str(uuid.uuid4()),
                            creationTimestamp=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
                if request.action == kmock.action.UPDATE:
                    self.objects[key] = request.data
        return await super()._handle(request)

    async def _serve_version(self, request: kmock.Request):
        payload = await super()._serve_version(request)
        if request.resource.group == "":
            payload["groupVersion"] = "v1"
        return payload


@pytest.fixture
async def api():
    handler = Emulator()
    handler.resources.load_bundled()
    # No OpenAPI document: Helm's client-side schema validation is switched off below.
    handler["get /openapi/v3"] << {"paths": {}}
    async with handler, kmock.Server(handler) as server:
        yield handler, yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
            "clusters": [{"name": "kmock", "cluster": {"server": f"http://127.0.0.1:{server.port}"}}],
            "users": [{"name": "kmock", "user": {"token": "kmock-test-only"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock", "namespace": NAMESPACE}}],
        })


class Helm:
    """install/upgrade/uninstall through Helm's library. helm-python-sdk does not expose
    `--disable-openapi-validation`, which its native call accepts: it is passed directly."""

    def __init__(self, config: helm_python.Config) -> None:
        self.config = config

    def _release(self, verb: str, values: dict) -> dict:
        handle, ref = self.config._chart_args(str(CHART))
        payload = _native.call_string(
            f"helm_{verb}", self.config._raw(), self.config._context_arg(None), handle, ref, RELEASE,
            json.dumps(values), json.dumps({"namespace": NAMESPACE, "disable_openapi_validation": True}))
        return json.loads(payload)

    def install(self, values: dict) -> dict:
        return self._release("install", values)

    def upgrade(self, values: dict) -> dict:
        return self._release("upgrade", values)

    def uninstall(self) -> None:
        self.config.uninstall(RELEASE)


def _stored(handler: Emulator, kind: str, name: str) -> dict | None:
    for (resource, namespace, stored_name), obj in handler.objects.items():
        if stored_name == name and namespace == NAMESPACE and not obj.deleted and obj.raw.get("kind") == kind:
            return obj.raw
    return None


def _secret_in_manifest(release: dict) -> dict:
    documents = [doc for doc in yaml.safe_load_all(release["manifest"]) if doc]
    return next(doc["data"] for doc in documents if doc["kind"] == "Secret" and doc["metadata"]["name"] == SECRET)


async def test_generated_secret_is_kept_across_upgrade_uninstall_and_reinstall(api):
    handler, kubeconfig = api

    def lifecycle() -> dict:
        seen = {}
        with helm_python.Config(kubeconfig_content=kubeconfig, namespace=NAMESPACE, storage_driver="memory") as config:
            helm = Helm(config)
            installed = helm.install({})
            assert installed["status"] == "deployed", installed
            seen["installed"] = dict(_stored(handler, "Secret", SECRET)["data"])
            seen["install manifest"] = _secret_in_manifest(installed)

            upgraded = helm.upgrade({"gateway": {"replicas": 3}, "ingest": {"replicas": 2}})
            assert upgraded["status"] == "deployed" and upgraded["revision"] == 2, upgraded
            seen["upgraded"] = dict(_stored(handler, "Secret", SECRET)["data"])
            seen["upgrade manifest"] = _secret_in_manifest(upgraded)
            seen["gateway replicas"] = _stored(handler, "Deployment", f"{RELEASE}-gateway")["spec"]["replicas"]

            helm.uninstall()
            seen["deployment after uninstall"] = _stored(handler, "Deployment", f"{RELEASE}-gateway")
            kept = _stored(handler, "Secret", SECRET)
            seen["after uninstall"] = dict(kept["data"]) if kept else None

            reinstalled = helm.install({})
            assert reinstalled["status"] == "deployed", reinstalled
            seen["reinstalled"] = dict(_stored(handler, "Secret", SECRET)["data"])
        return seen

    seen = await asyncio.wait_for(asyncio.to_thread(lifecycle), timeout=120)

    first = seen["installed"]
    assert set(first) == {"clickhouse-password", "qdrant-api-key", "postgres-password", "redis-password",
                          "service-token"}
    assert len(set(first.values())) == 5  # five independent random values
    assert seen["install manifest"] == first
    # The upgrade changed the release (3 gateway replicas) and rendered the stored values again.
    assert seen["gateway replicas"] == 3
    assert seen["upgrade manifest"] == first and seen["upgraded"] == first
    # `helm uninstall` removes the workloads but keeps the Secret (helm.sh/resource-policy: keep),
    # and a new install adopts it unchanged: the bundled databases' volumes still match it.
    assert seen["deployment after uninstall"] is None
    assert seen["after uninstall"] == first
    assert seen["reinstalled"] == first
