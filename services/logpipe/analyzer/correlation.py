"""What goes together: clusters of near-duplicate patterns (embedding similarity), bursts
that start together, and the root-cause candidates that come first in shared traces and bursts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Sequence

import numpy as np

from logpipe.analyzer.thresholds import SEVERITY_RANK, Thresholds
from logpipe.analyzer.windows import iso


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


# --- related anomalies --------------------------------------------------------------------

# Incidents starting within this of each other are taken to share a cause.
TOGETHER = timedelta(hours=1)
# Two anomalous patterns linked by at least this many shared traces share a cause whenever
# they happened.
SHARED_TRACES = 3


def group_related(anomalies: Sequence[Any], trace_pairs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Groups of anomalies that start together or share traces, each with its candidate root
    cause (the one that comes first in the shared traces, else the earliest, else the most
    severe). Sets `related_group` on every member; anomalies alone in their group keep "".
    """
    items = [a for a in anomalies if a.start is not None]
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        root_i, root_j = find(i), find(j)
        if root_i != root_j:
            parent[max(root_i, root_j)] = min(root_i, root_j)

    leads: dict[tuple[str, str], int] = {}
    for pair in trace_pairs:
        if pair["root_pattern_id"] != pair["pattern_id"]:
            key = (pair["root_pattern_id"], pair["pattern_id"])
            leads[key] = leads.get(key, 0) + int(pair["traces"])
    for i, a in enumerate(items):
        for j in range(i + 1, len(items)):
            b = items[j]
            if abs(a.start - b.start) <= TOGETHER:
                union(i, j)
            elif a.pattern_id and b.pattern_id and (
                    leads.get((a.pattern_id, b.pattern_id), 0) + leads.get((b.pattern_id, a.pattern_id), 0)
                    >= SHARED_TRACES):
                union(i, j)
    members: dict[int, list[int]] = {}
    for i in range(len(items)):
        members.setdefault(find(i), []).append(i)
    groups = [[items[i] for i in group] for group in members.values() if len(group) > 1]
    groups.sort(key=lambda g: (min(a.start for a in g), g[0].service))
    related = []
    for number, group in enumerate(groups, start=1):
        group_id = f"R{number}"
        led = {a.pattern_id: sum(leads.get((a.pattern_id, b.pattern_id), 0) for b in group) for a in group}
        root = min(group, key=lambda a: (-led.get(a.pattern_id, 0), a.start, -SEVERITY_RANK[a.severity],
                                         a.service, a.kind))
        for anomaly in group:
            anomaly.related_group = group_id
        ordered = sorted(group, key=lambda a: (a is not root, a.start, a.service, a.kind))
        related.append({
            "group_id": group_id,
            "root_incident_id": root.incident_id,
            "root": {"kind": root.kind, "service": root.service, "pattern_id": root.pattern_id},
            "incident_ids": [a.incident_id for a in ordered],
            "services": sorted({a.service for a in group}),
            "pattern_ids": sorted({a.pattern_id for a in group if a.pattern_id}),
            "start": iso(min(a.start for a in group)),
            "end": iso(max(a.end or a.start for a in group)),
            "shared_traces": sum(led.values()),
        })
    return related
