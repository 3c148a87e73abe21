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


def _row(ga, pa):
    return {"GA": ga, "PA": pa, "FGA": ga, "FTA": pa}


def test_leave_one_out_chooses_without_the_held_out_source():
    configs = [{"min_variants": 2}, {"min_variants": 3}]
    # Config 1 is best on a and b; config 0 would be best on c, the held-out source it is chosen for.
    results = {"a": [_row(0.5, 0.5), _row(0.9, 0.9)], "b": [_row(0.6, 0.6), _row(0.8, 0.8)],
               "c": [_row(1.0, 1.0), _row(0.1, 0.2)]}
    report = bench.leave_one_out(results, configs)
    assert report["datasets"]["c"]["chosen_on_others"] == {"min_variants": 3}
    assert (report["datasets"]["c"]["GA"], report["datasets"]["c"]["PA"]) == (0.1, 0.2)
    assert report["worst"] == "c"
    # Held out a: b prefers config 1 but c prefers config 0 by more, so config 0 is chosen.
    assert report["datasets"]["a"]["chosen_on_others"] == {"min_variants": 2}
    assert report["datasets"]["b"]["chosen_on_others"] == {"min_variants": 2}
    assert report["mean"]["GA"] == pytest.approx((0.5 + 0.6 + 0.1) / 3, abs=1e-4)


def test_choice_ties_go_to_the_earlier_configuration():
    configs = [{"max_distance": 0.3}, {"max_distance": 0.5}]
    results = {"a": [_row(0.9, 0.9), _row(0.9, 0.9)], "b": [_row(0.5, 0.5), _row(0.5, 0.5)]}
    assert bench.choose(results, ["a", "b"], configs) == 0
