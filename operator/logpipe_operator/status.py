"""Status as pure functions: conditions with reasons, the phase, the printer-column summaries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

CONDITION_TYPES = ("TopicsReady", "StorageReady", "CollectionReady", "ConsumersReady", "AnalysisScheduled")


@dataclass(frozen=True)
class Condition:
    type: str
    ok: bool
    reason: str
    message: str


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def merge_conditions(previous: list[dict] | None, current: list[Condition], generation: int | None,
                     now: str | None = None) -> list[dict]:
    """The new conditions, Ready first; lastTransitionTime moves only when a status changes."""
    now = now or now_iso()
    before = {item.get("type"): item for item in previous or []}
    failing = [condition for condition in current if not condition.ok]
    ready = Condition("Ready", not failing,
                      "Reconciled" if not failing else failing[0].reason,
                      "every part of the pipeline is in place" if not failing
                      else "; ".join(f"{condition.type}: {condition.message}" for condition in failing))
    out = []
    for condition in [ready, *current]:
        status = "True" if condition.ok else "False"
        old = before.get(condition.type) or {}
        out.append({"type": condition.type, "status": status, "reason": condition.reason,
                    "message": condition.message[:1024], "observedGeneration": generation,
                    "lastTransitionTime": old.get("lastTransitionTime") if old.get("status") == status else now})
    return out


def phase(conditions: list[dict]) -> str:
    by_type = {item["type"]: item["status"] for item in conditions}
    if by_type.get("Ready") == "True":
        return "Running"
    if any(by_type.get(kind) == "True" for kind in CONDITION_TYPES):
        return "Degraded"
    return "Provisioning"


def changed(previous: list[dict] | None, current: list[dict]) -> list[dict]:
    """Conditions whose status or reason differs from before (each becomes an event)."""
    before = {item.get("type"): (item.get("status"), item.get("reason")) for item in previous or []}
    return [item for item in current if before.get(item["type"]) != (item["status"], item["reason"])]


def consumer_summary(replicas: int, lag: int | None) -> str:
    """The Ingest / Vectorizer printer column, e.g. '2 (lag 1200)'."""
    return f"{replicas} (lag {'?' if lag is None else lag})"
