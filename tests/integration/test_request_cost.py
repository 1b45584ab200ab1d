"""No schema-valid HOMETOWN request costs much more than a normal one.

The widening used to count ×4 from `radius_km` itself, so `radius_km: 5e-324`
(schema-valid: > 0) searched ~540 rings, each with its own SQL, and took a second.
Here every extreme input is asked through the endpoints (the `rings` of the
answer) and through the service on a real connection whose statements are
counted (asyncpg's query logger), for `/hometown` and `/hometown-ml`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from litestar.testing import TestClient

from app.features.artifact import ClickModel
from app.hometown import service
from app.hometown.click_model import probability_of
from app.hometown.weights import Weights
from app.main import create_app
from app.settings import Settings
from seed.generate import generate
from seed.loader import Dataset, load
from tests.support import oracle
from tests.support.db import run_sql
from tests.support.models import saved_model

ROUTES = ("/v1/scenarios/hometown", "/v1/scenarios/hometown-ml")
RADII = (5e-324, 1e-9, 0.001, 0.5, 1.0, 1.2, 250.0, 20000.0)
PLACES = {
    "paris": (48.85, 2.35),
    "pacific": (-40.0, -130.0),
    "north_pole": (90.0, 0.0),
    "south_pole": (-90.0, 180.0),
    "antimeridian": (-16.62, 180.0),
}
#: Rings any request may search: ring 0, then ×4 from 1 km (4 ... 16,384 km), the globe.
MAX_RINGS = 9
#: Statements one request may send: the user lookup or a filter's count, the model's
#: stream columns, and two per ring (nearest-first plus best tier, then more tiers).
MAX_STATEMENTS = 3 + 2 * MAX_RINGS


@dataclass
class World:
    url: str
    client: TestClient[Any]
    model: ClickModel


@pytest.fixture(scope="module")
def world(migrated_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = generate(100, 1500, 0, seed=20261201, live_share=0.5)
    load(migrated_url, Dataset(users=data.users, streams=data.streams))
    model, model_path = saved_model(tmp_path_factory.mktemp("cost-model"))
    settings = Settings(DATABASE_URL=migrated_url, MODEL_PATH=str(model_path), ACCESS_LOG=False)
    try:
        with TestClient(create_app(settings)) as client:
            yield World(migrated_url, client, model)
    finally:
        run_sql(migrated_url, "TRUNCATE interactions, streams, users")


def _requests() -> list[dict[str, Any]]:
    found = []
    for lat, lon in PLACES.values():
        for radius in RADII:
            for max_results in (1, 100):
                found.append(
                    {
                        "latitude": lat,
                        "longitude": lon,
                        "radius_km": radius,
                        "max_results": max_results,
                    }
                )
    found.append({**found[0], "languages": ["nobody-speaks-this"]})
    found.append({**found[1], "category_ids": ["gaming"], "include_mature": False})
    return found


def test_ring_bounds_are_the_oracles() -> None:
    assert service.MAX_RINGS == MAX_RINGS
    for radius in RADII:
        got = [(max(r.inner_m, 0.0) / 1000, r.outer_m / 1000) for r in service.rings(radius)]
        want = oracle.ring_bounds(radius)
        assert len(got) == len(want) <= MAX_RINGS, radius
        assert got[0] == (0.0, radius * 1000 / 1000)  # ring 0 is exactly the radius
        for (lo, hi), (want_lo, want_hi) in zip(got[:-1], want[:-1], strict=True):
            assert lo == pytest.approx(want_lo) and hi == pytest.approx(want_hi), radius


@pytest.mark.parametrize("route", ROUTES)
def test_extreme_requests_search_a_bounded_number_of_rings(world: World, route: str) -> None:
    for request in _requests():
        response = world.client.post(route, json=request)
        assert response.status_code == 200, (request, response.text[:300])
        body = response.json()
        assert len(body["rings"]) <= MAX_RINGS, (request, len(body["rings"]))
        assert body["rings"][0]["max_km"] == pytest.approx(request["radius_km"], rel=1e-12), request
        filtered = "languages" in request or "category_ids" in request
        assert filtered or len(body["streams"]) == request["max_results"], request
        assert all(
            s["distance_km"] <= request["radius_km"] for s in body["streams"] if s["ring"] == 0
        )


def _count_statements(url: str, model: ClickModel | None) -> list[tuple[dict[str, Any], int]]:
    async def main() -> list[tuple[dict[str, Any], int]]:
        conn = await asyncpg.connect(url)
        sent: list[str] = []
        conn.add_query_logger(lambda record: sent.append(record.query))
        counts = []
        try:
            for request in _requests():
                sent.clear()
                await service.recommend(
                    conn,
                    service.Query(**request),
                    Weights(),
                    default_local_preference=0.5,
                    probability=probability_of(model) if model else None,
                )
                counts.append((request, len(sent)))
        finally:
            await conn.close()
        return counts

    return asyncio.run(main())


@pytest.mark.parametrize("with_model", [False, True], ids=["hometown", "hometown-ml"])
def test_extreme_requests_send_a_bounded_number_of_statements(
    world: World, with_model: bool
) -> None:
    counts = _count_statements(world.url, world.model if with_model else None)
    worst = max(counts, key=lambda pair: pair[1])
    assert worst[1] <= MAX_STATEMENTS, worst
    assert min(n for _, n in counts) >= 1  # the logger does see the statements
