"""The feature store against a real PostgreSQL and a real Redis.

Hits must cost no query (shown by changing a row underneath and still seeing
the cached value until it is invalidated), entries expire, a profile PUT and a
refresh invalidate, and a Redis that dies or was never there only sends the
store to PostgreSQL, counted.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import numpy as np
import pytest

from app.feed import embeddings
from app.feed.cache import Cache, MemoryCache
from app.feed.redis_cache import RedisCache
from app.feed.refresh import generation, refresh_features
from app.feed.refreshes import Follower
from app.feed.store import FeatureStore, UserFacts
from seed.generate import generate
from seed.loader import load
from tests.integration.conftest import API_KEY, MakeClient
from tests.support.db import ROOT, fetch, run_sql
from tests.support.frames import PROFILE
from tests.support.redis import RedisServer

T = TypeVar("T")
KEYED = {"X-API-Key": API_KEY}


@pytest.fixture
def world(db_url: str) -> str:
    """A small generated dataset, loaded (the loader refreshes the feature tables)."""
    load(db_url, generate(60, 80, 6000, seed=7))
    return db_url


def _cache(kind: str, redis_url: str | None, **options: Any) -> Cache:
    if kind == "redis":
        assert redis_url is not None
        return RedisCache(redis_url, **options)
    return MemoryCache(**options)


def run(url: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def main() -> T:
        conn = await asyncpg.connect(url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(main())


def _watcher(url: str) -> str:
    """A user with watched interactions."""
    return str(fetch(url, "SELECT user_id FROM feed_user_features ORDER BY user_id LIMIT 1")[0][0])


def _plain(user: UserFacts | None) -> dict[str, Any]:
    assert user is not None
    v = user.viewer
    return {
        "user": (user.user_id, user.city, user.language, user.has_history),
        "creators": (user.creator_ids, user.creator_minutes, user.creator_watches),
        "viewer": (v.latitude, v.longitude, v.language, v.utc_offset_hours),
        "preferred": v.preferred_categories,
        "categories": dict(v.category_share),
        "hours": v.hour_share.tolist(),
        "embedding": None if user.embedding is None else user.embedding.tolist(),
    }


def test_redis_and_memory_give_the_same_facts(world: str, redis_url: str) -> None:
    users = [r[0] for r in fetch(world, "SELECT user_id FROM users ORDER BY user_id LIMIT 12")]
    streams = [r[0] for r in fetch(world, "SELECT stream_id FROM streams ORDER BY stream_id")]

    async def read(conn: asyncpg.Connection, cache: Cache) -> list[Any]:
        store = FeatureStore(cache)
        out = []
        try:
            for _ in range(2):  # misses, then hits
                out.append([_plain(await store.user(conn, u, None)) for u in users])
                out.append(await store.streams(conn, [*streams, "no_such_stream"]))
            assert store.hits > 0 and store.misses > 0 and store.fallbacks == 0
            assert await store.user(conn, "no_such_user", None) is None
            assert await store.user(conn, "no_such_user", None) is None  # cached as unknown
            return out
        finally:
            await cache.close()

    memory = run(world, lambda conn: read(conn, MemoryCache()))
    redis = run(world, lambda conn: read(conn, RedisCache(redis_url)))
    assert memory == redis
    assert memory[0] == memory[2] and memory[1] == memory[3]  # a hit equals the miss
    found = memory[1]
    assert list(found) == streams  # the order asked; the unknown id left out
    assert any(f.dominant_device is not None for f in found.values())
    assert any(f.popularity > 0 for f in found.values())
    for facts in found.values():
        assert len(facts.hour_profile) == 24
        total = sum(facts.hour_profile)
        assert total == pytest.approx(1.0) if facts.popularity > 0 else total == 0


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_a_hit_reads_no_database_until_invalidated(world: str, redis_url: str, kind: str) -> None:
    user_id = _watcher(world)
    stream_id = fetch(world, "SELECT stream_id FROM streams ORDER BY stream_id LIMIT 1")[0][0]

    async def work(conn: asyncpg.Connection) -> None:
        store = FeatureStore(_cache(kind, redis_url))
        before = await store.user(conn, user_id, None)
        old_title = (await store.streams(conn, [stream_id]))[stream_id].title
        await conn.execute("UPDATE users SET city = 'Changed' WHERE user_id = $1", user_id)
        await conn.execute("UPDATE streams SET title = 'Changed' WHERE stream_id = $1", stream_id)
        # Served from the cache: the database's new values are not seen.
        assert (await store.user(conn, user_id, None)).city == before.city  # type: ignore[union-attr]
        assert (await store.streams(conn, [stream_id]))[stream_id].title == old_title
        await store.invalidate_users([user_id])
        await store.invalidate_streams([stream_id])
        assert (await store.user(conn, user_id, None)).city == "Changed"  # type: ignore[union-attr]
        assert (await store.streams(conn, [stream_id]))[stream_id].title == "Changed"
        await conn.execute("UPDATE users SET city = 'Again' WHERE user_id = $1", user_id)
        await store.invalidate_all()
        assert (await store.user(conn, user_id, None)).city == "Again"  # type: ignore[union-attr]
        await store.cache.close()

    run(world, work)


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_entries_expire_after_their_ttl(world: str, redis_url: str, kind: str) -> None:
    user_id = _watcher(world)
    stream_id = fetch(world, "SELECT stream_id FROM streams ORDER BY stream_id LIMIT 1")[0][0]

    async def work(conn: asyncpg.Connection) -> None:
        store = FeatureStore(_cache(kind, redis_url), user_ttl_s=0.3, stream_ttl_s=0.3)
        await store.user(conn, user_id, None)
        await store.streams(conn, [stream_id])
        await conn.execute("UPDATE users SET city = 'Later' WHERE user_id = $1", user_id)
        await conn.execute("UPDATE streams SET title = 'Later' WHERE stream_id = $1", stream_id)
        assert (await store.user(conn, user_id, None)).city != "Later"  # type: ignore[union-attr]
        await asyncio.sleep(0.45)
        assert (await store.user(conn, user_id, None)).city == "Later"  # type: ignore[union-attr]
        assert (await store.streams(conn, [stream_id]))[stream_id].title == "Later"
        await store.cache.close()

    run(world, work)


def test_the_user_key_holds_the_model_version(world: str) -> None:
    user_id = _watcher(world)
    stream_id = fetch(world, "SELECT stream_id FROM streams LIMIT 1")[0][0]
    vector = np.arange(8, dtype=np.float32) / 8

    async def work(conn: asyncpg.Connection) -> None:
        store = FeatureStore(MemoryCache())
        assert (await store.user(conn, user_id, "m1")).embedding is None  # type: ignore[union-attr]
        await embeddings.save_model(
            conn,
            version="m1",
            kind="als",
            user_ids=[user_id],
            users=vector[None, :],
            stream_ids=[stream_id],
            streams=vector[None, :],
            metadata={},
        )
        # Cached before the model existed, under m1's key.
        assert (await store.user(conn, user_id, "m1")).embedding is None  # type: ignore[union-attr]
        await embeddings.save_model(
            conn,
            version="m2",
            kind="als",
            user_ids=[user_id],
            users=2 * vector[None, :],
            stream_ids=[stream_id],
            streams=vector[None, :],
            metadata={},
        )
        # A new model version is a new key: read at once, no invalidation needed.
        facts = await store.user(conn, user_id, "m2")
        assert facts is not None and facts.embedding is not None
        assert facts.embedding.dtype == np.float32
        np.testing.assert_array_equal(facts.embedding, 2 * vector)
        assert (await store.user(conn, user_id, None)).embedding is None  # type: ignore[union-attr]
        await store.invalidate_users([user_id])  # every version seen goes
        np.testing.assert_array_equal((await store.user(conn, user_id, "m1")).embedding, vector)  # type: ignore[union-attr]

    run(world, work)


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_a_refresh_elsewhere_retires_the_cached_facts(
    world: str, redis_url: str, kind: str
) -> None:
    user_id = _watcher(world)
    # A category the user never watched, and a stream in it.
    category, stream_id = fetch(
        world,
        "SELECT s.category_id, s.stream_id FROM streams s"
        " WHERE NOT s.category_id = ANY ((SELECT category_ids FROM feed_user_features"
        " WHERE user_id = $1)::text[]) ORDER BY s.stream_id LIMIT 1",
        user_id,
    )[0]

    async def work(conn: asyncpg.Connection) -> None:
        store = FeatureStore(_cache(kind, redis_url))
        follower = Follower(store, world, 2.0)
        await follower.start()
        try:
            assert store.following
            assert store.generation == await generation(conn)
            before = await store.user(conn, user_id, None)
            assert before is not None and category not in before.viewer.category_share
            assert (await store.user(conn, user_id, None)) is not None and store.hits == 1
            await conn.execute(
                "INSERT INTO interactions (user_id, stream_id, impression_at, clicked,"
                " watch_time_minutes, device_type, page_position, session_id)"
                " VALUES ($1, $2, now(), true, 500, 'tv', 1, 'new-session')",
                user_id,
                stream_id,
            )
            # The refresh runs on another connection, as `ml feed features` would.
            other = await asyncpg.connect(world)
            try:
                summary = await refresh_features(other)
            finally:
                await other.close()
            deadline = time.monotonic() + 5
            while store.generation != summary.generation and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert store.generation == summary.generation
            after = await store.user(conn, user_id, None)
            assert after is not None and after.viewer.category_share[category] > 0
            facts = (await store.streams(conn, [stream_id]))[stream_id]
            assert facts.hour_profile != (0.0,) * 24
        finally:
            await follower.stop()
            await store.cache.close()

    run(world, work)


def test_without_the_follower_connection_the_cache_is_bypassed(world: str) -> None:
    user_id = _watcher(world)

    async def work(conn: asyncpg.Connection) -> None:
        store = FeatureStore(MemoryCache())
        follower = Follower(store, "postgresql://nobody@127.0.0.1:1/none", 0.2)
        await follower.start()
        try:
            assert not store.following
            await store.user(conn, user_id, None)
            await conn.execute("UPDATE users SET city = 'Live' WHERE user_id = $1", user_id)
            assert (await store.user(conn, user_id, None)).city == "Live"  # type: ignore[union-attr]
            assert store.hits == 0 and len(store.cache) == 0  # type: ignore[arg-type]
        finally:
            await follower.stop()

    run(world, work)


def test_redis_down_falls_back_to_postgresql_and_recovers(
    world: str, redis_server: RedisServer, redis_url: str
) -> None:
    user_id = _watcher(world)
    ids = [r[0] for r in fetch(world, "SELECT stream_id FROM streams ORDER BY stream_id")][:30]

    async def work(conn: asyncpg.Connection) -> None:
        store = FeatureStore(RedisCache(redis_url, retry_after_s=0.2))
        expected_user = _plain(await store.user(conn, user_id, None))
        expected_streams = await store.streams(conn, ids)
        redis_server.stop()
        started = time.perf_counter()
        for _ in range(5):
            assert _plain(await store.user(conn, user_id, None)) == expected_user
            assert await store.streams(conn, ids) == expected_streams
            await store.invalidate_streams(ids[:1])  # kept, sent once Redis is back
        assert time.perf_counter() - started < 2.0  # no call waits long on a dead Redis
        assert store.fallbacks >= 10
        described = await store.describe()
        assert described["backend"] == "redis" and described["reachable"] is False
        redis_server.start()  # an empty Redis: what was cached is gone anyway
        await asyncio.sleep(0.25)
        fallbacks, hits = store.fallbacks, store.hits
        await store.streams(conn, ids)  # misses, written back
        assert await store.streams(conn, ids) == expected_streams
        assert store.fallbacks == fallbacks and store.hits == hits + len(ids)
        assert (await store.describe())["reachable"] is True
        await store.cache.close()

    run(world, work)


def test_a_redis_that_never_was_costs_nothing_but_counts(world: str, tmp_path: Any) -> None:
    user_id = _watcher(world)

    async def work(conn: asyncpg.Connection) -> None:
        store = FeatureStore(RedisCache(f"unix://{tmp_path}/nothing.sock"))
        memory = FeatureStore(MemoryCache())
        assert _plain(await store.user(conn, user_id, None)) == _plain(
            await memory.user(conn, user_id, None)
        )
        assert store.fallbacks == 1 and store.hits == 0
        await store.cache.close()

    run(world, work)


def test_the_memory_cache_holds_its_bound(world: str) -> None:
    ids = [r[0] for r in fetch(world, "SELECT stream_id FROM streams ORDER BY stream_id")]

    async def work(conn: asyncpg.Connection) -> None:
        cache = MemoryCache(max_entries=10)
        store = FeatureStore(cache)
        assert len(await store.streams(conn, ids)) == len(ids)
        assert len(cache) == 10
        # Ten of them are kept; reading all again finds those ten, evicts as it writes.
        assert len(await store.streams(conn, ids)) == len(ids)
        assert store.hits == 10 and len(cache) == 10

    run(world, work)


def test_a_profile_put_invalidates_the_stream(
    world: str, redis_url: str, make_client: MakeClient
) -> None:
    stream_id = fetch(world, "SELECT stream_id FROM streams ORDER BY stream_id LIMIT 1")[0][0]
    # The server's cache is Redis; this test's store shares it, as a second process would.
    client = make_client(world, REDIS_URL=redis_url)

    async def cache_it(conn: asyncpg.Connection) -> str:
        store = FeatureStore(RedisCache(redis_url))
        store.set_generation(await generation(conn))
        title = (await store.streams(conn, [stream_id]))[stream_id].title
        await conn.execute("UPDATE streams SET title = 'Under' WHERE stream_id = $1", stream_id)
        assert (await store.streams(conn, [stream_id]))[stream_id].title == title  # cached
        await store.cache.close()
        return title

    async def read(conn: asyncpg.Connection) -> str:
        store = FeatureStore(RedisCache(redis_url))
        store.set_generation(await generation(conn))
        title = (await store.streams(conn, [stream_id]))[stream_id].title
        await store.cache.close()
        return title

    run(world, cache_it)
    response = client.put(
        f"/v1/streams/{stream_id}", json={**PROFILE, "title": "From the API"}, headers=KEYED
    )
    assert response.status_code == 200, response.text
    assert run(world, read) == "From the API"


def test_a_put_with_redis_down_still_succeeds_and_is_counted(
    world: str, make_client: MakeClient, tmp_path: Any
) -> None:
    stream_id = fetch(world, "SELECT stream_id FROM streams ORDER BY stream_id LIMIT 1")[0][0]
    client = make_client(world, REDIS_URL=f"unix://{tmp_path}/gone.sock")
    response = client.put(f"/v1/streams/{stream_id}", json=PROFILE, headers=KEYED)
    assert response.status_code == 200, response.text
    metrics = client.get("/metrics").text
    assert "hometown_feature_cache_fallbacks_total 1.0" in metrics
    assert "hometown_feature_cache_hits_total 0.0" in metrics


def test_the_app_holds_a_memory_store_without_redis(world: str, make_client: MakeClient) -> None:
    client = make_client(world)
    store = client.app.state.features
    assert isinstance(store, FeatureStore) and isinstance(store.cache, MemoryCache)
    assert store.following
    run_sql(world, "SELECT 1")


def test_the_features_command_refreshes_and_says_so(world: str) -> None:
    before = run(world, generation)
    env = {**os.environ, "DATABASE_URL": world}
    done = subprocess.run(
        [sys.executable, "-m", "ml", "feed", "features"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("feature tables refreshed: ")
    users = fetch(world, "SELECT count(*) AS n FROM feed_user_features")[0]["n"]
    assert f"{users:,} users" in done.stdout
    assert run(world, generation) > before


def test_a_cached_stream_entry_that_does_not_decode_is_read_again(world: str) -> None:
    """An entry another layout wrote (or a damaged one) is a miss, never an error."""
    ids = [r[0] for r in fetch(world, "SELECT stream_id FROM streams ORDER BY stream_id LIMIT 3")]

    async def work(conn: asyncpg.Connection) -> None:
        cache = MemoryCache()
        store = FeatureStore(cache)
        fresh = await store.streams(conn, ids)
        # The old layout: the numbers as separate msgpack floats, not one block.
        await cache.set_many(
            {store._stream_key(ids[1]): b"\x93\xa1x\xcb?\xf0\x00\x00\x00\x00\x00\x00\xc2"}, 60
        )
        hits, misses = store.hits, store.misses
        again = await store.streams(conn, ids)
        assert again == fresh
        assert (store.hits - hits, store.misses - misses) == (2, 1)
        assert (await store.streams(conn, ids)) == fresh  # and it was cached anew
        assert store.misses - misses == 1

    run(world, work)
