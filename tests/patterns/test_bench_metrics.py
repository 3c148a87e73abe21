"""The accuracy metrics of bench/patterns.py on cases small enough to count by hand."""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("bench_patterns", Path(__file__).resolve().parents[2] / "bench" / "patterns.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_perfect_parse_scores_one():
    truth = ["a <*>", "a <*>", "b"]
    assert bench.scores(truth, [1, 1, 2], ["a <*>", "a <*>", "b"]) == {
        "GA": 1.0, "PA": 1.0, "FGA": 1.0, "FTA": 1.0, "groups": 2, "truth_groups": 2}


def test_split_group_and_wrong_template():
    truth = ["a <*>", "a <*>", "a <*>", "b <*>"]
    # Group "a" split in two (its 3 lines are wrong for GA); "b" grouped right, template wrong.
    result = bench.scores(truth, [1, 1, 2, 3], ["a <*>", "a <*>", "a x", "b y"])
    assert result["GA"] == pytest.approx(1 / 4)
    assert result["PA"] == pytest.approx(2 / 4)
    # One correct group of 3 predicted and 2 true: P = 1/3, R = 1/2.
    assert result["FGA"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert result["FTA"] == 0.0


def test_merged_groups_are_wrong_for_both():
    truth = ["x <*>", "y <*>"]
    result = bench.scores(truth, [7, 7], ["<*> <*>", "<*> <*>"])
    assert result["GA"] == 0.0 and result["FGA"] == 0.0


def test_rerandomise_keeps_the_shape():
    import random

    line = "Received block blk_-1608999687919862906 of size 67108864 from /10.250.19.102 id 0x1f3a"
    out = bench.rerandomise(line, random.Random(3))
    assert out != line
    assert [len(w) for w in out.split()] == [len(w) for w in line.split()]
    assert out.startswith("Received block blk_-") and " of size " in out
