"""Anomaly detection: hourly counts judged against what the same hours usually hold (history
or learnt baselines; cold, the rest of the window), then merged into incidents.

An incident is a stretch of consecutive anomalous hours of one series (a service's whole
volume, or one error pattern in one service), with a start, an end, a peak hour, observed and
expected totals and the excess. Kinds: `pattern_spike` and `volume_spike` (far above),
`volume_drop` and `pattern_drop` (far below for a sustained stretch), `service_quiet` (nothing
at all: a silence, `ongoing` when it lasts to the end of the window), `new_pattern`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Protocol, Sequence

import numpy as np

from logpipe.analyzer.baselines import VOLUME, BaselineKey, BaselineStat
from logpipe.analyzer.text import plural, shorten
from logpipe.analyzer.thresholds import SEVERITIES, SEVERITY_RANK, Thresholds
from logpipe.analyzer.windows import HOUR, format_span, format_time, iso, parse_time, utc

KINDS = ("pattern_spike", "volume_spike", "volume_drop", "pattern_drop", "service_quiet", "new_pattern")
# An hour next to an anomalous one belongs to the same incident when it is clearly off too,
# if not alarming on its own; a stretch of such hours is an incident when it adds up to one
# (a slow burn, a partial outage) although no single hour would.
EXTEND_Z = 2.0
SUSTAINED_HOURS = 3
# A pattern's drop is only visible, and only worth a line, where it is busy.
PATTERN_DROP_MIN_FACTOR = 3
COLD_START_WIDENING = 1.5
COLD_START_MIN_HOURS = 3


class ExpectationSource(Protocol):
    def stat(self, service: str, pattern: str, bucket: datetime) -> BaselineStat | None: ...

    def series(self) -> set[tuple[str, str]]: ...


class _Learnt:
    """Baselines given as a dict keyed by (service, pattern, hour of day), used as they are."""

    def __init__(self, baselines: dict[BaselineKey, BaselineStat], min_samples: int) -> None:
        self.baselines, self.min_samples = baselines, min_samples

    def stat(self, service: str, pattern: str, bucket: datetime) -> BaselineStat | None:
        stat = self.baselines.get((service, pattern, bucket.hour))
        return stat if stat is not None and stat.samples >= self.min_samples else None

    def series(self) -> set[tuple[str, str]]:
        return {(service, pattern) for service, pattern, _ in self.baselines}


@dataclass
class HourJudgement:
    bucket: datetime
    whole: bool
    count: float
    mean: float
    std: float
    z: float
    known: bool  # judged against history, not the rest of the window


@dataclass
class AnomalyFinding:
    kind: str  # one of KINDS
    service: str
    pattern_id: str
    bucket: datetime | None  # the peak hour (the first silent hour of a silence)
    observed: float  # the peak hour's count; for drops and silences, the stretch's total
    expected: float
    stddev: float
    z_score: float
    severity: str
    description: str
    hours: int = 1
    start: datetime | None = None
    end: datetime | None = None
    observed_total: float = 0.0
    expected_total: float = 0.0
    ongoing: bool = False
    related_group: str = ""
    hourly: list[HourJudgement] = field(default_factory=list, repr=False, compare=False)

    @property
    def excess(self) -> float:
        return self.observed_total - self.expected_total

    @property
    def incident_id(self) -> str:
        # The same incident found by a rerun of the window keeps its id.
        key = f"{self.kind}|{self.service}|{self.pattern_id}|{iso(self.start)}"
        return hashlib.sha1(key.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "service": self.service, "pattern_id": self.pattern_id,
                "bucket": iso(self.bucket), "observed": round(self.observed, 3), "expected": round(self.expected, 3),
                "stddev": round(self.stddev, 3), "z_score": round(self.z_score, 2), "severity": self.severity,
                "hours": self.hours, "description": self.description,
                "incident_id": self.incident_id, "start": iso(self.start), "end": iso(self.end),
                "peak": iso(self.bucket), "observed_total": round(self.observed_total, 3),
                "expected_total": round(self.expected_total, 3), "excess": round(self.excess, 3),
                "ongoing": self.ongoing, "related_group": self.related_group}


def _reference(counts: dict[datetime, float], buckets: Sequence[tuple[datetime, bool]],
               known_from: datetime | None = None) -> tuple[float, float] | None:
    """Median and robust spread (1.4826 x MAD) of the complete hours of the window since the
    pipeline had logs: the cold-start reference, or None with fewer than three such hours.
    Robust, so a two-hour incident neither hides itself by inflating the spread it is judged
    against nor needs leaving out."""
    values = [counts.get(b, 0) for b, complete in buckets
              if complete and (known_from is None or b >= known_from)]
    if len(values) < COLD_START_MIN_HOURS:
        return None
    array = np.asarray(values, dtype=float)
    median = float(np.median(array))
    return median, float(1.4826 * np.median(np.abs(array - median)))


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


def bucket_fractions(buckets: Sequence[tuple[datetime, bool]], start: datetime | None,
                     end: datetime | None) -> dict[datetime, float]:
    """How much of each hour lies inside the window: a partial hour expects part of a full one."""
    fractions = {}
    for bucket, whole in buckets:
        if whole or start is None or end is None:
            fractions[bucket] = 1.0
        else:
            inside = min(bucket + HOUR, utc(end)) - max(bucket, utc(start))
            fractions[bucket] = max(inside.total_seconds(), 0.0) / 3600.0
    return fractions


def judge_series(service: str, pattern: str, counts: dict[datetime, float], source: ExpectationSource,
                 buckets: Sequence[tuple[datetime, bool]], fractions: dict[datetime, float],
                 known_from: datetime | None = None) -> list[HourJudgement]:
    """Each hour of the window with its count, what was expected, and how far off it is.

    Without history, an hour is judged against the other complete hours of the window since
    `known_from` (the first whole hour the pipeline had logs): the hours before the platform
    received anything are unknown, not zero, and with fewer than three known hours nothing is
    judged at all (z 0) rather than against an expectation of nothing."""
    cold: tuple[float, float] | None | bool = False
    judged = []
    for bucket, whole in buckets:
        count = float(counts.get(bucket, 0))
        fraction = fractions.get(bucket, 1.0)
        stat = source.stat(service, pattern, bucket)
        if stat is not None:
            # The mean of a few days is itself uncertain: widen by sqrt(1 + 1/n) (prediction interval).
            mean = stat.mean * fraction
            std = _spread(mean, stat.stddev * fraction) * math.sqrt(1 + 1 / stat.samples)
            known = True
        else:
            if cold is False:
                cold = _reference(counts, buckets, known_from)
            if cold is None or (known_from is not None and bucket + HOUR <= known_from):
                judged.append(HourJudgement(bucket, whole, count, count, _spread(count, 0.0), 0.0, False))
                continue
            # Other hours of one day mix the daily rhythm with noise and know nothing of other days.
            mean = cold[0] * fraction
            std = _spread(mean, cold[1] * fraction) * COLD_START_WIDENING
            known = False
        judged.append(HourJudgement(bucket, whole, count, mean, std, z_score(count, mean, std), known))
    return judged


def _runs(flags: Sequence[bool]) -> list[tuple[int, int]]:
    """[first, last] index pairs of the maximal runs of True."""
    runs, begin = [], None
    for index, flag in enumerate(flags):
        if flag and begin is None:
            begin = index
        if not flag and begin is not None:
            runs.append((begin, index - 1))
            begin = None
    if begin is not None:
        runs.append((begin, len(flags) - 1))
    return runs


def _total_z(hours: Sequence[HourJudgement]) -> tuple[float, float, float]:
    observed = sum(h.count for h in hours)
    expected = sum(h.mean for h in hours)
    spread = math.sqrt(sum(h.std ** 2 for h in hours))
    return observed, expected, z_score(observed, expected, spread)


def rises(judged: Sequence[HourJudgement], thresholds: Thresholds) -> list[list[HourJudgement]]:
    """Stretches far above normal: a run of clearly-high hours holding one alarming hour, or a
    sustained run that is alarming taken together."""
    weak = [h.z >= EXTEND_Z and h.count >= thresholds.min_ratio * h.mean and h.count > 0 for h in judged]
    found = []
    for first, last in _runs(weak):
        stretch = list(judged[first:last + 1])
        strong = any(h.count >= thresholds.min_count and h.z >= thresholds.z_low for h in stretch)
        if not strong:
            _, _, z = _total_z(stretch)
            strong = (len(stretch) >= SUSTAINED_HOURS and all(h.known for h in stretch)
                      and max(h.count for h in stretch) >= thresholds.min_count and z >= thresholds.z_low)
        if strong:
            found.append(stretch)
    return found


def falls(judged: Sequence[HourJudgement], thresholds: Thresholds, floor: float) -> list[list[HourJudgement]]:
    """Sustained stretches far below normal (zero included), judged only against history:
    the rest of one window cannot tell a quiet night from an outage."""
    weak = [h.whole and h.known and h.mean >= floor and h.count * thresholds.min_ratio <= h.mean
            and h.z <= -EXTEND_Z for h in judged]
    found = []
    for first, last in _runs(weak):
        stretch = list(judged[first:last + 1])
        _, _, z = _total_z(stretch)
        if len(stretch) >= thresholds.quiet_hours and z <= -thresholds.z_low:
            found.append(stretch)
    return found


def _ongoing(stretch: Sequence[HourJudgement], judged: Sequence[HourJudgement]) -> bool:
    """Whether the stretch lasts to the end of the window (nothing logged after it)."""
    after = judged[judged.index(stretch[-1]) + 1:]
    return all(not h.whole and h.count == 0 for h in after) and stretch[-1].count == 0


def _label(templates: dict[str, str], pattern: str) -> str:
    return shorten(templates.get(pattern, pattern), 80)


def _finding(kind: str, service: str, pattern: str, stretch: list[HourJudgement], thresholds: Thresholds,
             description: str, *, totals_as_values: bool, window_end: datetime | None,
             ongoing: bool = False) -> AnomalyFinding | None:
    observed_total, expected_total, total_z = _total_z(stretch)
    upward = total_z > 0
    peak = (max(stretch, key=lambda h: (h.z, h.count)) if upward
            else next((h for h in stretch if h.count == 0), min(stretch, key=lambda h: h.z)))
    z = max(total_z, peak.z) if upward else min(total_z, peak.z)
    severity = thresholds.severity(z)
    if severity is None:
        return None
    start = stretch[0].bucket
    end = window_end if ongoing and window_end is not None else stretch[-1].bucket + HOUR
    if totals_as_values:
        observed, expected, spread = observed_total, expected_total, math.sqrt(sum(h.std ** 2 for h in stretch))
    else:
        observed, expected, spread = peak.count, peak.mean, peak.std
    return AnomalyFinding(kind, service, pattern, peak.bucket if upward else start, observed, expected, spread, z,
                          severity, description.format(span=format_span(start, end), start=format_time(start),
                                                       observed=_number(observed_total),
                                                       expected=_number(expected_total), peak=_number(peak.count),
                                                       peak_hour=f"{peak.bucket:%H:00}",
                                                       hours=plural(len(stretch), "hour")),
                          hours=len(stretch), start=start, end=end, observed_total=observed_total,
                          expected_total=expected_total, ongoing=ongoing, hourly=list(stretch))


def _number(value: float) -> str:
    return f"{value:,.0f}"


def _overlaps(a: AnomalyFinding, b: AnomalyFinding) -> bool:
    return a.start is not None and b.start is not None and a.start < b.end and b.start < a.end


def find_anomalies(hourly: dict[tuple[str, str], dict[datetime, int]],
                   volume: dict[str, dict[datetime, int]],
                   baselines: dict[BaselineKey, BaselineStat] | ExpectationSource,
                   buckets: Sequence[tuple[datetime, bool]],
                   new_patterns: dict[str, dict[str, Any]],
                   thresholds: Thresholds = Thresholds(),
                   services: Iterable[str] | None = None,
                   templates: dict[str, str] | None = None,
                   window: tuple[datetime, datetime] | None = None,
                   known_from: datetime | None = None) -> list[AnomalyFinding]:
    """Incidents of every kind in the window, most severe first, in a stable order.
    `known_from`: the first whole hour of the pipeline's logs, when it began inside the window
    (a fresh platform); hours before it are not compared with anything."""
    templates = templates or {}
    allowed = set(services) if services else None
    source = baselines if not isinstance(baselines, dict) else _Learnt(baselines, thresholds.min_baseline_samples)
    window_end = utc(window[1]) if window else (buckets[-1][0] + HOUR if buckets else None)
    fractions = bucket_fractions(buckets, *(window or (None, None)))
    known_series = source.series()
    findings: list[AnomalyFinding] = []

    def wanted(service: str) -> bool:
        return allowed is None or service in allowed

    error_series = set(hourly) | {key for key in known_series if key[1] != VOLUME}
    for service, pattern in sorted(error_series):
        if pattern in new_patterns or not wanted(service):
            continue  # a new pattern is reported once as new, not as a spike over nothing
        judged = judge_series(service, pattern, hourly.get((service, pattern), {}), source, buckets, fractions,
                              known_from)
        label = _label(templates, pattern)
        for stretch in rises(judged, thresholds):
            found = _finding("pattern_spike", service, pattern, stretch, thresholds,
                             f"{service}: '{label}' {{observed}} times {{span}}, expected about {{expected}} "
                             f"(peak {{peak}} in the hour from {{peak_hour}})",
                             totals_as_values=False, window_end=window_end)
            if found:
                findings.append(found)
        for stretch in falls(judged, thresholds, PATTERN_DROP_MIN_FACTOR * thresholds.min_count):
            found = _finding("pattern_drop", service, pattern, stretch, thresholds,
                             f"{service}: '{label}' only {{observed}} times {{span}}, expected about {{expected}}",
                             totals_as_values=True, window_end=window_end)
            if found:
                findings.append(found)

    volume_services = set(volume) | {service for service, pattern in known_series if pattern == VOLUME}
    for service in sorted(volume_services):
        if not wanted(service):
            continue
        counts = volume.get(service, {})
        judged = judge_series(service, VOLUME, counts, source, buckets, fractions, known_from)
        for stretch in rises(judged, thresholds):
            found = _finding("volume_spike", service, VOLUME, stretch, thresholds,
                             f"{service} wrote {{observed}} logs {{span}}, expected about {{expected}} "
                             f"(peak {{peak}} in the hour from {{peak_hour}})",
                             totals_as_values=False, window_end=window_end)
            if found:
                findings.append(found)
        silent_found = False
        for stretch in falls(judged, thresholds, thresholds.min_count):
            zero = sum(1 for h in stretch if h.count == 0)
            # Hours at the edges of a silence are partly silent: the silence is the middle.
            silence = zero >= 1 and zero >= len(stretch) - 2
            ongoing = silence and _ongoing(stretch, judged)
            if silence and ongoing:
                text = (f"{service} has sent no logs since {{start}} ({{hours}}, to the end of the window), "
                        f"expected about {{expected}}")
            elif silence and not any(h.count for h in stretch):
                text = f"{service} sent no logs {{span}}, expected about {{expected}}"
            elif silence:
                text = f"{service} sent almost no logs {{span}} ({{observed}} instead of about {{expected}})"
            else:
                text = f"{service} wrote only {{observed}} logs {{span}}, expected about {{expected}}"
            found = _finding("service_quiet" if silence else "volume_drop", service, VOLUME, stretch, thresholds,
                             text, totals_as_values=True, window_end=window_end, ongoing=ongoing)
            if found:
                findings.append(found)
                silent_found = silent_found or silence
        if not silent_found:
            quiet = _cold_quiet(service, counts, judged, buckets, thresholds, window_end, known_from)
            if quiet:
                findings.append(quiet)

    findings = _explained_away(findings, hourly, new_patterns)
    for pattern, info in sorted(new_patterns.items()):
        findings.extend(_new_pattern(pattern, info, hourly, thresholds, allowed, templates))
    findings.sort(key=lambda f: (-SEVERITY_RANK[f.severity], -abs(f.z_score), f.service, f.kind, f.pattern_id,
                                 iso(f.start) or ""))
    return findings


def _explained_away(findings: list[AnomalyFinding], hourly: dict[tuple[str, str], dict[datetime, int]],
                    new_patterns: dict[str, dict[str, Any]]) -> list[AnomalyFinding]:
    """Report causes, not their echoes: a pattern falling while its whole service is silent or
    dropping says nothing more, nor does a volume spike made of a pattern's spike."""
    volume_down = [f for f in findings if f.kind in ("service_quiet", "volume_drop")]
    kept = []
    for finding in findings:
        if finding.kind == "pattern_drop" and any(
                d.service == finding.service and _overlaps(d, finding) for d in volume_down):
            continue
        if finding.kind == "volume_spike":
            hours = {h.bucket for h in finding.hourly}
            explained = 0.0
            for other in findings:
                if other.kind == "pattern_spike" and other.service == finding.service:
                    explained += sum(h.count - h.mean for h in other.hourly if h.bucket in hours)
            for pattern in new_patterns:
                explained += sum(n for b, n in hourly.get((finding.service, pattern), {}).items() if b in hours)
            if explained >= 0.5 * finding.excess:
                continue
        kept.append(finding)
    return kept


def _new_pattern(pattern: str, info: dict[str, Any], hourly: dict[tuple[str, str], dict[datetime, int]],
                 thresholds: Thresholds, allowed: set[str] | None, templates: dict[str, str]) -> list[AnomalyFinding]:
    level = info.get("level", "ERROR")
    label = shorten(templates.get(pattern, info.get("example", pattern)), 80)
    first_seen, last_seen = parse_time(info.get("first_seen")), parse_time(info.get("last_seen"))
    found = []
    for service in info.get("services") or ["unknown"]:
        if allowed is not None and service not in allowed:
            continue
        counts = hourly.get((service, pattern), {})
        count = int(sum(counts.values())) if counts else int(info.get("count", 0))
        # Anything new is worth a look; how loud it is sets how urgently.
        z = z_score(count, 0.0, 0.0)
        severity = thresholds.severity(z) or "low"
        if level == "FATAL":
            # Something new that kills a process is worth waking up for, however rare.
            severity = SEVERITIES[min(max(SEVERITY_RANK[severity] + 1, SEVERITY_RANK["high"]), 3)]
        peak = max(counts.items(), key=lambda item: (item[1], -item[0].timestamp()))[0] if counts else first_seen
        found.append(AnomalyFinding(
            "new_pattern", service, pattern, peak, count, 0.0, 0.0, z, severity,
            f"new {level} pattern in {service}: '{label}' ({plural(count, 'time')}, first at "
            f"{format_time(first_seen)})", hours=len(counts) or 1, start=first_seen,
            end=(last_seen or first_seen) + timedelta(milliseconds=1) if first_seen else None,
            observed_total=count, expected_total=0.0))
    return found


def _cold_quiet(service: str, counts: dict[datetime, int], judged: Sequence[HourJudgement],
                buckets: Sequence[tuple[datetime, bool]], thresholds: Thresholds,
                window_end: datetime | None, known_from: datetime | None = None) -> AnomalyFinding | None:
    """Without history: a service whose last `quiet_hours` complete hours (and any partial
    hour after) are empty, judged against what it did earlier in this window."""
    complete = [b for b, whole in buckets if whole and (known_from is None or b >= known_from)]
    if len(complete) < thresholds.quiet_hours or any(h.known for h in judged):
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
    before = [counts.get(b, 0) for b in complete if b < silent[-1]]
    if len(before) < thresholds.quiet_hours:
        return None
    mean = float(np.mean(before))
    std = float(np.std(before, ddof=1)) if len(before) > 1 else 0.0
    total_expected = mean * len(silent)
    if mean < thresholds.min_count:
        return None
    spread = std * math.sqrt(len(silent))
    z = z_score(0.0, total_expected, spread)
    severity = thresholds.severity(z)
    if not severity:
        return None
    since = min(silent)
    return AnomalyFinding("service_quiet", service, VOLUME, since, 0.0, total_expected, spread, z, severity,
                          f"{service} has sent no logs since {format_time(since)} ({plural(len(silent), 'hour')}, "
                          f"to the end of the window), expected about {_number(total_expected)}",
                          hours=len(silent), start=since, end=window_end, observed_total=0.0,
                          expected_total=total_expected, ongoing=True)
