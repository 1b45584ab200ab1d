"""`GET /v1/scenarios/hometown/stats` counts what the scenario can draw on."""

from __future__ import annotations

import time

import pytest
from litestar.testing import TestClient

from app.hometown.service import rings
from app.main import create_app
from app.settings import Settings
from seed.loader import Dataset, load
from tests.support import frames
from tests.support.db import run_sql
from tests.support.redis import RedisServer

#: 19 streams in 12 cities: Lyon and Marseille tie (Lyon first by name), and of the
#: nine one-stream cities only the first seven by name make the top 10.
CITIES = ["Paris"] * 4 + ["Lyon"] * 3 + ["Marseille"] * 3 + [
    "Tours", "Pau", "Nice", "Nancy", "Metz", "Lille", "Dijon", "Caen", "Brest",
]  # fmt: skip
#: Offline streams: 2 in Paris, all of Marseille, every one-stream city but Brest.
OFFLINE = [0, 1, 7, 8, 9, *range(10, 18)]


def _known_world(db_url: str) -> None:
    streams = frames.streams(len(CITIES))
    streams["city"] = CITIES
    streams.loc[OFFLINE, ["is_live", "current_viewer_count", "live_since"]] = [False, 0, None]
    load(db_url, Dataset(frames.users(1234), streams))


def test_a_client_of_the_seed_contract_reads_the_stats(db_url: str) -> None:
    """The seed documents `{"total_streams": 500, "total_users": 1000, "cities_covered":
    32, "top_cities": {"Los Angeles": 60, ...}, "algorithm": "..."}`; its client reads
    the body like this."""
    _known_world(db_url)
    settings = Settings(DATABASE_URL=db_url, STATS_CACHE_SECONDS=0)
    with TestClient(create_app(settings)) as client:
        stats = client.get("/v1/scenarios/hometown/stats").json()
    report = [
        f"users: {stats['total_users']:,}",
        f"streams: {stats['total_streams']:,}",
        f"cities: {stats['cities_covered']:,}",
        *(f"{city}: {n:,}" for city, n in stats["top_cities"].items()),
        f"algorithm: {stats['algorithm']}",
    ]
    assert report[:3] == ["users: 1,234", "streams: 19", "cities: 12"]
    assert report[3:-1] == [
        "Paris: 4",
        "Lyon: 3",
        "Marseille: 3",
        "Brest: 1",
        "Caen: 1",
        "Dijon: 1",
        "Lille: 1",
        "Metz: 1",
        "Nancy: 1",
        "Nice: 1",
    ]
    assert "1/(1 + distance_km)" in report[-1]


def test_stats_add_the_live_picture_and_the_algorithm_details(db_url: str) -> None:
    _known_world(db_url)
    settings = Settings(DATABASE_URL=db_url, STATS_CACHE_SECONDS=0)
    with TestClient(create_app(settings)) as client:
        body = client.get("/v1/scenarios/hometown/stats").json()
    assert (body["live_streams"], body["live_cities"]) == (6, 3)
    assert body["top_live_cities"] == [
        {"city": "Lyon", "live_streams": 3, "viewers": 9},
        {"city": "Paris", "live_streams": 2, "viewers": 6},
        {"city": "Brest", "live_streams": 1, "viewers": 3},
    ]
    details = body["algorithm_details"]
    assert details["name"] == "hometown-exact-threshold"
    assert details["weights"]["proximity_weight"] == 1.5
    assert "sphere" in details["distance_model"]
    assert details["formula"] == body["algorithm"]


def test_stats_on_an_empty_database(db_url: str) -> None:
    with TestClient(create_app(Settings(DATABASE_URL=db_url))) as client:
        response = client.get("/v1/scenarios/hometown/stats")
    assert response.status_code == 200
    body = response.json()
    assert (body["total_users"], body["total_streams"], body["cities_covered"]) == (0, 0, 0)
    assert (body["live_streams"], body["live_cities"]) == (0, 0)
    assert body["top_cities"] == {}
    assert body["top_live_cities"] == []


def test_rings_widen_by_four_up_to_the_antipode() -> None:
    found = rings(250)
    assert [round(r.outer_m / 1000) for r in found[:4]] == [250, 1000, 4000, 16000]
    assert found[0].inner_m < 0
    assert [r.inner_m for r in found[1:]] == [r.outer_m for r in found[:-1]]
    assert found[-1].outer_m > 20_015_086  # past half the circumference: the whole globe
    assert len(rings(20000)) == 2


def test_a_fractional_ring_edge_is_not_truncated(db_url: str) -> None:
    """Ring edges travel as float8: a stream 1234.3 m away with radius 1.2345 km sits
    in ring 0 only (an int4 edge of 1234 m once put it in rings 0 and 1)."""
    streams = frames.streams(3)
    metres_per_degree = 6_371_008.771415 * 3.141592653589793 / 180
    streams.loc[:, "longitude"] = 0.0
    streams.loc[:, "latitude"] = [1234.3 / metres_per_degree, 0.2, 0.3]
    load(db_url, Dataset(frames.users(1), streams))
    with TestClient(create_app(Settings(DATABASE_URL=db_url))) as client:
        body = client.post(
            "/v1/scenarios/hometown",
            json={"latitude": 0.0, "longitude": 0.0, "radius_km": 1.2345, "max_results": 3},
        ).json()
    ids = [s["stream_id"] for s in body["streams"]]
    assert ids.count("stream_000000") == 1
    assert body["streams"][0]["stream_id"] == "stream_000000"
    assert body["streams"][0]["ring"] == 0
    assert body["streams"][0]["distance_km"] == pytest.approx(1.2343, abs=1e-6)
    assert len(ids) == 3 == len(set(ids))


def _cached(db_url: str, redis_url: str | None) -> Settings:
    return Settings(DATABASE_URL=db_url, STATS_CACHE_SECONDS=30, REDIS_URL=redis_url or "")


def _one_more_user(db_url: str) -> None:
    run_sql(
        db_url,
        "INSERT INTO users (user_id, city, latitude, longitude, language, timezone_offset,"
        " preferred_categories, local_preference_strength, total_watch_hours)"
        " SELECT 'u_extra', city, latitude, longitude, language, timezone_offset,"
        " preferred_categories, local_preference_strength, total_watch_hours"
        " FROM users ORDER BY user_id LIMIT 1",
    )


def test_with_redis_processes_share_one_answer_per_period(db_url: str, redis_url: str) -> None:
    """A second process within the TTL takes the first one's answer instead of counting again."""
    _known_world(db_url)
    with TestClient(create_app(_cached(db_url, redis_url))) as first:
        assert first.get("/v1/scenarios/hometown/stats").json()["total_users"] == 1234
    _one_more_user(db_url)
    with TestClient(create_app(_cached(db_url, redis_url))) as second:
        assert second.get("/v1/scenarios/hometown/stats").json()["total_users"] == 1234
    # Without Redis the same second process counts for itself, and sees the new user.
    with TestClient(create_app(_cached(db_url, None))) as alone:
        assert alone.get("/v1/scenarios/hometown/stats").json()["total_users"] == 1235


def test_a_shared_answer_keeps_its_age(db_url: str, redis_url: str) -> None:
    """A process that takes the shared answer serves it only for what is left of the TTL."""
    _known_world(db_url)
    with TestClient(create_app(_cached(db_url, redis_url))) as first:
        first.get("/v1/scenarios/hometown/stats")
    with TestClient(create_app(_cached(db_url, redis_url))) as second:
        second.get("/v1/scenarios/hometown/stats")
        cache = second.app.state.stats_cache
        age = time.monotonic() - cache.at
        assert 0.0 <= age < 30.0
        shared = second.blocking_portal.call(cache.shared.get)
        assert shared is not None and abs(shared[1] - age) < 1.0


def test_redis_down_the_stats_are_computed_in_the_process(
    db_url: str, redis_url: str, redis_server: RedisServer
) -> None:
    _known_world(db_url)
    redis_server.stop()
    with TestClient(create_app(_cached(db_url, redis_url))) as client:
        answer = client.get("/v1/scenarios/hometown/stats")
        assert answer.status_code == 200 and answer.json()["total_users"] == 1234
        assert client.app.state.stats_cache.shared.fallbacks >= 1
