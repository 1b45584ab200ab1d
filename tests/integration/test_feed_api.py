"""`/v1/scenarios/home_feed` and `/category_feed` end to end: trained models, real PostGIS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest
from litestar.testing import TestClient

from app.feed import service as feed_service
from app.feed.cache import MemoryCache
from app.feed.features import FEATURE_NAMES
from app.feed.live import LiveSet
from app.feed.ranker import RERANKER_FILE
from app.feed.service import RRF_K, FeedQuery, Parts
from app.feed.sources import NEAR_K
from app.feed.store import FeatureStore
from app.hometown import service as hometown
from app.hometown.weights import Weights
from app.reload import reload_all
from ml.feed import train
from ml.feed.pipeline import Source
from seed.generate import generate
from seed.loader import load
from tests.integration.conftest import API_KEY, MakeClient
from tests.support.db import fetch, run_sql
from tools.cluster import free_port

WORLD = (800, 600, 40_000)  # users, streams, impressions: seconds to train
HOME = "/v1/scenarios/home_feed"
CATEGORY = "/v1/scenarios/category_feed"
AT = 1718803200
KEY = {"X-API-Key": API_KEY}
REASON_KINDS = {"watched", "popular", "near", "watching", "language"}


@pytest.fixture(scope="module")
def world(
    migrated_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """A generated world with both feed stages trained on it; the model directory."""
    load(migrated_url, generate(*WORLD, seed=5))
    model_dir = tmp_path_factory.mktemp("feed-api-models")
    train.train(
        train.Options(source=Source(migrated_url), model_dir=model_dir, max_epochs=4, seed=5)
    )
    yield migrated_url, model_dir
    run_sql(
        migrated_url,
        "TRUNCATE interactions, streams, users, feed_models,"
        " feed_user_features, feed_stream_features CASCADE",
    )


@pytest.fixture
def client(world: tuple[str, Path], make_client: MakeClient) -> TestClient[Any]:
    url, model_dir = world
    return _started(make_client(url, MODEL_PATH=str(model_dir / "click.joblib")))


def _started(client: TestClient[Any]) -> TestClient[Any]:
    """The client once its live set has synced (the follower starts in the background)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        live = client.get("/").json()["feed"]["live_set"]
        if live and live.get("last_full_sync"):
            return client
        time.sleep(0.05)
    raise AssertionError("the live set never synced")


def _watcher(url: str) -> str:
    """A viewer with history and an embedding: the one with the most watched interactions."""
    [row] = fetch(
        url,
        "SELECT user_id FROM interactions WHERE watch_time_minutes > 0"
        " GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1",
    )
    return str(row["user_id"])


def _live(url: str) -> dict[str, str]:
    """Live stream id -> category."""
    rows = fetch(url, "SELECT stream_id, category_id FROM streams WHERE is_live")
    return {r["stream_id"]: r["category_id"] for r in rows}


def _literal(at: Any) -> str:
    return "NULL" if at is None else f"'{at.isoformat()}'"


def _ordered(streams: list[dict[str, Any]]) -> bool:
    keys = [(-s["score"], s["stream_id"]) for s in streams]
    return keys == sorted(keys)


def test_home_feed_reranks_live_streams_and_gives_reasons(
    client: TestClient[Any], world: tuple[str, Path]
) -> None:
    url, _ = world
    user = _watcher(url)
    body = {"user_id": user, "ctx_timestamp": AT, "ctx_device": "ios", "ctx_locale": "en_US"}
    response = client.post(HOME, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    streams = answer["streams"]
    assert len(streams) == 30  # the default
    live = _live(url)
    assert all(s["stream_id"] in live for s in streams)
    assert len({s["stream_id"] for s in streams}) == 30
    assert _ordered(streams)
    assert all(s["reason"] and s["reason_kind"] in REASON_KINDS for s in streams)
    assert all(s["sources"] for s in streams)
    assert answer["models"]["order"] == "reranker" and answer["models"]["reranker"]
    [active] = fetch(url, "SELECT version FROM feed_models WHERE active")
    assert answer["models"]["candidate_model"] == active["version"]
    assert answer["sources"]["cf"] == min(200, len(live))
    assert answer["request_id"] == response.headers["x-request-id"]
    # Deterministic: the same request, the same answer.
    again = client.post(HOME, json=body).json()
    assert [s["stream_id"] for s in again["streams"]] == [s["stream_id"] for s in streams]


def test_ctx_fields_are_optional_and_max_results_is_honoured(
    client: TestClient[Any], world: tuple[str, Path]
) -> None:
    user = _watcher(world[0])
    answer = client.post(HOME, json={"user_id": user, "max_results": 7}).json()
    assert len(answer["streams"]) == 7 and _ordered(answer["streams"])


def test_explain_gives_contributions_that_add_up_to_the_score(
    client: TestClient[Any], world: tuple[str, Path]
) -> None:
    user = _watcher(world[0])
    answer = client.post(HOME, json={"user_id": user, "ctx_timestamp": AT, "explain": True}).json()
    for stream in answer["streams"]:
        contributions = stream["contributions"]
        assert set(contributions) == {*FEATURE_NAMES, "bias"}
        assert math.isclose(sum(contributions.values()), stream["score"], abs_tol=1e-3)
    plain = client.post(HOME, json={"user_id": user, "ctx_timestamp": AT}).json()
    assert all("contributions" not in s for s in plain["streams"])


def test_category_feed_keeps_to_the_category_and_says_when_it_is_short(
    client: TestClient[Any], world: tuple[str, Path]
) -> None:
    url, _ = world
    user = _watcher(url)
    live = _live(url)
    counts = Counter(live.values())
    small = min(counts, key=lambda c: (counts[c], c))
    body = {"user_id": user, "category_id": small, "max_results": 100, "ctx_timestamp": AT}
    answer = client.post(CATEGORY, json=body).json()
    streams = answer["streams"]
    assert {s["category_id"] for s in streams} <= {small}
    assert answer["live_in_category"] == counts[small]
    # Every live stream of the category is a candidate (the CF source alone covers them).
    assert len(streams) == counts[small] < 100
    assert answer["note"] and f"only {counts[small]} live stream" in answer["note"]
    big = max(counts, key=lambda c: (counts[c], c))
    full = client.post(CATEGORY, json={"user_id": user, "category_id": big, "max_results": 5})
    assert full.json().get("note") is None and len(full.json()["streams"]) == 5
    nothing = client.post(CATEGORY, json={"user_id": user, "category_id": "no-such-category"})
    assert nothing.status_code == 200 and nothing.json()["streams"] == []


def test_unknown_user_is_404(client: TestClient[Any]) -> None:
    for path, extra in ((HOME, {}), (CATEGORY, {"category_id": "gaming"})):
        response = client.post(path, json={"user_id": "nobody", **extra})
        assert response.status_code == 404, response.text
        assert "nobody" in response.json()["detail"]


def test_a_viewer_without_history_gets_near_trending_and_popular(
    client: TestClient[Any], world: tuple[str, Path]
) -> None:
    url, _ = world
    run_sql(
        url,
        "INSERT INTO users (user_id, city, latitude, longitude, language, timezone_offset,"
        " preferred_categories, local_preference_strength, total_watch_hours)"
        " VALUES ('newcomer', 'Paris', 48.85, 2.35, 'fr', 1, '{}', 0.5, 0)"
        " ON CONFLICT DO NOTHING",
    )
    answer = client.post(HOME, json={"user_id": "newcomer", "ctx_timestamp": AT}).json()
    assert answer["streams"], answer
    assert "cf" not in answer["sources"] and answer["sources"]["own"] == 0
    assert answer["sources"]["popular"] > 0 and answer["sources"]["near"] > 0
    assert answer["models"]["order"] == "reranker"


def test_an_offline_stream_is_gone_from_the_next_request(
    client: TestClient[Any], world: tuple[str, Path]
) -> None:
    url, _ = world
    user = _watcher(url)
    body = {"user_id": user, "ctx_timestamp": AT}
    first = client.post(HOME, json=body).json()["streams"][0]["stream_id"]
    try:
        assert client.post(f"/v1/streams/{first}/offline", headers=KEY).status_code == 200
        after = client.post(HOME, json=body).json()["streams"]
        assert first not in {s["stream_id"] for s in after}
    finally:
        client.post(f"/v1/streams/{first}/live", headers=KEY)


def test_streams_offline_before_the_live_set_hears_are_replaced_by_the_next_best(
    client: TestClient[Any], world: tuple[str, Path]
) -> None:
    """PostgreSQL's word wins over the live set's, and the list stays full, in score order.

    (The near-you source reads PostgreSQL too, so the other streams' features, and
    with them their order, may move a little: what must hold is checked below.)
    """
    url, _ = world
    body = {"user_id": _watcher(url), "ctx_timestamp": AT, "max_results": 10}
    wide = client.post(HOME, json={**body, "max_results": 40}).json()["streams"]
    assert len(wide) == 40
    gone = [s["stream_id"] for s in wide[:12]]  # more than the first check's slack
    # With triggers off (replica role) nothing is announced: the live set still has them.
    quiet = "SET session_replication_role = replica;"
    ids = ", ".join(f"'{sid}'" for sid in gone)
    since = {
        r["stream_id"]: r["live_since"]
        for r in fetch(url, f"SELECT stream_id, live_since FROM streams WHERE stream_id IN ({ids})")
    }
    run_sql(
        url,
        f"{quiet} UPDATE streams SET is_live = false, live_since = NULL WHERE stream_id IN ({ids})",
    )
    try:
        after = client.post(HOME, json=body).json()["streams"]
        shown = [s["stream_id"] for s in after]
        assert len(shown) == 10 and not set(shown) & set(gone)
        assert set(shown) <= set(_live(url)) and _ordered(after)
    finally:
        back = "; ".join(
            f"UPDATE streams SET is_live = true, live_since = {_literal(at)}"
            f" WHERE stream_id = '{sid}'"
            for sid, at in since.items()
        )
        run_sql(url, f"{quiet} {back}")


def test_a_stream_that_goes_live_appears_within_a_second(
    client: TestClient[Any], world: tuple[str, Path]
) -> None:
    url, _ = world
    user = _watcher(url)
    live = _live(url)
    counts = Counter(live.values())
    [row] = fetch(
        url,
        "SELECT s.stream_id, s.category_id FROM streams s JOIN feed_embeddings e"
        " ON e.entity = 'stream' AND e.entity_id = s.stream_id"
        " JOIN feed_models m ON m.version = e.model_version AND m.active"
        " WHERE NOT s.is_live ORDER BY s.stream_id LIMIT 1",
    )
    stream, category = row["stream_id"], row["category_id"]
    assert counts.get(category, 0) < 99  # so the whole category fits in one answer
    body = {"user_id": user, "category_id": category, "max_results": 100, "ctx_timestamp": AT}
    assert stream not in {
        s["stream_id"] for s in client.post(CATEGORY, json=body).json()["streams"]
    }
    try:
        started = time.monotonic()
        assert client.post(f"/v1/streams/{stream}/live", headers=KEY).status_code == 200
        while True:
            found = {s["stream_id"] for s in client.post(CATEGORY, json=body).json()["streams"]}
            elapsed = time.monotonic() - started
            if stream in found:
                break
            assert elapsed < 1.0, f"{stream} went live but was not served within {elapsed:.2f}s"
            time.sleep(0.02)
        assert elapsed < 1.0
    finally:
        client.post(f"/v1/streams/{stream}/offline", headers=KEY)


def test_without_a_reranker_the_fallback_order_serves_and_says_so(
    world: tuple[str, Path], make_client: MakeClient, tmp_path: Path
) -> None:
    url, model_dir = world
    empty = tmp_path / "models"
    empty.mkdir()
    client = _started(make_client(url, MODEL_PATH=str(empty / "click.joblib")))
    health = client.get("/").json()["feed"]["reranker"]
    assert health["loaded"] is False and "ml feed train" in health["error"]
    user = _watcher(url)
    answer = client.post(HOME, json={"user_id": user, "ctx_timestamp": AT}).json()
    assert answer["models"]["order"] == "fallback" and answer["models"]["reranker"] is None
    streams = answer["streams"]
    assert len(streams) == 30 and _ordered(streams)
    assert streams[0]["score"] <= len(answer["sources"]) / (RRF_K + 1) + 1e-9
    assert all(s["reason_kind"] in REASON_KINDS for s in streams)

    # A SIGHUP (what `reload_all` runs) loads the reranker once it is there.
    shutil.copy(model_dir / RERANKER_FILE, empty / RERANKER_FILE)
    shutil.copy(model_dir / (RERANKER_FILE + ".sha256"), empty / (RERANKER_FILE + ".sha256"))

    async def sighup() -> None:  # on the app's loop, as the signal handler runs
        reload_all(client.app.state)

    client.blocking_portal.call(sighup)
    deadline = time.monotonic() + 10
    while client.get("/").json()["feed"]["reranker"]["loaded"] is False:
        assert time.monotonic() < deadline, "the reranker was not reloaded"
        time.sleep(0.05)
    again = client.post(HOME, json={"user_id": user, "ctx_timestamp": AT}).json()
    assert again["models"]["order"] == "reranker"


def test_health_shows_every_model(client: TestClient[Any]) -> None:
    feed = client.get("/").json()["feed"]
    assert feed["reranker"]["loaded"] is True and feed["reranker"]["version"]
    assert feed["live_set"]["live_streams"] > 0
    assert feed["feature_store"]["backend"] == "memory"
    endpoints = client.get("/").json()["endpoints"]
    assert f"POST {HOME}" in endpoints and f"POST {CATEGORY}" in endpoints


def test_database_down_is_503_with_retry_after(make_client: MakeClient, tmp_path: Path) -> None:
    dead = f"postgresql://hometown:hometown@127.0.0.1:{free_port()}/hometown"
    client = make_client(dead, DB_CONNECT_TIMEOUT=0.5)
    for path, extra in ((HOME, {}), (CATEGORY, {"category_id": "gaming"})):
        response = client.post(path, json={"user_id": "user_000001", **extra})
        assert response.status_code == 503, response.text
        assert int(response.headers["retry-after"]) >= 1


def test_a_viewer_with_an_all_zero_embedding_gets_no_collaborative_source(
    client: TestClient[Any], world: tuple[str, Path]
) -> None:
    """LightGCN stores zeros for a viewer without a training positive: no cf, not a tie."""
    url, _ = world
    rows = fetch(
        url,
        "SELECT e.entity_id FROM feed_embeddings e"
        " JOIN feed_models m ON m.version = e.model_version AND m.active"
        " WHERE e.entity = 'user'"
        " AND e.vector = decode(repeat('00', octet_length(e.vector)), 'hex')"
        " ORDER BY e.entity_id LIMIT 1",
    )
    assert rows, "the trained world has a viewer with an all-zero vector"
    answer = client.post(HOME, json={"user_id": rows[0]["entity_id"], "ctx_timestamp": AT}).json()
    assert "cf" not in answer["sources"] and answer["streams"], answer


def test_the_near_source_is_hometowns_own_search_for_the_viewer(world: tuple[str, Path]) -> None:
    """`near` takes the viewer from the feature store, yet equals HOMETOWN's top NEAR_K.

    Viewers with every local preference strength (it scales proximity, which these
    weights make count), in a fresh store (read from PostgreSQL) and again from its
    cache, for both feeds.
    """
    weights = Weights(proximity_weight=300.0)
    url, _ = world
    users = fetch(
        url,
        "SELECT user_id FROM users ORDER BY local_preference_strength, user_id LIMIT 1",
    ) + fetch(url, "SELECT user_id FROM users ORDER BY md5(user_id) LIMIT 12")
    users += fetch(url, "SELECT user_id FROM users ORDER BY local_preference_strength DESC LIMIT 1")
    [category] = fetch(
        url, "SELECT category_id FROM streams GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
    )

    async def run() -> list[str]:
        problems = []
        conn = await asyncpg.connect(url)
        store = FeatureStore(MemoryCache())

        @contextlib.asynccontextmanager
        async def connect() -> AsyncIterator[asyncpg.Connection]:
            yield conn

        try:
            for row in users * 2:  # the second time from the store's cache
                user_id = row["user_id"]
                facts = await store.user(conn, user_id, None)
                assert facts is not None
                for wanted in (None, category["category_id"]):
                    query = FeedQuery(user_id=user_id, category_id=wanted)
                    parts = Parts(
                        live=LiveSet(),
                        store=store,
                        popular=None,  # type: ignore[arg-type]  # not used by the near source
                        ranker=None,
                        ranker_version=None,
                        weights=weights,
                    )
                    near = await feed_service._near(connect, query, facts, parts)
                    direct = await hometown.recommend(
                        conn,
                        hometown.Query(
                            user_id=user_id,
                            max_results=NEAR_K,
                            category_ids=None if wanted is None else [wanted],
                        ),
                        weights,
                        default_local_preference=0.0,  # a stored user has their own
                    )
                    expected = [s.stream_id for s in direct.streams]
                    if near != expected or not near:
                        problems.append(f"{user_id} {wanted}: {near[:5]} != {expected[:5]}")
        finally:
            await conn.close()
        return problems

    problems = asyncio.run(run())
    assert not problems, "\n".join(problems[:5])


def _other_reranker(path: Path) -> str:
    """A second reranker over the same features (it ranks by the first one): its version."""
    import xgboost as xgb

    from app.feed.artifact import save_ranker

    rng = np.random.default_rng(11)
    features = rng.normal(size=(600, len(FEATURE_NAMES)))
    labels = (features[:, 0] > 0).astype(int)
    ranker = xgb.XGBRanker(objective="rank:ndcg", n_estimators=4, max_depth=2)
    ranker.fit(features, labels, qid=np.repeat(np.arange(20), 30))
    raw = bytes(ranker.get_booster().save_raw("json"))
    saved = save_ranker(raw, {"feature_names": list(FEATURE_NAMES)}, path)
    return f"reranker-{saved.metadata['sha256'][:12]}"


def test_two_rerankers_are_two_variants_of_an_experiment(
    world: tuple[str, Path], make_client: MakeClient
) -> None:
    """`feed_reranker` serves a variant with another reranker file: each user gets their
    variant's reranker, the answers and exposures say which, and `GET /` shows both; a
    variant whose file cannot be loaded is served in the fallback order, and says so."""
    url, model_dir = world
    candidate = _other_reranker(model_dir / "candidate.bin")
    declared = {
        "name": "two-rerankers",
        "scenarios": ["home_feed"],
        "variants": [
            {"name": "current", "share": 0.4, "feed_order": "reranker"},
            {"name": "candidate", "share": 0.3, "feed_order": "reranker",
             "feed_reranker": "candidate.bin"},
            {"name": "missing", "share": 0.3, "feed_order": "reranker",
             "feed_reranker": "nowhere.bin"},
        ],
    }  # fmt: skip
    client = _started(
        make_client(
            url,
            MODEL_PATH=str(model_dir / "click.joblib"),
            EXPERIMENTS=json.dumps([declared]),
            EXPOSURE_FLUSH_SECONDS=0.1,
        )
    )
    feed = client.get("/").json()["feed"]
    current = feed["reranker"]["version"]
    assert current and current != candidate
    variants = feed["variant_rerankers"]
    assert variants["candidate.bin"]["version"] == candidate
    assert not variants["nowhere.bin"]["loaded"] and variants["nowhere.bin"]["error"]
    users = [r[0] for r in fetch(url, "SELECT user_id FROM users ORDER BY 1 LIMIT 60")]
    served: dict[str, tuple[str, str | None, str]] = {}
    for user in users:
        answer = client.post(HOME, json={"user_id": user, "ctx_timestamp": AT}).json()
        models = answer["models"]
        served[user] = (answer["experiment"]["variant"], models["reranker"], models["order"])
    expected = {
        "current": (current, "reranker"),
        "candidate": (candidate, "reranker"),
        "missing": (None, "fallback"),
    }
    assert {v for v, _, _ in served.values()} == set(expected)
    for variant, reranker, order in served.values():
        assert (reranker, order) == expected[variant]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = fetch(
            url,
            "SELECT user_id, variant, model FROM exposures WHERE experiment = 'two-rerankers'",
        )
        if len(rows) == len(users):
            break
        time.sleep(0.1)
    logged = {r["user_id"]: (r["variant"], r["model"]) for r in rows}
    assert logged == {u: (v, r or o) for u, (v, r, o) in served.items()}
