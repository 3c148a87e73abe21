"""Pattern state in ClickHouse: the `patterns` and `pattern_aliases` tables (002_patterns.sql)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from logpipe.stores.clickhouse import ClickHouseStore

# Replicas' clocks differ a little; re-reading a minute of changes is cheap and idempotent.
_CLOCK_MARGIN = timedelta(seconds=60)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _fmt(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


class PatternStore:
    def __init__(self, store: ClickHouseStore) -> None:
        self.store = store

    def latest(self, limit: int) -> tuple[list[tuple[int, str]], list[tuple[int, int]]]:
        """The most recently updated patterns (up to `limit`) and the aliases pointing at them."""
        patterns = self.store.query(
            f"SELECT pattern_id, argMax(template, updated_at) AS t, max(updated_at) AS u "
            f"FROM {self.store.table('patterns')} GROUP BY pattern_id ORDER BY u DESC LIMIT {int(limit)}")
        aliases = self.store.query(
            f"SELECT alias_id, argMax(pattern_id, updated_at) FROM {self.store.table('pattern_aliases')} "
            f"GROUP BY alias_id ORDER BY max(updated_at) DESC LIMIT {int(limit)}")
        return [(int(p), t) for p, t, _ in reversed(patterns)], [(int(a), int(p)) for a, p in aliases]

    def changes_since(self, since: datetime) -> tuple[list[tuple[int, str]], list[tuple[int, int]]]:
        params = {"since": _fmt(since - _CLOCK_MARGIN)}
        patterns = self.store.query(
            f"SELECT pattern_id, argMax(template, updated_at) FROM {self.store.table('patterns')} "
            "WHERE updated_at > {since:DateTime64(6, 'UTC')} GROUP BY pattern_id", params)
        aliases = self.store.query(
            f"SELECT alias_id, argMax(pattern_id, updated_at) FROM {self.store.table('pattern_aliases')} "
            "WHERE updated_at > {since:DateTime64(6, 'UTC')} GROUP BY alias_id", params)
        return [(int(p), t) for p, t in patterns], [(int(a), int(p)) for a, p in aliases]

    def save(self, patterns: list[tuple[int, str]], aliases: dict[int, int]) -> None:
        now = _utc_now()
        if patterns:
            self.store.insert_rows("patterns", [(pid, template, now) for pid, template in patterns],
                                   ("pattern_id", "template", "updated_at"))
        if aliases:
            self.store.insert_rows("pattern_aliases", [(alias, target, now) for alias, target in aliases.items()],
                                   ("alias_id", "pattern_id", "updated_at"))

    @staticmethod
    def now() -> datetime:
        return _utc_now()
