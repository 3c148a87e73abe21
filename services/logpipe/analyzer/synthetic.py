"""Synthetic logs with known incidents, built column-wise with numpy/pyarrow so a million
rows take about a second: what the analyzer's tests and `bench/analyze.py` write into
ClickHouse, and what anyone can use to see the analyzer find something.

Every (service, pattern) pair logs a Poisson count per hour around its rate (with a daily
rhythm); an incident multiplies one pair's rate for some hours, optionally with a second
pattern in another service failing inside the same traces a moment later (a cascade);
a service can stop logging at some hour (gone quiet), fall silent or drop for a stretch and
come back (an outage, to the minute), log only in business hours or less at weekends; an
incident can grow slowly (a slow burn) instead of jumping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from logpipe.patterns.miner import pattern_id_for


@dataclass(frozen=True)
class PatternSpec:
    service: str
    template: str  # `{n}` is replaced by a number in each message
    level: str = "ERROR"
    per_hour: float = 20.0

    @property
    def pattern_id(self) -> int:
        return pattern_id_for(f"{self.service}|{self.template}")


@dataclass(frozen=True)
class Incident:
    pattern: PatternSpec
    start_hour: int  # hours after the data starts
    hours: int = 1
    factor: float = 20.0
    # A second pattern that fails in the same traces, `lag_ms` later (a cascade).
    cascade: PatternSpec | None = None
    lag_ms: int = 200
    # A slow burn: the rate grows linearly from normal to `factor` over the hours instead of jumping.
    ramp: bool = False


@dataclass(frozen=True)
class Outage:
    """A service keeps `factor` of its logs (0: none at all) from `start_hour` (fractional:
    to the minute) for `hours` (None: for good)."""

    service: str
    start_hour: float
    hours: float | None
    factor: float = 0.0


@dataclass
class Scenario:
    start: datetime
    hours: int
    patterns: list[PatternSpec]
    # Logs per hour of each service at every level (the INFO/DEBUG bulk included).
    volume_per_hour: dict[str, float]
    incidents: list[Incident] = field(default_factory=list)
    quiet_from_hour: dict[str, int] = field(default_factory=dict)  # service -> hour it stops logging
    pipeline: str = "default"
    seed: int = 7
    outages: list[Outage] = field(default_factory=list)
    # service -> (first hour, last hour + 1) of the day it logs at all (a business-hours batch job).
    active_hours: dict[str, tuple[int, int]] = field(default_factory=dict)
    # service -> factor of its rate on Saturdays and Sundays.
    weekend_factor: dict[str, float] = field(default_factory=dict)
    # Real counts vary more than Poisson: each hour's rate of each series is multiplied by a
    # log-normal factor with this sigma (0: pure Poisson).
    jitter: float = 0.0


def diurnal(hours: np.ndarray) -> np.ndarray:
    """A daily rhythm: busy afternoons, quiet nights (factor 0.5..1.5)."""
    return 1.0 + 0.5 * np.sin((hours % 24 - 8) / 24 * 2 * np.pi)


def _messages(template: str, numbers: np.ndarray) -> pa.Array:
    head, _, tail = template.partition("{n}")
    if not _:
        return pa.array(np.full(len(numbers), template, dtype=object), pa.string())
    digits = pc.cast(pa.array(numbers), pa.string())
    return pc.binary_join_element_wise(pa.scalar(head), digits, pa.scalar(tail), "")


def build(scenario: Scenario, record_offset: int = 0) -> pa.Table:
    """The scenario as a table with the columns of `logs` that the analyzer reads."""
    rng = np.random.default_rng(scenario.seed)
    start = scenario.start.astimezone(timezone.utc)
    start_ms = int(start.timestamp() * 1000)
    hours = np.arange(scenario.hours)
    hour_of_day = (start.hour + hours) % 24
    base_rhythm = diurnal(hour_of_day)
    weekday = np.array([(start + timedelta(hours=int(h))).weekday() for h in hours])
    parts: list[dict[str, pa.Array]] = []

    def rhythm_of(service: str) -> np.ndarray:
        rhythm = base_rhythm.copy()
        if service in scenario.weekend_factor:
            rhythm = np.where(weekday >= 5, rhythm * scenario.weekend_factor[service], rhythm)
        if service in scenario.active_hours:
            first, last = scenario.active_hours[service]
            rhythm = np.where((hour_of_day >= first) & (hour_of_day < last), rhythm, 0.0)
        return rhythm

    def noisy(rate: np.ndarray) -> np.ndarray:
        if scenario.jitter <= 0:
            return rate
        return rate * rng.lognormal(-scenario.jitter ** 2 / 2, scenario.jitter, len(rate))

    def emit(service: str, level: str, message_of, pattern_id: int, counts: np.ndarray | None = None,
             traces: np.ndarray | None = None, times: np.ndarray | None = None) -> None:
        if times is None:
            hour_index = np.repeat(hours, counts)
            times = start_ms + hour_index * 3_600_000 + rng.integers(0, 3_600_000, len(hour_index))
        if traces is None:
            traces = rng.integers(1, 2**62, len(times))
        quiet = scenario.quiet_from_hour.get(service)
        if quiet is not None:
            keep = times < start_ms + quiet * 3_600_000
            times, traces = times[keep], traces[keep]
        for outage in scenario.outages:
            if outage.service != service:
                continue
            begin = start_ms + int(outage.start_hour * 3_600_000)
            until = begin + int(outage.hours * 3_600_000) if outage.hours is not None else np.iinfo(np.int64).max
            inside = (times >= begin) & (times < until)
            keep = ~inside | (rng.random(len(times)) < outage.factor)
            times, traces = times[keep], traces[keep]
        total = len(times)
        if total == 0:
            return
        parts.append({
            "timestamp": pa.array(times.astype("datetime64[ms]"), pa.timestamp("ms", tz="UTC")),
            "service": pa.array(np.full(total, service, dtype=object), pa.string()),
            "level": pa.array(np.full(total, level, dtype=object), pa.string()),
            "message": message_of(rng.integers(0, 10_000, total)),
            "trace_id": pc.cast(pa.array(traces), pa.string()),
            "pattern_id": pa.array(np.full(total, pattern_id, dtype=np.uint64)),
            "version": pa.array(np.full(total, "1.4.2", dtype=object), pa.string()),
        })

    for service, per_hour in scenario.volume_per_hour.items():
        errors = sum(p.per_hour for p in scenario.patterns if p.service == service)
        info = rng.poisson(noisy(np.maximum(per_hour - errors, 0) * rhythm_of(service)))
        emit(service, "INFO", lambda n, s=service: _messages(f"{s} handled request in {{n}} ms", n),
             pattern_id_for(f"{service}|handled request"), info)

    incident_rates: dict[int, np.ndarray] = {}
    for incident in scenario.incidents:
        if incident.cascade is not None:
            continue  # its extra events are made below, inside shared traces
        factor = incident_rates.setdefault(incident.pattern.pattern_id, np.ones(scenario.hours))
        span = factor[incident.start_hour:incident.start_hour + incident.hours]
        if incident.ramp:
            span *= np.linspace(1.0, incident.factor, len(span) + 1)[1:]
        else:
            span *= incident.factor
    for spec in scenario.patterns:
        factor = incident_rates.get(spec.pattern_id, np.ones(scenario.hours))
        counts = rng.poisson(noisy(spec.per_hour * rhythm_of(spec.service) * factor))
        emit(spec.service, spec.level, lambda n, t=spec.template: _messages(t, n), spec.pattern_id, counts)
    for incident in scenario.incidents:
        if incident.cascade is None:
            continue
        # The cascade rides on the incident's extra events: same traces, a little later.
        hour_slice = slice(incident.start_hour, incident.start_hour + incident.hours)
        extra = rng.poisson(incident.pattern.per_hour * rhythm_of(incident.pattern.service)[hour_slice]
                            * (incident.factor - 1))
        total = int(extra.sum())
        traces = rng.integers(1, 2**62, total)
        hour_index = np.repeat(hours[hour_slice], extra)
        times = start_ms + hour_index * 3_600_000 + rng.integers(0, 3_600_000 - incident.lag_ms, total)
        root, follow = incident.pattern, incident.cascade
        emit(root.service, root.level, lambda n, t=root.template: _messages(t, n), root.pattern_id,
             traces=traces, times=times)
        emit(follow.service, follow.level, lambda n, t=follow.template: _messages(t, n), follow.pattern_id,
             traces=traces, times=times + incident.lag_ms)

    table = pa.concat_tables([pa.table(part) for part in parts]) if parts else pa.table({})
    n = table.num_rows
    ids = pc.binary_join_element_wise(pa.scalar(f"syn-{scenario.seed}-"),
                                      pc.cast(pa.array(np.arange(record_offset, record_offset + n)), pa.string()), "")
    table = table.append_column("record_id", ids)
    table = table.append_column("pipeline", pa.array(np.full(n, scenario.pipeline, dtype=object), pa.string()))
    return table


def default_services() -> list[str]:
    return ["checkout", "payments", "orders", "inventory", "auth", "gateway", "search", "shipping"]


def default_patterns(services: list[str], per_service: int = 12, per_hour: float = 30.0) -> list[PatternSpec]:
    """A realistic spread of error and warning patterns, several of them near-duplicates across
    services (the same dependency failing everywhere)."""
    shared = [
        ("ERROR", "Connection refused connecting to postgres at db-primary:5432 after {n} ms"),
        ("WARN", "Slow query on orders table took {n} ms"),
        ("ERROR", "Timeout calling payment-provider after {n} ms"),
        ("WARN", "Retrying request to redis-cache, attempt {n}"),
    ]
    own = [
        ("ERROR", "NullPointerException in {svc}Handler.process line {n}"),
        ("WARN", "Cache miss ratio above threshold for {svc} keyspace {n}"),
        ("ERROR", "Failed to deserialize {svc} event payload at offset {n}"),
        ("WARN", "Deprecated API v1 used by client {n} on {svc}"),
        ("ERROR", "Validation failed for {svc} request field quantity={n}"),
        ("WARN", "Thread pool for {svc} workers is {n}% saturated"),
        ("ERROR", "Disk usage on {svc} volume reached {n} MB"),
        ("WARN", "{svc} circuit breaker half-open after {n} failures"),
        ("FATAL", "{svc} out of memory, heap {n} MB"),
    ]
    patterns: list[PatternSpec] = []
    rng = np.random.default_rng(11)
    for index, svc in enumerate(services):
        chosen = [shared[index % len(shared)], *own]
        for number, (level, template) in enumerate(chosen[:per_service]):
            rate = per_hour * (0.05 if level == "FATAL" else float(rng.uniform(0.3, 1.7)))
            patterns.append(PatternSpec(svc, template.replace("{svc}", svc), level, rate))
    return patterns


def start_of_day(value: datetime | None = None) -> datetime:
    value = value or datetime.now(timezone.utc)
    return value.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def days_before(day: datetime, days: int) -> datetime:
    return day - timedelta(days=days)
