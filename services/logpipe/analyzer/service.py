"""The analysis itself: pure functions over plain values (no I/O), what most tests call.

ClickHouse does the heavy aggregation (see queries.py); what arrives here is already small:
one row per pattern, per (service, pattern, hour), per (service, hour). This module turns
those into anomalies (z-scores against baselines), clusters (from embedding similarity),
root-cause candidates (trace and burst co-occurrence), a deterministic report, the prompt
and schema for the LLM, the validation of its answer, and the Markdown export.

Pattern ids are ClickHouse UInt64; here they are decimal strings, because JSON readers
(browsers) lose precision on integers above 2**53.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Sequence

import numpy as np

HOUR = timedelta(hours=1)
SEVERITIES = ("low", "medium", "high", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
DETERMINISTIC = "deterministic"
VOLUME = ""  # the pattern id of a service's whole-volume baseline


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


# --- windows and buckets ---------------------------------------------------------------

def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def hour_floor(value: datetime) -> datetime:
    return utc(value).replace(minute=0, second=0, microsecond=0)


def window_buckets(start: datetime, end: datetime) -> list[tuple[datetime, bool]]:
    """Every hour bucket touching [start, end), with whether it lies wholly inside."""
    start, end = utc(start), utc(end)
    buckets = []
    bucket = hour_floor(start)
    while bucket < end:
        buckets.append((bucket, bucket >= start and bucket + HOUR <= end))
        bucket += HOUR
    return buckets


# --- baselines (Welford's running mean and variance) ---------------------------------------

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


# --- anomalies ---------------------------------------------------------------------------

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
                label = _short(templates.get(pattern, pattern))
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
        label = _short(templates.get(pattern, info.get("example", pattern)))
        for service in services_seen:
            if allowed is not None and service not in allowed:
                continue
            keep(AnomalyFinding("new_pattern", service, pattern, parse_time(info.get("first_seen")), count, 0.0, 0.0,
                                z, severity, f"new {level} pattern in {service}: '{label}' ({count} times, first at "
                                f"{_fmt(info.get('first_seen'))})"))
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


# --- clusters from embedding similarity -----------------------------------------------------

def cluster_by_similarity(pattern_ids: Sequence[str], vectors: np.ndarray, threshold: float) -> list[list[str]]:
    """Groups of patterns whose templates are near-duplicates (cosine >= threshold), linked
    transitively; singletons included, biggest groups first."""
    if len(pattern_ids) == 0:
        return []
    matrix = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix = matrix / np.where(norms == 0, 1, norms)
    similarity = matrix @ matrix.T
    parent = list(range(len(pattern_ids)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in np.argwhere(np.triu(similarity >= threshold, k=1)):
        root_i, root_j = find(int(i)), find(int(j))
        if root_i != root_j:
            parent[root_j] = root_i
    groups: dict[int, list[str]] = {}
    for index, pattern in enumerate(pattern_ids):
        groups.setdefault(find(index), []).append(pattern)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))


def build_clusters(groups: list[list[str]], patterns: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    clusters = []
    for group in groups:
        members = sorted(group, key=lambda p: -int(patterns[p]["count"]))
        services = sorted({s for p in members for s in patterns[p]["services"]})
        clusters.append({
            "pattern_ids": members,
            "services": services,
            "count": int(sum(int(patterns[p]["count"]) for p in members)),
            "template": patterns[members[0]].get("template") or patterns[members[0]].get("example", ""),
            "cross_service": len(services) > 1 and len(members) > 1,
        })
    clusters.sort(key=lambda c: (-c["cross_service"], -c["count"]))
    for index, cluster in enumerate(clusters, start=1):
        cluster["cluster_id"] = f"C{index}"
    return clusters


# --- co-occurrence ------------------------------------------------------------------------

def find_bursts(pattern_ids: Sequence[str], minutes: Sequence[datetime], counts: np.ndarray,
                thresholds: Thresholds = Thresholds()) -> list[dict[str, Any]]:
    """Pairs of patterns that burst in the same minutes (Jaccard of burst minutes, one minute
    of slack); the one whose burst starts first leads (a root-cause candidate)."""
    if len(pattern_ids) < 2 or counts.size == 0:
        return []
    counts = np.asarray(counts, dtype=float)
    mean = counts.mean(axis=1, keepdims=True)
    std = counts.std(axis=1, keepdims=True)
    sigma = np.maximum(std, np.sqrt(np.maximum(mean, 1.0)))
    bursting = ((counts - mean) / sigma >= thresholds.burst_z) & (counts >= thresholds.burst_min_count)
    active = np.flatnonzero(bursting.any(axis=1))
    if len(active) < 2:
        return []
    widened = bursting.copy()
    widened[:, 1:] |= bursting[:, :-1]
    widened[:, :-1] |= bursting[:, 1:]
    first = bursting.argmax(axis=1)
    pairs = []
    for a_pos, a in enumerate(active):
        for b in active[a_pos + 1:]:
            overlap_ab = np.count_nonzero(bursting[a] & widened[b])
            overlap_ba = np.count_nonzero(bursting[b] & widened[a])
            union = np.count_nonzero(bursting[a] | bursting[b])
            jaccard = min(1.0, max(overlap_ab, overlap_ba) / union) if union else 0.0
            if jaccard < thresholds.burst_overlap:
                continue
            lead, follow = (a, b) if first[a] <= first[b] else (b, a)
            # Bursts starting in the same minute say nothing about which came first.
            pairs.append({
                "kind": "burst",
                "root_pattern_id": pattern_ids[lead],
                "pattern_id": pattern_ids[follow],
                "overlap": round(float(jaccard), 3),
                "lead_minutes": int(first[follow] - first[lead]),
                "started_at": iso(minutes[int(first[lead])]),
            })
    pairs.sort(key=lambda p: (-p["overlap"], p["root_pattern_id"]))
    return pairs


def root_cause_candidates(trace_pairs: Sequence[dict[str, Any]], burst_pairs: Sequence[dict[str, Any]],
                          patterns: dict[str, dict[str, Any]], limit: int = 10) -> list[dict[str, Any]]:
    """Patterns that come first: in shared traces (earliest error of the trace) and in bursts
    that start together. Scored by how many traces and bursts they lead."""
    candidates: dict[str, dict[str, Any]] = {}

    def entry(pattern: str) -> dict[str, Any]:
        return candidates.setdefault(pattern, {"pattern_id": pattern, "score": 0.0, "leads": [], "traces": 0,
                                               "bursts": 0})

    for pair in trace_pairs:
        root, other = pair["root_pattern_id"], pair["pattern_id"]
        if root == other or root not in patterns or other not in patterns:
            continue
        item = entry(root)
        item["traces"] += int(pair["traces"])
        item["score"] += float(pair["traces"])
        item["leads"].append({"pattern_id": other, "via": "trace", "traces": int(pair["traces"])})
    for pair in burst_pairs:
        root, other = pair["root_pattern_id"], pair["pattern_id"]
        if root not in patterns or other not in patterns or pair["lead_minutes"] <= 0:
            continue
        item = entry(root)
        item["bursts"] += 1
        item["score"] += 10.0 * float(pair["overlap"])
        item["leads"].append({"pattern_id": other, "via": "burst", "overlap": pair["overlap"],
                              "lead_minutes": pair["lead_minutes"]})
    ranked = sorted(candidates.values(), key=lambda c: (-c["score"], c["pattern_id"]))[:limit]
    for item in ranked:
        info = patterns[item["pattern_id"]]
        item["services"] = info["services"]
        item["template"] = info.get("template") or info.get("example", "")
        item["score"] = round(item["score"], 2)
        item["leads"] = sorted(item["leads"], key=lambda lead: -(lead.get("traces") or lead.get("overlap") or 0))[:10]
    return ranked


# --- trends -------------------------------------------------------------------------------

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


# --- novel errors ---------------------------------------------------------------------------

def summarize_novel_errors(events: Sequence[dict[str, Any]], patterns: dict[str, dict[str, Any]],
                           error: str = "", truncated: bool = False, keep: int = 20) -> dict[str, Any]:
    """The vectorizer's novel-error events of the window, grouped by pattern."""
    groups: dict[str, dict[str, Any]] = {}
    for event in events:
        pattern = str(event.get("pattern_id") or 0)
        group = groups.setdefault(pattern, {"pattern_id": pattern, "count": 0, "services": set(),
                                            "example": str(event.get("message") or ""), "first_seen": None,
                                            "template": patterns.get(pattern, {}).get("template", "")})
        group["count"] += 1
        if event.get("service"):
            group["services"].add(str(event["service"]))
        moment = event.get("timestamp")
        if moment and (group["first_seen"] is None or str(moment) < group["first_seen"]):
            group["first_seen"] = str(moment)
    ranked = sorted(groups.values(), key=lambda g: (-g["count"], g["pattern_id"]))
    for group in ranked:
        group["services"] = sorted(group["services"])
        group["template"] = group["template"] or group["example"]
    fields = ("record_id", "timestamp", "service", "level", "message", "pattern_id", "similarity", "trace_id")
    return {
        "count": len(events),
        "patterns": ranked[:50],
        "events": [{k: e.get(k) for k in fields} for e in events[:keep]],
        "truncated": truncated,
        "error": error,
    }


# --- the report ---------------------------------------------------------------------------

def iso(value: datetime | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    value = utc(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return utc(value) if value else None
    return utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))


def _fmt(value: Any) -> str:
    moment = parse_time(value)
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "?"


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def affected_services(patterns: dict[str, dict[str, Any]], anomalies: Sequence[dict[str, Any]],
                      service_errors: dict[str, int]) -> list[dict[str, Any]]:
    by_service: dict[str, dict[str, Any]] = {}
    for service, errors in service_errors.items():
        by_service[service] = {"service": service, "errors": int(errors), "patterns": 0, "anomalies": 0,
                               "worst_severity": None}
    for pattern in patterns.values():
        for service in pattern["services"]:
            by_service.setdefault(service, {"service": service, "errors": 0, "patterns": 0, "anomalies": 0,
                                            "worst_severity": None})["patterns"] += 1
    for anomaly in anomalies:
        item = by_service.setdefault(anomaly["service"], {"service": anomaly["service"], "errors": 0, "patterns": 0,
                                                          "anomalies": 0, "worst_severity": None})
        item["anomalies"] += 1
        worst = item["worst_severity"]
        if worst is None or SEVERITY_RANK[anomaly["severity"]] > SEVERITY_RANK[worst]:
            item["worst_severity"] = anomaly["severity"]
    return sorted(by_service.values(),
                  key=lambda s: (-(SEVERITY_RANK[s["worst_severity"]] + 1 if s["worst_severity"] else 0),
                                 -s["errors"], s["service"]))


def deterministic_summary(report: dict[str, Any]) -> dict[str, Any]:
    totals = report["totals"]
    anomalies = report["anomalies"]
    by_severity = {name: sum(1 for a in anomalies if a["severity"] == name) for name in SEVERITIES}
    hours = report["window"]["hours"]
    parts = [f"In the last {hours:g} h: {totals['errors']} errors and warnings ({totals['fatal']} FATAL, "
             f"{totals['error']} ERROR, {totals['warn']} WARN) in {totals['error_services']} services, "
             f"grouped into {totals['patterns']} patterns, out of {totals['logs']} logs."]
    cited: list[str] = []
    if anomalies:
        counts = ", ".join(f"{by_severity[name]} {name}" for name in reversed(SEVERITIES) if by_severity[name])
        parts.append(f"{len(anomalies)} anomalies ({counts}).")
        worst = anomalies[0]
        parts.append(f"Most severe: {worst['description']}.")
        if worst["pattern_id"]:
            cited.append(worst["pattern_id"])
    else:
        parts.append("No anomalies against the baselines.")
    if report["new_patterns"]:
        count = len(report["new_patterns"])
        parts.append(f"{count} new pattern{'s' if count != 1 else ''} appeared.")
        cited.extend(p["pattern_id"] for p in report["new_patterns"][:3])
    novel = report.get("novel_errors") or {}
    if novel.get("count"):
        groups = novel["patterns"]
        parts.append(f"{novel['count']} errors unlike any earlier error, in {len(groups)} "
                     f"pattern{'s' if len(groups) != 1 else ''}.")
        cited.extend(g["pattern_id"] for g in groups[:2] if g["pattern_id"] != "0")
    quiet = [a["service"] for a in anomalies if a["kind"] == "service_quiet"]
    if quiet:
        parts.append(f"Gone quiet: {', '.join(quiet)}.")
    roots = report["root_cause_candidates"]
    if roots:
        parts.append(f"Likely starting point: '{_short(roots[0]['template'], 80)}' in {', '.join(roots[0]['services'])}.")
        cited.append(roots[0]["pattern_id"])
    if report["top_patterns"]:
        top = report["top_patterns"][0]
        parts.append(f"Top pattern: '{_short(top['template'], 80)}' ({top['count']} times, {top['trend']}).")
        cited.append(top["pattern_id"])
    return {"text": " ".join(parts), "pattern_ids": list(dict.fromkeys(cited)), "model": DETERMINISTIC}


def deterministic_insights(report: dict[str, Any], limit: int = 10) -> list[dict[str, Any]]:
    patterns = {p["pattern_id"]: p for p in report["top_patterns"]}
    anomalous = {a["pattern_id"] for a in report["anomalies"] if a["pattern_id"]}
    insights = []
    for cluster in report["clusters"]:
        if not (cluster["cross_service"] or anomalous.intersection(cluster["pattern_ids"])):
            continue
        members = [patterns[p] for p in cluster["pattern_ids"] if p in patterns]
        trends = sorted({m["trend"] for m in members})
        text = (f"{len(cluster['pattern_ids'])} similar patterns ({cluster['count']} events) in "
                f"{', '.join(cluster['services'])}: '{_short(cluster['template'], 100)}'. Trend: {', '.join(trends)}.")
        if cluster["cross_service"]:
            text += " The same failure in several services usually means a shared dependency."
        insights.append({"cluster_id": cluster["cluster_id"], "title": _short(cluster["template"], 80), "text": text,
                         "pattern_ids": cluster["pattern_ids"], "model": DETERMINISTIC})
        if len(insights) >= limit:
            break
    return insights


def deterministic_recommendations(report: dict[str, Any], limit: int = 12) -> list[dict[str, Any]]:
    """Next steps from rules: what to look at first, and why."""
    recommendations: list[dict[str, Any]] = []
    seen: set[tuple[str, ...]] = set()

    def add(priority: str, action: str, rationale: str, pattern_ids: list[str]) -> None:
        key = (action,)
        if key not in seen:
            seen.add(key)
            recommendations.append({"priority": priority, "action": action, "rationale": rationale,
                                    "pattern_ids": pattern_ids, "model": DETERMINISTIC})

    patterns = {p["pattern_id"]: p for p in report["top_patterns"]}
    for anomaly in report["anomalies"]:
        if anomaly["kind"] == "service_quiet":
            add("high" if SEVERITY_RANK[anomaly["severity"]] >= 2 else "medium",
                f"Check that {anomaly['service']} is running and that its logs reach logpipe",
                anomaly["description"], [])
    for root in report["root_cause_candidates"][:3]:
        followers = ", ".join(lead["pattern_id"] for lead in root["leads"][:3])
        add("high", f"Start the investigation with '{_short(root['template'], 80)}' in {', '.join(root['services'])}",
            f"It comes first in {root['traces']} shared traces and {root['bursts']} bursts, before patterns "
            f"{followers}.", [root["pattern_id"], *[lead["pattern_id"] for lead in root["leads"][:3]]])
    for anomaly in report["anomalies"]:
        if anomaly["kind"] == "pattern_spike" and SEVERITY_RANK[anomaly["severity"]] >= 1:
            template = patterns.get(anomaly["pattern_id"], {}).get("template", anomaly["pattern_id"])
            add("high" if SEVERITY_RANK[anomaly["severity"]] >= 2 else "medium",
                f"Investigate the spike of '{_short(template, 80)}' in {anomaly['service']}",
                f"{anomaly['description']} (z = {anomaly['z_score']}).", [anomaly["pattern_id"]])
    for pattern in report["new_patterns"][:5]:
        version = f" (versions {', '.join(pattern['versions'])})" if pattern.get("versions") else ""
        add("high" if pattern["level"] == "FATAL" else "medium",
            f"Triage the new pattern '{_short(pattern['template'], 80)}' in {', '.join(pattern['services'])}",
            f"First seen {_fmt(pattern['first_seen'])}{version}, {pattern['count']} times since; "
            "new errors often follow a deploy or a config change.", [pattern["pattern_id"]])
    new_ids = {p["pattern_id"] for p in report["new_patterns"]}
    for group in (report.get("novel_errors") or {}).get("patterns", [])[:3]:
        if group["pattern_id"] in new_ids or group["pattern_id"] == "0":
            continue
        add("medium", f"Read the errors unlike any before in '{_short(group['template'], 80)}' "
                      f"({', '.join(group['services'])})",
            f"{group['count']} of them in the window: a known pattern failing in a new way.", [group["pattern_id"]])
    for cluster in report["clusters"]:
        if cluster["cross_service"]:
            add("medium", f"Look for a shared dependency of {', '.join(cluster['services'])}",
                f"Near-identical errors in {len(cluster['services'])} services: '{_short(cluster['template'], 80)}'.",
                cluster["pattern_ids"])
    for pattern in report["top_patterns"]:
        if pattern["level"] == "FATAL":
            add("high", f"Fix the fatal error '{_short(pattern['template'], 80)}' in {', '.join(pattern['services'])}",
                f"{pattern['count']} FATAL events in the window.", [pattern["pattern_id"]])
    noisy = [p for p in report["top_patterns"][:3] if p["trend"] == "stable" and p["level"] == "WARN"]
    for pattern in noisy:
        add("low", f"Reduce the noise of '{_short(pattern['template'], 80)}'",
            f"A steady {pattern['count']} warnings per window hide new problems.", [pattern["pattern_id"]])
    order = {"high": 0, "medium": 1, "low": 2}
    recommendations.sort(key=lambda r: order[r["priority"]])
    return recommendations[:limit]


def assemble_report(*, report_id: str, pipeline: str, window_start: datetime, window_end: datetime,
                    services: Sequence[str] | None, totals: dict[str, int], patterns: dict[str, dict[str, Any]],
                    clusters: list[dict[str, Any]], anomalies: list[AnomalyFinding],
                    trace_pairs: list[dict[str, Any]], burst_pairs: list[dict[str, Any]],
                    baselines: dict[BaselineKey, BaselineStat], buckets: Sequence[tuple[datetime, bool]],
                    service_errors: dict[str, int], thresholds: Thresholds = Thresholds(),
                    top: int = 25, novel_errors: dict[str, Any] | None = None) -> dict[str, Any]:
    """The deterministic report: a complete product on its own, and the facts an LLM is given."""
    cluster_of = {p: c["cluster_id"] for c in clusters for p in c["pattern_ids"]}
    ranked = sorted(patterns.values(), key=lambda p: (-int(p["count"]), p["pattern_id"]))
    top_patterns = []
    for info in ranked:
        trend, expected = pattern_trend(info["pattern_id"], info["services"], int(info["count"]),
                                        bool(info.get("is_new")), baselines, buckets, thresholds)
        info["trend"], info["expected"] = trend, expected
        info["cluster_id"] = cluster_of.get(info["pattern_id"], "")
    anomaly_dicts = [a.to_dict() for a in anomalies]
    anomalous = {a.pattern_id for a in anomalies if a.pattern_id}
    for info in ranked:
        if len(top_patterns) < top or info["pattern_id"] in anomalous:
            top_patterns.append(_pattern_view(info))
    new_patterns = [_pattern_view(p) for p in ranked if p.get("is_new")]
    report = {
        "report_id": report_id,
        "pipeline": pipeline,
        "window": {"start": iso(window_start), "end": iso(window_end),
                   "hours": round((utc(window_end) - utc(window_start)).total_seconds() / 3600, 3)},
        "services": list(services or []),
        "totals": totals,
        "top_patterns": top_patterns,
        "clusters": [c for c in clusters if c["cross_service"] or len(c["pattern_ids"]) > 1][:50],
        "anomalies": anomaly_dicts,
        "new_patterns": new_patterns,
        "novel_errors": novel_errors or summarize_novel_errors([], patterns, error="not read"),
        "co_occurrence": {"traces": list(trace_pairs[:50]), "bursts": list(burst_pairs[:50])},
        "root_cause_candidates": root_cause_candidates(trace_pairs, burst_pairs, patterns),
        "affected_services": affected_services(patterns, anomaly_dicts, service_errors),
    }
    report["summary"] = deterministic_summary(report)
    report["insights"] = deterministic_insights(report)
    report["recommendations"] = deterministic_recommendations(report)
    report["models"] = {"summary": DETERMINISTIC, "insights": DETERMINISTIC, "recommendations": DETERMINISTIC}
    return report


def _pattern_view(info: dict[str, Any]) -> dict[str, Any]:
    return {
        "pattern_id": info["pattern_id"], "template": info.get("template") or info.get("example", ""),
        "example": info.get("example", ""), "level": info.get("level", "ERROR"), "count": int(info["count"]),
        "services": list(info["services"]), "first_seen": iso(info.get("first_seen")),
        "last_seen": iso(info.get("last_seen")), "trend": info.get("trend", "stable"),
        "expected": None if info.get("expected") is None else round(float(info["expected"]), 2),
        "is_new": bool(info.get("is_new")), "cluster_id": info.get("cluster_id", ""),
        "versions": list(info.get("versions") or []),
    }


# --- the LLM: prompt, schema, validation ---------------------------------------------------------

SYSTEM_PROMPT = (
    "You are a site reliability engineer writing the nightly log analysis for the on-call team. "
    "You get facts computed from the logs: error patterns (each with an id), anomalies, clusters of "
    "similar errors across services, root-cause candidates and quiet services. Write an executive "
    "summary, one insight per cluster worth attention, and concrete recommendations. Every claim must "
    "cite the pattern ids it rests on, copied exactly from the facts; do not invent ids, numbers or services. "
    "Novel errors are errors unlike any earlier error by meaning (embedding similarity)."
)

_CITATIONS = {"type": "array", "items": {"type": "string"}, "minItems": 1}
REPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["executive_summary", "cluster_insights", "recommendations"],
    "properties": {
        "executive_summary": {
            "type": "object", "additionalProperties": False, "required": ["text", "pattern_ids"],
            "properties": {"text": {"type": "string"}, "pattern_ids": _CITATIONS},
        },
        "cluster_insights": {
            "type": "array",
            "items": {"type": "object", "additionalProperties": False,
                      "required": ["cluster_id", "title", "text", "pattern_ids"],
                      "properties": {"cluster_id": {"type": "string"}, "title": {"type": "string"},
                                     "text": {"type": "string"}, "pattern_ids": _CITATIONS}},
        },
        "recommendations": {
            "type": "array",
            "items": {"type": "object", "additionalProperties": False,
                      "required": ["priority", "action", "rationale", "pattern_ids"],
                      "properties": {"priority": {"type": "string", "enum": ["high", "medium", "low"]},
                                     "action": {"type": "string"}, "rationale": {"type": "string"},
                                     "pattern_ids": _CITATIONS}},
        },
    },
}


def llm_facts(report: dict[str, Any], limit: int = 30) -> dict[str, Any]:
    """The compact facts the model sees (and the only pattern ids it may cite)."""
    def pattern(p: dict[str, Any]) -> dict[str, Any]:
        return {"id": p["pattern_id"], "template": _short(p["template"], 200), "level": p["level"],
                "count": p["count"], "services": p["services"], "trend": p["trend"], "expected": p["expected"],
                "new": p["is_new"], "cluster": p["cluster_id"]}

    return {
        "window": report["window"],
        "totals": report["totals"],
        "patterns": [pattern(p) for p in report["top_patterns"][:limit]],
        "anomalies": [{k: a[k] for k in ("kind", "service", "pattern_id", "severity", "observed", "expected",
                                         "z_score", "description")} for a in report["anomalies"][:limit]],
        "clusters": [{"id": c["cluster_id"], "pattern_ids": c["pattern_ids"][:10], "services": c["services"],
                      "count": c["count"], "template": _short(c["template"], 200)} for c in report["clusters"][:15]],
        "root_cause_candidates": [{"pattern_id": r["pattern_id"], "services": r["services"], "leads": r["leads"][:5],
                                   "traces": r["traces"], "bursts": r["bursts"]}
                                  for r in report["root_cause_candidates"][:5]],
        "new_patterns": [p["pattern_id"] for p in report["new_patterns"][:limit]],
        "novel_errors": [{"pattern_id": g["pattern_id"], "count": g["count"], "services": g["services"],
                          "example": _short(g["example"], 200)}
                         for g in (report.get("novel_errors") or {}).get("patterns", [])[:10]
                         if g["pattern_id"] != "0"],
        "affected_services": report["affected_services"][:20],
    }


def llm_prompt(facts: dict[str, Any]) -> str:
    import orjson

    return ("Facts from the log store (JSON):\n" + orjson.dumps(facts).decode() +
            "\n\nAnswer with JSON that matches the schema. Cite pattern ids exactly as given.")


def known_pattern_ids(facts: dict[str, Any]) -> set[str]:
    known = {p["id"] for p in facts["patterns"]}
    known.update(a["pattern_id"] for a in facts["anomalies"] if a["pattern_id"])
    for cluster in facts["clusters"]:
        known.update(cluster["pattern_ids"])
    for root in facts["root_cause_candidates"]:
        known.add(root["pattern_id"])
        known.update(lead["pattern_id"] for lead in root["leads"])
    known.update(facts["new_patterns"])
    known.update(g["pattern_id"] for g in facts.get("novel_errors", []))
    return known


def _citations(value: Any) -> list[str] | None:
    if not isinstance(value, list) or not value:
        return None
    return [str(item).strip() for item in value]


def validate_llm_answer(answer: dict[str, Any], known: set[str], known_clusters: set[str],
                        model: str) -> tuple[dict[str, Any], int]:
    """Keep the claims that cite only pattern ids the model was given; returns (kept, dropped)."""
    dropped = 0
    kept: dict[str, Any] = {"summary": None, "insights": [], "recommendations": []}

    def grounded(item: Any, *fields: str) -> list[str] | None:
        if not isinstance(item, dict) or any(not isinstance(item.get(f), str) or not item[f].strip() for f in fields):
            return None
        ids = _citations(item.get("pattern_ids"))
        if ids is None or any(i not in known for i in ids):
            return None
        return list(dict.fromkeys(ids))

    summary = answer.get("executive_summary")
    ids = grounded(summary, "text")
    if ids is None:
        dropped += 1 if summary is not None else 0
    else:
        kept["summary"] = {"text": summary["text"].strip(), "pattern_ids": ids, "model": model}
    for item in answer.get("cluster_insights") or []:
        ids = grounded(item, "text")
        if ids is None:
            dropped += 1
            continue
        cluster = str(item.get("cluster_id", "")).strip()
        kept["insights"].append({"cluster_id": cluster if cluster in known_clusters else "",
                                 "title": str(item.get("title", "")).strip(), "text": item["text"].strip(),
                                 "pattern_ids": ids, "model": model})
    for item in answer.get("recommendations") or []:
        ids = grounded(item, "action")
        priority = item.get("priority") if isinstance(item, dict) else None
        if ids is None or priority not in ("high", "medium", "low"):
            dropped += 1
            continue
        kept["recommendations"].append({"priority": priority, "action": item["action"].strip(),
                                        "rationale": str(item.get("rationale", "")).strip(),
                                        "pattern_ids": ids, "model": model})
    return kept, dropped


def merge_llm_answer(report: dict[str, Any], kept: dict[str, Any], model: str) -> None:
    """Replace each deterministic part the model answered for; a part it failed keeps the rules'
    version and says so in `models`. Rule-based steps citing no pattern (a quiet service) stay."""
    if kept["summary"]:
        report["summary"] = kept["summary"]
        report["models"]["summary"] = model
    if kept["insights"]:
        report["insights"] = kept["insights"]
        report["models"]["insights"] = model
    if kept["recommendations"]:
        unpatterned = [r for r in report["recommendations"] if not r["pattern_ids"]]
        report["recommendations"] = unpatterned + kept["recommendations"]
        report["models"]["recommendations"] = model


# --- export ----------------------------------------------------------------------------

def render_markdown(report: dict[str, Any]) -> str:
    window = report["window"]
    lines = [f"# logpipe analysis {report.get('report_id', '')}", "",
             f"Window: {window['start']} to {window['end']} ({window['hours']:g} h), pipeline "
             f"`{report.get('pipeline', 'default')}`" + (f", services {', '.join(report['services'])}"
                                                         if report.get("services") else ""), ""]
    models = report.get("models", {})
    lines += ["## Summary", "", report["summary"]["text"], "",
              f"_Written by: {models.get('summary', DETERMINISTIC)}. Cites: "
              f"{', '.join(report['summary']['pattern_ids']) or 'none'}._", ""]
    totals = report["totals"]
    lines += ["| logs | errors+warnings | FATAL | ERROR | WARN | patterns | services with errors |",
              "|---:|---:|---:|---:|---:|---:|---:|",
              f"| {totals['logs']} | {totals['errors']} | {totals['fatal']} | {totals['error']} | {totals['warn']} | "
              f"{totals['patterns']} | {totals['error_services']} |", ""]
    lines += ["## Anomalies", ""]
    if report["anomalies"]:
        lines += ["| severity | kind | service | pattern | observed | expected | z | what |",
                  "|---|---|---|---|---:|---:|---:|---|"]
        for a in report["anomalies"]:
            lines.append(f"| {a['severity']} | {a['kind']} | {a['service']} | {a['pattern_id'] or '-'} | "
                         f"{a['observed']:g} | {a['expected']:g} | {a['z_score']} | {_cell(a['description'])} |")
    else:
        lines.append("None: every service and pattern stayed within its baseline.")
    lines += ["", "## Recommendations", "", f"_Written by: {models.get('recommendations', DETERMINISTIC)}._", ""]
    for r in report["recommendations"]:
        cites = f" (patterns {', '.join(r['pattern_ids'])})" if r["pattern_ids"] else ""
        lines.append(f"- **{r['priority']}**: {r['action']}. {r['rationale']}{cites} _[{r['model']}]_")
    if not report["recommendations"]:
        lines.append("- Nothing needs action.")
    lines += ["", "## Root-cause candidates", ""]
    for root in report["root_cause_candidates"]:
        lines.append(f"- `{root['pattern_id']}` {_cell(_short(root['template'], 100))} in "
                     f"{', '.join(root['services'])}: first in {root['traces']} shared traces, leads "
                     f"{root['bursts']} bursts")
    if not report["root_cause_candidates"]:
        lines.append("- None found (no shared traces or joint bursts).")
    lines += ["", "## Insights", "", f"_Written by: {models.get('insights', DETERMINISTIC)}._", ""]
    for insight in report["insights"]:
        lines.append(f"- **{insight['cluster_id'] or 'general'}** {insight['title']}: {insight['text']} "
                     f"(patterns {', '.join(insight['pattern_ids'])}) _[{insight['model']}]_")
    if not report["insights"]:
        lines.append("- No cluster needs attention.")
    lines += ["", "## Top patterns", "", "| pattern | level | count | trend | services | template |",
              "|---|---|---:|---|---|---|"]
    for p in report["top_patterns"]:
        lines.append(f"| {p['pattern_id']} | {p['level']} | {p['count']} | {p['trend']} | {', '.join(p['services'])} | "
                     f"{_cell(_short(p['template'], 100))} |")
    lines += ["", "## New patterns", ""]
    for p in report["new_patterns"]:
        lines.append(f"- `{p['pattern_id']}` ({p['level']}, {', '.join(p['services'])}, first {_fmt(p['first_seen'])},"
                     f" {p['count']} times): {_cell(_short(p['template'], 120))}")
    if not report["new_patterns"]:
        lines.append("- None.")
    novel = report.get("novel_errors") or {}
    lines += ["", "## Novel errors", ""]
    if novel.get("error"):
        lines.append(f"- Not read: {novel['error']}.")
    for group in novel.get("patterns", [])[:20]:
        lines.append(f"- {group['count']} in `{group['pattern_id']}` ({', '.join(group['services'])}, first "
                     f"{_fmt(group['first_seen'])}): {_cell(_short(group['example'], 120))}")
    if not novel.get("patterns") and not novel.get("error"):
        lines.append("- None: every error resembled an earlier one.")
    lines += ["", "## Cross-service clusters", ""]
    if report.get("clusters_error"):
        lines.append(f"- Not computed: {report['clusters_error']}.")
    for c in report["clusters"]:
        lines.append(f"- **{c['cluster_id']}** {', '.join(c['services'])} ({c['count']} events, patterns "
                     f"{', '.join(c['pattern_ids'])}): {_cell(_short(c['template'], 100))}")
    if not report["clusters"] and not report.get("clusters_error"):
        lines.append("- None.")
    lines += ["", "## Affected services", "", "| service | errors | patterns | anomalies | worst |",
              "|---|---:|---:|---:|---|"]
    for s in report["affected_services"]:
        lines.append(f"| {s['service']} | {s['errors']} | {s['patterns']} | {s['anomalies']} | "
                     f"{s['worst_severity'] or '-'} |")
    llm = report.get("llm") or {}
    lines += ["", "## How this report was made", "",
              f"- LLM: {llm.get('model') or 'none'}" + (f" ({llm['error']})" if llm.get("error") else "") +
              (f", {llm.get('dropped_claims', 0)} uncited claims dropped" if llm.get("model") else ""),
              f"- Analysis took {report.get('timings', {}).get('analysis_seconds', 0):.2f} s, "
              f"LLM {report.get('timings', {}).get('llm_seconds', 0):.2f} s", ""]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


@dataclass
class RunRequest:
    window_hours: float = 24.0
    services: list[str] = field(default_factory=list)
    end: datetime | None = None
