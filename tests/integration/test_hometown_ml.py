"""`POST /v1/scenarios/hometown-ml`: exact with a real click model, 503 without one, reloads.

The model here is a real scikit-learn pipeline saved through `app.features.artifact`, fitted on
made-up labels so the test does not depend on training code: what matters is that
the endpoint ranks exactly by `score + 0.5 · P(click)` for whatever model is loaded.
The oracle computes P(click) itself: its own great-circle distances, the raw
tables, `app.features.clicks` for the feature columns (the one module both sides must share)
and the model.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from litestar.testing import TestClient

from app.features.artifact import ClickModel, save
from app.features.clicks import FEATURE_NAMES, Pairs, feature_matrix
from app.main import create_app
from app.settings import Settings
from bench import server as api_server
from seed.generate import generate
from seed.loader import Dataset, load
from tests.support import oracle
from tests.support.db import fetch, run_sql
from tests.support.models import fitted_model, saved_model

ROUTE = "/v1/scenarios/hometown-ml"
USER_EXTRA = ("user_id", "city", "total_watch_hours")
STREAM_EXTRA = ("stream_id", "creator_followers", "is_partnered")


@dataclass
class World:
    url: str
    users: pd.DataFrame
    streams: pd.DataFrame
    model: ClickModel
    client: TestClient[Any]


def _table(url: str, table: str, fields: tuple[str, ...]) -> pd.DataFrame:
    rows = fetch(url, f"SELECT {', '.join(fields)} FROM {table}")
    return pd.DataFrame([dict(r) for r in rows], columns=list(fields))


@pytest.fixture(scope="module")
def world(migrated_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = generate(600, 1500, 0, seed=20261123, live_share=0.5)
    load(migrated_url, Dataset(users=data.users, streams=data.streams))
    model, model_path = saved_model(tmp_path_factory.mktemp("model"))
    try:
        users = _table(migrated_url, "users", oracle.USER_FIELDS).merge(
            _table(migrated_url, "users", USER_EXTRA), on="user_id"
        )
        streams = _table(migrated_url, "streams", oracle.STREAM_FIELDS).merge(
            _table(migrated_url, "streams", STREAM_EXTRA), on="stream_id"
        )
        settings = Settings(DATABASE_URL=migrated_url, MODEL_PATH=str(model_path))
        with TestClient(create_app(settings)) as client:
            yield World(migrated_url, users, streams, model, client)
    finally:
        run_sql(migrated_url, "TRUNCATE interactions, streams, users")


def _oracle_probability(world: World, request: Mapping[str, Any]) -> oracle.MlProbability:
    """P(click) for every stream, computed apart from the service's search code."""
    user: dict[str, Any] = {"city": None, "total_watch_hours": 0.0}
    if request.get("user_id") is not None:
        row = world.users.loc[world.users["user_id"] == request["user_id"]].iloc[0]
        user = {"city": row["city"], "total_watch_hours": float(row["total_watch_hours"])}

    def probability(streams: pd.DataFrame, viewer: oracle.Viewer) -> np.ndarray:
        distance = oracle.great_circle_km(
            viewer.latitude, viewer.longitude, streams["latitude"], streams["longitude"]
        )
        pairs = Pairs.for_viewer(
            distance_km=distance,
            user_city=user["city"],
            user_language=viewer.language,
            user_preferred_categories=viewer.preferred_categories,
            user_local_preference=viewer.local_preference_strength,
            user_total_watch_hours=user["total_watch_hours"],
            stream_city=streams["city"],
            stream_language=streams["language"],
            stream_category_id=streams["category_id"],
            stream_quality_score=streams["stream_quality_score"],
            stream_avg_viewers=streams["avg_viewer_count"],
            creator_followers=streams["creator_followers"],
            is_partnered=streams["is_partnered"],
            mature_content=streams["mature_content"],
        )
        return world.model.probability(feature_matrix(pairs))

    return probability


def test_ml_endpoint_equals_the_brute_force_with_the_model(world: World) -> None:
    rng = np.random.default_rng(11)
    users = sorted(rng.choice(world.users["user_id"].to_numpy(), 80, replace=False).tolist())
    requests: list[dict[str, Any]] = [{"user_id": u} for u in users]
    requests += [
        {"user_id": u, "max_results": m, "radius_km": r}
        for u in users[:5]
        for m, r in ((1, 5), (50, 1000), (100, 20000))
    ]
    requests += [{"user_id": u, "languages": ["en"], "include_mature": False} for u in users[:5]]
    requests += [
        {"latitude": lat, "longitude": lon, "max_results": 30}
        for lat, lon in ((48.86, 2.35), (-16.62, 180.0), (90.0, 0.0), (-30.0, -140.0))
    ]
    problems = []
    ml_terms = []
    for request in ({**r, "explain": True} for r in requests):
        expectation = oracle.expect(
            world.users,
            world.streams,
            request,
            ml_probability=_oracle_probability(world, request),
        )
        if expectation.boundary_ids:
            continue
        response = world.client.post(ROUTE, json=request)
        assert response.status_code == 200, response.text
        body = response.json()
        ml_terms += [s["components"]["ml"] for s in body["streams"]]
        found = oracle.check(expectation, body, world.streams)
        if found:
            problems.append(f"{json.dumps(request)}:\n    " + "\n    ".join(found[:6]))
    assert not problems, f"{len(problems)} of {len(requests)} disagree:\n" + "\n".join(problems[:5])
    # The model really moved the scores (0.5 · P(click) spans a good part of [0, 0.5]).
    assert min(ml_terms) < 0.1 < 0.4 < max(ml_terms)


def test_ml_and_basic_lists_differ_somewhere(world: World) -> None:
    differ = 0
    for user_id in world.users["user_id"].iloc[:40]:
        basic = world.client.post("/v1/scenarios/hometown", json={"user_id": user_id}).json()
        ml = world.client.post(ROUTE, json={"user_id": user_id}).json()
        differ += [s["stream_id"] for s in basic["streams"]] != [
            s["stream_id"] for s in ml["streams"]
        ]
    assert differ > 0


def test_health_reports_the_loaded_model(world: World) -> None:
    model = world.client.get("/").json()["model"]
    assert model["loaded"] is True
    assert model["kind"] == "logistic"
    assert model["training_rows"] == 4000
    assert len(model["sha256"]) == 64
    assert model["error"] is None


def test_bad_input_is_refused_like_the_basic_endpoint(world: World) -> None:
    response = world.client.post(ROUTE, json={"user_id": "nobody"})
    assert response.status_code == 404
    response = world.client.post(ROUTE, json={"user_id": "u", "max_results": 0})
    assert response.status_code == 400
    assert "max_results" in response.text


def _assert_503_with_training_hint(client: TestClient[Any]) -> None:
    response = client.post(ROUTE, json={"latitude": 48.86, "longitude": 2.35})
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/json")
    assert "python -m ml train" in response.json()["detail"]
    # The basic endpoint does not depend on the model.
    assert client.post("/v1/scenarios/hometown", json={"user_id": "nobody"}).status_code == 404
    assert (
        client.post(
            "/v1/scenarios/hometown", json={"latitude": 48.86, "longitude": 2.35}
        ).status_code
        == 200
    )
    health = client.get("/")
    assert health.status_code == 200
    assert health.json()["model"]["loaded"] is False
    assert "python -m ml train" in health.json()["model"]["error"]


def test_no_model_file_means_503_that_says_how_to_train(db_url: str, tmp_path: Path) -> None:
    settings = Settings(DATABASE_URL=db_url, MODEL_PATH=str(tmp_path / "missing.joblib"))
    with TestClient(create_app(settings)) as client:
        _assert_503_with_training_hint(client)


def test_a_model_of_other_features_is_refused(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "other.joblib"
    other = (*FEATURE_NAMES[:-1], "watch_party")
    save(fitted_model(feature_names=other), path)
    with TestClient(create_app(Settings(DATABASE_URL=db_url, MODEL_PATH=str(path)))) as client:
        _assert_503_with_training_hint(client)
        assert "watch_party" in client.get("/").json()["model"]["error"]


def _post(server: api_server.Server, path: str, body: Mapping[str, Any]) -> int:
    status, _ = api_server.probe(server, path, json.dumps(body).encode())
    return status


def test_sighup_loads_a_new_model_without_a_restart(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "live.joblib"
    monkeypatch.setenv("MODEL_PATH", str(path))
    server = api_server.start(db_url)
    try:
        where = {"latitude": 48.86, "longitude": 2.35}
        assert _post(server, ROUTE, where) == 503
        save(fitted_model(), path)
        os.kill(server.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while _post(server, ROUTE, where) != 200:
            assert time.monotonic() < deadline, "the model did not load after SIGHUP"
            time.sleep(0.1)
        # A damaged file on the next reload leaves the loaded model serving.
        path.write_bytes(path.read_bytes()[:-10])
        os.kill(server.process.pid, signal.SIGHUP)
        time.sleep(1.0)
        assert _post(server, ROUTE, where) == 200
        assert server.process.poll() is None
    finally:
        server.stop()
