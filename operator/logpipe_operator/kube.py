"""A small Kubernetes API client for the children (Kopf only talks to the watched resource).

It logs in with the credentials Kopf obtained (service account or kubeconfig), so there is
one source of credentials. Apply is create-or-patch: an object already as desired is left alone.
"""

from __future__ import annotations

import base64
from typing import Any

import aiohttp

# apiVersion/kind -> (API path prefix, plural).
_PATHS = {
    ("v1", "Service"): ("/api/v1", "services"),
    ("v1", "Secret"): ("/api/v1", "secrets"),
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments"),
    ("batch/v1", "CronJob"): ("/apis/batch/v1", "cronjobs"),
    ("keda.sh/v1alpha1", "ScaledObject"): ("/apis/keda.sh/v1alpha1", "scaledobjects"),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("/apis/networking.k8s.io/v1", "networkpolicies"),
}


class KubeError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Kubernetes API {status}: {message}")
        self.status = status


def object_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    prefix, plural = _PATHS[(api_version, kind)]
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


def contains(existing: Any, desired: Any) -> bool:
    """Whether `existing` already holds every value of `desired` (server defaults may add more)."""
    if isinstance(desired, dict):
        return isinstance(existing, dict) and all(contains(existing.get(key), value) for key, value in desired.items())
    if isinstance(desired, list):
        return (isinstance(existing, list) and len(existing) == len(desired)
                and all(contains(old, new) for old, new in zip(existing, desired)))
    return existing == desired


class Kube:
    def __init__(self, info) -> None:
        """`info`: the kopf.ConnectionInfo Kopf logged in with (token, basic auth or client
        certificate; its own SSL context, so embedded kubeconfig certificates work too)."""
        self.server = info.server.rstrip("/")
        self._headers = {"Accept": "application/json", **info.as_http_headers()}
        self._ssl = info.as_ssl_context() if self.server.startswith("https") else None
        self._session: aiohttp.ClientSession | None = None

    async def _request(self, method: str, path: str, body: Any = None,
                       content_type: str = "application/json") -> dict[str, Any] | None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers,
                                                  timeout=aiohttp.ClientTimeout(total=30))
        headers = {"Content-Type": content_type} if body is not None else {}
        async with self._session.request(method, self.server + path, json=body, headers=headers,
                                         ssl=self._ssl) as response:
            if response.status == 404:
                return None
            if response.status >= 400:
                raise KubeError(response.status, (await response.text())[:500])
            return await response.json(content_type=None)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._request("GET", object_path(api_version, kind, namespace, name))

    async def patch(self, api_version: str, kind: str, namespace: str, name: str,
                    patch: dict[str, Any]) -> dict[str, Any] | None:
        return await self._request("PATCH", object_path(api_version, kind, namespace, name), patch,
                                   "application/merge-patch+json")

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        return await self._request("DELETE", object_path(api_version, kind, namespace, name)) is not None

    async def apply(self, desired: dict[str, Any], keep: tuple[str, ...] = ()) -> tuple[str, dict[str, Any]]:
        """Create the object, or patch it where it differs; returns (created|updated|unchanged, object).

        `keep`: top-level spec keys whose live value wins (replicas moved by the scaler)."""
        meta = desired["metadata"]
        args = (desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"])
        existing = await self.get(*args)
        if existing is None:
            created = await self._request("POST", object_path(*args[:3]), desired)
            return "created", created or desired
        wanted = dict(desired, spec={key: value for key, value in desired.get("spec", {}).items() if key not in keep})
        if contains(existing, wanted):
            return "unchanged", existing
        return "updated", await self.patch(*args, wanted) or existing

    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        secret = await self.get("v1", "Secret", namespace, name)
        if secret is None:
            raise LookupError(f"Secret {namespace}/{name} not found")
        data = (secret.get("data") or {}).get(key)
        if data is None:
            string = (secret.get("stringData") or {}).get(key)
            if string is None:
                raise LookupError(f"Secret {namespace}/{name} has no key {key!r}")
            return string
        return base64.b64decode(data).decode()
