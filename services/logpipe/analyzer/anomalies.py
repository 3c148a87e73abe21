"""Anomaly detection: z-scores of hourly counts against baselines (or, cold, against the
rest of the window), for pattern spikes, volume spikes and drops, quiet services and new patterns."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Sequence

import numpy as np

from logpipe.analyzer.baselines import VOLUME, BaselineKey, BaselineStat
from logpipe.analyzer.text import shorten
from logpipe.analyzer.thresholds import SEVERITIES, SEVERITY_RANK, Thresholds
from logpipe.analyzer.windows import format_time, iso, parse_time


@dataclass
class AnomalyFinding:
    kind: str  # pattern_spike | volume_spike | volume_drop | service_quiet | new_pattern
    service: str
    pattern_id: str
    bucket: datetime | None
    observed: float
    expected: float
    stddev: float
    z_score: float
    severity: str
    description: str
    hours: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "service": self.service, "pattern_id": self.pattern_id,
                "bucket": iso(self.bucket), "observed": self.observed, "expected": round(self.expected, 3),
                "stddev": round(self.stddev, 3), "z_score": round(self.z_score, 2), "severity": self.severity,
                "hours": self.hours, "description": self.description}


def _reference(counts: dict[datetime, int], buckets: Sequence[tuple[datetime, bool]]) -> tuple[float, float]:
    """Median and robust spread (1.4826 x MAD) of the complete hours of the window: the
    cold-start reference. Robust, so a two-hour incident neither hides itself by inflating
    the spread it is judged against nor needs leaving out."""
    values = [counts.get(b, 0) for b, complete in buckets if complete]
    if len(values) < 3:
        return 0.0, 0.0
    array = np.asarray(values, dtype=float)
    median = float(np.median(array))
    return median, float(1.4826 * np.median(np.abs(array - median)))


class _Expectation:
    """Expected count and spread of each hour of one series: from the baseline of that hour
    of day when it has enough samples, else from the rest of this window (cold start)."""

    def __init__(self, service: str, pattern: str, counts: dict[datetime, int],
                 baselines: dict[BaselineKey, BaselineStat], buckets: Sequence[tuple[datetime, bool]],
                 thresholds: Thresholds) -> None:
        self.service, self.pattern, self.counts = service, pattern, counts
        self.baselines, self.buckets, self.thresholds = baselines, buckets, thresholds
        self._cold: tuple[float, float] | None = None

    def at(self, bucket: datetime) -> tuple[float, float, bool]:
        stat = self.baselines.get((self.service, self.pattern, bucket.hour))
        if stat is not None and stat.samples >= self.thresholds.min_baseline_samples:
            # The mean of a few days is itself uncertain: widen by sqrt(1 + 1/n) (prediction interval).
            return stat.mean, _spread(stat.mean, stat.stddev) * math.sqrt(1 + 1 / stat.samples), True
        if self._cold is None:
            self._cold = _reference(self.counts, self.buckets)
        mean, spread = self._cold
        # Other hours of one day mix the daily rhythm with noise and know nothing of other days.
        return mean, _spread(mean, spread) * COLD_START_WIDENING, False


COLD_START_WIDENING = 1.5


def _spread(mean: float, std: float) -> float:
    # Counts are at least Poisson-noisy: sqrt(mean) keeps a flat history (std 0) from
    # turning one extra event into an infinite z.
    return max(std, math.sqrt(max(mean, 1.0)))


def z_score(observed: float, mean: float, std: float) -> float:
    """How far a count is from what was expected, in spreads.

    Counts are skewed (a Poisson tail is long on the high side), so the distance is taken on
    Anscombe's square-root scale, where Poisson noise is close to a unit normal, then scaled
    down where the history is noisier than Poisson (`std` above sqrt(mean)).
    """
    poisson = math.sqrt(max(mean, 1.0))
    distance = 2.0 * (math.sqrt(max(observed, 0.0) + 0.375) - math.sqrt(max(mean, 0.0) + 0.375))
    return distance * poisson / _spread(mean, std)


def find_anomalies(hourly: dict[tuple[str, str], dict[datetime, int]],
                   volume: dict[str, dict[datetime, int]],
                   baselines: dict[BaselineKey, BaselineStat],
                   buckets: Sequence[tuple[datetime, bool]],
                   new_patterns: dict[str, dict[str, Any]],
                   thresholds: Thresholds = Thresholds(),
                   services: Iterable[str] | None = None,
                   templates: dict[str, str] | None = None) -> list[AnomalyFinding]:
    """Spikes per (service, pattern, hour), volume spikes/drops and quiet services per service,
    and new patterns; one finding per (kind, service, pattern) at its worst hour."""
    templates = templates or {}
    allowed = set(services) if services else None
    findings: dict[tuple[str, str, str], AnomalyFinding] = {}

    def keep(finding: AnomalyFinding) -> None:
        key = (finding.kind, finding.service, finding.pattern_id)
        previous = findings.get(key)
        if previous is None:
            findings[key] = finding
            return
        hours = previous.hours + 1
        if abs(finding.z_score) > abs(previous.z_score):
            findings[key] = finding
        findings[key].hours = hours

    for (service, pattern), counts in hourly.items():
        if pattern in new_patterns:
            continue  # reported once as a new pattern, not as a spike over nothing
        expectation = _Expectation(service, pattern, counts, baselines, buckets, thresholds)
        for bucket, count in counts.items():
            mean, std, _ = expectation.at(bucket)
            if count < thresholds.min_count or count < thresholds.min_ratio * mean:
                continue
            z = z_score(count, mean, std)
            severity = thresholds.severity(z) if z > 0 else None
            if severity:
                label = shorten(templates.get(pattern, pattern))
                keep(AnomalyFinding("pattern_spike", service, pattern, bucket, count, mean, std, z, severity,
                                    f"{service}: '{label}' {count} times in the hour from "
                                    f"{bucket:%Y-%m-%d %H:00} UTC, expected {mean:.1f}"))

    volume_services = set(volume) | {service for service, pattern, _ in baselines if pattern == VOLUME}
    complete = [b for b, whole in buckets if whole]
    for service in sorted(volume_services):
        if allowed is not None and service not in allowed:
            continue
        counts = volume.get(service, {})
        expectation = _Expectation(service, VOLUME, counts, baselines, buckets, thresholds)
        for bucket, whole in buckets:
            count = counts.get(bucket, 0)
            mean, std, from_baseline = expectation.at(bucket)
            z = z_score(count, mean, std)
            if z > 0 and count >= thresholds.min_count and count >= thresholds.min_ratio * mean:
                severity = thresholds.severity(z)
                if severity:
                    keep(AnomalyFinding("volume_spike", service, VOLUME, bucket, count, mean, std, z, severity,
                                        f"{service} wrote {count} logs in the hour from {bucket:%Y-%m-%d %H:00} UTC, "
                                        f"expected {mean:.0f}"))
            elif (whole and from_baseline and z < 0 and count > 0 and mean >= thresholds.min_count
                  and count * thresholds.min_ratio <= mean):
                severity = thresholds.severity(z)
                if severity:
                    keep(AnomalyFinding("volume_drop", service, VOLUME, bucket, count, mean, std, z, severity,
                                        f"{service} wrote {count} logs in the hour from {bucket:%Y-%m-%d %H:00} UTC, "
                                        f"expected {mean:.0f}"))
        quiet = _quiet(service, counts, baselines, buckets, complete, thresholds)
        if quiet:
            keep(quiet)

    for pattern, info in new_patterns.items():
        services_seen = info.get("services") or ["unknown"]
        count = int(info.get("count", 0))
        if allowed is not None and not allowed.intersection(services_seen):
            continue
        # Anything new is worth a look; how loud it is sets how urgently.
        z = z_score(count, 0.0, 0.0)
        level = info.get("level", "ERROR")
        severity = thresholds.severity(z) or "low"
        if level == "FATAL":
            # Something new that kills a process is worth waking up for, however rare.
            severity = SEVERITIES[max(SEVERITY_RANK[severity] + 1, SEVERITY_RANK["high"])]
            severity = SEVERITIES[min(SEVERITY_RANK[severity], 3)]
        label = shorten(templates.get(pattern, info.get("example", pattern)))
        for service in services_seen:
            if allowed is not None and service not in allowed:
                continue
            keep(AnomalyFinding("new_pattern", service, pattern, parse_time(info.get("first_seen")), count, 0.0, 0.0,
                                z, severity, f"new {level} pattern in {service}: '{label}' ({count} times, first at "
                                f"{format_time(info.get('first_seen'))})"))
    ordered = sorted(findings.values(), key=lambda f: (-SEVERITY_RANK[f.severity], -abs(f.z_score), f.service))
    return ordered


def _quiet(service: str, counts: dict[datetime, int], baselines: dict[BaselineKey, BaselineStat],
           buckets: Sequence[tuple[datetime, bool]], complete: list[datetime],
           thresholds: Thresholds) -> AnomalyFinding | None:
    """A service whose last `quiet_hours` complete hours (and any partial hour after) are empty
    although it usually logs there."""
    if len(complete) < thresholds.quiet_hours:
        return None
    if any(counts.get(b, 0) for b, whole in buckets if not whole and b > complete[-1]):
        return None
    silent: list[datetime] = []
    for bucket in reversed(complete):
        if counts.get(bucket, 0):
            break
        silent.append(bucket)
    if len(silent) < thresholds.quiet_hours:
        return None
    expected: list[float] = []
    variances: list[float] = []
    for bucket in silent:
        stat = baselines.get((service, VOLUME, bucket.hour))
        if stat is not None and stat.samples >= thresholds.min_baseline_samples:
            expected.append(stat.mean)
            variances.append(stat.stddev ** 2)
    if not expected:
        # Cold start: what the service did earlier in this window before it went silent.
        before = [counts.get(b, 0) for b in complete if b < silent[-1]]
        if len(before) < thresholds.quiet_hours:
            return None
        mean = float(np.mean(before))
        std = float(np.std(before, ddof=1)) if len(before) > 1 else 0.0
        expected = [mean] * len(silent)
        variances = [std ** 2] * len(silent)
    total_expected = float(sum(expected))
    if total_expected / len(silent) < thresholds.min_count:
        return None
    z = z_score(0.0, total_expected, math.sqrt(sum(variances)))
    severity = thresholds.severity(z)
    if not severity:
        return None
    since = min(silent)
    return AnomalyFinding("service_quiet", service, VOLUME, since, 0.0, total_expected, math.sqrt(sum(variances)), z,
                          severity, f"{service} has written no logs since {since:%Y-%m-%d %H:00} UTC "
                          f"({len(silent)} h), expected about {total_expected:.0f}", hours=len(silent))
