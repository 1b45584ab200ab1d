"""The in-process feature cache: TTLs, the LRU bound, prefixes; and REDIS_URL's checks."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import ValidationError

from app.feed.cache import CacheUnavailable, MemoryCache, entry_bytes
from app.feed.redis_cache import RedisCache
from app.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_at_their_ttl() -> None:
    clock = Clock()
    cache = MemoryCache(clock=clock)

    async def work() -> None:
        await cache.set_many({"a": b"1"}, ttl_s=10)
        await cache.set_many({"b": b"2"}, ttl_s=20)
        clock.now += 9.9
        assert await cache.get_many(["a", "b", "c"]) == [b"1", b"2", None]
        clock.now += 0.1
        assert await cache.get_many(["a", "b"]) == [None, b"2"]
        assert len(cache) == 1  # the expired one was dropped when touched
        await cache.set_many({"b": b"3"}, ttl_s=20)  # a rewrite restarts the TTL
        clock.now += 15
        assert await cache.get_many(["b"]) == [b"3"]

    asyncio.run(work())


def test_the_least_recently_used_entry_goes_first() -> None:
    cache = MemoryCache(max_entries=3)

    async def work() -> None:
        await cache.set_many({"a": b"a", "b": b"b", "c": b"c"}, ttl_s=60)
        assert await cache.get_many(["a"]) == [b"a"]  # a is now the most recent
        await cache.set_many({"d": b"d"}, ttl_s=60)  # b was the least recent
        assert await cache.get_many(["a", "b", "c", "d"]) == [b"a", None, b"c", b"d"]
        await cache.set_many({f"k{i}": b"x" for i in range(10)}, ttl_s=60)
        assert len(cache) == 3
        assert await cache.get_many(["k7", "k8", "k9"]) == [b"x"] * 3

    asyncio.run(work())


def test_delete_and_clear_by_prefix() -> None:
    cache = MemoryCache()

    async def work() -> None:
        await cache.set_many({"p:1": b"1", "p:2": b"2", "q:1": b"3"}, ttl_s=60)
        await cache.delete(["p:1", "missing"])
        assert await cache.get_many(["p:1", "p:2"]) == [None, b"2"]
        await cache.clear("p:")
        assert await cache.get_many(["p:2", "q:1"]) == [None, b"3"]
        await cache.clear("")
        assert len(cache) == 0

    asyncio.run(work())


def test_objects_come_back_as_themselves_counted_at_the_size_given() -> None:
    """`put_objects` keeps the object (no copy, no encoding) and counts what it is told."""
    cache = MemoryCache(max_entries=1000, max_bytes=1000, clock=Clock())
    facts = {"title": "a"}

    async def work() -> None:
        cache.put_objects({"o:1": (facts, 400), "o:2": ([1, 2], 400)}, ttl_s=60)
        [got, other] = await cache.get_many(["o:1", "o:2"])
        assert got is facts and other == [1, 2]
        assert (await cache.describe())["bytes"] == 800
        await cache.get_many(["o:1"])  # o:2 is now the least recent
        cache.put_objects({"o:3": ("x", 300)}, ttl_s=60)  # 1,100 bytes: one must go
        assert await cache.get_many(["o:1", "o:2", "o:3"]) == [facts, None, "x"]
        assert (await cache.describe())["bytes"] == 700
        await cache.delete(["o:1"])
        assert (await cache.describe())["bytes"] == 300

    asyncio.run(work())


def test_the_byte_bound_evicts_the_least_recent_and_counts_every_change() -> None:
    """Bytes are counted on every way in and out: set, rewrite, expiry, delete, clear."""
    one = entry_bytes("k0", b"x" * 100)
    clock = Clock()
    cache = MemoryCache(max_entries=1000, max_bytes=3 * one, clock=clock)

    async def work() -> None:
        await cache.set_many({f"k{i}": b"x" * 100 for i in range(3)}, ttl_s=60)
        assert (await cache.describe())["bytes"] == 3 * one
        await cache.get_many(["k0"])  # k1 is now the least recent
        await cache.set_many({"k3": b"x" * 100}, ttl_s=60)
        assert (
            await cache.get_many(["k0", "k1", "k2", "k3"]) == [b"x" * 100, None] + [b"x" * 100] * 2
        )
        # A rewrite replaces the entry's bytes instead of adding to them.
        await cache.set_many({"k3": b"y" * 100}, ttl_s=1)
        assert len(cache) == 3 and (await cache.describe())["bytes"] == 3 * one
        # One entry bigger than the rest together pushes them all out.
        await cache.set_many({"big": b"z" * (2 * one)}, ttl_s=60)
        assert len(cache) == 1 and await cache.get_many(["big"]) == [b"z" * (2 * one)]
        await cache.delete(["big"])
        assert (await cache.describe())["bytes"] == 0
        await cache.set_many({"k5": b"x" * 100}, ttl_s=1)
        clock.now += 2
        assert await cache.get_many(["k5"]) == [None]  # expired: dropped and uncounted
        assert len(cache) == 0 and (await cache.describe())["bytes"] == 0
        await cache.set_many({"p:1": b"1", "q:1": b"2"}, ttl_s=60)
        await cache.clear("p:")
        assert (await cache.describe())["bytes"] == entry_bytes("q:1", b"2")
        await cache.clear("")
        assert (await cache.describe())["bytes"] == 0

    asyncio.run(work())


def test_a_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryCache(max_entries=0)
    with pytest.raises(ValueError, match="max_bytes"):
        MemoryCache(max_bytes=0)


def test_a_dead_redis_fails_fast_and_then_not_at_all(tmp_path: object) -> None:
    cache = RedisCache(f"unix://{tmp_path}/none.sock", retry_after_s=60)

    async def work() -> None:
        with pytest.raises(CacheUnavailable):
            await cache.get_many(["a"])
        started = time.perf_counter()
        for _ in range(100):  # within retry_after_s: no connection attempt at all
            with pytest.raises(CacheUnavailable):
                await cache.set_many({"a": b"1"}, ttl_s=1)
        assert time.perf_counter() - started < 0.05
        assert (await cache.describe())["reachable"] is False
        await cache.close()

    asyncio.run(work())


@pytest.mark.parametrize(
    "url", ["redis://cache:6379/0", "rediss://u:p@cache:6380", "unix:///run/redis.sock"]
)
def test_redis_urls_accepted(url: str) -> None:
    settings = Settings(REDIS_URL=url)
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == url
    assert "p@" not in repr(settings)


@pytest.mark.parametrize("url", ["http://cache:6379", "cache:6379", "redis://"])
def test_redis_urls_refused_without_quoting_them(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(REDIS_URL=url)
    assert "redis://, rediss:// or unix://" in str(caught.value) or "host" in str(caught.value)


def test_no_redis_url_means_the_memory_cache() -> None:
    assert Settings(REDIS_URL="").redis_url is None
    assert Settings().feature_cache_entries == 100_000
    assert Settings().feature_cache_mb == 20.0
