"""The `/health` contract every service answers.

`{"status": "healthy"|"degraded"|"unhealthy", "service", "version", "uptime_seconds",
  "dependencies": {"clickhouse": "connected", "kafka": "connected", ...},
  "metrics": {"requests_total", "errors_total"}}`, with HTTP 503 when unhealthy.
A critical dependency that is down makes the service unhealthy; any other makes it degraded.
Circuit breakers (`circuit(name)`, core/circuit.py) are listed under `"circuits"`; an open one
makes the service degraded with the reason (`"reasons": {"circuit:clickhouse": "open after 3
failures: ..."}`), so a probe says why consumption is paused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from logpipe import __version__
from logpipe.core.circuit import CircuitBreaker

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[bool] | bool]


@dataclass
class Dependency:
    check: Check
    critical: bool = True


@dataclass
class Health:
    service: str
    started_at: float = field(default_factory=time.monotonic)
    dependencies: dict[str, Dependency] = field(default_factory=dict)
    requests_total: int = 0
    errors_total: int = 0
    # Set by a service that knows it cannot do its job (e.g. an open circuit breaker).
    degraded_reasons: dict[str, str] = field(default_factory=dict)
    circuits: dict[str, CircuitBreaker] = field(default_factory=dict)

    def add(self, name: str, check: Check, critical: bool = True) -> None:
        self.dependencies[name] = Dependency(check, critical)

    def circuit(self, dependency: str, threshold: int = 3, base_delay_s: float = 0.5,
                max_delay_s: float = 30.0) -> CircuitBreaker:
        """The service's breaker for `dependency` (one per dependency), shown by `report`."""
        breaker = self.circuits.get(dependency)
        if breaker is None:
            breaker = self.circuits[dependency] = CircuitBreaker(dependency, self.service, threshold,
                                                                 base_delay_s, max_delay_s)
        return breaker

    async def _probe(self, dependency: Dependency) -> bool:
        try:
            result = dependency.check()
            if asyncio.iscoroutine(result):
                result = await asyncio.wait_for(result, timeout=3.0)
            return bool(result)
        except Exception as exc:  # noqa: BLE001 - a failing probe means disconnected
            log.debug("health probe failed: %s", exc)
            return False

    async def report(self) -> tuple[dict, int]:
        names = list(self.dependencies)
        results = await asyncio.gather(*(self._probe(self.dependencies[n]) for n in names))
        states = {name: "connected" if ok else "disconnected" for name, ok in zip(names, results)}
        reasons = dict(self.degraded_reasons)
        for name, breaker in self.circuits.items():
            if breaker.is_open:
                reasons[f"circuit:{name}"] = f"open after {breaker.failures} failures: {breaker.last_error}"
        status = "healthy"
        if reasons or not all(results):
            status = "degraded"
        if any(not ok and self.dependencies[n].critical for n, ok in zip(names, results)):
            status = "unhealthy"
        body = {
            "status": status,
            "service": self.service,
            "version": __version__,
            "uptime_seconds": round(time.monotonic() - self.started_at, 3),
            "dependencies": states,
            "metrics": {"requests_total": self.requests_total, "errors_total": self.errors_total},
        }
        if self.circuits:
            body["circuits"] = {name: breaker.state for name, breaker in self.circuits.items()}
        if reasons:
            body["reasons"] = reasons
        return body, 503 if status == "unhealthy" else 200
