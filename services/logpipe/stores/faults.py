"""Fault injection for the embedded stores, for outage tests and drills.

chdb (ClickHouse) and qdrant-edge (Qdrant) run inside the service's process: there is no
server to stop. `outage("clickhouse")` makes every call of that store in this process raise
`DependencyUnavailable` (health probes fail too) until it ends, which is what the service sees
when a ClickHouse or Qdrant server is away; the server backends need no hook (stop the server).

    with faults.outage("qdrant", "drill"):
        ...  # every VectorStore.a* call and ping raises

Names: "clickhouse" (every ClickHouseStore call), "qdrant" (VectorStore's async calls and
its ping). Nothing in the services calls `start`/`end`; only tests and drills do.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from logpipe.core.circuit import DependencyUnavailable

_active: dict[str, str] = {}
_lock = threading.Lock()


def start(store: str, reason: str = "injected outage") -> None:
    with _lock:
        _active[store] = reason


def end(store: str) -> None:
    with _lock:
        _active.pop(store, None)


@contextlib.contextmanager
def outage(store: str, reason: str = "injected outage") -> Iterator[None]:
    start(store, reason)
    try:
        yield
    finally:
        end(store)


def check(store: str) -> None:
    """Raise if an outage of `store` is injected (a dict lookup when none is)."""
    if _active:
        reason = _active.get(store)
        if reason is not None:
            raise DependencyUnavailable(store, f"{store} unavailable ({reason})")
