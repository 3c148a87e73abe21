"""The embedding cache against a real Redis, and the in-process LRU."""

from __future__ import annotations


import numpy as np
import pytest
import redis

from logpipe.stores.cache import FallbackCache, MemoryCache, RedisCache, cache_key, create_cache
from support import wait_for


def test_key_depends_on_model_dimension_and_text():
    base = cache_key("m", 384, "db timeout")
    assert base == cache_key("m", 384, "db timeout")
    assert base != cache_key("other", 384, "db timeout")
    assert base != cache_key("m", 128, "db timeout")
    assert base != cache_key("m", 384, "db timeout!")
    assert len(base.rsplit(":", 1)[1]) == 64


async def test_redis_round_trip_ttl_and_clear(redis_url):
    cache = RedisCache(redis_url, ttl_seconds=3600)
    vector = np.arange(4, dtype=np.float32)
    key = cache_key("m", 4, "hello")
    assert await cache.get_many([key]) == [None]
    await cache.set_many({key: vector.tobytes()})
    [raw] = await cache.get_many([key])
    assert np.array_equal(np.frombuffer(raw, dtype=np.float32), vector)
    assert 3590 <= await cache.ttl(key) <= 3600

    # clear removes our keys only: the Redis may serve other applications too.
    other = redis.Redis.from_url(redis_url)
    other.set("someone-else", b"keep")
    assert await cache.clear() >= 1
    assert await cache.get_many([key]) == [None]
    assert other.get("someone-else") == b"keep"
    other.delete("someone-else")
    other.close()
    await cache.close()


async def test_redis_entries_expire(redis_url):
    cache = RedisCache(redis_url, ttl_seconds=3)
    key = cache_key("m", 4, "short-lived")
    await cache.set_many({key: b"\x00" * 16})
    assert (await cache.get_many([key]))[0] is not None
    with redis.Redis.from_url(redis_url) as raw:
        assert 0 < raw.ttl(key) <= 3

    async def expired() -> bool:
        return await cache.get_many([key]) == [None]

    # Waiting out the TTL is the point here; the deadline leaves Redis a second of slack.
    await wait_for(expired, timeout=4, interval=0.1, message="the entry outlived its 3 s TTL")
    await cache.close()


async def test_redis_with_password(tmp_path):
    """REDIS_URL may carry a password; a wrong one is refused, the right one works."""
    import shutil
    import subprocess

    from logpipe.core.broker import free_port

    port = free_port()
    process = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--requirepass", "s3cret-for-test", "--dir", str(tmp_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def answers() -> bool:
            try:
                return redis.Redis(port=port, password="s3cret-for-test").ping()
            except redis.ConnectionError:
                return False

        await wait_for(answers, timeout=5, interval=0.05, message=f"redis-server did not start on port {port}")
        good = RedisCache(f"redis://:s3cret-for-test@127.0.0.1:{port}/0")
        assert await good.ping()
        await good.set_many({"logpipe:emb:x": b"1234"})
        assert await good.get_many(["logpipe:emb:x"]) == [b"1234"]
        await good.close()
        bad = RedisCache(f"redis://:wrong@127.0.0.1:{port}/0")
        with pytest.raises(redis.AuthenticationError):
            await bad.ping()
        await bad.close()
    finally:
        process.terminate()
        process.wait(timeout=5)


async def test_unreachable_redis_degrades_to_misses():
    from logpipe.core.broker import free_port

    cache = FallbackCache(RedisCache(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.3))
    assert await cache.get_many(["a", "b"]) == [None, None]
    await cache.set_many({"a": b"x"})  # dropped, not raised
    assert cache.errors == 2 and cache.last_error
    with pytest.raises(Exception):
        await cache.ping()
    await cache.close()


async def test_memory_lru_evicts_least_recent_and_expires():
    now = [0.0]
    cache = MemoryCache(max_entries=2, ttl_seconds=10, clock=lambda: now[0])
    await cache.set_many({"a": b"1", "b": b"2"})
    assert await cache.get_many(["a"]) == [b"1"]  # a is now most recent
    await cache.set_many({"c": b"3"})
    assert await cache.get_many(["a", "b", "c"]) == [b"1", None, b"3"]
    now[0] = 11.0
    assert await cache.get_many(["a", "c"]) == [None, None]
    assert await cache.size() == 0


def test_create_cache_picks_backend(redis_url):
    assert isinstance(create_cache(""), MemoryCache)
    assert create_cache("") is create_cache("")  # one per process
    assert create_cache(redis_url).kind == "redis"
