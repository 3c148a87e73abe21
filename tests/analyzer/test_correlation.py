"""Clusters, bursts and root-cause candidates (logpipe.analyzer.correlation)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from logpipe.analyzer.correlation import build_clusters, cluster_by_similarity, find_bursts, root_cause_candidates

DAY = datetime(2026, 5, 4, tzinfo=timezone.utc)


def test_clusters_come_from_vector_similarity():
    vectors = np.array([[1, 0, 0], [0.95, 0.05, 0], [0, 1, 0], [0, 0.97, 0.1], [0, 0, 1]], dtype=np.float32)
    groups = cluster_by_similarity(["a", "b", "c", "d", "e"], vectors, 0.9)
    assert sorted(map(sorted, groups)) == [["a", "b"], ["c", "d"], ["e"]]
    patterns = {p: {"pattern_id": p, "count": n, "services": s, "template": p}
                for p, n, s in [("a", 5, ["x"]), ("b", 9, ["y"]), ("c", 1, ["x"]), ("d", 2, ["x"]), ("e", 1, ["z"])]}
    clusters = build_clusters(groups, patterns)
    assert clusters[0]["cross_service"] and clusters[0]["pattern_ids"] == ["b", "a"]
    assert clusters[0]["services"] == ["x", "y"] and clusters[0]["cluster_id"] == "C1"
    assert not clusters[1]["cross_service"]  # one service: near-duplicates, not a cross-service cluster


def test_joint_bursts_name_the_pattern_that_started_first():
    minutes = [DAY + timedelta(minutes=m) for m in range(120)]
    counts = np.ones((3, 120))
    counts[0, 50:55] = 60
    counts[1, 52:57] = 40  # follows two minutes later
    counts[2, 90:92] = 50  # bursts alone
    pairs = find_bursts(["a", "b", "c"], minutes, counts)
    assert [(p["root_pattern_id"], p["pattern_id"], p["lead_minutes"]) for p in pairs] == [("a", "b", 2)]
    patterns = {p: {"pattern_id": p, "count": 1, "services": ["s"], "template": p} for p in "abc"}
    traces = [{"root_pattern_id": "c", "pattern_id": "a", "traces": 3}]
    roots = root_cause_candidates(traces, pairs, patterns)
    assert [r["pattern_id"] for r in roots] == ["a", "c"]
