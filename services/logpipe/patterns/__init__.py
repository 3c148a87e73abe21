"""Log patterns: masking, a streaming template miner, persistent ids, counts over time.

Ingest calls `build_tagger(store, settings)` once and `tagger.tag(messages)` per batch; the
query layer (`pattern_counts`) answers pattern counts over any time range, served over HTTP
by the gateway's GET /api/patterns (the one route for them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from logpipe.patterns.masking import mask, mask_array, mask_many
from logpipe.patterns.miner import PatternMiner, pattern_id_for
from logpipe.patterns.offline import mine
from logpipe.patterns.settings import PatternSettings
from logpipe.patterns.tagger import Tagger

if TYPE_CHECKING:
    from logpipe.core.settings import CommonSettings
    from logpipe.stores.clickhouse import ClickHouseStore

__all__ = ["PatternMiner", "PatternSettings", "Tagger", "build_tagger", "mask",
           "mask_array", "mask_many", "mine", "pattern_counts", "pattern_id_for"]


def build_miner(settings: PatternSettings | None = None) -> PatternMiner:
    settings = settings or PatternSettings()
    return PatternMiner(max_distance=settings.max_distance, min_variants=settings.min_variants,
                        max_patterns=settings.max_patterns)


def build_tagger(store: "ClickHouseStore", settings: "CommonSettings | None" = None,
                 pattern_settings: PatternSettings | None = None) -> Tagger:
    """A tagger whose state lives in `store` (the `patterns` tables), shared by every replica.

    `settings` is the caller's CommonSettings (kept for symmetry with other builders; the
    pattern knobs are read from `PATTERNS_*`).
    """
    from logpipe.patterns.store import PatternStore

    pattern_settings = pattern_settings or PatternSettings()
    return Tagger(build_miner(pattern_settings), PatternStore(store), cache_size=pattern_settings.cache_size,
                  sync_seconds=pattern_settings.sync_seconds)


def pattern_counts(*args, **kwargs):
    from logpipe.patterns.query import pattern_counts as _pattern_counts

    return _pattern_counts(*args, **kwargs)

