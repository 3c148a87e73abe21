"""Realistic application logs, with the structure real systems have.

Each service has message families (the patterns a miner should find): DB timeouts with
varying hosts and milliseconds, auth failures with user ids, HTTP 5xx with paths, stack
traces on some errors. Faker fills pools of hosts, users, IPs and paths once, so the hot
loop only picks from them (Faker itself costs ~20 us a call).

Incidents make anomalies real: a new error family appearing, a surge of an old one, a
service going quiet, each on a schedule relative to the generator's start.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Literal

import orjson
from faker import Faker

from logpipe.core.record import format_timestamp

DEFAULT_SERVICES = (
    "api-gateway", "auth-service", "payment-service", "order-service",
    "inventory-service", "notification-service", "user-service",
)


class Pools:
    """Values drawn once from Faker, reused by every message."""

    def __init__(self, seed: int) -> None:
        fake = Faker()
        fake.seed_instance(seed)
        self.rng = random.Random(seed)
        self.users = [f"user_{fake.unique.random_int(10000, 99999)}" for _ in range(500)]
        self.ips = [fake.ipv4_public() for _ in range(300)]
        self.db_hosts = [f"db-{fake.word()}-{i}.internal" for i in range(1, 7)]
        self.cache_hosts = [f"redis-{i}.cache.internal" for i in range(1, 4)]
        self.user_agents = [fake.user_agent() for _ in range(50)]
        self.products = [fake.unique.random_int(1000, 9999) for _ in range(200)]
        self.cities = [fake.city() for _ in range(40)]
        self.emails = [fake.email() for _ in range(200)]
        self.versions = ["1.4.2", "1.4.3", "2.0.0"]
        self.regions = ["us-east-1", "eu-west-1", "ap-south-1"]
        self.pods = {}

    def pods_of(self, service: str) -> list[str]:
        found = self.pods.get(service)
        if found is None:
            suffix = "".join(self.rng.choices("bcdfghjklmnpqrstvwxz2456789", k=5))
            found = self.pods[service] = [f"{service}-7d9f{self.rng.randint(10, 99)}-{suffix}{i}" for i in range(3)]
        return found

    def pod(self, service: str) -> str:
        return _pick(self.rng, self.pods_of(service))


@dataclass(slots=True)
class Event:
    message: str
    level: str
    fields: dict[str, Any] = field(default_factory=dict)


Family = Callable[[random.Random, Pools], Event]

_PATHS = ["/api/v1/orders", "/api/v1/payments", "/api/v1/users/{id}", "/api/v1/cart",
          "/api/v1/products/{id}", "/api/v1/checkout", "/api/v1/inventory/{id}", "/health/ready"]
_METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE"]


# random.choice and randint cost about 0.6 us a call in pure Python (rejection sampling over
# getrandbits); one C call to random() scaled to the range is uniform to within 2**-53 and a
# fifth of the cost: the generator draws about fifteen values a record.
def _pick(rng: random.Random, values):
    return values[int(rng.random() * len(values))]


def _between(rng: random.Random, low: int, high: int) -> int:
    """An integer in [low, high], like randint."""
    return low + int(rng.random() * (high - low + 1))


def _path(rng: random.Random) -> str:
    path = _pick(rng, _PATHS)
    return path.replace("{id}", str(_between(rng, 1, 99999))) if "{id}" in path else path


def _stack(error: str, frames: list[str], rng: random.Random) -> str:
    lines = [f"{error}"]
    for frame in frames:
        lines.append(f"    at {frame}(Unknown Source:{_between(rng, 20, 900)})")
    return "\n".join(lines)


# -- families: (level, generator) ---------------------------------------------------------
def http_ok(rng, p):
    method, path, ms = _pick(rng, _METHODS), _path(rng), round(rng.lognormvariate(3.2, 0.6), 1)
    status = _pick(rng, [200, 200, 200, 201, 204])
    return Event(f"{method} {path} {status} {ms}ms", "INFO",
                 dict(http_method=method, http_path=path, http_status=status, duration_ms=ms,
                      client_ip=_pick(rng, p.ips), user_agent=_pick(rng, p.user_agents)))


def user_login(rng, p):
    user = _pick(rng, p.users)
    return Event(f"User {user} logged in from {_pick(rng, p.ips)}", "INFO", dict(user_id=user))


def payment_ok(rng, p):
    txn = f"txn_{rng.getrandbits(64):016x}"
    return Event(f"Processed payment {txn} for order {_between(rng, 100000, 999999)} amount "
                 f"{_between(rng, 5, 900)}.{_between(rng, 0, 99):02d} USD", "INFO", dict(user_id=_pick(rng, p.users)))


def order_created(rng, p):
    return Event(f"Order {_between(rng, 100000, 999999)} created with {_between(rng, 1, 12)} items for "
                 f"customer {_pick(rng, p.users)}", "INFO")


def stock_updated(rng, p):
    return Event(f"Stock level for product {_pick(rng, p.products)} updated to {_between(rng, 0, 500)} units "
                 f"in warehouse {_pick(rng, p.cities)}", "INFO")


def email_sent(rng, p):
    return Event(f"Sent {_pick(rng, ['order confirmation', 'password reset', 'shipping update'])} email to "
                 f"{_pick(rng, p.emails)} in {_between(rng, 20, 400)}ms", "INFO")


def cache_stats(rng, p):
    return Event(f"Cache hit ratio {_between(rng, 60, 99)}.{_between(rng, 0, 9)}% on {_pick(rng, p.cache_hosts)}",
                 "DEBUG")


def sql_debug(rng, p):
    table = _pick(rng, ["orders", "users", "payments", "inventory", "sessions"])
    return Event(f"Query on {table} returned {_between(rng, 0, 500)} rows in {_between(rng, 1, 80)}ms", "DEBUG")


def slow_query(rng, p):
    return Event(f"Slow query on {_pick(rng, p.db_hosts)}: {_between(rng, 501, 4000)}ms exceeds threshold 500ms",
                 "WARN")


def retrying(rng, p):
    return Event(f"Retrying request to {_pick(rng, DEFAULT_SERVICES)} (attempt {_between(rng, 1, 3)}/3) after "
                 f"{_pick(rng, [100, 200, 400, 800])}ms backoff", "WARN")


def memory_high(rng, p):
    return Event(f"High memory usage: {_between(rng, 80, 97)}% of {_pick(rng, [512, 1024, 2048])}Mi limit", "WARN")


def rate_limit(rng, p):
    return Event(f"Rate limit approaching for client {_pick(rng, p.ips)}: {_between(rng, 800, 999)} requests/min",
                 "WARN", dict(client_ip=_pick(rng, p.ips)))


def db_timeout(rng, p):
    host, ms = _pick(rng, p.db_hosts), _pick(rng, [5000, 10000, 30000])
    error = "java.sql.SQLTimeoutException"
    event = Event(f"Database connection timeout after {ms}ms to {host}:5432", "ERROR",
                  dict(error_type="SQLTimeoutException"))
    if rng.random() < 0.3:
        event.fields["stack_trace"] = _stack(f"{error}: Connection timed out after {ms}ms", [
            "org.postgresql.core.v3.ConnectionFactoryImpl.openConnectionImpl",
            "com.zaxxer.hikari.pool.HikariPool.getConnection",
            "com.shop.orders.OrderRepository.save"], rng)
    return event


def auth_failed(rng, p):
    user = _pick(rng, p.users)
    return Event(f"Authentication failed for user {user}: invalid credentials from {_pick(rng, p.ips)}",
                 "ERROR", dict(user_id=user, error_type="AuthenticationError", http_status=401))


def http_5xx(rng, p):
    method, path = _pick(rng, _METHODS), _path(rng)
    status = _pick(rng, [500, 502, 503, 504])
    upstream = _pick(rng, DEFAULT_SERVICES)
    return Event(f"HTTP {status} from upstream {upstream} on {method} {path}", "ERROR",
                 dict(http_method=method, http_path=path, http_status=status,
                      duration_ms=round(rng.uniform(50, 30000), 1), error_type="UpstreamError"))


def payment_declined(rng, p):
    txn = f"txn_{rng.getrandbits(64):016x}"
    reason = _pick(rng, ["insufficient funds", "card expired", "fraud suspected"])
    return Event(f"Payment gateway declined transaction {txn}: {reason}", "ERROR",
                 dict(error_type="PaymentDeclined"))


def null_pointer(rng, p):
    cls = _pick(rng, ["OrderProcessor", "CartService", "InvoiceBuilder"])
    line = _between(rng, 40, 400)
    return Event(f"NullPointerException in {cls}.process at line {line}", "ERROR", dict(
        error_type="NullPointerException",
        stack_trace=_stack("java.lang.NullPointerException", [f"com.shop.{cls}.process",
                                                              "com.shop.Worker.run",
                                                              "java.lang.Thread.run"], rng)))


def kafka_publish_failed(rng, p):
    return Event(f"Failed to publish event to topic {_pick(rng, ['orders', 'payments', 'emails'])}: "
                 f"broker {_between(rng, 0, 2)} not available", "ERROR", dict(error_type="KafkaError"))


def out_of_memory(rng, p):
    return Event(f"Out of memory: killed process {_between(rng, 1000, 65000)} (java) total-vm:"
                 f"{_between(rng, 2000000, 4000000)}kB", "FATAL", dict(error_type="OutOfMemoryError"))


# The incident families: unseen until an incident introduces them.
def tls_expired(rng, p):
    return Event(f"TLS handshake with {_pick(rng, p.db_hosts)}:5432 failed: certificate has expired "
                 f"(notAfter {2026 - _between(rng, 0, 1)}-0{_between(rng, 1, 9)}-1{_between(rng, 0, 9)})",
                 "ERROR", dict(error_type="SSLHandshakeException"))


def disk_full(rng, p):
    return Event(f"Write to /var/lib/app/data/segment-{_between(rng, 1000, 9999)}.log failed: "
                 f"No space left on device ({_between(rng, 0, 50)}MB free)", "FATAL", dict(error_type="IOError"))


FAMILIES: dict[str, Family] = {f.__name__: f for f in (
    http_ok, user_login, payment_ok, order_created, stock_updated, email_sent, cache_stats, sql_debug,
    slow_query, retrying, memory_high, rate_limit, db_timeout, auth_failed, http_5xx, payment_declined,
    null_pointer, kafka_publish_failed, out_of_memory, tls_expired, disk_full)}
INCIDENT_ONLY = frozenset({"tls_expired", "disk_full"})

# Which families each service speaks (normal traffic); weights favour the first.
SERVICE_FAMILIES: dict[str, dict[str, list[str]]] = {
    "api-gateway": {"ok": ["http_ok", "rate_limit", "cache_stats"], "error": ["http_5xx", "retrying"]},
    "auth-service": {"ok": ["user_login", "http_ok", "sql_debug"], "error": ["auth_failed", "db_timeout"]},
    "payment-service": {"ok": ["payment_ok", "http_ok", "sql_debug"],
                        "error": ["payment_declined", "db_timeout", "http_5xx", "slow_query"]},
    "order-service": {"ok": ["order_created", "http_ok", "sql_debug"],
                      "error": ["db_timeout", "null_pointer", "kafka_publish_failed", "slow_query"]},
    "inventory-service": {"ok": ["stock_updated", "sql_debug", "cache_stats"],
                          "error": ["slow_query", "db_timeout", "memory_high"]},
    "notification-service": {"ok": ["email_sent", "http_ok"], "error": ["kafka_publish_failed", "retrying"]},
    "user-service": {"ok": ["http_ok", "user_login", "sql_debug"],
                     "error": ["db_timeout", "null_pointer", "memory_high", "out_of_memory"]},
}
# The variant nibble of a version 4 UUID (10xx), from any random hex digit.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
_LOGGERS = {"http_ok": "http.access", "db_timeout": "db.pool", "slow_query": "db.query", "sql_debug": "db.query",
            "auth_failed": "security.auth", "user_login": "security.auth"}


@dataclass
class Incident:
    """`new_error`: a family never seen before; `surge`: a family at `multiplier`x; `quiet`: a service stops."""

    kind: Literal["new_error", "surge", "quiet"]
    service: str
    start_after_s: float
    duration_s: float
    family: str | None = None
    rate_per_second: float = 20.0
    multiplier: float = 20.0

    def active(self, elapsed_s: float) -> bool:
        return self.start_after_s <= elapsed_s < self.start_after_s + self.duration_s


def default_incidents() -> list[Incident]:
    """A schedule that gives a fresh `make dev` something to find within ten minutes."""
    return [
        Incident("surge", "payment-service", 120, 90, family="db_timeout", multiplier=25),
        Incident("new_error", "order-service", 240, 120, family="tls_expired", rate_per_second=15),
        Incident("quiet", "notification-service", 360, 180),
        Incident("new_error", "inventory-service", 540, 60, family="disk_full", rate_per_second=5),
    ]


class LogFactory:
    """Makes log records; pure apart from its own random generator."""

    def __init__(self, services: tuple[str, ...] = DEFAULT_SERVICES, error_rate: float = 0.05,
                 seed: int | None = None, environment: str = "production",
                 incidents: list[Incident] | None = None) -> None:
        self.rng = random.Random(seed)
        self.pools = Pools(self.rng.randint(0, 1 << 30))
        unknown = [s for s in services if s not in SERVICE_FAMILIES]
        self.services = tuple(services)
        for name in unknown:
            # Any extra service speaks a generic mix.
            SERVICE_FAMILIES.setdefault(name, {"ok": ["http_ok", "sql_debug"], "error": ["db_timeout", "http_5xx"]})
        self.error_rate = error_rate
        self.environment = environment
        self.incidents = incidents or []
        self._constants: dict[str, tuple[str, str, str]] = {}
        self._last_moment: datetime | None = None
        self._last_stamp = ""
        self._loggers: dict[tuple[str, str], str] = {}
        self._candidates_at: float | None = None
        self._candidates_for: tuple[str, ...] | None = None

    def _service_constants(self, service: str) -> tuple[str, str, str]:
        found = self._constants.get(service)
        if found is None:
            digest = zlib.crc32(service.encode())
            found = (f"node-{digest % 5 + 1}.cluster.local", self.pools.versions[digest % len(self.pools.versions)],
                     self.pools.regions[digest % 3])
            self._constants[service] = found
        return found

    def _logger(self, service: str, family: str) -> str:
        found = self._loggers.get((service, family))
        if found is None:
            found = _LOGGERS.get(family) or f"{service.split('-')[0]}.{family.split('_')[0]}"
            self._loggers[(service, family)] = found
        return found

    def _timestamp(self, moment: datetime) -> str:
        # A tick stamps many records with one moment: format it once.
        if moment != self._last_moment:
            self._last_moment, self._last_stamp = moment, format_timestamp(moment)
        return self._last_stamp

    def _candidates(self, elapsed_s: float | None) -> tuple[str, ...]:
        # Every record of a tick has the same elapsed time: work out who is quiet once a tick.
        if elapsed_s != self._candidates_at or self._candidates_for is None:
            quiet = {i.service for i in self.incidents
                     if i.kind == "quiet" and elapsed_s is not None and i.active(elapsed_s)}
            self._candidates_at = elapsed_s
            self._candidates_for = tuple(s for s in self.services if s not in quiet) or self.services
        return self._candidates_for

    def _envelope(self, service: str, event: Event, moment: datetime, family: str) -> dict[str, Any]:
        rng, pools = self.rng, self.pools
        random_ = rng.random
        host, version, region = self._service_constants(service)
        pods = pools.pods.get(service) or pools.pods_of(service)
        users, ips = pools.users, pools.ips
        # Every identifier of the record from one draw: 108 hex digits, sliced.
        ids = rng.getrandbits(432).to_bytes(54, "little").hex()
        if moment is not self._last_moment:
            self._timestamp(moment)
        record = {
            "timestamp": self._last_stamp,
            "service": service,
            "level": event.level,
            "message": event.message,
            "logger": self._loggers.get((service, family)) or self._logger(service, family),
            "host": host,
            "pod": pods[int(random_() * len(pods))],
            "namespace": "shop",
            "environment": self.environment,
            "version": version,
            "trace_id": ids[:32],
            "span_id": ids[32:48],
            "user_id": users[int(random_() * len(users))] if random_() < 0.6 else "",
            "session_id": "sess_" + ids[48:60],
            "request_id": "req_" + ids[60:76],
            "http_method": "", "http_path": "", "http_status": None, "duration_ms": None,
            "client_ip": ips[int(random_() * len(ips))], "user_agent": "", "error_type": "", "stack_trace": "",
            # A random UUID (version 4, variant 1) without uuid.UUID's per-call cost.
            "record_id": f"{ids[76:84]}-{ids[84:88]}-4{ids[89:92]}-{_VARIANT[ids[92]]}{ids[93:96]}-{ids[96:108]}",
            "attributes": {"region": region, "family": family},
        }
        if event.fields:
            record.update(event.fields)
        return record

    def one(self, moment: datetime | None = None, service: str | None = None, family: str | None = None,
            elapsed_s: float | None = None) -> dict[str, Any]:
        """One record; normal traffic unless `family` says otherwise."""
        rng = self.rng
        random_ = rng.random
        moment = moment or datetime.now(timezone.utc)
        if service is None:
            candidates = self._candidates_for if elapsed_s == self._candidates_at else None
            candidates = candidates or self._candidates(elapsed_s)
            service = candidates[int(random_() * len(candidates))]
        if family is None:
            kinds = SERVICE_FAMILIES[service]
            pool = kinds["error"] if random_() < self.error_rate else kinds["ok"]
            family = pool[0] if random_() < 0.5 else pool[int(random_() * len(pool))]
        event = FAMILIES[family](rng, self.pools)
        return self._envelope(service, event, moment, family)

    def incident_records(self, elapsed_s: float, seconds: float, moment: datetime) -> list[dict[str, Any]]:
        """Extra records the active incidents add over `seconds` of traffic."""
        out = []
        for incident in self.incidents:
            if not incident.active(elapsed_s) or incident.kind == "quiet" or not incident.family:
                continue
            rate = incident.rate_per_second
            if incident.kind == "surge":
                rate = max(rate, incident.multiplier * self.baseline_family_rate(incident))
            count = int(rate * seconds) + (1 if self.rng.random() < (rate * seconds) % 1 else 0)
            for _ in range(count):
                out.append(self.one(moment, incident.service, incident.family, elapsed_s))
        return out

    def baseline_family_rate(self, incident: Incident) -> float:
        # Filled in by the runner from its current rate (records/s of one family in one service).
        return getattr(self, "_family_rate", 1.0)

    def batch(self, count: int, start: datetime | None = None, span_s: float = 0.0,
              elapsed_s: float | None = None) -> list[dict[str, Any]]:
        start = start or datetime.now(timezone.utc)
        step = span_s / count if count and span_s else 0.0
        return [self.one(start + timedelta(seconds=i * step), elapsed_s=elapsed_s) for i in range(count)]


# The wire form of a record (orjson itself: a Python wrapper would add a call per record).
encode: Callable[[dict[str, Any]], bytes] = orjson.dumps
