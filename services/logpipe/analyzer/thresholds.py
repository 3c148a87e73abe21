"""Severities and the thresholds every detector reads (ANALYSIS_* settings fill them in)."""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("low", "medium", "high", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}


@dataclass(frozen=True)
class Thresholds:
    # An hour is judged against a handful of past days for each of hundreds of
    # (service, pattern) pairs: a z of 3 would flag a few hours of pure noise every day.
    z_low: float = 4.0
    z_medium: float = 6.0
    z_high: float = 9.0
    z_critical: float = 14.0
    # A spike must also be this many times what was expected and at least `min_count`
    # events: a busy pattern moving by a few percent is statistically "significant" and
    # useless to a person reading the report.
    min_ratio: float = 1.5
    min_count: int = 10
    min_baseline_samples: int = 3
    quiet_hours: int = 2
    similarity: float = 0.80
    burst_z: float = 4.0
    burst_min_count: int = 5
    burst_overlap: float = 0.5

    def severity(self, z: float) -> str | None:
        z = abs(z)
        if z >= self.z_critical:
            return "critical"
        if z >= self.z_high:
            return "high"
        if z >= self.z_medium:
            return "medium"
        if z >= self.z_low:
            return "low"
        return None
