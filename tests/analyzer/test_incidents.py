"""Incidents with small data: drops, silences, a service stopped for good, quiet hours that are
normal, merged hours with start/end/peak/excess, trends that agree with counts, related
anomalies, and the words the report uses (logpipe.analyzer.history, anomalies, trends,
correlation, report)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from logpipe.analyzer.anomalies import bucket_fractions, find_anomalies
from logpipe.analyzer.baselines import VOLUME
from logpipe.analyzer.correlation import group_related
from logpipe.analyzer.history import Expectations, History
from logpipe.analyzer.report import assemble_report
from logpipe.analyzer.text import plural
from logpipe.analyzer.thresholds import Thresholds
from logpipe.analyzer.trends import gone_patterns, trend_of
from logpipe.analyzer.windows import format_span, window_buckets

DAY = datetime(2026, 5, 6, tzinfo=timezone.utc)  # a Wednesday
BUCKETS = window_buckets(DAY, DAY + timedelta(days=1))
RNG_SEED = 5


def series(rate, days: int, start: datetime, seed: int = RNG_SEED) -> dict[datetime, int]:
    """Poisson counts of `rate(moment)` for every hour of `days` days from `start`."""
    rng = np.random.default_rng(seed)
    counts = {}
    for hour in range(days * 24):
        moment = start + timedelta(hours=hour)
        value = int(rng.poisson(rate(moment)))
        if value:
            counts[moment] = value
    return counts


def expectations(history: dict[tuple[str, str], dict[datetime, int]], days: int = 7,
                 window_start: datetime = DAY, buckets=BUCKETS) -> Expectations:
    covered_from = window_start - timedelta(days=days)
    return Expectations(History(history, covered_from, window_start, buckets, 14, 3), {}, window_start, 3)


def today(rate, seed: int = 99, start: datetime = DAY) -> dict[datetime, int]:
    return series(rate, 1, start, seed)


def steady(moment: datetime) -> float:
    return 300.0


def run(history, volume_today, hourly_today=None, new=None, start=DAY, buckets=BUCKETS, days=7):
    return find_anomalies(hourly_today or {}, volume_today,
                          expectations(history, days=days, window_start=start, buckets=buckets),
                          buckets, new or {}, Thresholds(), window=(start, start + timedelta(days=1)))


def test_a_silence_in_the_middle_of_the_window_is_one_incident_from_start_to_end():
    history = {("api", VOLUME): series(steady, 7, DAY - timedelta(days=7))}
    counts = today(steady)
    for hour in (5, 6, 7):
        counts.pop(DAY + timedelta(hours=hour), None)
    [silence] = run(history, {"api": counts})
    assert (silence.kind, silence.service, silence.ongoing) == ("service_quiet", "api", False)
    assert silence.start == DAY + timedelta(hours=5) and silence.end == DAY + timedelta(hours=8)
    assert silence.observed_total == 0 and silence.expected_total == pytest.approx(900, rel=0.1)
    assert silence.excess == pytest.approx(-silence.expected_total)
    assert silence.severity == "critical"
    assert "api sent no logs on 2026-05-06 from 05:00 to 08:00 UTC" in silence.description
    body = silence.to_dict()
    assert body["start"] == "2026-05-06T05:00:00.000Z" and body["end"] == "2026-05-06T08:00:00.000Z"
    assert body["hours"] == 3 and body["incident_id"] and body["kind"] == "service_quiet"


def test_a_drop_to_a_fraction_for_hours_is_a_volume_drop_with_its_expected_volume():
    history = {("api", VOLUME): series(steady, 7, DAY - timedelta(days=7))}
    counts = today(lambda m: 30.0 if 10 <= m.hour < 14 else 300.0)
    [drop] = run(history, {"api": counts})
    assert drop.kind == "volume_drop" and drop.hours == 4
    assert drop.start == DAY + timedelta(hours=10) and drop.end == DAY + timedelta(hours=14)
    assert drop.observed_total == pytest.approx(120, rel=0.3)
    assert drop.expected_total == pytest.approx(1200, rel=0.1)
    assert "api wrote only" in drop.description and "from 10:00 to 14:00 UTC" in drop.description
    # One weak hour is noise, not a drop: a sustained stretch is needed.
    one_hour = today(lambda m: 150.0 if m.hour == 10 else 300.0)
    assert run(history, {"api": one_hour}) == []


def test_a_service_that_stopped_for_good_is_ongoing_to_the_end_of_the_window():
    history = {("api", VOLUME): series(steady, 7, DAY - timedelta(days=7))}
    counts = {moment: n for moment, n in today(steady).items() if moment.hour < 19}
    [stopped] = run(history, {"api": counts})
    assert stopped.kind == "service_quiet" and stopped.ongoing
    assert stopped.start == DAY + timedelta(hours=19) and stopped.end == DAY + timedelta(days=1)
    assert "api has sent no logs since 2026-05-06 19:00 UTC (5 hours, to the end of the window)" in stopped.description
    # Not a single log in the window, though the history knows the service.
    [gone] = run(history, {})
    assert gone.kind == "service_quiet" and gone.ongoing and gone.hours == 24


def test_quiet_nights_and_weekends_that_are_normal_for_the_service_are_not_flagged():
    def office(moment: datetime) -> float:
        return 400.0 if 8 <= moment.hour < 18 else 0.0

    history = {("batch", VOLUME): series(office, 7, DAY - timedelta(days=7))}
    assert run(history, {"batch": today(office)}) == []

    # A shop quiet at weekends, judged on a Saturday with two weeks of history: Saturdays are
    # compared with weekends, so a quiet Saturday is normal...
    def shop(moment: datetime) -> float:
        return 40.0 if moment.weekday() >= 5 else 400.0

    saturday = datetime(2026, 5, 9, tzinfo=timezone.utc)
    buckets = window_buckets(saturday, saturday + timedelta(days=1))
    history = {("shop", VOLUME): series(shop, 14, saturday - timedelta(days=14))}
    assert run(history, {"shop": today(shop, start=saturday)}, start=saturday, buckets=buckets, days=14) == []
    # ...while the same quiet on a Wednesday is a drop.
    [drop] = run(history, {"shop": today(lambda m: 40.0)}, start=DAY)
    assert drop.kind == "volume_drop" and drop.hours == 24


def test_consecutive_anomalous_hours_become_one_incident_with_start_end_peak_and_excess():
    history = {("api", "7"): series(lambda m: 20.0, 7, DAY - timedelta(days=7))}
    counts = today(lambda m: 20.0)
    counts.update({DAY + timedelta(hours=14): 200, DAY + timedelta(hours=15): 150, DAY + timedelta(hours=16): 60})
    [spike] = find_anomalies({("api", "7"): counts}, {}, expectations(history), BUCKETS, {},
                             templates={"7": "Timeout calling db after <*> ms"})
    assert spike.kind == "pattern_spike"
    assert (spike.start, spike.end, spike.bucket) == (DAY + timedelta(hours=14), DAY + timedelta(hours=17),
                                                      DAY + timedelta(hours=14))
    assert spike.hours == 3 and spike.observed_total == 410
    assert spike.expected_total == pytest.approx(60, rel=0.15)
    assert spike.excess == pytest.approx(410 - spike.expected_total)
    assert spike.description.startswith("api: 'Timeout calling db after <*> ms' 410 times on 2026-05-06 "
                                        "from 14:00 to 17:00 UTC")
    body = spike.to_dict()
    assert body["peak"] == body["bucket"] == "2026-05-06T14:00:00.000Z" and body["observed"] == 200


def test_a_slow_burn_adds_up_to_an_incident_though_no_single_hour_alarms():
    history = {("api", "7"): series(lambda m: 8.0, 7, DAY - timedelta(days=7))}
    counts = today(lambda m: 8.0)
    for offset, value in enumerate((20, 22, 24, 26, 28)):
        counts[DAY + timedelta(hours=10 + offset)] = value
    counts[DAY + timedelta(hours=9)] = counts[DAY + timedelta(hours=15)] = 8
    [burn] = find_anomalies({("api", "7"): counts}, {}, expectations(history), BUCKETS, {})
    assert burn.kind == "pattern_spike" and burn.start == DAY + timedelta(hours=10) and burn.hours == 5


def test_a_volume_spike_made_of_a_pattern_spike_is_reported_once_as_the_pattern():
    history = {("api", VOLUME): series(lambda m: 300.0, 7, DAY - timedelta(days=7)),
               ("api", "7"): series(lambda m: 20.0, 7, DAY - timedelta(days=7), seed=6)}
    errors = today(lambda m: 20.0)
    errors[DAY + timedelta(hours=9)] = 800
    volume = today(steady)
    volume[DAY + timedelta(hours=9)] += 780
    found = find_anomalies({("api", "7"): errors}, {"api": volume}, expectations(history), BUCKETS, {})
    assert [a.kind for a in found] == ["pattern_spike"]


def test_trend_words_agree_with_the_counts():
    thresholds = Thresholds()
    assert trend_of(420, 40.0, False, thresholds) == "rising"  # a tenfold surge is never "stable"
    assert trend_of(12, 400.0, False, thresholds) == "falling"
    assert trend_of(0, 400.0, False, thresholds) == "gone"
    assert trend_of(410, 400.0, False, thresholds) == "stable"
    assert trend_of(5, None, True, thresholds) == "new"
    history = {("api", "7"): series(lambda m: 20.0, 7, DAY - timedelta(days=7)),
               ("api", "8"): series(lambda m: 0.05, 7, DAY - timedelta(days=7))}
    gone = gone_patterns(expectations(history), [], BUCKETS, bucket_fractions(BUCKETS, DAY, DAY + timedelta(days=1)),
                         thresholds)
    assert set(gone) == {"7"} and gone["7"]["expected"] == pytest.approx(480, rel=0.1)


def test_anomalies_that_start_together_or_share_traces_are_one_candidate_root_cause():
    history = {("db", "1"): series(lambda m: 5.0, 7, DAY - timedelta(days=7)),
               ("checkout", "2"): series(lambda m: 5.0, 7, DAY - timedelta(days=7), seed=8),
               ("search", "3"): series(lambda m: 5.0, 7, DAY - timedelta(days=7), seed=9)}
    hourly = {("db", "1"): today(lambda m: 5.0), ("checkout", "2"): today(lambda m: 5.0, seed=3),
              ("search", "3"): today(lambda m: 5.0, seed=4)}
    hourly[("db", "1")][DAY + timedelta(hours=3)] = 300  # the database times out...
    hourly[("checkout", "2")][DAY + timedelta(hours=3)] = 200  # ...and checkout retries
    hourly[("search", "3")][DAY + timedelta(hours=20)] = 150  # unrelated, much later
    found = find_anomalies(hourly, {}, expectations(history), BUCKETS, {})
    assert len(found) == 3
    related = group_related(found, [{"root_pattern_id": "1", "pattern_id": "2", "traces": 180}])
    [group] = related
    by_pattern = {a.pattern_id: a for a in found}
    assert group["root"] == {"kind": "pattern_spike", "service": "db", "pattern_id": "1"}
    assert group["services"] == ["checkout", "db"] and group["shared_traces"] == 180
    assert by_pattern["1"].related_group == by_pattern["2"].related_group == "R1"
    assert by_pattern["3"].related_group == ""
    report = assemble_report(
        report_id="r", pipeline="default", window_start=DAY, window_end=DAY + timedelta(days=1), services=[],
        totals={"logs": 1000, "errors": 900, "fatal": 0, "error": 900, "warn": 0, "services": 3,
                "error_services": 3, "patterns": 3},
        patterns={pid: {"pattern_id": pid, "count": 300, "services": [svc], "level": "ERROR", "example": f"e{pid}",
                        "template": f"t{pid}"} for (svc, pid) in hourly},
        clusters=[], anomalies=found, trace_pairs=[], burst_pairs=[], baselines=expectations(history),
        buckets=BUCKETS, service_errors={}, related=related)
    summary = report["summary"]["text"]
    assert "3 incidents" in summary
    assert "Probably one cause: 2 incidents in checkout, db started together from 2026-05-06 03:00 UTC, " \
           "first pattern spike in db (pattern 1)." in summary
    assert report["recommendations"][0]["action"].startswith("Start with db: 2 incidents")
    assert report["recommendations"][0]["pattern_ids"] == ["1", "2"]


def test_plurals_and_times_read_as_a_person_writes_them():
    assert plural(1, "hour") == "1 hour" and plural(3, "hour") == "3 hours" and plural(0, "log") == "0 logs"
    assert plural(1204, "log") == "1,204 logs"
    assert format_span(DAY + timedelta(hours=5), DAY + timedelta(hours=8)) == "on 2026-05-06 from 05:00 to 08:00 UTC"
    assert format_span(DAY + timedelta(hours=22), DAY + timedelta(days=1)) == "on 2026-05-06 from 22:00 to 24:00 UTC"
    assert format_span(DAY + timedelta(hours=22), DAY + timedelta(days=1, hours=2)) == \
        "from 2026-05-06 22:00 to 2026-05-07 02:00 UTC"
