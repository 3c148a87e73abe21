"""Consumer-group lag (what the operator scales by), as plain numbers."""

from logpipe.core.lag import group_lag


def test_lag_is_end_minus_committed_summed_over_partitions():
    end = {("raw-logs", 0): 30, ("raw-logs", 1): 5}
    assert group_lag(end, {("raw-logs", 0): 10, ("raw-logs", 1): 5}) == 20


def test_a_partition_never_committed_counts_in_full():
    end = {("raw-logs", 0): 30, ("raw-logs", 1): 5}
    assert group_lag(end, {("raw-logs", 0): 30}) == 5
    # The broker answers -1 for "no committed offset".
    assert group_lag(end, {("raw-logs", 0): -1, ("raw-logs", 1): -1}) == 35


def test_lag_is_never_negative():
    assert group_lag({("raw-logs", 0): 3}, {("raw-logs", 0): 7}) == 0
