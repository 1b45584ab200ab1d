"""Click-model training against a real PostGIS: feature parity, the split, the artifact."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import numpy as np
import pandas as pd
import pytest

from app.features import artifact
from app.features.artifact import ClickModel, ModelError
from app.features.clicks import FEATURE_NAMES, Pairs, feature_matrix
from app.hometown.ml_term import MLTerm
from ml.dataset import TrainingData, load_training_data
from ml.split import is_test_user, is_validation_user
from ml.term import DEFAULT_ROOM
from ml.train import Options, train
from seed.generate import generate
from seed.loader import load
from tests.support.db import ROOT, run_sql

TRAIN_HINT = "uv run python -m ml train"


@pytest.fixture(scope="module")
def dataset_url(migrated_url: str) -> Iterator[str]:
    """300 users, 100 streams (all live) and 20k impressions, for this module's tests."""
    load(migrated_url, generate(300, 100, 20_000, seed=4, live_share=1.0, chunk_rows=5_000))
    yield migrated_url
    run_sql(migrated_url, "TRUNCATE interactions, streams, users")


@pytest.fixture(scope="module")
def training(dataset_url: str) -> TrainingData:
    return load_training_data(dataset_url)


@pytest.fixture(scope="module")
def trained(dataset_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The model saved by the real command line, and what it printed."""
    path = tmp_path_factory.mktemp("model") / "hometown_model.joblib"
    env = {**os.environ, "DATABASE_URL": dataset_url}
    done = subprocess.run(
        [sys.executable, "-m", "ml", "train", "--model-path", str(path), "--seed", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return path, done.stdout


# --- feature parity: training rows against serving-style pairs ----------------------

# What the service computes per candidate (app/hometown/candidates.py): the stream's
# location first, the viewer's point built from its coordinates, on the sphere.
SERVING_STREAMS_SQL = """
SELECT stream_id, city, language, category_id, stream_quality_score, avg_viewer_count,
       creator_followers, is_partnered, mature_content,
       ST_Distance(location, ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography, false)
         AS distance_m
FROM streams ORDER BY stream_id
"""
USER_SQL = """
SELECT user_id, latitude, longitude, city, language, preferred_categories,
       local_preference_strength, total_watch_hours
FROM users WHERE user_id = ANY($1::text[]) ORDER BY user_id
"""


async def _serving_features(url: str, user_ids: list[str]) -> dict[tuple[str, str], np.ndarray]:
    """Features of every (user, stream) the way the service builds them: one user at a time."""
    conn = await asyncpg.connect(url)
    try:
        out: dict[tuple[str, str], np.ndarray] = {}
        for user in await conn.fetch(USER_SQL, user_ids):
            rows = await conn.fetch(SERVING_STREAMS_SQL, user["longitude"], user["latitude"])
            columns = list(zip(*rows, strict=True))
            pairs = Pairs.for_viewer(
                distance_km=np.array(columns[9], dtype=np.float64) / 1000.0,
                user_city=user["city"],
                user_language=user["language"],
                user_preferred_categories=frozenset(user["preferred_categories"]),
                user_local_preference=user["local_preference_strength"],
                user_total_watch_hours=user["total_watch_hours"],
                stream_city=columns[1],
                stream_language=columns[2],
                stream_category_id=columns[3],
                stream_quality_score=columns[4],
                stream_avg_viewers=columns[5],
                creator_followers=columns[6],
                is_partnered=columns[7],
                mature_content=columns[8],
            )
            matrix = feature_matrix(pairs)
            for stream_id, vector in zip(columns[0], matrix, strict=True):
                out[(user["user_id"], stream_id)] = vector
        return out
    finally:
        await conn.close()


def test_training_and_serving_build_the_same_features(
    dataset_url: str, training: TrainingData
) -> None:
    assert len(training) == 20_000
    trained_on = feature_matrix(training.pairs)
    users = sorted(set(training.user_ids))
    served = asyncio.run(_serving_features(dataset_url, users))
    expected = np.stack(
        [served[(u, s)] for u, s in zip(training.user_ids, training.stream_ids, strict=True)]
    )
    # Exactly equal, to the last bit: the same SQL distance and the same function.
    assert np.array_equal(trained_on, expected)
    # The data covers both sides of every flag, so equality is not vacuous.
    for name in ("is_local_match", "is_regional_match", "same_language", "category_match"):
        column = trained_on[:, FEATURE_NAMES.index(name)]
        assert 0 < column.mean() < 1, name


# --- the split -----------------------------------------------------------------------


def test_split_never_puts_a_user_on_both_sides(training: TrainingData) -> None:
    test = is_test_user(training.user_ids)
    held_out = set(training.user_ids[test])
    assert held_out.isdisjoint(set(training.user_ids[~test]))
    assert 0.1 < len(held_out) / len(set(training.user_ids)) < 0.3
    assert np.array_equal(test, is_test_user(list(training.user_ids)))
    # Growing the share only adds users to the test side.
    assert (is_test_user(training.user_ids, 0.1) <= test).all()


def test_split_does_not_depend_on_the_process() -> None:
    """Python's hash() is salted per process; the split must not be."""
    ids = [f"user_{i:06d}" for i in range(500)]
    code = (
        "from ml.split import is_test_user; import sys;"
        f"sys.stdout.write(''.join('1' if t else '0' for t in is_test_user({ids!r})))"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert runs == {"".join("1" if t else "0" for t in is_test_user(ids))}


# --- training and the artifact -------------------------------------------------------


def test_training_saves_a_model_that_loads(
    trained: tuple[Path, str], training: TrainingData
) -> None:
    path, printed = trained
    assert "chosen:" in printed and "held-out metrics" in printed
    model = artifact.load(path)
    meta = model.metadata
    assert meta["feature_names"] == list(FEATURE_NAMES)
    assert set(meta["metrics"]) == {"logistic", "boosting"}
    assert meta["model_kind"] in {"logistic", "boosting"}
    assert meta["metrics"][meta["model_kind"]]["roc_auc"] > 0.5
    assert meta["data"]["rows"] == 20_000
    assert meta["training_rows"] == meta["data"]["train_rows"] < 20_000
    assert {"sklearn", "numpy", "pandas", "python"} <= meta["versions"].keys()
    assert len(meta["data_sha256"]) == 64
    assert meta["sha256"] == artifact.checksum_path(path).read_text().split()[0]

    features = feature_matrix(training.pairs)[:500]
    probability = model.probability(features)
    assert probability.shape == (500,)
    assert ((probability >= 0) & (probability <= 1)).all()
    assert model.probability(features[:0]).shape == (0,)
    with pytest.raises(ValueError, match="shape"):
        model.probability(features[:, :13])


def test_the_ml_term_is_chosen_on_users_the_model_never_saw(
    trained: tuple[Path, str], training: TrainingData
) -> None:
    """Test users judge, validation users choose the term, the rest fit the model."""
    path, printed = trained
    meta = artifact.load(path).metadata
    data = meta["data"]
    test = is_test_user(training.user_ids, data["test_share"])
    validation = is_validation_user(training.user_ids, data["test_share"], data["validation_share"])
    assert data["validation_share"] == 0.2 and not (test & validation).any()
    assert data["validation_rows"] == int(validation.sum()) > 0
    assert meta["training_rows"] == int((~test & ~validation).sum())

    selection = meta["term_selection"]
    assert selection["users"] > 0 and selection["room"] == DEFAULT_ROOM
    assert selection["tried"][0]["source"] == "formula"  # the seed's term is a candidate
    assert all(t["weight"] * t["cap"] <= DEFAULT_ROOM + 1e-9 for t in selection["tried"][1:])
    best = max(t["ndcg@10"] for t in selection["tried"])
    assert selection["chosen"]["ndcg@10"] == best >= selection["formula"]
    term = MLTerm.of_model(meta, 0.5)
    if selection["chosen"]["source"] == "fitted":
        assert term.source == "fitted" and term.maximum <= DEFAULT_ROOM + 1e-9
        assert (term.weight, term.cap) == (
            selection["chosen"]["weight"],
            selection["chosen"]["cap"],
        )
    else:
        assert term == MLTerm.formula(0.5)
    assert "ml term:" in printed


def test_training_can_keep_the_seed_formula(dataset_url: str, tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    train(Options(model_path=path, database_url=dataset_url, model="logistic", term="formula"))
    meta = artifact.load(path).metadata
    assert "score_term" not in meta and "term_selection" not in meta
    assert meta["data"]["validation_share"] == 0.0  # nothing to choose, nothing set aside
    assert MLTerm.of_model(meta, 0.5) == MLTerm.formula(0.5)


def test_load_refuses_a_missing_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no click model") as caught:
        artifact.load(tmp_path / "nowhere.joblib")
    assert TRAIN_HINT in str(caught.value)


def _copy(source: Path, target: Path) -> Path:
    target.write_bytes(source.read_bytes())
    artifact.checksum_path(target).write_bytes(artifact.checksum_path(source).read_bytes())
    return target


def test_load_refuses_a_flipped_byte(trained: tuple[Path, str], tmp_path: Path) -> None:
    path = _copy(trained[0], tmp_path / "model.joblib")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its checksum") as caught:
        artifact.load(path)
    assert TRAIN_HINT in str(caught.value)


def test_load_refuses_a_model_without_its_checksum(
    trained: tuple[Path, str], tmp_path: Path
) -> None:
    path = _copy(trained[0], tmp_path / "model.joblib")
    artifact.checksum_path(path).unlink()
    with pytest.raises(ModelError, match="no readable checksum") as caught:
        artifact.load(path)
    assert TRAIN_HINT in str(caught.value)


def test_load_refuses_other_features(trained: tuple[Path, str], tmp_path: Path) -> None:
    good = artifact.load(trained[0])
    names = [*FEATURE_NAMES[:-1], "something_else"]
    path = tmp_path / "other.joblib"
    artifact.save(ClickModel(good.estimator, {**good.metadata, "feature_names": names}), path)
    with pytest.raises(ModelError, match="trained on features") as caught:
        artifact.load(path)
    assert TRAIN_HINT in str(caught.value)


def test_save_replaces_a_model_in_place(trained: tuple[Path, str], tmp_path: Path) -> None:
    good = artifact.load(trained[0])
    path = tmp_path / "model.joblib"
    artifact.save(good, path)
    first = path.read_bytes()
    good.metadata["note"] = "retrained"
    artifact.save(good, path)
    assert path.read_bytes() != first
    assert artifact.load(path).metadata["note"] == "retrained"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.joblib", "model.joblib.sha256"]


def test_training_from_parquet_without_users_splits_rows(
    training: TrainingData, tmp_path: Path
) -> None:
    frame = pd.DataFrame(feature_matrix(training.pairs), columns=list(FEATURE_NAMES))
    frame["clicked"] = training.clicked
    source = tmp_path / "training.parquet"
    frame.to_parquet(source)
    result = train(
        Options(
            model_path=tmp_path / "model.joblib",
            database_url="postgresql://unused",
            parquet=source,
            model="logistic",
        )
    )
    meta = artifact.load(tmp_path / "model.joblib").metadata
    assert meta["model_kind"] == "logistic" and set(meta["metrics"]) == {"logistic"}
    assert "by ROW" in meta["data"]["split"]
    assert any("by ROW" in note for note in result.notes)
