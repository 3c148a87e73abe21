"""The embedding cache: Redis when REDIS_URL is set, else an in-process LRU.

Keys are SHA-256 of (model, dimension, normalised text), so two models or two Matryoshka
dimensions never share an entry. Values are the raw float32 bytes of the vector.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from typing import Protocol, Sequence

DEFAULT_TTL_SECONDS = 7 * 24 * 3600
KEY_PREFIX = "logpipe:emb:"


def cache_key(model: str, dimension: int, normalized_text: str) -> str:
    digest = hashlib.sha256(f"{model}\x00{dimension}\x00{normalized_text}".encode()).hexdigest()
    return KEY_PREFIX + digest


class EmbeddingCache(Protocol):
    kind: str

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    async def set_many(self, items: dict[str, bytes]) -> None: ...

    async def clear(self) -> int: ...

    async def ping(self) -> bool: ...

    async def size(self) -> int: ...

    async def close(self) -> None: ...


class MemoryCache:
    """A bounded LRU with a TTL; shared by every embedder in one process."""

    kind = "memory"

    def __init__(self, max_entries: int = 100_000, ttl_seconds: float = DEFAULT_TTL_SECONDS,
                 clock=time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return self.get_many_now(keys)

    def get_many_now(self, keys: Sequence[str]) -> list[bytes | None]:
        now = self._clock()
        found: list[bytes | None] = []
        for key in keys:
            entry = self._entries.get(key)
            if entry is None:
                found.append(None)
            elif entry[0] <= now:
                del self._entries[key]
                found.append(None)
            else:
                self._entries.move_to_end(key)
                found.append(entry[1])
        return found

    async def set_many(self, items: dict[str, bytes]) -> None:
        expires = self._clock() + self.ttl_seconds
        for key, value in items.items():
            self._entries[key] = (expires, value)
            self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def clear(self) -> int:
        count = len(self._entries)
        self._entries.clear()
        return count

    async def ping(self) -> bool:
        return True

    async def size(self) -> int:
        return len(self._entries)

    async def close(self) -> None:
        return None


class RedisCache:
    """Redis (with password/TLS as the URL says). Entries expire after `ttl_seconds`."""

    kind = "redis"

    def __init__(self, url: str, ttl_seconds: float = DEFAULT_TTL_SECONDS, timeout_s: float = 2.0) -> None:
        import redis.asyncio as redis

        self.url = url
        self.ttl_seconds = int(ttl_seconds)
        if self.ttl_seconds < 1:
            raise ValueError("the Redis cache TTL must be at least one second")
        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        return list(await self.client.mget(list(keys)))

    async def set_many(self, items: dict[str, bytes]) -> None:
        if not items:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for key, value in items.items():
                pipe.set(key, value, ex=self.ttl_seconds)
            await pipe.execute()

    async def clear(self) -> int:
        # Only our keys: the Redis may be shared with other applications.
        removed = 0
        batch: list[bytes] = []
        async for key in self.client.scan_iter(match=KEY_PREFIX + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                removed += await self.client.unlink(*batch)
                batch = []
        if batch:
            removed += await self.client.unlink(*batch)
        return removed

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def size(self) -> int:
        count = 0
        async for _ in self.client.scan_iter(match=KEY_PREFIX + "*", count=1000):
            count += 1
        return count

    async def ttl(self, key: str) -> int:
        return int(await self.client.ttl(key))

    async def close(self) -> None:
        await self.client.aclose()


class FallbackCache:
    """Redis, or nothing lost while it is down: misses are recomputed, writes are dropped.

    An unreachable Redis must not stop embeddings; it only costs speed, and /health shows it.
    With a circuit breaker (`breaker`, set by the service: core/circuit.py), Redis is not asked
    at all while the circuit is open, until its back-off has passed (then one call is the
    trial): a down Redis costs no connect timeout per request.
    """

    def __init__(self, primary: RedisCache, timeout_s: float = 1.0, breaker=None) -> None:
        self.primary = primary
        self.kind = primary.kind
        self.timeout_s = timeout_s
        self.breaker = breaker
        self.errors = 0
        self.skipped = 0
        self.last_error: str | None = None
        self._trial_at = 0.0

    async def _guard(self, call, default):
        breaker = self.breaker
        if breaker is not None and breaker.is_open and time.monotonic() < self._trial_at:
            self.skipped += 1
            return default
        try:
            result = await asyncio.wait_for(call(), self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - any cache failure degrades to a miss
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            if breaker is not None:
                breaker.record_failure(self.last_error)
                self._trial_at = time.monotonic() + breaker.delay()
            return default
        if breaker is not None:
            breaker.record_success()
        return result

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self._guard(lambda: self.primary.get_many(keys), [None] * len(keys))

    async def set_many(self, items: dict[str, bytes]) -> None:
        await self._guard(lambda: self.primary.set_many(items), None)

    async def clear(self) -> int:
        # Clearing must say when it did not happen.
        return await self.primary.clear()

    async def ping(self) -> bool:
        return await self.primary.ping()

    async def size(self) -> int:
        return await self._guard(self.primary.size, -1)

    async def close(self) -> None:
        await self.primary.close()


_process_memory_caches: dict[tuple[int, float], MemoryCache] = {}


def create_cache(redis_url: str = "", ttl_seconds: float = DEFAULT_TTL_SECONDS,
                 max_entries: int = 100_000) -> EmbeddingCache:
    """Redis when a URL is given; else the process-wide in-memory LRU (one per size/TTL)."""
    if redis_url:
        return FallbackCache(RedisCache(redis_url, ttl_seconds))
    key = (max_entries, float(ttl_seconds))
    cache = _process_memory_caches.get(key)
    if cache is None:
        cache = _process_memory_caches[key] = MemoryCache(max_entries, ttl_seconds)
    return cache
