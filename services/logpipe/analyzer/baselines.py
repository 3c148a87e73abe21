"""Baselines: per (service, pattern, hour of day), Welford's running mean and variance."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Sequence

from logpipe.analyzer.windows import utc

VOLUME = ""  # the pattern id of a service's whole-volume baseline


@dataclass
class BaselineStat:
    samples: int = 0
    mean: float = 0.0
    m2: float = 0.0
    last_bucket: datetime | None = None

    @property
    def stddev(self) -> float:
        return math.sqrt(self.m2 / (self.samples - 1)) if self.samples > 1 else 0.0

    def add(self, value: float) -> None:
        self.samples += 1
        delta = value - self.mean
        self.mean += delta / self.samples
        self.m2 += delta * (value - self.mean)


BaselineKey = tuple[str, str, int]  # (service, pattern id or VOLUME, hour of day)


def update_baselines(baselines: dict[BaselineKey, BaselineStat],
                     hourly: dict[tuple[str, str], dict[datetime, int]],
                     buckets: Sequence[tuple[datetime, bool]],
                     services: Iterable[str] | None = None,
                     skip: set[tuple[str, str, datetime]] | None = None) -> dict[BaselineKey, BaselineStat]:
    """Fold the complete hours of this window into the baselines; returns the changed entries.

    Keys are every (service, pattern) seen now or known before (hours without events count
    as 0). An hour already folded in (at or before `last_bucket`) is not counted again, so
    overlapping runs agree. Hours in `skip` (a severe incident) advance `last_bucket` but are
    not learnt, so one incident does not become tomorrow's normal.
    """
    allowed = set(services) if services else None
    keys = set(hourly)
    keys.update((service, pattern) for service, pattern, _ in baselines)
    skip = skip or set()
    changed: dict[BaselineKey, BaselineStat] = {}
    for service, pattern in keys:
        if allowed is not None and service not in allowed:
            continue
        counts = hourly.get((service, pattern), {})
        for bucket, complete in buckets:
            if not complete:
                continue
            key = (service, pattern, bucket.hour)
            stat = changed.get(key) or baselines.get(key)
            if stat is None:
                stat = BaselineStat()
            elif stat.last_bucket is not None and utc(stat.last_bucket) >= bucket:
                continue
            else:
                stat = BaselineStat(stat.samples, stat.mean, stat.m2, stat.last_bucket)
            if (service, pattern, bucket) not in skip:
                stat.add(float(counts.get(bucket, 0)))
            stat.last_bucket = bucket
            changed[key] = stat
    return changed
