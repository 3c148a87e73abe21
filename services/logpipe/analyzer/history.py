"""Expected counts from the logs before the window: what each (service, pattern) and each
service's whole volume logged at the same hour of day on the previous days.

Read from ClickHouse at every run rather than learnt run by run, so the same window analysed
twice is judged against the same past (the learnt SQL baselines include the window itself
once it has been analysed). Weekends are compared with weekends once the history holds
enough of them, so a quiet Saturday is normal when the service is quiet on Saturdays.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Sequence

import numpy as np

from logpipe.analyzer.baselines import BaselineKey, BaselineStat
from logpipe.analyzer.windows import HOUR, hour_floor, utc

DAY = timedelta(days=1)


def _weekend(moment: datetime) -> bool:
    return moment.weekday() >= 5


def _upper_variance_factor(freedom: int) -> float:
    if freedom < 1:
        return 1.0
    h = 2.0 / (9.0 * freedom)
    lower_quantile = freedom * (1.0 - h - 1.2816 * math.sqrt(h)) ** 3
    return freedom / max(lower_quantile, 1e-9)


class History:
    """Per-hour counts of the history before a window and, for each hour of the window, the
    earlier hours it is compared with (the same hour of day, of the same kind of day when
    there are at least `min_samples` of them)."""

    def __init__(self, hourly: dict[tuple[str, str], dict[datetime, int]], covered_from: datetime | None,
                 window_start: datetime, buckets: Sequence[tuple[datetime, bool]], days: int,
                 min_samples: int) -> None:
        self.hourly = hourly
        self.min_samples = min_samples
        self.samples: dict[datetime, list[datetime]] = {}
        first = hour_floor(covered_from) if covered_from is not None else None
        # An hour that began before the first log held in history is unknown, not zero.
        if first is not None and first < utc(covered_from):
            first += HOUR
        limit = utc(window_start)
        for bucket, _ in buckets:
            earlier = [bucket - k * DAY for k in range(1, days + 1)]
            earlier = [h for h in earlier if first is not None and h >= first and h + HOUR <= limit]
            alike = [h for h in earlier if _weekend(h) == _weekend(bucket)]
            self.samples[bucket] = alike if len(alike) >= min_samples else earlier
        self._cache: dict[tuple[str, str, datetime], BaselineStat | None] = {}
        self._dispersion: dict[tuple[str, str], float] = {}
        self.covered = []
        if first is not None:
            hour = first
            while hour + HOUR <= limit:
                self.covered.append(hour)
                hour += HOUR

    def dispersion(self, service: str, pattern: str) -> float:
        """How much more than Poisson this series varies: alpha in var = mean + alpha * mean^2
        (a negative binomial), by moments pooled over every hour of day. A handful of days
        per hour of day gives a poor variance on its own; one estimate from all of them is
        steady, and a series noisier than Poisson no longer raises false alarms."""
        key = (service, pattern)
        if key not in self._dispersion:
            counts = self.hourly.get(key, {})
            # Grouped as expectations are made (hour of day, weekday or weekend), so a rhythm
            # the model follows does not count as noise.
            by_hour: dict[tuple[int, bool], list[int]] = {}
            for hour in self.covered:
                by_hour.setdefault((hour.hour, _weekend(hour)), []).append(counts.get(hour, 0))
            excess, scale, freedom = 0.0, 0.0, 0
            for values in by_hour.values():
                if len(values) < 2:
                    continue
                array = np.asarray(values, dtype=float)
                mean = float(array.mean())
                excess += float(array.var(ddof=1)) - mean
                scale += mean * mean
                freedom += len(values) - 1
            estimate = max(excess, 0.0) / scale if scale > 0 else 0.0
            # A variance from a few days is itself uncertain, and too low an estimate means
            # false alarms: take its upper 90 % bound (chi-square, Wilson-Hilferty).
            self._dispersion[key] = estimate * _upper_variance_factor(freedom)
        return self._dispersion[key]

    def series(self) -> set[tuple[str, str]]:
        return set(self.hourly)

    def stat(self, service: str, pattern: str, bucket: datetime) -> BaselineStat | None:
        key = (service, pattern, bucket)
        if key not in self._cache:
            hours = self.samples.get(bucket, [])
            if len(hours) < self.min_samples:
                self._cache[key] = None
            else:
                counts = self.hourly.get((service, pattern), {})
                values = np.fromiter((counts.get(h, 0) for h in hours), dtype=float, count=len(hours))
                mean = float(values.mean())
                variance = mean + self.dispersion(service, pattern) * mean * mean
                self._cache[key] = BaselineStat(len(hours), mean, variance * (len(hours) - 1), max(hours))
        return self._cache[key]


class Expectations:
    """Where each hour's expected count comes from: the history in ClickHouse when it holds
    enough days, else a learnt SQL baseline learnt only from hours before the window (one
    that already learnt the window would judge the window against itself), else nothing
    (the detectors then fall back on the window itself)."""

    def __init__(self, history: History | None, stored: dict[BaselineKey, BaselineStat],
                 window_start: datetime, min_samples: int) -> None:
        self.history = history
        self.stored = {key: stat for key, stat in stored.items()
                       if stat.last_bucket is not None and utc(stat.last_bucket) + HOUR <= utc(window_start)}
        self.min_samples = min_samples

    def stat(self, service: str, pattern: str, bucket: datetime) -> BaselineStat | None:
        if self.history is not None:
            found = self.history.stat(service, pattern, bucket)
            if found is not None:
                return found
        stat = self.stored.get((service, pattern, bucket.hour))
        if stat is not None and stat.samples >= self.min_samples:
            return stat
        return None

    def series(self) -> set[tuple[str, str]]:
        known = {(service, pattern) for service, pattern, _ in self.stored}
        if self.history is not None:
            known |= self.history.series()
        return known
