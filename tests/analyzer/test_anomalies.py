"""Windows, baselines and anomaly detection (logpipe.analyzer.windows, baselines, anomalies), with
plain values."""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from logpipe.analyzer.anomalies import find_anomalies, z_score
from logpipe.analyzer.baselines import VOLUME, BaselineStat, update_baselines
from logpipe.analyzer.thresholds import Thresholds
from logpipe.analyzer.windows import window_buckets

DAY = datetime(2026, 5, 4, tzinfo=timezone.utc)
BUCKETS = window_buckets(DAY, DAY + timedelta(days=1))


def hours(values) -> dict[datetime, int]:
    return {DAY + timedelta(hours=h): v for h, v in enumerate(values) if v}


def baseline_of(values_by_day: list[list[int]], key=("api", "7")) -> dict:
    baselines: dict = {}
    for day, values in enumerate(values_by_day):
        start = DAY - timedelta(days=len(values_by_day) - day)
        buckets = window_buckets(start, start + timedelta(days=1))
        counts = {start + timedelta(hours=h): v for h, v in enumerate(values)}
        baselines.update(update_baselines(baselines, {key: counts}, buckets))
    return baselines


def test_window_buckets_mark_partial_hours():
    buckets = window_buckets(DAY + timedelta(minutes=30), DAY + timedelta(hours=2, minutes=10))
    assert buckets == [(DAY, False), (DAY + timedelta(hours=1), True), (DAY + timedelta(hours=2), False)]
    assert len(BUCKETS) == 24 and all(complete for _, complete in BUCKETS)


def test_welford_baseline_matches_mean_and_variance_and_skips_known_hours():
    days = [[10 + d + h % 3 for h in range(24)] for d in range(5)]
    baselines = baseline_of(days)
    stat = baselines[("api", "7", 5)]
    column = [day[5] for day in days]
    assert stat.samples == 5
    assert stat.mean == pytest.approx(statistics.mean(column))
    assert stat.stddev == pytest.approx(statistics.stdev(column))
    # Folding the same (already learnt) day in again changes nothing.
    last = DAY - timedelta(days=1)
    again = update_baselines(baselines, {("api", "7"): {last + timedelta(hours=5): 999}},
                                     window_buckets(last, DAY))
    assert again == {}


def test_baselines_learn_zero_hours_skip_incidents_and_respect_the_service_filter():
    baselines = {("api", "7", 3): BaselineStat(4, 10.0, 8.0, DAY - timedelta(days=1))}
    skip = {("api", "7", DAY + timedelta(hours=4))}
    changed = update_baselines(baselines, {("db", "9"): hours([5] * 24)}, BUCKETS, services=["api"],
                                       skip=skip)
    assert all(key[0] == "api" for key in changed)
    assert changed[("api", "7", 3)].samples == 5 and changed[("api", "7", 3)].mean == pytest.approx(8.0)  # a 0 hour
    assert changed[("api", "7", 4)].samples == 0 and changed[("api", "7", 4)].last_bucket == DAY + timedelta(hours=4)
    assert baselines[("api", "7", 3)].samples == 4  # the input is not modified


def test_severity_grows_with_distance():
    thresholds = Thresholds()
    assert thresholds.severity(3.9) is None
    assert [thresholds.severity(z) for z in (4, 6, 9, 14)] == ["low", "medium", "high", "critical"]
    assert z_score(20, 20, 0) == pytest.approx(0)
    assert z_score(80, 20, 0) > z_score(40, 20, 0) > 0
    assert z_score(40, 20, 10) < z_score(40, 20, 0)  # a noisy history widens


def test_a_spike_against_the_baseline_is_flagged_once_at_its_worst_hour():
    history = [[20] * 24 for _ in range(5)]
    history[1][14] = 24  # some noise
    baselines = baseline_of(history)
    today = [20] * 24
    today[14], today[15] = 200, 90
    found = find_anomalies({("api", "7"): hours(today)}, {}, baselines, BUCKETS, {})
    [spike] = found
    assert (spike.kind, spike.service, spike.pattern_id) == ("pattern_spike", "api", "7")
    assert spike.bucket == DAY + timedelta(hours=14) and spike.observed == 200 and spike.hours == 2
    assert spike.severity == "critical"
    assert spike.expected == pytest.approx(20.8)


def test_a_quiet_day_and_small_or_falling_counts_flag_nothing():
    baselines = baseline_of([[20] * 24 for _ in range(5)])
    rng = np.random.default_rng(1)
    today = list(rng.poisson(20, 24))
    today[3] = 8  # fewer errors are good news
    assert find_anomalies({("api", "7"): hours(today)}, {}, baselines, BUCKETS, {}) == []
    # A rare pattern going from 1 to 6 an hour is noise, not an incident (min_count).
    rare = baseline_of([[1] * 24 for _ in range(5)])
    assert find_anomalies({("api", "7"): hours([6] * 24)}, {}, rare, BUCKETS, {}) == []


def test_cold_start_judges_an_hour_against_the_rest_of_the_window():
    today = [30] * 24
    today[9], today[10] = 400, 380  # a two-hour incident does not hide itself
    [spike] = find_anomalies({("api", "7"): hours(today)}, {}, {}, BUCKETS, {})
    assert spike.severity == "critical" and spike.expected == 30


def test_service_going_quiet_and_volume_spikes():
    volume_history = baseline_of([[1000] * 24 for _ in range(5)], key=("api", VOLUME))
    quiet_today = [1000] * 20 + [0] * 4
    [quiet] = find_anomalies({}, {"api": hours(quiet_today)}, volume_history, BUCKETS, {})
    assert (quiet.kind, quiet.service, quiet.hours, quiet.severity) == ("service_quiet", "api", 4, "critical")
    assert quiet.bucket == DAY + timedelta(hours=20) and quiet.expected == pytest.approx(4000)
    # A service known from the baselines that wrote nothing at all is quiet too.
    [silent] = find_anomalies({}, {}, volume_history, BUCKETS, {})
    assert silent.kind == "service_quiet" and silent.hours == 24
    busy = [1000] * 24
    busy[12] = 5000
    [spike] = find_anomalies({}, {"api": hours(busy)}, volume_history, BUCKETS, {})
    assert spike.kind == "volume_spike" and spike.severity == "critical"
    assert find_anomalies({}, {"api": hours([1000] * 24)}, volume_history, BUCKETS, {}) == []


def test_new_patterns_are_flagged_by_how_loud_they_are():
    new = {"5": {"services": ["db"], "count": 12, "level": "ERROR", "first_seen": DAY, "example": "x"},
           "6": {"services": ["db"], "count": 12, "level": "FATAL", "first_seen": DAY, "example": "y"},
           "8": {"services": ["db"], "count": 500, "level": "WARN", "first_seen": DAY, "example": "z"}}
    found = {a.pattern_id: a for a in find_anomalies({("db", "5"): hours([12])}, {}, {}, BUCKETS, new)}
    assert {a.kind for a in found.values()} == {"new_pattern"}  # not also a spike over nothing
    assert found["5"].severity == "low" and found["6"].severity == "high" and found["8"].severity == "critical"
