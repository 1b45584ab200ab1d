"""`POST /v1/scenarios/hometown` against a brute-force oracle, on seeded data plus edge cases.

The oracle (tests/support/oracle.py) is written from the contract alone: it reads the
raw tables with plain SELECTs, measures distances with numpy and fills the rings by
their definition. These tests compare it with the endpoint for hundreds of requests:
known users, signed-out viewers in dense cities and empty places, the antimeridian,
the poles, a cluster of identical streams at one point (ties broken by stream_id),
offline streams nearest of all (never shown), mature streams and filters.

The first tests check the oracle itself, by hand and against PostGIS's own sphere.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec
import numpy as np
import pandas as pd
import pytest
from litestar.testing import TestClient

from app.api.hometown import to_response
from app.api.schemas import HometownRequest
from app.hometown import candidates, first_step, service
from app.hometown.candidates import Rows
from app.hometown.ml_term import MLTerm
from app.hometown.scoring import Viewer, score
from app.hometown.tiers import TIERS
from app.hometown.weights import Weights
from app.main import create_app
from app.settings import Settings
from seed.generate import generate
from seed.loader import Dataset, load
from tests.support import frames, oracle
from tests.support.db import fetch, run_sql

ROUTE = "/v1/scenarios/hometown"
SEED = 20261122
N_USERS, N_STREAMS = 3000, 6000
CLUSTER_POINT = (47.3769, 8.5417)  # Zürich: no seeded city within 250 km of it
CLUSTER_SIZE = 30
FIJI_EAST, FIJI_WEST = 179.95, -179.95
R_KM = oracle.EARTH_RADIUS_M / 1000.0
TIER_EDGE_POINT = (64.1, -21.9)  # Reykjavik: no seeded place within 250 km
#: (quality, avg viewers) whose static part, quality + min(viewers / 1000, 2), is every
#: multiple of 0.5 from 0 to 12 and a hair (0.01) under it: wherever the service cuts its
#: static-score tiers, some stream sits exactly on the cut.
TIER_EDGES = [
    (round(min(v, 10.0) - below, 2), round((v - min(v, 10.0)) * 1000))
    for v in [half / 2 for half in range(25)]
    for below in (0.0, 0.01)
    if min(v, 10.0) - below >= 0
]

# --- the oracle by itself -------------------------------------------------------------


def _stream_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Streams for the oracle alone: defaults for every column it reads, then `rows`."""
    defaults = {
        "is_live": True,
        "mature_content": False,
        "language": "fr",
        "category_id": "gaming",
        "stream_quality_score": 1.0,
        "avg_viewer_count": 0,
        "city": "c",
        "title": "t",
        "current_viewer_count": 0,
    }
    return pd.DataFrame([{**defaults, **row} for row in rows])


NO_USERS = pd.DataFrame(columns=list(oracle.USER_FIELDS))


def test_great_circle_distances_by_hand() -> None:
    equator = oracle.great_circle_km(0.0, 0.0, [0.0, 0.0, 0.0, 0.0], [1.0, 10.0, 90.0, 180.0])
    by_hand = np.array([1.0, 10.0, 90.0, 180.0]) * math.pi / 180 * R_KM
    np.testing.assert_allclose(equator, by_hand, rtol=1e-14)
    assert oracle.great_circle_km(90.0, 0.0, [-90.0], [123.0])[0] == pytest.approx(
        oracle.HALF_CIRCUMFERENCE_KM, abs=1e-9
    )
    assert oracle.great_circle_km(90.0, 0.0, [90.0], [-77.0])[0] == pytest.approx(0.0, abs=1e-9)
    # Across the antimeridian it is as short as across Greenwich.
    across = oracle.great_circle_km(-17.8, FIJI_EAST, [-17.8], [FIJI_WEST])[0]
    greenwich = oracle.great_circle_km(-17.8, -0.05, [-17.8], [0.05])[0]
    assert across == pytest.approx(greenwich, abs=1e-9)
    assert 10.0 < across < 11.0
    # The textbook haversine agrees wherever it is well conditioned.
    rng = np.random.default_rng(1)
    lats, lons = rng.uniform(-90, 90, 500), rng.uniform(-180, 180, 500)
    np.testing.assert_allclose(
        oracle.great_circle_km(12.5, -33.0, lats, lons),
        oracle.haversine_km(12.5, -33.0, lats, lons),
        rtol=1e-9,
        atol=1e-6,
    )


def test_ring_bounds_widen_fourfold_to_the_antipode() -> None:
    h = oracle.HALF_CIRCUMFERENCE_KM
    assert h == pytest.approx(20015.114352, abs=1e-6)
    assert oracle.ring_bounds(250) == [
        (0.0, 250),
        (250.0, 1000.0),
        (1000.0, 4000.0),
        (4000.0, 16000.0),
        (16000.0, h),
    ]
    assert oracle.ring_bounds(20000) == [(0.0, 20000), (20000.0, h)]
    assert len(oracle.ring_bounds(1)) == 9
    distances = np.array([0.0, 250.0, 250.0001, 1000.0, 16000.5, h, h + 1e-9])
    assert oracle.ring_of(distances, 250).tolist() == [0, 0, 1, 1, 4, 4, 4]


def _three_streams() -> pd.DataFrame:
    """Three live streams on the equator, 1°, 10° and 90° east of the viewer at (0, 0)."""
    return _stream_frame(
        [
            {
                "stream_id": "c_far",
                "latitude": 0.0,
                "longitude": 90.0,
                "stream_quality_score": 1.0,
                "avg_viewer_count": 0,
            },
            {
                "stream_id": "a_near",
                "latitude": 0.0,
                "longitude": 1.0,
                "language": "en",
                "category_id": "music",
                "stream_quality_score": 3.0,
                "avg_viewer_count": 500,
            },
            {
                "stream_id": "b_mid",
                "latitude": 0.0,
                "longitude": 10.0,
                "stream_quality_score": 8.0,
                "avg_viewer_count": 5000,
            },
        ]
    )


def test_oracle_on_three_streams_computed_by_hand() -> None:
    request = {
        "latitude": 0.0,
        "longitude": 0.0,
        "language": "en",
        "preferred_categories": ["music"],
        "local_preference_strength": 0.2,
        "radius_km": 100.0,
        "max_results": 2,
    }
    km = {deg: deg * math.pi / 180 * R_KM for deg in (1, 10, 90)}  # 111.2, 1112.0, 10007.6
    # 1.5 · 1/(1 + d) · (1 + 0.2) + quality + language + category + min(viewers/1000, 2)
    score_a = 1.8 / (1 + km[1]) + 3.0 + 1.0 + 0.5 + 0.5
    score_b = 1.8 / (1 + km[10]) + 8.0 + 2.0
    score_c = 1.8 / (1 + km[90]) + 1.0

    two = oracle.expect(NO_USERS, _three_streams(), request)
    assert two.ids == ["a_near", "b_mid"]  # ring 1 (100, 400], then ring 2 (400, 1600]
    assert two.streams["ring"].tolist() == [1, 2]
    np.testing.assert_allclose(two.streams["distance_km"], [km[1], km[10]], rtol=1e-13)
    np.testing.assert_allclose(two.streams["score"], [score_a, score_b], rtol=1e-13)
    assert [(r.index, r.min_km, r.max_km, r.take) for r in two.rings] == [
        (0, 0.0, 100.0, 0),
        (1, 100.0, 400.0, 1),
        (2, 400.0, 1600.0, 1),
    ]

    three = oracle.expect(NO_USERS, _three_streams(), {**request, "max_results": 3})
    assert three.ids == ["a_near", "b_mid", "c_far"]
    assert three.streams["ring"].tolist() == [1, 2, 4]  # ring 3 (1600, 6400] is empty
    assert three.streams["score"].iloc[2] == pytest.approx(score_c, rel=1e-13)
    assert [r.take for r in three.rings] == [0, 1, 1, 0, 1]

    # One ring holding all three: the best score wins over the nearest.
    wide = oracle.expect(NO_USERS, _three_streams(), {**request, "radius_km": 20000})
    assert wide.ids == ["b_mid", "a_near"]
    assert [r.take for r in wide.rings] == [2]

    # No language given: never a language match; filters narrow the candidates.
    plain = {"latitude": 0.0, "longitude": 0.0, "radius_km": 20000, "languages": ["en", "xx"]}
    only_a = oracle.expect(NO_USERS, _three_streams(), plain)
    assert only_a.ids == ["a_near"]
    assert only_a.streams["c_language"].iloc[0] == 0.0
    assert only_a.streams["c_proximity"].iloc[0] == pytest.approx(1.5 * 1.5 / (1 + km[1]))
    assert [r.index for r in only_a.rings] == [0, 1]  # fewer than 20 exist: every ring searched


def test_oracle_reads_a_known_user_and_drops_offline_and_mature() -> None:
    users = pd.DataFrame(
        [
            {
                "user_id": "u1",
                "latitude": 0.0,
                "longitude": 0.5,
                "language": "en",
                "preferred_categories": ["gaming"],
                "local_preference_strength": 1.0,
            }
        ]
    )
    streams = _three_streams()
    streams.loc[streams["stream_id"] == "b_mid", "is_live"] = False
    streams.loc[streams["stream_id"] == "c_far", "mature_content"] = True
    got = oracle.expect(users, streams, {"user_id": "u1", "radius_km": 20000})
    assert got.ids == ["a_near", "c_far"]  # b_mid is offline
    c_far = got.streams.iloc[1]
    assert c_far["c_category"] == 0.5 and c_far["c_language"] == 0.0
    assert oracle.expect(users, streams, {"user_id": "u1", "include_mature": False}).ids == [
        "a_near"
    ]
    with pytest.raises(oracle.UnknownUser):
        oracle.expect(users, streams, {"user_id": "nobody"})


def test_oracle_breaks_ties_by_stream_id() -> None:
    same = {"latitude": 10.0, "longitude": 10.0, "stream_quality_score": 5.0}
    streams = _stream_frame([{"stream_id": sid, **same} for sid in ("s_b", "s_c", "s_a", "s_d")])
    got = oracle.expect(NO_USERS, streams, {"latitude": 10.0, "longitude": 10.5, "max_results": 3})
    assert got.ids == ["s_a", "s_b", "s_c"]


def _body(expectation: oracle.Expectation) -> dict[str, Any]:
    """A response the endpoint would give if it agreed with the oracle exactly."""
    streams = [
        {
            "stream_id": row.stream_id,
            "city": row.city,
            "score": row.score,
            "distance_km": row.distance_km,
            "proximity_boost": row.proximity_boost,
            "ring": int(row.ring),
            "title": row.title,
            "language": row.language,
            "category_id": row.category_id,
            "current_viewer_count": int(row.current_viewer_count),
        }
        for row in expectation.streams.itertuples()
    ]
    rings = [
        {"index": r.index, "min_km": r.min_km, "max_km": r.max_km, "streams": r.take}
        for r in expectation.rings
    ]
    return {"request_id": "x", "streams": streams, "rings": rings}


def test_check_is_strict_except_for_last_bit_ties() -> None:
    near = 1e-12
    streams = _stream_frame(
        [
            # s_a scores a hair below s_b: a last-bit tie whose id says the other way.
            {"stream_id": "s_a", "latitude": 0, "longitude": 0, "stream_quality_score": 5 - near},
            {"stream_id": "s_b", "latitude": 0, "longitude": 0, "stream_quality_score": 5.0},
            # s_c a hair below s_b too, but its id agrees with the score: order fixed.
            {"stream_id": "s_c", "latitude": 0, "longitude": 0, "stream_quality_score": 5 - near},
            {"stream_id": "s_d", "latitude": 0, "longitude": 0, "stream_quality_score": 4.0},
        ]
    )
    request = {"latitude": 0.0, "longitude": 0.0, "max_results": 3}
    want = oracle.expect(NO_USERS, streams, request)
    assert want.ids == ["s_b", "s_a", "s_c"]
    body = _body(want)
    assert oracle.check(want, body) == []

    swapped_tie = json.loads(json.dumps(body))
    swapped_tie["streams"][0], swapped_tie["streams"][1] = body["streams"][1], body["streams"][0]
    assert oracle.check(want, swapped_tie) == []  # a last-bit tie: either order will do

    swapped_fixed = json.loads(json.dumps(body))
    swapped_fixed["streams"][1], swapped_fixed["streams"][2] = (
        body["streams"][2],
        body["streams"][1],
    )
    assert any("ranked above" in p for p in oracle.check(want, swapped_fixed))

    wrong_pick = json.loads(json.dumps(body))
    wrong_pick["streams"][2] = {**body["streams"][2], "stream_id": "s_d"}
    assert any("left out" in p for p in oracle.check(want, wrong_pick))

    off_score = json.loads(json.dumps(body))
    off_score["streams"][0]["score"] += 1e-6
    assert any("score" in p for p in oracle.check(want, off_score))

    bad_rings = json.loads(json.dumps(body))
    bad_rings["rings"][0]["max_km"] = 251.0
    assert any(p.startswith("ring 0") for p in oracle.check(want, bad_rings))


def test_check_accepts_either_order_only_for_reversed_near_ties() -> None:
    near = 1e-12
    streams = _stream_frame(
        [
            {"stream_id": "s_a", "latitude": 0, "longitude": 0, "stream_quality_score": 5 - near},
            {"stream_id": "s_b", "latitude": 0, "longitude": 0, "stream_quality_score": 5.0},
        ]
    )
    want = oracle.expect(NO_USERS, streams, {"latitude": 0.0, "longitude": 0.0, "max_results": 1})
    assert want.ids == ["s_b"]
    body = _body(want)
    body["streams"][0]["stream_id"] = "s_a"
    body["streams"][0]["score"] -= near
    assert oracle.check(want, body) == []  # s_a may win a last-bit tie by its id


# --- the seeded world -----------------------------------------------------------------


@dataclass
class World:
    """The loaded database, its tables as the oracle reads them, and a client on the app."""

    url: str
    users: pd.DataFrame
    streams: pd.DataFrame
    client: TestClient[Any]
    offline_user_ids: list[str]


def _rows(template: pd.DataFrame, rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """`len(rows)` copies of the template's first row, each overridden by one of `rows`."""
    frame = pd.concat([template.iloc[[0]]] * len(rows), ignore_index=True)
    for i, row in enumerate(rows):
        for column, value in row.items():
            frame.at[i, column] = value
    return frame


def _extra_streams(users: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Hand-placed streams (see module doc), and the users an offline stream sits on."""
    rows: list[dict[str, Any]] = []

    def live(sid: str, lat: float, lon: float, **extra: Any) -> None:
        rows.append({"stream_id": sid, "latitude": lat, "longitude": lon, **extra})

    for k, (lat, quality) in enumerate(
        [(-16.60, 2.0), (-16.61, 4.0), (-16.63, 6.0), (-16.64, 8.0)]
    ):
        common = {"city": "Suva", "language": "fj", "category_id": "fiji_cat"}
        live(f"fiji_e_{k}", lat, FIJI_EAST, stream_quality_score=quality, **common)
        live(f"fiji_w_{k}", lat - 0.003, FIJI_WEST, stream_quality_score=quality + 0.5, **common)
    live("fiji_p180", -16.62, 180.0, city="Suva", language="fj", category_id="fiji_cat")
    live("fiji_m180", -16.615, -180.0, city="Suva", language="fj", category_id="fiji_cat")

    north = [
        (89.9, 0.0),
        (89.9, 90.0),
        (89.9, -135.0),
        (89.95, 179.99),
        (89.85, 45.0),
        (90.0, 17.0),
    ]
    for k, (lat, lon) in enumerate(north):
        live(f"npole_{k}", lat, lon, city="North Pole", language="xn", category_id="polar")
    south = [(-89.95, -170.0), (-89.95, 10.0), (-89.95, 100.0), (-89.85, 60.0), (-90.0, 0.0)]
    for k, (lat, lon) in enumerate(south):
        live(f"spole_{k}", lat, lon, city="South Pole", language="xs", category_id="polar")

    cluster = {
        "city": "Zürich",
        "language": "de",
        "category_id": "cluster_cat",
        "stream_quality_score": 9.5,
        "avg_viewer_count": 1500,
        "current_viewer_count": 700,
        "title": "same",
    }
    for k in range(CLUSTER_SIZE):
        live(f"cluster_{k:02d}", *CLUSTER_POINT, **cluster)
    # Mature streams a few metres from the cluster, better than it.
    for k, (dlat, dlon) in enumerate([(1e-4, 1e-4), (-2e-4, 1e-4), (3e-4, -2e-4)]):
        mature = {**cluster, "stream_quality_score": 10.0, "avg_viewer_count": 3000}
        lat, lon = CLUSTER_POINT[0] + dlat, CLUSTER_POINT[1] + dlon
        live(f"mature_{k}", lat, lon, **{**mature, "mature_content": True})

    # Offline streams, the best and nearest of all, on top of some users and places.
    on_users = users.iloc[:12]
    places = [
        ("offline_cluster", *CLUSTER_POINT),
        ("offline_npole", 90.0, 0.0),
        ("offline_spole", -90.0, 0.0),
        ("offline_fiji", -16.62, 179.97),
    ]
    offline = [
        (f"offline_{k:02d}", r.latitude, r.longitude) for k, r in enumerate(on_users.itertuples())
    ]
    for sid, lat, lon in offline + places:
        rows.append(
            {
                "stream_id": sid,
                "latitude": lat,
                "longitude": lon,
                "stream_quality_score": 10.0,
                "avg_viewer_count": 9000,
                "is_live": False,
                "current_viewer_count": 0,
                "live_since": pd.NaT,
                "category_id": "polar",
            }
        )
    # Static scores (quality + popularity) exactly on round numbers, and a hair below,
    # far from everyone: an index tier cut at such a value must neither drop nor double them.
    for k, (quality, viewers) in enumerate(TIER_EDGES):
        lat, lon = TIER_EDGE_POINT[0] + 0.01 * k, TIER_EDGE_POINT[1]
        edge = {"stream_quality_score": quality, "avg_viewer_count": viewers, "language": "is"}
        live(f"edge_{k:02d}", lat, lon, city="Reykjavik", **edge)
    for row in rows:
        row.setdefault("creator_id", f"creator_{row['stream_id']}")
        row.setdefault("title", f"{row['stream_id']} live")
    frame = pd.concat([_rows(frames.streams(1, prefix="x"), rows), _dense_streams()])
    # Shuffled, so the table's physical order is not the id order ties are broken by.
    frame = frame.sample(frac=1.0, random_state=7).reset_index(drop=True)
    return frame, list(on_users["user_id"])


def _dense_streams(n: int = 1500) -> pd.DataFrame:
    """A dense patch around Tokyo (sigma 15 km), mostly live, so a top-k must stop early."""
    rng = np.random.default_rng([SEED, 5])
    centre_lat, centre_lon = PLACES["tokyo"]
    quality = np.minimum((1 - rng.random(n)) ** -0.5, 10.0).round(2)
    live = rng.random(n) < 0.8
    frame = pd.concat([frames.streams(1, prefix="x")] * n, ignore_index=True)
    return frame.assign(
        stream_id=[f"dense_{i:04d}" for i in range(n)],
        creator_id=[f"creator_dense_{i:04d}" for i in range(n)],
        city="Tokyo",
        title=[f"dense {i}" for i in range(n)],
        latitude=(centre_lat + rng.normal(0, 15 / 111.2, n)).round(5),
        longitude=(
            centre_lon + rng.normal(0, 15 / (111.2 * math.cos(math.radians(centre_lat))), n)
        ).round(5),
        language=rng.choice(["ja", "en", "ko"], size=n, p=[0.7, 0.2, 0.1]),
        category_id=rng.choice(["gaming", "music", "just_chatting", "art", "irl"], size=n),
        stream_quality_score=quality,
        avg_viewer_count=np.floor(
            np.exp(math.log(6) + 2 * np.log(quality) + 1.1 * rng.normal(size=n))
        ).astype(np.int64),
        mature_content=rng.random(n) < 0.2,
        is_live=live,
        current_viewer_count=np.where(live, rng.integers(0, 5000, n), 0),
        live_since=frame["live_since"].where(pd.Series(live), pd.NaT),
    )


def _extra_users() -> pd.DataFrame:
    polar = {"language": "xn", "preferred_categories": ["polar"]}
    rows = [
        {"user_id": "zz_fiji_east", "latitude": -16.62, "longitude": 179.97, "language": "fj"},
        {"user_id": "zz_fiji_west", "latitude": -16.62, "longitude": -179.97},
        {"user_id": "zz_fiji_180", "latitude": -16.62, "longitude": 180.0},
        {"user_id": "zz_fiji_m180", "latitude": -16.62, "longitude": -180.0},
        {"user_id": "zz_npole", "latitude": 90.0, "longitude": 0.0, **polar},
        {"user_id": "zz_npole_near", "latitude": 89.9, "longitude": -60.0, **polar},
        {"user_id": "zz_spole", "latitude": -89.95, "longitude": 45.0, **polar},
        {"user_id": "zz_spole_exact", "latitude": -90.0, "longitude": 0.0},
        {
            "user_id": "zz_cluster",
            "latitude": CLUSTER_POINT[0],
            "longitude": CLUSTER_POINT[1],
            "language": "de",
            "preferred_categories": ["cluster_cat", "gaming"],
            "local_preference_strength": 0.9,
        },
        {"user_id": "zz_cluster_near", "latitude": 47.40, "longitude": 8.60, "language": "de"},
    ]
    return _rows(frames.users(1, prefix="x"), rows)


def _read_tables(url: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The raw tables, read with plain SELECTs (no service code involved)."""
    users = fetch(url, f"SELECT {', '.join(oracle.USER_FIELDS)} FROM users")
    streams = fetch(url, f"SELECT {', '.join(oracle.STREAM_FIELDS)} FROM streams")
    return (
        pd.DataFrame([dict(r) for r in users], columns=list(oracle.USER_FIELDS)),
        pd.DataFrame([dict(r) for r in streams], columns=list(oracle.STREAM_FIELDS)),
    )


@pytest.fixture(scope="module")
def world(migrated_url: str) -> Iterator[World]:
    """Seeded data plus the hand-placed edge cases, loaded once for this module."""
    seeded = generate(N_USERS, N_STREAMS, 0, seed=SEED, live_share=0.3)
    extra_streams, offline_user_ids = _extra_streams(seeded.users)
    users = pd.concat([seeded.users, _extra_users()], ignore_index=True)
    streams = pd.concat([seeded.streams, extra_streams], ignore_index=True)
    load(migrated_url, Dataset(users=users, streams=streams))
    try:
        user_table, stream_table = _read_tables(migrated_url)
        app = create_app(Settings(DATABASE_URL=migrated_url, ACCESS_LOG=False))
        with TestClient(app) as client:
            yield World(migrated_url, user_table, stream_table, client, offline_user_ids)
    finally:
        run_sql(migrated_url, "TRUNCATE interactions, streams, users")


def _ask(world: World, request: Mapping[str, Any]) -> tuple[oracle.Expectation, dict[str, Any]]:
    """The oracle's expectation and the endpoint's 200 body for one request."""
    expectation = oracle.expect(world.users, world.streams, request)
    response = world.client.post(ROUTE, json=dict(request))
    assert response.status_code == 200, (
        f"{json.dumps(request)} -> {response.status_code}: {response.text[:500]}"
    )
    return expectation, response.json()


def _problems(world: World, requests: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every mismatch between endpoint and oracle over `requests`, each with its request."""
    found: list[str] = []
    for request in requests:
        expectation = oracle.expect(world.users, world.streams, request)
        if expectation.boundary_ids:
            found.append(
                f"{json.dumps(request)}: streams within {oracle.DISTANCE_TOL_KM} km of a ring"
                f" boundary ({expectation.boundary_ids}); the data must avoid that"
            )
            continue
        response = world.client.post(ROUTE, json=dict(request))
        if response.status_code != 200:
            found.append(
                f"{json.dumps(request)}: HTTP {response.status_code} {response.text[:300]}"
            )
            continue
        body = response.json()
        problems = oracle.check(expectation, body, world.streams)
        if not isinstance(body.get("request_id"), str) or not body["request_id"]:
            problems.append(f"request_id is not a non-empty string: {body.get('request_id')!r}")
        if problems:
            found.append(f"{json.dumps(request)}:\n    " + "\n    ".join(problems[:8]))
    return found


def _assert_no_problems(world: World, requests: Sequence[Mapping[str, Any]]) -> None:
    problems = _problems(world, requests)
    assert not problems, (
        f"{len(problems)} of {len(requests)} requests disagree with the oracle;"
        f" the first ones:\n" + "\n".join(problems[:6])
    )


def _sample_users(world: World, n: int, salt: int) -> list[str]:
    seeded = world.users.loc[world.users["user_id"].str.startswith("user_"), "user_id"]
    rng = np.random.default_rng([SEED, salt])
    return sorted(rng.choice(seeded.to_numpy(), size=n, replace=False).tolist())


EDGE_USERS = [
    "zz_fiji_east",
    "zz_fiji_west",
    "zz_fiji_180",
    "zz_fiji_m180",
    "zz_npole",
    "zz_npole_near",
    "zz_spole",
    "zz_spole_exact",
    "zz_cluster",
    "zz_cluster_near",
]
PLACES = {
    "los_angeles": (34.0522, -118.2437),
    "tokyo": (35.6762, 139.6503),
    "paris": (48.8566, 2.3522),
    "pacific": (-30.0, -140.0),
    "sahara": (23.0, 12.0),
    "antarctica": (-80.0, 45.0),
    "fiji_east": (-16.62, 179.99),
    "fiji_west": (-16.62, -179.99),
    "antimeridian_180": (-16.62, 180.0),
    "antimeridian_m180": (-16.62, -180.0),
    "north_pole": (90.0, 0.0),
    "south_pole": (-90.0, 0.0),
    "near_pole": (89.99, 123.0),
    "cluster": CLUSTER_POINT,
}


# --- the oracle against PostGIS ---------------------------------------------------------


def test_oracle_distances_equal_postgis_sphere(world: World) -> None:
    """The oracle's numpy distances are PostGIS's sphere (ST_Distance(.., false) and <->)."""
    rows = fetch(
        world.url,
        """
        SELECT u.latitude AS ulat, u.longitude AS ulon, s.latitude AS slat, s.longitude AS slon,
               ST_Distance(u.location, s.location, false) / 1000 AS km,
               (u.location <-> s.location) / 1000 AS knn_km
        FROM (SELECT * FROM users WHERE user_id LIKE 'zz\\_%' OR user_id < 'user_000040') u
        CROSS JOIN (SELECT * FROM streams
                    WHERE stream_id !~ '^stream_' OR stream_id < 'stream_000060') s
        """,
    )
    assert len(rows) > 5000
    ours = np.array(
        [oracle.great_circle_km(r["ulat"], r["ulon"], [r["slat"]], [r["slon"]])[0] for r in rows]
    )
    theirs = np.array([r["km"] for r in rows])
    knn = np.array([r["knn_km"] for r in rows])
    assert np.abs(ours - theirs).max() < 1e-6
    assert np.abs(knn - theirs).max() < 1e-6


def test_loaded_edge_cases_are_as_designed(world: World) -> None:
    live = world.streams.loc[world.streams["is_live"]]
    assert len(live) > 1500
    assert (
        world.streams["stream_id"].str.startswith("cluster_") & world.streams["is_live"]
    ).sum() == (CLUSTER_SIZE)
    offline = world.streams.loc[world.streams["stream_id"].str.startswith("offline_")]
    assert not offline["is_live"].any() and len(offline) == 16
    assert len(world.users) == N_USERS + len(EDGE_USERS)


# --- endpoint against oracle ------------------------------------------------------------


def test_random_known_users_with_defaults(world: World) -> None:
    requests = [{"user_id": uid} for uid in _sample_users(world, 300, salt=1)]
    _assert_no_problems(world, requests)


@pytest.mark.parametrize("max_results", [1, 5, 20, 100])
def test_spread_of_max_results_and_radius(world: World, max_results: int) -> None:
    users = _sample_users(world, 6, salt=max_results) + EDGE_USERS
    requests = [
        {"user_id": uid, "max_results": max_results, "radius_km": radius}
        for uid in users
        for radius in (1, 10, 250, 1500, 20000)
    ]
    # Radii under the 1 km widening floor (README, "Widening"); not for the edge users,
    # who sit on a stream, i.e. on ring 0's boundary.
    requests += [
        {"user_id": uid, "max_results": max_results, "radius_km": radius}
        for uid in users[: -len(EDGE_USERS)]
        for radius in (5e-324, 0.001, 0.3)
    ]
    _assert_no_problems(world, requests)


FILTERS: list[dict[str, Any]] = [
    {"languages": ["en"]},
    {"languages": ["ja", "ko", "de"]},
    {"languages": ["xn", "xs", "fj"]},
    {"languages": ["nobody-speaks-this"]},
    {"category_ids": ["gaming"]},
    {"category_ids": ["music", "art", "cluster_cat"]},
    {"category_ids": ["polar"]},
    {"include_mature": False},
    {"include_mature": True},
    {"languages": ["en", "es"], "category_ids": ["just_chatting", "irl"], "include_mature": False},
]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: "-".join(f"{k}" for k in f))
def test_filters(world: World, filters: dict[str, Any]) -> None:
    users = _sample_users(world, 12, salt=len(json.dumps(filters))) + EDGE_USERS
    requests = [{"user_id": uid, **filters} for uid in users]
    requests += [
        {"latitude": lat, "longitude": lon, "max_results": 30, **filters}
        for lat, lon in (PLACES["tokyo"], PLACES["sahara"], PLACES["cluster"])
    ]
    _assert_no_problems(world, requests)


@pytest.mark.parametrize("place", list(PLACES))
def test_signed_out_viewers(world: World, place: str) -> None:
    lat, lon = PLACES[place]
    where = {"latitude": lat, "longitude": lon}
    requests: list[dict[str, Any]] = [
        where,
        {**where, "max_results": 1},
        {**where, "max_results": 100, "radius_km": 10},
        {**where, "radius_km": 1500, "language": "ja", "preferred_categories": ["gaming", "music"]},
        {**where, "local_preference_strength": 0.0, "radius_km": 20000},
        {**where, "local_preference_strength": 1.0, "language": "en", "max_results": 50},
        {**where, "languages": ["xn", "xs", "fj"], "max_results": 100, "radius_km": 5},
    ]
    _assert_no_problems(world, requests)


@pytest.mark.parametrize("place", ["pacific", "sahara", "antarctica", "near_pole"])
def test_remote_viewers_get_max_results_by_widening(world: World, place: str) -> None:
    lat, lon = PLACES[place]
    for max_results in (1, 20, 100):
        request = {"latitude": lat, "longitude": lon, "max_results": max_results}
        expectation, body = _ask(world, request)
        assert expectation.n_candidates >= max_results
        assert len(body["streams"]) == max_results, json.dumps(request)
        assert body["rings"][0]["streams"] == 0 or place == "near_pole"
        assert oracle.check(expectation, body, world.streams) == []


def test_antimeridian_is_no_wall(world: World) -> None:
    for lon in (179.99, -179.99, 180.0, -180.0):
        request = {"latitude": -16.62, "longitude": lon, "radius_km": 25, "languages": ["fj"]}
        expectation, body = _ask(world, request)
        ids = [s["stream_id"] for s in body["streams"]]
        assert {"fiji_e_0", "fiji_w_0", "fiji_p180", "fiji_m180"} <= set(ids), (lon, ids)
        assert all(s["ring"] == 0 and s["distance_km"] < 25 for s in body["streams"])
        assert oracle.check(expectation, body, world.streams) == []


def test_poles(world: World) -> None:
    # From the north pole, everything polar: the south pole's exact antipode included,
    # in the last ring (which must reach half the circumference).
    request = {"latitude": 90.0, "longitude": 0.0, "radius_km": 10, "category_ids": ["polar"]}
    expectation, body = _ask(world, {**request, "max_results": 100})
    by_id = {s["stream_id"]: s for s in body["streams"]}
    assert set(by_id) == {f"npole_{k}" for k in range(6)} | {f"spole_{k}" for k in range(5)}
    last = oracle.ring_bounds(10)[-1]
    assert by_id["spole_4"]["ring"] == len(oracle.ring_bounds(10)) - 1
    assert by_id["spole_4"]["distance_km"] == pytest.approx(last[1], abs=1e-6)
    assert by_id["npole_5"]["distance_km"] == pytest.approx(0.0, abs=1e-6)
    assert oracle.check(expectation, body, world.streams) == []
    _assert_no_problems(
        world,
        [
            {"latitude": lat, "longitude": lon, "category_ids": ["polar"], "max_results": n}
            for lat, lon in (PLACES["north_pole"], PLACES["south_pole"], PLACES["near_pole"])
            for n in (1, 3, 7, 100)
        ],
    )
    # Radius 20000 km leaves a ring 1 of 15 km around the antipode: the streams within
    # 15 km of the south pole (spole_3 is 16.7 km from it, so in ring 0).
    antipodal = {**request, "radius_km": 20000, "max_results": 100}
    expectation, body = _ask(world, antipodal)
    assert [r["index"] for r in body["rings"]] == [0, 1]
    assert {s["stream_id"] for s in body["streams"] if s["ring"] == 1} == {
        "spole_0",
        "spole_1",
        "spole_2",
        "spole_4",
    }
    assert oracle.check(expectation, body, world.streams) == []
    _assert_no_problems(world, [{**antipodal, "max_results": n} for n in (3, 6, 8, 11)])


def test_identical_streams_are_ordered_by_stream_id(world: World) -> None:
    at = {"latitude": CLUSTER_POINT[0], "longitude": CLUSTER_POINT[1], "include_mature": False}
    expectation, body = _ask(world, {**at, "max_results": 7})
    assert [s["stream_id"] for s in body["streams"]] == [f"cluster_{k:02d}" for k in range(7)]
    assert len({s["score"] for s in body["streams"]}) == 1
    assert oracle.check(expectation, body, world.streams) == []
    # Far away, the cluster lands in an outer ring, cut part-way through the tie.
    far = [
        {"latitude": lat, "longitude": lon, "category_ids": ["cluster_cat"], "max_results": n}
        for lat, lon in (PLACES["tokyo"], PLACES["pacific"], (46.0, 8.5), (47.3769, 8.55))
        for n in (1, 4, 13, 29, 31, 100)
    ]
    _assert_no_problems(world, far)


def test_mature_streams_only_when_allowed(world: World) -> None:
    at = {"latitude": CLUSTER_POINT[0], "longitude": CLUSTER_POINT[1], "max_results": 5}
    _, body = _ask(world, at)
    assert [s["stream_id"] for s in body["streams"][:3]] == ["mature_0", "mature_1", "mature_2"]
    _, body = _ask(world, {**at, "include_mature": False})
    assert not any(s["stream_id"].startswith("mature_") for s in body["streams"])


def test_offline_streams_never_appear(world: World) -> None:
    requests = [{"user_id": uid, "max_results": 100} for uid in world.offline_user_ids]
    requests += [{"user_id": uid, "radius_km": 1} for uid in world.offline_user_ids]
    for request in requests:
        _, body = _ask(world, request)
        assert not [s for s in body["streams"] if s["stream_id"].startswith("offline_")]
    _assert_no_problems(world, requests)


def test_explain_components_add_up(world: World) -> None:
    requests: list[dict[str, Any]] = [
        {"user_id": uid, "explain": True, "max_results": 30}
        for uid in _sample_users(world, 25, salt=99) + EDGE_USERS
    ]
    requests.append({"latitude": 35.0, "longitude": 139.0, "explain": True, "language": "ja"})
    _assert_no_problems(world, requests)  # `check` compares every component when explain
    _, body = _ask(world, requests[0])
    for s in body["streams"]:
        c = s["components"]
        assert c["ml"] == 0.0
        assert c["base"] == pytest.approx(
            c["quality"] + c["language"] + c["category"] + c["popularity"], abs=1e-9
        )
        assert s["score"] == pytest.approx(c["proximity"] + c["base"] + c["ml"], abs=1e-9)
    _, plain = _ask(world, {"user_id": requests[0]["user_id"]})
    assert all("components" not in s for s in plain["streams"])


def test_request_ids_are_distinct(world: World) -> None:
    _, first = _ask(world, {"user_id": "zz_cluster"})
    _, second = _ask(world, {"user_id": "zz_cluster"})
    assert first["request_id"] and second["request_id"]
    assert first["request_id"] != second["request_id"]
    assert first["streams"] == second["streams"]


def test_dense_patch_stops_early_and_exactly(world: World) -> None:
    """1,500 streams within ~30 km of Tokyo: nearest-first and best-first must meet exactly."""
    rng = np.random.default_rng([SEED, 6])
    lat0, lon0 = PLACES["tokyo"]
    points = zip(lat0 + rng.normal(0, 0.1, 8), lon0 + rng.normal(0, 0.1, 8), strict=True)
    requests: list[dict[str, Any]] = []
    for lat, lon in points:
        where = {"latitude": round(float(lat), 5), "longitude": round(float(lon), 5)}
        requests += [
            {**where, "max_results": 1, "radius_km": 1},
            {**where, "max_results": 20, "radius_km": 10},
            {**where, "max_results": 100},
            {**where, "max_results": 100, "radius_km": 20000, "local_preference_strength": 1.0},
            {**where, "language": "ko", "preferred_categories": ["art"], "max_results": 50},
            {**where, "languages": ["ko"], "include_mature": False, "radius_km": 5},
        ]
    _assert_no_problems(world, requests)


def test_static_score_edges_are_found_from_afar(world: World) -> None:
    """Streams whose quality + popularity sit exactly on round numbers, seen from far away."""
    viewers = [PLACES[p] for p in ("tokyo", "pacific", "south_pole")] + [(-33.87, 151.21)]
    requests = [
        {"latitude": lat, "longitude": lon, "radius_km": 20000, "max_results": n}
        for lat, lon in viewers
        for n in (20, 100)
    ]
    # Only the edge streams (language "is"), from afar and from next door.
    requests += [
        {"latitude": lat, "longitude": lon, "languages": ["is"], "max_results": n}
        for lat, lon in [*viewers, TIER_EDGE_POINT]
        for n in (1, 7, 20, 49, 100)
    ]
    _assert_no_problems(world, requests)
    # From Tokyo's dense patch, the four best edges (11.49..12) still make the top 100.
    expectation, body = _ask(world, requests[1])
    best = [f"edge_{k:02d}" for k, (q, v) in enumerate(TIER_EDGES) if q + min(v / 1000, 2) > 11]
    assert len(best) == 4 and set(best) <= set(expectation.ids)
    assert set(best) <= {s["stream_id"] for s in body["streams"]}


# --- an ML term: the bound and the single model call ------------------------------------


def _stand_in_probability(stream_ids: Sequence[str]) -> np.ndarray:
    """A fixed P(click) per stream from its id, 0 and 1 included: reorders lists hard."""
    return np.array([zlib.crc32(str(i).encode()) % 1001 / 1000.0 for i in stream_ids])


def _recommend_with_ml(
    world: World, request: Mapping[str, Any], term: MLTerm | None = None
) -> tuple[dict[str, Any], int]:
    """The service's answer with the stand-in model, and how often it asked the model."""
    calls: list[int] = []

    async def probability(conn: asyncpg.Connection, viewer: Viewer, rows: Rows) -> np.ndarray:
        calls.append(len(rows.candidates))
        return _stand_in_probability(rows.candidates.stream_id)

    async def run() -> dict[str, Any]:
        conn = await asyncpg.connect(world.url)
        try:
            response = await service.recommend(
                conn,
                service.Query(
                    **msgspec.structs.asdict(msgspec.convert(dict(request), HometownRequest))
                ),
                Settings(DATABASE_URL=world.url).weights,
                default_local_preference=oracle.DEFAULT_LOCAL_PREFERENCE,
                probability=probability,
                term=term,
            )
        finally:
            await conn.close()
        return msgspec.to_builtins(to_response("-", response))  # type: ignore[no-any-return]

    return asyncio.run(run()), len(calls)


def _oracle_ml(streams: pd.DataFrame, viewer: oracle.Viewer) -> np.ndarray:
    return _stand_in_probability(streams["stream_id"].tolist())


def _ml_requests(world: World) -> list[dict[str, Any]]:
    requests: list[dict[str, Any]] = [{"user_id": u} for u in _sample_users(world, 60, salt=77)]
    requests += [
        {"user_id": u, "max_results": m, "radius_km": r}
        for u in _sample_users(world, 4, salt=78) + EDGE_USERS[:3]
        for m, r in ((1, 10), (20, 1500), (100, 250))
    ]
    requests += [{"user_id": u, **f} for u in _sample_users(world, 2, salt=79) for f in FILTERS]
    requests += [
        {"latitude": lat, "longitude": lon, "max_results": 30} for lat, lon in PLACES.values()
    ]
    return requests


def test_ml_term_keeps_the_answer_exact_with_one_model_call(world: World) -> None:
    """Scores with `0.5 · p(click)` equal a brute force; the model is asked once per request."""
    _assert_exact_with_ml(world, None, lambda p: 0.5 * p)


def test_a_fitted_ml_term_keeps_the_answer_exact(world: World) -> None:
    """A fitted term, `30 · min(p, 0.4)`: its maximum (12) dwarfs most score gaps.

    The stand-in probabilities cover 0..1, so the cap binds for most streams and
    many tie on the term; the bound must use 12, not 30, and still be exact.
    """
    _assert_exact_with_ml(world, MLTerm(30.0, 0.4, "fitted"), lambda p: 30.0 * np.minimum(p, 0.4))


def _assert_exact_with_ml(
    world: World, term: MLTerm | None, written_out: Callable[[np.ndarray], np.ndarray]
) -> None:
    requests = _ml_requests(world)
    problems = []
    for request in requests:
        expectation = oracle.expect(
            world.users, world.streams, request, ml_probability=_oracle_ml, ml_term=written_out
        )
        if expectation.boundary_ids:
            continue
        body, calls = _recommend_with_ml(world, request, term)
        assert calls == 1, f"{json.dumps(request)}: the model was asked {calls} times"
        found = oracle.check(expectation, body, world.streams)
        if found:
            problems.append(f"{json.dumps(request)}:\n    " + "\n    ".join(found[:8]))
    assert not problems, f"{len(problems)} of {len(requests)} disagree:\n" + "\n".join(problems[:5])


# --- the tier reads' floor: a filter in SQL that must agree with the Python score -------

#: The defaults, and weights far from them (quality barely counts, popularity saturates early).
ODD_WEIGHTS = [
    {},
    {"proximity_weight": 4.0, "quality_weight": 0.2, "language_bonus": 3.0},
    {"base_weight": 0.5, "popularity_divisor": 50.0, "popularity_cap": 6.0, "category_bonus": 2},
]


@pytest.mark.parametrize("weights", ODD_WEIGHTS, ids=["defaults", "proximity", "popularity"])
def test_tier_floor_keeps_exactly_the_rows_that_can_reach_it(
    world: World, weights: dict[str, float]
) -> None:
    """Every row the floor drops scores below it in Python; every row it keeps could reach it.

    The floor (`candidates.Floor`) re-states the score in SQL; if the two drifted
    apart, a tier read could drop a stream that belongs in the top k.
    """
    w = Weights(**weights)
    viewers = [
        Viewer(35.68, 139.65, "ja", frozenset({"art", "music"}), 0.9),
        Viewer(48.86, 2.35, None, frozenset(), 0.0),
        Viewer(-16.62, 180.0, "en", frozenset({"gaming"}), 0.5),
    ]
    globe = candidates.Ring(-1.0, candidates.HALF_CIRCUMFERENCE_M + 1000.0)

    async def rows_of(
        conn: asyncpg.Connection, viewer: Viewer, floor: candidates.Floor | None
    ) -> Any:
        return await candidates.fetch_tiers(
            conn,
            longitude=viewer.longitude,
            latitude=viewer.latitude,
            ring=globe,
            filters=candidates.Filters(),
            tiers=TIERS,
            floor=floor,
        )

    async def run() -> list[str]:
        problems = []
        conn = await asyncpg.connect(world.url)
        try:
            for viewer in viewers:
                every = candidates.to_rows(await rows_of(conn, viewer, None))
                for ml_room in (0.0, 0.5):
                    scores = score(viewer, every.candidates, w).score + ml_room
                    # Floors at real scores (that row must stay) and between them.
                    for kth in np.quantile(scores, [0.0, 0.5, 0.9, 0.99, 1.0], method="lower"):
                        floor = candidates.Floor(float(kth) - 1e-9, viewer, w, ml_room)
                        kept = {r["stream_id"] for r in await rows_of(conn, viewer, floor)}
                        reach = set(every.candidates.stream_id[scores >= kth - 1e-9].tolist())
                        if kept != reach:
                            problems.append(
                                f"{viewer} {weights} ml {ml_room} floor {kth}: kept"
                                f" {len(kept)}, {len(reach)} can reach it;"
                                f" {sorted(kept ^ reach)[:5]} differ"
                            )
        finally:
            await conn.close()
        return problems

    problems = asyncio.run(run())
    assert not problems, "\n".join(problems[:5])


@pytest.mark.parametrize("weights", ODD_WEIGHTS, ids=["defaults", "proximity", "popularity"])
def test_first_step_sends_exactly_the_rows_that_can_reach_the_kth_best(
    world: World, weights: dict[str, float]
) -> None:
    """The first statement's filter, scores and counts, against the same reads done plainly.

    It scores in SQL what it read (the nearest `limit`, the best `FIRST_TIERS`
    tiers) and sends only rows that could reach the k-th best; if its score
    drifted from app/hometown/scoring.py it could drop a stream of the top k.
    Stored users are looked up by it too, and an unknown id finds no viewer.
    """
    w = Weights(**weights)
    described = [
        Viewer(35.68, 139.65, "ja", frozenset({"art", "music"}), 0.9),
        Viewer(48.86, 2.35, None, frozenset(), 0.0),
        Viewer(-16.62, 180.0, "en", frozenset({"gaming"}), 0.5),
    ]
    stored = [*_sample_users(world, 8, salt=57), "zz_fiji_180", "zz_npole"]
    rings = [candidates.Ring(-1.0, 250_000.0), candidates.Ring(250_000.0, 1_000_000.0)]
    filters = candidates.Filters()

    async def run() -> list[str]:
        problems = []
        conn = await asyncpg.connect(world.url)
        try:
            missing = await first_step.fetch_first_step(
                conn, who="no_such_user", ring=rings[0], filters=filters, limit=64, k=20,
                weights=w, ml_room=0.0,
            )  # fmt: skip
            if missing is None or missing.viewer is not None or missing.nearest:
                problems.append(f"an unknown user: {missing}")
            viewers: list[tuple[str | Viewer, Viewer]] = [(v, v) for v in described]
            viewers += [(u, await service.lookup_user(conn, u)) for u in stored]
            for who, viewer in viewers:
                for ring, k, limit, ml_room in itertools.product(rings, (1, 20), (8, 64), (0, 0.5)):
                    where = {"longitude": viewer.longitude, "latitude": viewer.latitude}
                    nearest = await candidates.fetch_nearest(
                        conn, **where, ring=ring, filters=filters, limit=limit
                    )
                    tiered = await candidates.fetch_tiers(
                        conn, **where, ring=ring, filters=filters,
                        tiers=TIERS[: first_step.FIRST_TIERS], floor=None,
                    )  # fmt: skip
                    read = {r["stream_id"]: r for r in [*nearest, *tiered]}
                    inside = [r for r in read.values() if r["distance_m"] <= ring.outer_m]
                    lower = score(viewer, candidates.to_rows(inside).candidates, w).score
                    kth = np.sort(lower)[-k] if len(lower) >= k else -np.inf
                    reach = {
                        r["stream_id"]
                        for r, s in zip(inside, lower, strict=True)
                        if s + ml_room >= kth - 1e-9
                    }
                    step = await first_step.fetch_first_step(
                        conn, who=who, ring=ring, filters=filters, limit=limit, k=k,
                        weights=w, ml_room=ml_room,
                    )  # fmt: skip
                    assert step is not None
                    sent = {r["stream_id"] for r in [*step.nearest, *step.tiered]}
                    got_viewer = (
                        who if isinstance(who, Viewer) else service.viewer_from_row(step.viewer)
                    )
                    farthest = max((r["distance_m"] for r in nearest), default=None)
                    case = f"{who} {weights} ring {ring} k {k} limit {limit} ml {ml_room}"
                    # Rows past the outer edge may come along; they never count.
                    if {i for i in sent if read[i]["distance_m"] <= ring.outer_m} != reach:
                        problems.append(f"{case}: sent {len(sent)}, {len(reach)} can reach")
                    if (step.seen, step.farthest_m) != (len(nearest), farthest):
                        problems.append(f"{case}: saw {step.seen} to {step.farthest_m}")
                    if got_viewer != viewer:
                        problems.append(f"{case}: viewer {got_viewer}")
        finally:
            await conn.close()
        return problems

    problems = asyncio.run(run())
    assert not problems, "\n".join(problems[:5])


@pytest.mark.parametrize("weights", ODD_WEIGHTS[1:], ids=["proximity", "popularity"])
def test_search_is_exact_under_other_weights(world: World, weights: dict[str, float]) -> None:
    """With settings' weights far from the defaults the search still equals a brute force."""
    requests: list[dict[str, Any]] = [{"user_id": u} for u in _sample_users(world, 25, salt=91)]
    requests += [{"user_id": u, "max_results": 100} for u in EDGE_USERS]
    requests += [
        {"latitude": lat, "longitude": lon, "max_results": m, "radius_km": r}
        for lat, lon in (PLACES["tokyo"], PLACES["paris"], PLACES["pacific"], CLUSTER_POINT)
        for m, r in ((1, 5), (50, 250), (100, 2000))
    ]

    async def run(request: Mapping[str, Any]) -> dict[str, Any]:
        conn = await asyncpg.connect(world.url)
        try:
            response = await service.recommend(
                conn,
                service.Query(
                    **msgspec.structs.asdict(msgspec.convert(dict(request), HometownRequest))
                ),
                Weights(**weights),
                default_local_preference=oracle.DEFAULT_LOCAL_PREFERENCE,
            )
        finally:
            await conn.close()
        return msgspec.to_builtins(to_response("-", response))  # type: ignore[no-any-return]

    problems = []
    for request in requests:
        expectation = oracle.expect(
            world.users, world.streams, request, weights=oracle.Weights(**weights)
        )
        if expectation.boundary_ids:
            continue
        found = oracle.check(expectation, asyncio.run(run(request)), world.streams)
        if found:
            problems.append(f"{json.dumps(request)}:\n    " + "\n    ".join(found[:8]))
    assert not problems, f"{len(problems)} of {len(requests)} disagree:\n" + "\n".join(problems[:5])
