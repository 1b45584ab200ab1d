"""`GET /v1/scenarios/hometown/stats` counts what the scenario can draw on."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient

from app.hometown.service import rings
from app.main import create_app
from app.settings import Settings
from seed.loader import Dataset, load
from tests.support import frames


def test_stats_count_users_streams_live_and_cities(db_url: str) -> None:
    users = frames.users(7)
    streams = frames.streams(6)
    streams.loc[0:2, "city"] = "Lyon"
    streams.loc[[1, 4], ["is_live", "current_viewer_count", "live_since"]] = [False, 0, None]
    load(db_url, Dataset(users, streams))
    settings = Settings(DATABASE_URL=db_url, STATS_CACHE_SECONDS=0)
    with TestClient(create_app(settings)) as client:
        body = client.get("/v1/scenarios/hometown/stats").json()
    assert (body["users"], body["streams"], body["live_streams"]) == (7, 6, 4)
    assert (body["cities"], body["live_cities"]) == (2, 2)
    assert body["top_cities"] == [
        {"city": "Lyon", "live_streams": 2, "viewers": 6},
        {"city": "Paris", "live_streams": 2, "viewers": 6},
    ]
    assert body["algorithm"]["weights"]["proximity_weight"] == 1.5
    assert "sphere" in body["algorithm"]["distance_model"]


def test_stats_on_an_empty_database(db_url: str) -> None:
    with TestClient(create_app(Settings(DATABASE_URL=db_url))) as client:
        response = client.get("/v1/scenarios/hometown/stats")
    assert response.status_code == 200
    assert response.json()["top_cities"] == []


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
