"""Helpers of the operator tests (a module of its own: `conftest` names two modules here)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from pathlib import Path

# Set by tests/operator/conftest.py before the operator is imported.
DATA_DIR = Path(os.environ["OPERATOR_DATA_DIR"])


def secret(namespace: str, name: str, **values: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "data": {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}}


async def eventually(probe, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
    """Poll an async probe until it returns something truthy (kmock serves from this loop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while loop.time() < deadline:
        with contextlib.suppress(AssertionError):
            last = await probe()
            if last:
                return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s; last value: {last!r}")
