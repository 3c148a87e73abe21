"""Novel errors of a window (the vectorizer's events, read by core/novel_errors.py), grouped by pattern."""

from __future__ import annotations

from typing import Any, Sequence


def summarize_novel_errors(events: Sequence[dict[str, Any]], patterns: dict[str, dict[str, Any]],
                           error: str = "", truncated: bool = False, keep: int = 20) -> dict[str, Any]:
    """The vectorizer's novel-error events of the window, grouped by pattern."""
    groups: dict[str, dict[str, Any]] = {}
    for event in events:
        pattern = str(event.get("pattern_id") or 0)
        group = groups.setdefault(pattern, {"pattern_id": pattern, "count": 0, "services": set(),
                                            "example": str(event.get("message") or ""), "first_seen": None,
                                            "template": patterns.get(pattern, {}).get("template", "")})
        group["count"] += 1
        if event.get("service"):
            group["services"].add(str(event["service"]))
        moment = event.get("timestamp")
        if moment and (group["first_seen"] is None or str(moment) < group["first_seen"]):
            group["first_seen"] = str(moment)
    ranked = sorted(groups.values(), key=lambda g: (-g["count"], g["pattern_id"]))
    for group in ranked:
        group["services"] = sorted(group["services"])
        group["template"] = group["template"] or group["example"]
    fields = ("record_id", "timestamp", "service", "level", "message", "pattern_id", "similarity", "trace_id")
    return {
        "count": len(events),
        "patterns": ranked[:50],
        "events": [{k: e.get(k) for k in fields} for e in events[:keep]],
        "truncated": truncated,
        "error": error,
    }
