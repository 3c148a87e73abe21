"""The pattern table: each pattern's trend against its baselines, and the row the report shows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from logpipe.analyzer.baselines import BaselineKey, BaselineStat
from logpipe.analyzer.thresholds import Thresholds
from logpipe.analyzer.windows import iso


def pattern_trend(pattern: str, services: Sequence[str], count: int, is_new: bool,
                  baselines: dict[BaselineKey, BaselineStat], buckets: Sequence[tuple[datetime, bool]],
                  thresholds: Thresholds) -> tuple[str, float | None]:
    """`new`, `rising`, `falling` or `stable` against what the baselines expect for these hours."""
    if is_new:
        return "new", None
    expected = 0.0
    known = False
    for service in services:
        for bucket, _ in buckets:
            stat = baselines.get((service, pattern, bucket.hour))
            if stat is not None and stat.samples >= thresholds.min_baseline_samples:
                expected += stat.mean
                known = True
    if not known:
        return "stable", None
    if count >= max(expected * thresholds.min_ratio, expected + thresholds.min_count):
        return "rising", expected
    if count * thresholds.min_ratio <= expected and expected - count >= thresholds.min_count:
        return "falling", expected
    return "stable", expected


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
