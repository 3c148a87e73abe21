"""The pattern table: each pattern's trend against what the same hours usually hold, and
the patterns that went silent. A trend always agrees with the counts shown beside it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Sequence

from logpipe.analyzer.baselines import VOLUME, BaselineKey, BaselineStat
from logpipe.analyzer.thresholds import Thresholds
from logpipe.analyzer.windows import iso

TRENDS = ("new", "rising", "falling", "gone", "stable")


def expected_count(pattern: str, services: Iterable[str], source: Any, buckets: Sequence[tuple[datetime, bool]],
                   fractions: dict[datetime, float] | None = None) -> float | None:
    """What the window's hours usually hold of this pattern in these services; None when
    nothing is known of any of those hours."""
    fractions = fractions or {}
    expected, known = 0.0, False
    for service in services:
        for bucket, _ in buckets:
            stat = _stat(source, service, pattern, bucket)
            if stat is not None:
                expected += stat.mean * fractions.get(bucket, 1.0)
                known = True
    return expected if known else None


def _stat(source: Any, service: str, pattern: str, bucket: datetime) -> BaselineStat | None:
    if isinstance(source, dict):  # learnt baselines keyed by hour of day
        return source.get((service, pattern, bucket.hour))
    return source.stat(service, pattern, bucket)


def trend_of(count: int, expected: float | None, is_new: bool, thresholds: Thresholds) -> str:
    """`new`, `rising`, `falling`, `gone` or `stable`, from the count and what was expected."""
    if is_new:
        return "new"
    if expected is None:
        return "stable"
    if count == 0 and expected >= thresholds.min_count:
        return "gone"
    if count >= max(expected * thresholds.min_ratio, expected + thresholds.min_count):
        return "rising"
    if count * thresholds.min_ratio <= expected and expected - count >= thresholds.min_count:
        return "falling"
    return "stable"


def pattern_trend(pattern: str, services: Sequence[str], count: int, is_new: bool,
                  baselines: dict[BaselineKey, BaselineStat] | Any, buckets: Sequence[tuple[datetime, bool]],
                  thresholds: Thresholds, fractions: dict[datetime, float] | None = None) -> tuple[str, float | None]:
    if is_new:
        return "new", None
    if isinstance(baselines, dict):
        baselines = {k: v for k, v in baselines.items() if v.samples >= thresholds.min_baseline_samples}
    expected = expected_count(pattern, services, baselines, buckets, fractions)
    return trend_of(count, expected, is_new, thresholds), expected


def gone_patterns(source: Any, present: Iterable[str], buckets: Sequence[tuple[datetime, bool]],
                  fractions: dict[datetime, float], thresholds: Thresholds,
                  services: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Patterns the history expects at least `min_count` times in these hours and that did
    not occur at all: a fix that worked, or a component that stopped reporting."""
    allowed = set(services) if services else None
    present = set(present)
    by_pattern: dict[str, list[str]] = {}
    for service, pattern in sorted(source.series()):
        if pattern == VOLUME or pattern in present or (allowed is not None and service not in allowed):
            continue
        by_pattern.setdefault(pattern, []).append(service)
    gone = {}
    for pattern, owners in by_pattern.items():
        expected = expected_count(pattern, owners, source, buckets, fractions)
        if expected is not None and expected >= thresholds.min_count:
            gone[pattern] = {"pattern_id": pattern, "services": owners, "expected": expected, "count": 0}
    return gone


def pattern_view(info: dict[str, Any]) -> dict[str, Any]:
    return {
        "pattern_id": info["pattern_id"], "template": info.get("template") or info.get("example", ""),
        "example": info.get("example", ""), "level": info.get("level", "ERROR"), "count": int(info["count"]),
        "services": list(info["services"]), "first_seen": iso(info.get("first_seen")),
        "last_seen": iso(info.get("last_seen")), "trend": info.get("trend", "stable"),
        "expected": None if info.get("expected") is None else round(float(info["expected"]), 2),
        "is_new": bool(info.get("is_new")), "cluster_id": info.get("cluster_id", ""),
        "versions": list(info.get("versions") or []),
    }
