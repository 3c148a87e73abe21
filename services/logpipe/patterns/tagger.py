"""Tagging a batch of messages with pattern ids: what ingest calls once per batch.

The cost per record is the masking (regex passes over the distinct messages of the batch,
patterns/masking.py) and two dictionary encodes; only the distinct masked messages the
cache has not seen reach the Python miner.
"""

from __future__ import annotations

import logging
import threading
import time

import pyarrow as pa
import pyarrow.compute as pc

from logpipe.patterns.masking import mask_array
from logpipe.patterns.miner import PatternMiner
from logpipe.patterns.store import PatternStore

log = logging.getLogger("logpipe.patterns")

_MAX_PENDING = 100_000  # pattern writes kept while the store refuses them
_IDLE_SYNC_SECONDS = 60.0


class Tagger:
    """Masks, mines and persists; thread-safe (one batch at a time)."""

    def __init__(self, miner: PatternMiner | None = None, store: PatternStore | None = None,
                 cache_size: int = 500_000, sync_seconds: float = 5.0) -> None:
        self.miner = miner or PatternMiner()
        self.store = store
        self.cache_size = cache_size
        self.sync_seconds = sync_seconds
        self._cache: dict[int, int] = {}  # hash of a masked text -> pattern id
        self._lock = threading.Lock()
        self._synced_at = 0.0
        self._store_clock = None
        self._pending_patterns: dict[int, str] = {}
        self._pending_aliases: dict[int, int] = {}
        if store is not None:
            self._load()

    # -- state --------------------------------------------------------------------------
    def _load(self) -> None:
        self._store_clock = self.store.now()
        patterns, aliases = self.store.latest(self.miner.max_patterns)
        self._adopt(patterns, aliases)
        self._synced_at = time.monotonic()

    def _adopt(self, patterns: list[tuple[int, str]], aliases: list[tuple[int, int]]) -> None:
        for alias, target in aliases:
            self.miner.load_alias(alias, target)
        for pattern_id, template in patterns:
            self.miner.load(pattern_id, template)

    def sync(self) -> None:
        """Learn what other replicas stored since the last sync."""
        if self.store is None:
            return
        with self._lock:
            self._sync()

    def _sync(self) -> None:
        clock = self.store.now()
        patterns, aliases = self.store.changes_since(self._store_clock)
        self._store_clock = clock
        self._adopt(patterns, aliases)
        self._synced_at = time.monotonic()

    def flush(self) -> None:
        """Persist new and changed patterns and merges (tag() does this after every batch).

        What the store refuses stays pending and goes with the next flush: ids already handed
        out are never lost, only late.
        """
        changed, merged = self.miner.drain_changes()
        if self.store is None:
            return
        for pattern in changed:
            self._pending_patterns[pattern.id] = pattern.template
        self._pending_aliases.update(merged)
        if not self._pending_patterns and not self._pending_aliases:
            return
        try:
            self.store.save(list(self._pending_patterns.items()), dict(self._pending_aliases))
        except Exception:
            # A long outage must not grow memory without bound: past the cap the oldest
            # pending templates go (their ids stay valid; the template is re-sent when the
            # pattern changes again).
            while len(self._pending_patterns) > _MAX_PENDING:
                self._pending_patterns.pop(next(iter(self._pending_patterns)))
            while len(self._pending_aliases) > _MAX_PENDING:
                self._pending_aliases.pop(next(iter(self._pending_aliases)))
            raise
        self._pending_patterns.clear()
        self._pending_aliases.clear()

    def close(self) -> None:
        with self._lock:
            self.flush()

    # -- tagging ------------------------------------------------------------------------
    def tag(self, messages: pa.Array | pa.ChunkedArray) -> pa.UInt64Array:
        """A pattern id per message (0 for a null or empty message), as a uint64 Arrow array."""
        if isinstance(messages, pa.ChunkedArray):
            messages = messages.combine_chunks() if messages.num_chunks else pa.array([], pa.string())
        if len(messages) == 0:
            return pa.array([], type=pa.uint64())
        # Mask each distinct message once: real logs repeat whole messages often (in the
        # Loghub samples only 15-85 % of the lines are distinct), and masking is the cost.
        raw = pc.dictionary_encode(messages)
        encoded = pc.dictionary_encode(mask_array(raw.dictionary))
        indices = encoded.indices.take(raw.indices)  # each message's masked text
        distinct = encoded.dictionary.to_pylist()
        with self._lock:
            ids = self._ids_for(distinct, indices)
        return pc.fill_null(pa.array(ids, type=pa.uint64()).take(indices), 0)

    def _ids_for(self, distinct: list[str], indices: pa.Array) -> list[int]:
        cache = self._cache
        # Keyed by the text's hash, not the text: a cache entry costs the same for a huge message.
        keys = [hash(text) for text in distinct]
        ids = [cache.get(key, -1) for key in keys]
        misses = [i for i, pattern_id in enumerate(ids) if pattern_id < 0]
        since_sync = time.monotonic() - self._synced_at
        # Before mining something new, learn what other replicas know; otherwise now and then,
        # so merges and wider templates from elsewhere reach this replica too.
        due = since_sync >= self.sync_seconds and (misses or since_sync >= _IDLE_SYNC_SECONDS)
        if self.store is not None and due:
            try:
                self._sync()
            except Exception:  # noqa: BLE001 - tagging goes on with what this replica knows
                log.exception("could not read pattern state from the store")
        if misses:
            counts = None
            if len(misses) > 1:
                counts = dict(zip(*(c.to_pylist() for c in pc.value_counts(indices).flatten())))
            for i in misses:
                text = distinct[i]
                if not text:
                    ids[i] = 0
                    continue
                ids[i] = self.miner.add(text, counts.get(i, 1) if counts else 1).id
                if len(cache) >= self.cache_size:
                    del cache[next(iter(cache))]
                cache[keys[i]] = ids[i]
        if self.miner.aliases:
            resolve = self.miner.resolve
            ids = [resolve(pattern_id) if pattern_id else 0 for pattern_id in ids]
        for pattern_id in set(ids):
            self.miner.touch(pattern_id)
        if misses or self._pending_patterns or self._pending_aliases:
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the ids stay valid; the next batch retries the write
                log.exception("could not store pattern changes")
        return ids

    # -- reading ------------------------------------------------------------------------
    def template(self, pattern_id: int) -> str | None:
        pattern = self.miner.get(pattern_id)
        return pattern.template if pattern is not None else None

    def resolve(self, pattern_id: int) -> int:
        return self.miner.resolve(pattern_id)
