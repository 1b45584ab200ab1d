"""The live set follower against a real PostgreSQL: exact top 200, freshness, reloads, reconnects.

Each test starts the app (so `app.main` wires the lifespan), writes through SQL or
the HTTP write API, and reads the live set on the app's own event loop thread
(through the test client's portal), as a request would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg
import numpy as np
import pandas as pd
import pytest
from litestar.testing import TestClient

from app.feed.embeddings import load_vectors, save_model
from app.feed.follow import APPLICATION_NAME
from app.feed.live import LiveSet
from seed.loader import Dataset, load
from tests.support import frames
from tests.support.db import fetch, run_sql

T = TypeVar("T")
KEYED = {"X-API-Key": "test-key-0123456789-abcdef"}
DIM = 8
STREAMS = 600
CATEGORIES = ("gaming", "music", "chat")
#: How fresh a change must be in every process's live set.
FRESH_S = 1.0


def _dataset(n_streams: int = STREAMS, prefix: str = "") -> Dataset:
    """Streams in three categories and three languages, two in three live."""
    data = frames.dataset(12, n_streams, prefix)
    streams = data.streams.copy()
    index = np.arange(n_streams)
    streams["category_id"] = [CATEGORIES[i % 3] for i in index]
    streams["language"] = [("fr", "en", "de")[(i // 3) % 3] for i in index]
    streams["creator_id"] = [f"creator_{i % 97:03d}" for i in index]
    streams["current_viewer_count"] = (index * 7919) % 50
    live = index % 3 != 2
    streams["is_live"] = live
    streams["live_since"] = streams["live_since"].where(live, pd.NaT)
    return Dataset(users=data.users, streams=streams, interactions=data.interactions)


def _vectors(n: int, seed: int) -> np.ndarray:
    # Small integers: dot products are exact in float32 and tie often.
    return np.random.default_rng(seed).integers(-2, 3, (n, DIM)).astype(np.float32)


async def _save(url: str, version: str, stream_ids: list[str], seed: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await save_model(
            conn,
            version=version,
            kind="als",
            user_ids=["user_000000"],
            users=_vectors(1, seed + 1),
            stream_ids=stream_ids,
            streams=_vectors(len(stream_ids), seed),
            metadata={},
            activate=True,
        )
    finally:
        await conn.close()


def save(url: str, version: str, seed: int, stream_ids: list[str] | None = None) -> None:
    """Store and activate a model with vectors for most streams (every seventh has none)."""
    ids = stream_ids or [f"stream_{i:06d}" for i in range(STREAMS) if i % 7 != 3]
    asyncio.run(_save(url, version, ids, seed))


async def _brute_force(url: str, version: str, q: np.ndarray, k: int) -> list[tuple[str, float]]:
    conn = await asyncpg.connect(url)
    try:
        ids, matrix = await load_vectors(conn, version, "stream")
        live = {r[0] for r in await conn.fetch("SELECT stream_id FROM streams WHERE is_live")}
    finally:
        await conn.close()
    scores = matrix @ q
    ranked = sorted((-float(s), sid) for sid, s in zip(ids, scores, strict=True) if sid in live)
    return [(sid, -neg) for neg, sid in ranked[:k]]


def brute_force(url: str, version: str, q: np.ndarray, k: int = 200) -> list[tuple[str, float]]:
    """The exact top k of the database's live streams, by a full scan and sort."""
    return asyncio.run(_brute_force(url, version, q, k))


def on_loop(client: TestClient[Any], fn: Callable[..., T], *args: Any) -> T:
    """Call `fn(*args)` on the app's event loop thread, where requests run."""
    return client.blocking_portal.call(fn, *args)


def live_set(client: TestClient[Any]) -> LiveSet:
    """The app's live set."""
    live = client.app.state.live
    assert isinstance(live, LiveSet)
    return live


def wait_until(
    client: TestClient[Any], check: Callable[[LiveSet], bool], timeout_s: float
) -> float:
    """Seconds until `check(live set)` holds on the loop thread; fails past `timeout_s`."""
    live = live_set(client)
    start = time.monotonic()
    while not on_loop(client, check, live):
        elapsed = time.monotonic() - start
        assert elapsed < timeout_s, (
            f"not seen within {timeout_s}s: {on_loop(client, live.describe)}"
        )
        time.sleep(0.005)
    return time.monotonic() - start


def synced(client: TestClient[Any], after: int = 0) -> None:
    """Wait until the follower has finished more than `after` full syncs and listens."""
    wait_until(
        client,
        lambda live: live.status.full_syncs > after and live.status.listener_connected,
        10,
    )


@pytest.fixture
def world(db_url: str) -> str:
    """`_dataset()` loaded, and model v1 active."""
    load(db_url, _dataset())
    save(db_url, "v1", seed=1)
    return db_url


def _top(client: TestClient[Any], q: np.ndarray, category: str | None = None) -> list[str]:
    ids, _ = on_loop(client, live_set(client).top_by_dot, q, 200, category)
    return ids


def test_top_200_equals_a_scan_of_the_database(world: str, make_client: Any) -> None:
    client = make_client(world)
    synced(client)
    live = live_set(client)
    rng = np.random.default_rng(5)
    for _ in range(10):
        q = rng.integers(-2, 3, DIM).astype(np.float32)
        ids, scores = on_loop(client, live.top_by_dot, q, 200, None)
        expected = brute_force(world, "v1", q)
        assert len(expected) == 200
        assert list(zip(ids, scores.tolist(), strict=True)) == expected
    described = on_loop(client, live.describe)
    assert described["live_streams"] == 400
    assert described["with_embeddings"] == sum(
        1 for i in range(STREAMS) if i % 3 != 2 and i % 7 != 3
    )
    assert described["model_version"] == "v1" and described["listener_connected"]
    gaming = [
        r[0]
        for r in fetch(
            world, "SELECT stream_id FROM streams WHERE is_live AND category_id = 'gaming'"
        )
    ]
    assert on_loop(client, live.count, "gaming") == len(gaming)
    ids, _ = on_loop(client, live.top_by_dot, np.ones(DIM, np.float32), 1000, "gaming")
    assert set(ids) == {g for g in gaming if int(g[-6:]) % 7 != 3}


def test_changes_through_the_write_api_are_seen_within_a_second(
    world: str, make_client: Any
) -> None:
    client = make_client(world)
    synced(client)
    offline_id, live_id = "stream_000002", "stream_000000"  # 2 % 3 == 2: offline now
    assert not on_loop(client, live_set(client).__contains__, offline_id)

    start = time.monotonic()
    response = client.post(
        f"/v1/streams/{offline_id}/live", json={"current_viewer_count": 4321}, headers=KEYED
    )
    assert response.status_code == 200, response.text
    wait_until(client, lambda live: live.viewers([offline_id]) == [4321], FRESH_S)
    went_live = time.monotonic() - start
    assert went_live < FRESH_S
    # It came with its embedding and attributes: it tops the trending list and the dot ranking.
    assert on_loop(client, live_set(client).trending, 1, "fr", "chat") == [offline_id]
    vector = fetch(
        world,
        "SELECT vector FROM feed_embeddings WHERE model_version = 'v1' AND entity_id = $1",
        offline_id,
    )[0][0]
    q = np.frombuffer(vector, "<f4").astype(np.float32)
    assert _top(client, q) == [sid for sid, _ in brute_force(world, "v1", q)]

    start = time.monotonic()
    response = client.post(f"/v1/streams/{live_id}/offline", headers=KEYED)
    assert response.status_code == 200, response.text
    wait_until(client, lambda live: live_id not in live, FRESH_S)
    went_offline = time.monotonic() - start
    assert went_offline < FRESH_S
    print(f"seen live after {went_live:.3f}s, offline after {went_offline:.3f}s (with the POST)")


def test_a_big_batch_in_sql_is_applied_whole(world: str, make_client: Any) -> None:
    client = make_client(world)
    synced(client)
    start = time.monotonic()
    # 200 go offline, 200 go live, 100 change viewers: several notifications of ~7,000 bytes.
    run_sql(
        world,
        "UPDATE streams SET is_live = NOT is_live,"
        " live_since = CASE WHEN is_live THEN NULL ELSE now() END,"
        " current_viewer_count = 1000 + right(stream_id, 6)::int"
        " WHERE right(stream_id, 6)::int < 600 AND right(stream_id, 6)::int % 3 <> 0",
    )
    expected = {r[0] for r in fetch(world, "SELECT stream_id FROM streams WHERE is_live")}
    wait_until(
        client,
        lambda live: {s for s in expected if s in live} == expected and len(live) == len(expected),
        FRESH_S,
    )
    assert time.monotonic() - start < FRESH_S  # from before the UPDATE: an overestimate
    q = np.arange(DIM, dtype=np.float32) - 3
    assert _top(client, q) == [sid for sid, _ in brute_force(world, "v1", q)]
    assert on_loop(client, live_set(client).viewers, ["stream_000005"]) == [1005]


def test_a_seed_reload_resyncs_fully(world: str, make_client: Any) -> None:
    client = make_client(world)
    synced(client)
    syncs = on_loop(client, lambda live: live.status.full_syncs, live_set(client))
    load(world, _dataset(90, prefix="new_"))
    wait_until(client, lambda live: live.status.full_syncs > syncs, 5)
    wait_until(client, lambda live: len(live) == 60, FRESH_S)
    assert on_loop(client, live_set(client).__contains__, "new_stream_000000")
    assert not on_loop(client, live_set(client).__contains__, "stream_000000")
    # v1 has no vectors for the new ids: nothing to rank by dot product.
    assert _top(client, np.ones(DIM, np.float32)) == []


def test_a_resync_under_the_same_model_refreshes_in_place(world: str, make_client: Any) -> None:
    """Changes nobody announced (triggers off) are mended by the next resync, in place."""
    client = make_client(world)
    synced(client)
    live = live_set(client)
    matrix = on_loop(client, lambda live: live._matrix, live)
    rows = fetch(
        world, "SELECT stream_id, live_since FROM streams WHERE is_live ORDER BY 1 LIMIT 1"
    )
    [(gone, since)] = [(r["stream_id"], r["live_since"]) for r in rows]
    [row] = fetch(world, "SELECT stream_id FROM streams WHERE NOT is_live ORDER BY 1 LIMIT 1")
    came = row["stream_id"]
    [row] = fetch(
        world,
        "SELECT stream_id, current_viewer_count FROM streams WHERE is_live AND stream_id <> $1"
        " ORDER BY 1 LIMIT 1",
        gone,
    )
    watched, viewers = row["stream_id"], row["current_viewer_count"]
    quiet = "SET session_replication_role = replica; "
    run_sql(
        world,
        quiet + f"UPDATE streams SET is_live = false, live_since = NULL WHERE stream_id = '{gone}';"
        f" UPDATE streams SET is_live = true WHERE stream_id = '{came}';"
        f" UPDATE streams SET current_viewer_count = 4321 WHERE stream_id = '{watched}'",
    )
    try:
        assert on_loop(client, live.__contains__, gone)  # not heard of
        syncs = on_loop(client, lambda live: live.status.full_syncs, live)
        on_loop(client, live.reload)
        wait_until(client, lambda live: live.status.full_syncs > syncs, 5)
        expected = {
            r["stream_id"]: r["current_viewer_count"]
            for r in fetch(
                world, "SELECT stream_id, current_viewer_count FROM streams WHERE is_live"
            )
        }
        ids = on_loop(client, live.stream_ids)
        assert sorted(ids) == sorted(expected) and came in ids and gone not in ids
        assert expected[watched] == 4321
        assert on_loop(client, live.viewers, ids) == [expected[sid] for sid in ids]
        assert on_loop(client, lambda live: live._matrix, live) is matrix  # not rebuilt
        q = np.ones(DIM, np.float32)
        assert _top(client, q) == [sid for sid, _ in brute_force(world, "v1", q)]
    finally:
        run_sql(
            world,
            quiet + f"UPDATE streams SET is_live = false WHERE stream_id = '{came}';"
            f" UPDATE streams SET is_live = true, live_since = "
            f"{'NULL' if since is None else repr(since.isoformat())} WHERE stream_id = '{gone}';"
            f" UPDATE streams SET current_viewer_count = {viewers} WHERE stream_id = '{watched}'",
        )
        on_loop(client, live.reload)


def test_the_follower_reconnects_and_catches_up(world: str, make_client: Any) -> None:
    client = make_client(world)
    synced(client)
    syncs = on_loop(client, lambda live: live.status.full_syncs, live_set(client))
    # The change is made by the statement that kills the follower's backend: its
    # NOTIFY is sent at commit, when that backend is gone, so only the reconnect's
    # resync can bring it.
    rows = fetch(
        world,
        "WITH killed AS ("
        "  SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity"
        "  WHERE application_name = $1"
        "), changed AS ("
        "  UPDATE streams SET is_live = false, live_since = NULL"
        "  WHERE stream_id = 'stream_000000' RETURNING 1"
        ") SELECT (SELECT count(*) FROM killed WHERE ok), (SELECT count(*) FROM changed)",
        APPLICATION_NAME,
    )
    assert rows[0][0] == 1 and rows[0][1] == 1
    # Requests keep the last known set meanwhile, and the reconnect resync applies the change.
    wait_until(
        client, lambda live: live.status.full_syncs > syncs and live.status.listener_connected, 10
    )
    wait_until(client, lambda live: "stream_000000" not in live, FRESH_S)
    # And it listens again.
    run_sql(world, "UPDATE streams SET current_viewer_count = 77 WHERE stream_id = 'stream_000001'")
    wait_until(client, lambda live: live.viewers(["stream_000001"]) == [77], FRESH_S)


def test_a_new_active_model_is_picked_up_on_reload(world: str, make_client: Any) -> None:
    client = make_client(world)
    synced(client)
    assert on_loop(client, lambda live: live.model_version, live_set(client)) == "v1"
    save(world, "v2", seed=2)
    live = live_set(client)
    on_loop(client, live.reload)
    wait_until(client, lambda live: live.model_version == "v2", 5)
    q = np.ones(DIM, np.float32)
    assert _top(client, q) == [sid for sid, _ in brute_force(world, "v2", q)]


def test_the_app_serves_while_the_database_is_down(make_client: Any) -> None:
    client = make_client("postgresql://hometown:hometown@127.0.0.1:9/hometown")
    assert client.get("/live").status_code == 200
    time.sleep(0.3)
    described = on_loop(client, live_set(client).describe)
    assert described["live_streams"] == 0 and not described["listener_connected"]
    assert described["last_error"]
