"""The dashboard endpoints' pure parts: bucket widths, lag arithmetic, the lag ring, DLQ records."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from logpipe.core.dlq import dead_letter
from logpipe.gateway.dashboard import bucket_count, histogram_step
from logpipe.gateway.pipeline import LagHistory, group_lags, parse_dead_letter
from logpipe.gateway.query import QueryError

HOUR_MS = 3_600_000


@pytest.mark.parametrize(("start_ms", "end_ms", "buckets", "step_s"), [
    (0, HOUR_MS, 60, 60),                      # an hour on the minute: 60 one-minute buckets
    (1, HOUR_MS + 1, 60, 120),                 # off the minute: 61 would be needed, so two minutes
    (0, 1000, 500, 1),                         # never below a second
    (0, 24 * HOUR_MS, 24, 3600),
    (0, 24 * HOUR_MS, 1, 86400),
    (0, 90 * 24 * HOUR_MS, 10, 16 * 86400),    # past a day, doubling days
])
def test_histogram_step_is_the_narrowest_nice_width_that_fits(start_ms, end_ms, buckets, step_s):
    step_ms = histogram_step(start_ms, end_ms, buckets)
    assert step_ms == step_s * 1000
    assert bucket_count(start_ms, end_ms, step_ms) <= buckets


def test_histogram_step_refuses_a_bucket_count_out_of_range():
    for buckets in (0, 501):
        with pytest.raises(QueryError):
            histogram_step(0, HOUR_MS, buckets)


def test_group_lags_counts_uncommitted_partitions_in_full():
    end = {("raw", 0): 10, ("raw", 1): 5, ("other", 0): 3}
    lags = group_lags(end, {"ingest": {("raw", 0): 7}})
    assert lags == [{"group": "ingest", "topic": "raw", "lag": 8, "partitions": {"0": 3, "1": 5}}]


def test_lag_history_is_a_bounded_ring():
    history = LagHistory(interval_s=10, retention_s=60)
    start = datetime(2026, 11, 25, tzinfo=timezone.utc)
    for index in range(20):
        history.add(start + timedelta(seconds=10 * index), [{"group": "g", "topic": "t", "lag": index}])
    points = history.points()
    assert [point["lag"] for point in points] == [14, 15, 16, 17, 18, 19]
    assert points[-1]["time"] == "2026-11-25T00:03:10.000Z"


def test_a_dead_letter_is_shown_as_text_cut_at_2000_characters():
    original = "é" * 3000  # 6000 bytes
    value = dead_letter(original.encode(), "too long", "decode", datetime(2026, 11, 25, tzinfo=timezone.utc),
                        topic="raw-logs", partition=0, offset=1, timestamp_ms=None)
    record = parse_dead_letter(value, 0, 4, 1_795_564_800_000)
    assert record["original"] == "é" * 2000 and record["original_bytes"] == 6000
    assert (record["stage"], record["error"], record["time"]) == ("decode", "too long", "2026-11-25T00:00:00.000Z")
    broken = orjson.dumps({"original_base64": base64.b64encode(b"\xff ok").decode(), "error": "e", "stage": "s"})
    assert parse_dead_letter(broken, 0, 5, None)["original"] == "\ufffd ok"
    foreign = parse_dead_letter(b"\x00 raw", 0, 6, 1_795_564_800_000)
    assert foreign["stage"] == "unknown" and foreign["original"] == "\x00 raw"
    assert foreign["time"] == "2026-11-25T00:00:00.000Z"
