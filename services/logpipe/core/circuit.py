"""Circuit breakers for the systems a service depends on (ClickHouse, Qdrant, the embedder, ...).

    breaker = health.circuit("clickhouse")      # registered with the service's /health
    breaker.record_failure("ConnectionError: ..."); breaker.delay(); breaker.record_success()

Closed -> open after `threshold` consecutive failures. While open the caller waits `delay()`
(base * 2^n, capped) before its next try, which is the half-open trial: a success closes the
circuit, a failure keeps it open with a longer delay. A down dependency is not hammered, and
one breaker per dependency per service is what `/health` and `/metrics` show:

- `/health`: `"circuits": {"clickhouse": "open"}` and, while one is open, status `degraded`
  with the reason (`unhealthy` when the dependency's own probe is critical and fails);
- `/metrics`: `logpipe_circuit_open{service,dependency}` (1 while open) and
  `logpipe_dependency_retries_total{service,dependency}` (failed calls, each retried).

`DependencyUnavailable` is what a call raises when its dependency is away (as opposed to a
request the dependency refused): consumers hold the batch and retry it instead of
dead-lettering its records.
"""

from __future__ import annotations

import errno
import time

from logpipe.core import metrics

CIRCUIT_OPEN = metrics.gauge("logpipe_circuit_open", "1 while the circuit breaker for a dependency is open",
                             ("service", "dependency"))
DEPENDENCY_RETRIES = metrics.counter("logpipe_dependency_retries_total",
                                     "Failed calls to a dependency (each is retried after a back-off)",
                                     ("service", "dependency"))


class DependencyUnavailable(ConnectionError):
    """A dependency cannot be reached (or cannot write right now): retry later, lose nothing."""

    def __init__(self, dependency: str, message: str) -> None:
        super().__init__(message)
        self.dependency = dependency


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says the dependency is away (retry the same data later) rather than that
    this data is wrong (dead-letter it): connection errors, timeouts, a full disk."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS)


class CircuitBreaker:
    def __init__(self, dependency: str, service: str = "", threshold: int = 3, base_delay_s: float = 0.5,
                 max_delay_s: float = 30.0) -> None:
        self.dependency = dependency
        self.service = service
        self.threshold = max(1, threshold)
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.failures = 0
        self.retries_total = 0
        self.opened_total = 0
        self.opened_at: float | None = None
        self.last_error: str | None = None
        self._gauge = CIRCUIT_OPEN.labels(service, dependency)
        self._retries = DEPENDENCY_RETRIES.labels(service, dependency)
        self._gauge.set(0)

    @property
    def state(self) -> str:
        return "open" if self.failures >= self.threshold else ("half-open" if self.failures else "closed")

    @property
    def is_open(self) -> bool:
        return self.failures >= self.threshold

    def record_success(self) -> None:
        if self.failures:
            self.failures = 0
            self.opened_at = None
            self._gauge.set(0)

    def record_failure(self, error: str | BaseException) -> None:
        if isinstance(error, BaseException):
            error = f"{type(error).__name__}: {error}"
        self.failures += 1
        self.retries_total += 1
        self.last_error = error[:500]
        self._retries.inc()
        if self.failures == self.threshold:
            self.opened_total += 1
            self.opened_at = time.time()
            self._gauge.set(1)

    def delay(self) -> float:
        if self.failures == 0:
            return 0.0
        return min(self.max_delay_s, self.base_delay_s * (2 ** (self.failures - 1)))

    def view(self) -> dict:
        return {"state": self.state, "failures": self.failures, "retries_total": self.retries_total,
                "opened_total": self.opened_total, "last_error": self.last_error}
