"""Pattern counts in ClickHouse: they add up to the log totals, merges resolve, GET /patterns."""

from datetime import datetime, timedelta, timezone
import uuid

import pyarrow as pa
import pytest

from logpipe.patterns import PatternSettings, build_tagger, pattern_counts
from logpipe.patterns.query import PatternQueryError
from logpipe.core.settings import CommonSettings

# Recent, whole hour: the logs table drops rows past its TTL (90 days).
T0 = (datetime.now(timezone.utc) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def insert_logs(store, tagger, rows):
    """rows: (timestamp, service, level, message); tagged like ingest does, then inserted."""
    ids = tagger.tag(pa.array([message for _, _, _, message in rows])).to_pylist()
    store.insert_rows("logs", [
        (ts.replace(tzinfo=None), service, level, message, uuid.uuid4().hex, pattern_id)
        for (ts, service, level, message), pattern_id in zip(rows, ids)
    ], ("timestamp", "service", "level", "message", "record_id", "pattern_id"))
    return ids


@pytest.fixture
def tagger(clickhouse):
    return build_tagger(clickhouse, CommonSettings(), PatternSettings(sync_seconds=0))


@pytest.fixture
def seeded(clickhouse, tagger):
    rows = []
    for minute in range(60):
        ts = T0 + timedelta(minutes=minute)
        rows.append((ts, "checkout", "ERROR", f"payment {minute} failed for order {minute * 7}"))
        rows.append((ts, "checkout", "INFO", f"order {minute} created in {minute % 9} ms"))
        if minute % 3 == 0:
            rows.append((ts, "auth", "WARN", f"Invalid user u{minute}x from 10.0.0.{minute}"))
    rows.append((T0 + timedelta(minutes=5), "auth", "INFO", ""))  # no pattern: id 0
    # The hour before: fewer payments, no orders (so orders are new, payments grew).
    for minute in range(0, 60, 10):
        rows.append((T0 - timedelta(minutes=60 - minute), "checkout", "ERROR", f"payment {minute} failed for order 1"))
    insert_logs(clickhouse, tagger, rows)
    return rows


def count_logs(store, start, end, where=""):
    return store.query(f"SELECT count() FROM {store.table('logs')} WHERE timestamp >= %(s)s AND timestamp < %(e)s {where}",
                       {"s": start.replace(tzinfo=None), "e": end.replace(tzinfo=None)})[0][0]


def test_counts_add_up_to_the_log_total(clickhouse, seeded):
    end = T0 + timedelta(hours=1)
    result = pattern_counts(clickhouse, T0, end, limit=1000)
    assert result["total"] == count_logs(clickhouse, T0, end) == 60 * 2 + 20 + 1
    assert sum(p["count"] for p in result["patterns"]) == result["total"]
    assert result["other_count"] == 0
    by_template = {p["template"]: p for p in result["patterns"]}
    assert by_template["payment <*> failed for order <*>"]["count"] == 60
    assert by_template["order <*> created in <*> ms"]["count"] == 60
    assert by_template["Invalid user <*> from <*>"]["count"] == 20
    assert by_template[""]["pattern_id"] == 0 and by_template[""]["count"] == 1
    payments = by_template["payment <*> failed for order <*>"]
    assert payments["first_seen"] == iso(T0)
    assert payments["last_seen"] == iso(T0 + timedelta(minutes=59))
    assert payments["example"].startswith("payment ") and payments["previous_count"] == 6
    assert payments["growth"] == pytest.approx((60 - 6) / 6)
    assert by_template["order <*> created in <*> ms"]["new"] is True


def test_filters_limit_and_min_count_keep_the_sum(clickhouse, seeded):
    end = T0 + timedelta(hours=1)
    errors = pattern_counts(clickhouse, T0, end, service="checkout", level="error")
    assert [p["template"] for p in errors["patterns"]] == ["payment <*> failed for order <*>"]
    assert errors["total"] == count_logs(clickhouse, T0, end, "AND service = 'checkout' AND level = 'ERROR'") == 60
    top = pattern_counts(clickhouse, T0, end, limit=1)
    assert len(top["patterns"]) == 1 and top["patterns"][0]["count"] + top["other_count"] == top["total"]
    rare = pattern_counts(clickhouse, T0, end, min_count=30)
    assert {p["count"] for p in rare["patterns"]} == {60}
    split = pattern_counts(clickhouse, T0, end, group_by=["service", "level"], limit=1000)
    assert sum(p["count"] for p in split["patterns"]) == split["total"]
    assert {(p["service"], p["level"]) for p in split["patterns"]} >= {("checkout", "ERROR"), ("auth", "WARN")}
    # A window in the middle counts only its own rows.
    middle = pattern_counts(clickhouse, T0 + timedelta(minutes=10), T0 + timedelta(minutes=20), limit=1000)
    assert sum(p["count"] for p in middle["patterns"]) == middle["total"] == 10 * 2 + 3  # minutes 12, 15, 18 have a WARN


def test_sort_by_growth_puts_new_patterns_first(clickhouse, seeded):
    result = pattern_counts(clickhouse, T0, T0 + timedelta(hours=1), sort="growth", limit=1000)
    assert result["patterns"][0]["new"] is True
    growing = [p for p in result["patterns"] if not p["new"]]
    assert growing[0]["template"] == "payment <*> failed for order <*>"


def test_rows_tagged_before_a_merge_count_with_the_survivor(clickhouse, tagger):
    ts = T0 + timedelta(minutes=1)
    first = insert_logs(clickhouse, tagger, [(ts, "db", "WARN", "disk sda full"), (ts, "db", "WARN", "disk sdb full")])
    assert first[0] != first[1]
    # A third variant merges the two; the stored rows keep their ids and are not rewritten.
    third = insert_logs(clickhouse, tagger, [(ts, "db", "WARN", "disk sdc full")])
    assert third[0] == min(first)
    stored = {row[0] for row in clickhouse.query(f"SELECT pattern_id FROM {clickhouse.table('logs')}")}
    assert stored == set(first)
    result = pattern_counts(clickhouse, T0, T0 + timedelta(hours=1))
    assert [(p["pattern_id"], p["template"], p["count"]) for p in result["patterns"]] == [(min(first), "disk <*> full", 3)]


def test_bad_requests_are_refused(clickhouse):
    with pytest.raises(PatternQueryError):
        pattern_counts(clickhouse, T0, T0)
    with pytest.raises(PatternQueryError):
        pattern_counts(clickhouse, T0, T0 + timedelta(hours=1), sort="size")
