"""`python -m ml evaluate` and `python -m ml compare` against a real PostGIS and a trained model."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest
from litestar.testing import TestClient

from app.features import artifact
from app.features.artifact import ClickModel
from app.hometown.click_model import probability_of
from app.hometown.service import Query, resolve_viewer
from app.main import create_app
from app.settings import Settings
from ml import compare, evaluate
from ml.metrics import ndcg_at
from ml.split import is_test_user
from ml.train import Options as TrainOptions
from ml.train import train
from seed.generate import generate
from seed.loader import load
from tests.support.db import ROOT, fetch, run_sql

TRAIN_HINT = "uv run python -m ml train"


@dataclass
class World:
    url: str
    model_path: Path
    model: ClickModel
    evaluation: evaluate.Evaluation


@pytest.fixture(scope="module")
def world(migrated_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """400 users, 150 live streams, 30k impressions, a model trained on them, one evaluation."""
    load(migrated_url, generate(400, 150, 30_000, seed=11, live_share=1.0, chunk_rows=10_000))
    model_path = tmp_path_factory.mktemp("model") / "model.joblib"
    train(TrainOptions(model_path=model_path, database_url=migrated_url, seed=1))
    model = artifact.load(model_path)
    options = evaluate.Options(
        database_url=migrated_url,
        model_path=model_path,
        out_dir=tmp_path_factory.mktemp("unused"),
        resamples=500,
    )
    try:
        yield World(migrated_url, model_path, model, evaluate.evaluate(options, model))
    finally:
        run_sql(migrated_url, "TRUNCATE interactions, streams, users")


def _cli(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ml", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": world.url},
        capture_output=True,
        text=True,
        check=False,
    )


# --- the evaluation ------------------------------------------------------------------


def test_evaluate_writes_json_png_and_markdown(world: World, tmp_path: Path) -> None:
    done = _cli(
        world,
        "evaluate",
        "--model-path",
        str(world.model_path),
        "--out-dir",
        str(tmp_path),
        "--resamples",
        "300",
    )
    assert done.returncode == 0, done.stderr
    assert "[evaluate]" in done.stderr
    assert (tmp_path / "evaluation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "evaluation.json").read_text())
    assert list(summary["rankers"]) == list(evaluate.RANKERS)
    for name, ranker in summary["rankers"].items():
        assert set(ranker["metrics"]) == set(evaluate.METRICS), name
        assert all(0.0 <= v <= 1.0 for v in ranker["metrics"].values()), name
        assert f"| {name} |" in done.stdout
    assert set(summary["ml_minus_basic"]) == set(evaluate.COMPARED)
    for metric, d in summary["ml_minus_basic"].items():
        assert d["low"] <= d["mean_diff"] <= d["high"], metric
        assert f"| {metric} |" in done.stdout
    assert summary["model"]["sha256"] == world.model.metadata["sha256"]
    assert world.model.metadata["sha256"] in done.stdout
    assert summary["counts"]["users_evaluated"] > 30
    # The same data, model and seed give the same numbers (the bootstrap aside).
    assert summary["rankers"] == world.evaluation.summary["rankers"]


def test_every_user_is_held_out_has_a_click_and_a_choice(world: World) -> None:
    ev = world.evaluation
    share = evaluate.test_share_of(world.model)
    assert share == world.model.metadata["data"]["test_share"]
    assert is_test_user(ev.user_ids, share).all()
    assert len(ev.user_ids) == ev.summary["counts"]["users_evaluated"]
    for name in evaluate.RANKERS:
        lists = ev.lists[name]
        assert len(lists) == len(ev.user_ids)
        assert all(labels.sum() >= 1 and len(labels) >= 2 for labels in lists)
        # Every ranker orders the same candidates: only the order differs.
        assert [sorted(x) for x in lists] == [sorted(x) for x in ev.lists["basic"]]


def test_basic_ndcg_by_hand(world: World) -> None:
    """nDCG@10 of a few users' basic lists, from the README's formula and the raw tables."""
    ev = world.evaluation
    for i in (0, len(ev.user_ids) // 2, len(ev.user_ids) - 1):
        user_id = ev.user_ids[i]
        (user,) = fetch(world.url, "SELECT * FROM users WHERE user_id = $1", user_id)
        rows = fetch(
            world.url,
            """
            SELECT s.stream_id, bool_or(i.clicked) AS clicked, s.language, s.category_id,
                   s.stream_quality_score AS q, s.avg_viewer_count AS v,
                   ST_Distance(s.location, ST_SetSRID(ST_MakePoint($2, $3), 4326)::geography,
                               false) / 1000 AS km
            FROM interactions i JOIN streams s USING (stream_id)
            WHERE i.user_id = $1
            GROUP BY s.stream_id
            """,
            user_id,
            user["longitude"],
            user["latitude"],
        )
        preferred = set(user["preferred_categories"])
        scored = []
        for r in rows:
            proximity = 1.5 / (1 + r["km"]) * (1 + user["local_preference_strength"])
            base = (
                r["q"]
                + (1.0 if r["language"] == user["language"] else 0.0)
                + (0.5 if r["category_id"] in preferred else 0.0)
                + min(r["v"] / 1000, 2.0)
            )
            scored.append((-(proximity + base), r["stream_id"], float(r["clicked"])))
        labels = [label for _, _, label in sorted(scored)]
        assert ev.per_user["basic"]["ndcg@10"][i] == pytest.approx(ndcg_at(labels, 10), abs=1e-12)
        assert ev.lists["basic"][i].tolist() == labels


async def _through_the_api_code(
    world: World, users: list[evaluate.UserCandidates]
) -> list[tuple[Any, np.ndarray]]:
    conn = await asyncpg.connect(world.url)
    try:
        probability = probability_of(world.model)
        out = []
        for user in users:
            request = Query(user_id=user.user_id)
            viewer = await resolve_viewer(conn, request, 0.5)
            out.append((viewer, await probability(conn, viewer, user.rows)))
        return out
    finally:
        await conn.close()


def test_batched_probabilities_equal_probability_of(world: World) -> None:
    """The evaluation's probabilities are exactly those of the endpoint's code."""
    conn_users = asyncio.run(_read_users(world))
    batched = evaluate.click_probabilities(world.model, conn_users)
    sample = conn_users[:: max(1, len(conn_users) // 12)]
    served = asyncio.run(_through_the_api_code(world, sample))
    by_id = {u.user_id: p for u, p in zip(conn_users, batched, strict=True)}
    for user, (viewer, probability) in zip(sample, served, strict=True):
        assert viewer == user.viewer
        assert np.array_equal(by_id[user.user_id], probability), user.user_id
    assert len(sample) >= 10


async def _read_users(world: World) -> list[evaluate.UserCandidates]:
    conn = await asyncpg.connect(world.url)
    try:
        share = evaluate.test_share_of(world.model)
        ids = await evaluate.picked_user_ids(conn, lambda u: is_test_user(u, share))
        return await evaluate.fetch_candidates(conn, ids)
    finally:
        await conn.close()


def test_no_held_out_user_is_a_clear_error(world: World, tmp_path: Path) -> None:
    model = ClickModel(
        world.model.estimator,
        {**world.model.metadata, "data": {**world.model.metadata["data"], "test_share": 1e-9}},
    )
    options = evaluate.Options(database_url=world.url, model_path=tmp_path / "m.joblib")
    with pytest.raises(evaluate.EvaluationError, match="no held-out user"):
        evaluate.evaluate(options, model)


def test_missing_model_exits_2_with_the_training_hint(world: World, tmp_path: Path) -> None:
    for job in (["evaluate", "--out-dir", str(tmp_path)], ["compare", "--user", "user_000001"]):
        done = _cli(world, *job, "--model-path", str(tmp_path / "none.joblib"))
        assert done.returncode == 2, job
        assert TRAIN_HINT in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert done.stdout == ""
    assert not (tmp_path / "evaluation.json").exists()


# --- compare -------------------------------------------------------------------------


def test_compare_prints_both_lists_as_the_endpoints_answer(world: World) -> None:
    user_id = world.evaluation.user_ids[0]
    body = {"user_id": user_id, "max_results": 12, "radius_km": 150.0}
    settings = Settings(DATABASE_URL=world.url, MODEL_PATH=str(world.model_path))
    with TestClient(create_app(settings)) as client:
        answers = {
            route: client.post(f"/v1/scenarios/{route}", json=body)
            for route in ("hometown", "hometown-ml")
        }
    for answer in answers.values():
        assert answer.status_code == 200, answer.text
    expected = {
        route: [s["stream_id"] for s in a.json()["streams"]] for route, a in answers.items()
    }
    assert len(expected["hometown-ml"]) == 12

    result = asyncio.run(
        compare.compare(
            world.url,
            world.model,
            Query(user_id=user_id, max_results=12, radius_km=150.0, explain=True),
            settings.weights,
            default_local_preference=settings.default_local_preference,
        )
    )
    assert [s.stream_id for s in result.ml.streams] == expected["hometown-ml"]
    assert [s.stream_id for s in result.basic.streams] == expected["hometown"]
    assert all(s.components is not None and s.components.ml > 0 for s in result.ml.streams)

    done = _cli(
        world,
        "compare",
        "--user",
        user_id,
        "--max-results",
        "12",
        "--radius-km",
        "150",
        "--model-path",
        str(world.model_path),
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert user_id in lines[0]
    ranked = [line for line in lines if line[:3].strip().isdigit() and compare.SEPARATOR in line]
    assert len(ranked) == 12
    for line, basic_id, ml_id in zip(
        ranked, expected["hometown"], expected["hometown-ml"], strict=True
    ):
        left, right = line.split(compare.SEPARATOR)
        assert basic_id in left and ml_id in right


def test_compare_unknown_user_exits_2(world: World) -> None:
    done = _cli(world, "compare", "--user", "nobody", "--model-path", str(world.model_path))
    assert done.returncode == 2
    assert "unknown user_id 'nobody'" in done.stderr
