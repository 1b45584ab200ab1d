"""`ml feed train` and `ml feed evaluate` end to end, on a real PostGIS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import numpy as np
import pandas as pd
import pytest

from app.feed import embeddings
from ml.feed import evaluate, train
from ml.feed.pipeline import RERANKER_FILE, Source
from seed.generate import generate
from seed.loader import load
from tests.support.db import fetch, run_sql

WORLD = (1_500, 2_000, 120_000)  # users, streams, impressions: a minute's training


@pytest.fixture(scope="module")
def trained(
    migrated_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path, train.Result]]:
    """A generated world, loaded, with both stages trained on it."""
    load(migrated_url, generate(*WORLD, seed=3))
    model_dir = tmp_path_factory.mktemp("feed-models")
    result = train.train(
        train.Options(source=Source(migrated_url), model_dir=model_dir, max_epochs=12, seed=3)
    )
    yield migrated_url, model_dir, result
    run_sql(migrated_url, "TRUNCATE interactions, streams, users, feed_models CASCADE")


def _evaluate(url: str, model_dir: Path, out_dir: Path, interactions: Path | None = None) -> dict:
    options = evaluate.Options(
        source=Source(url, interactions=interactions),
        model_dir=model_dir,
        out_dir=out_dir,
        resamples=300,
    )
    return evaluate.run(options).summary


def test_training_stores_the_embeddings_and_a_checksummed_reranker(
    trained: tuple[str, Path, train.Result],
) -> None:
    url, model_dir, result = trained
    assert (model_dir / RERANKER_FILE).is_file()
    assert (model_dir / (RERANKER_FILE + ".sha256")).is_file()
    rows = fetch(url, "SELECT version, kind, active FROM feed_models ORDER BY kind")
    assert {(r["kind"], r["active"]) for r in rows} == {("als", False), ("lightgcn", True)}

    async def vectors() -> tuple[list[str], np.ndarray]:
        conn = await asyncpg.connect(url)
        try:
            return await embeddings.load_vectors(conn, result.versions["lightgcn"], "stream")
        finally:
            await conn.close()

    ids, matrix = asyncio.run(vectors())
    assert len(ids) == WORLD[1] and matrix.shape == (WORLD[1], 64)
    order = pd.Index(result.prepared.log.stream_ids).get_indexer(ids)
    np.testing.assert_array_equal(matrix, result.lightgcn.items[order])
    # Trained on the database: the feature tables were refreshed at the end.
    features = result.summary["features"]
    assert features is not None and features["users"] > 0 and features["streams"] > 0
    stamp = fetch(url, "SELECT count(*) AS n FROM feed_user_features")[0]["n"]
    assert stamp == features["users"]


def test_evaluation_reports_both_stages_and_writes_its_files(
    trained: tuple[str, Path, train.Result], tmp_path: Path
) -> None:
    url, model_dir, _ = trained
    summary = _evaluate(url, model_dir, tmp_path)
    for name in ("feed_evaluation.json", "feed_recall_at_k.png", "feed_ndcg_by_ranker.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    stored = json.loads((tmp_path / "feed_evaluation.json").read_text())
    assert set(stored["stage1"]) >= {
        "lightgcn",
        "als",
        "popularity",
        "near",
        "trending",
        "own",
        "union",
    }
    assert set(stored["stage2"]) == {
        "reranker",
        "lightgcn",
        "als",
        "popularity",
        "hometown",
        "random",
    }
    for metrics in stored["stage1"].values():
        recalls = [metrics[f"recall@{k}"] for k in (20, 50, 100, 200)]
        assert recalls == sorted(recalls) and recalls[0] >= 0.0 and recalls[-1] <= 1.0
    stage2 = summary["stage2"]
    # Collaborative structure exists in the world: both CF models beat popularity,
    # and the reranker beats random by far.
    assert stored["stage1"]["lightgcn"]["recall@100"] > stored["stage1"]["popularity"]["recall@100"]
    assert stage2["reranker"]["ndcg@10"] > stage2["random"]["ndcg@10"] + 0.05
    c = summary["stage2_comparison"]
    assert c["low"] <= c["difference"] <= c["high"]
    assert c["against"] in ("lightgcn", "als", "popularity", "hometown")


def test_evaluation_refuses_models_trained_on_other_data(
    trained: tuple[str, Path, train.Result], tmp_path: Path
) -> None:
    url, model_dir, _ = trained
    other = tmp_path / "other.csv"
    pd.DataFrame(
        {
            "user_id": ["a", "b"] * 3,
            "stream_id": ["x", "y", "z"] * 2,
            "watch_time": [1.0] * 6,
            "timestamp": range(1_700_000_000, 1_700_000_006),
        }
    ).to_csv(other, index=False)
    with pytest.raises(evaluate.EvaluationError, match="trained on other data"):
        _evaluate(url, model_dir, tmp_path, interactions=other)


def test_a_seed_format_file_alone_trains_and_evaluates_stage_one(
    migrated_url: str, tmp_path: Path
) -> None:
    """No users or streams tables: the file's ids are all the models know."""
    data = generate(600, 900, 40_000, seed=8)
    log = pd.concat(list(data.interactions))
    frame = pd.DataFrame(
        {
            "user_id": "u" + log["user_id"].str[5:],  # ids the tables do not hold
            "stream_id": "s" + log["stream_id"].str[7:],
            "watch_time": log["watch_time_minutes"],
            "timestamp": log["impression_at"].astype("int64") // 10**9,
            "device": log["device_type"],  # an extra column, ignored
        }
    )
    path = tmp_path / "watch_log.parquet"
    frame.to_parquet(path)
    before = fetch(migrated_url, "SELECT count(*) AS n FROM users")[0]["n"]
    facts = "SELECT user_id, computed_at FROM feed_user_features ORDER BY user_id"
    facts_before = fetch(migrated_url, facts)
    result = train.train(
        train.Options(
            source=Source(migrated_url, interactions=path), model_dir=tmp_path, max_epochs=8
        )
    )
    assert result.reranker is None and not (tmp_path / RERANKER_FILE).exists()
    assert fetch(migrated_url, "SELECT count(*) AS n FROM users")[0]["n"] == before
    # A file's facts describe another dataset: the database's feature tables stay.
    assert result.summary["features"] is None
    assert fetch(migrated_url, facts) == facts_before
    summary = _evaluate(migrated_url, tmp_path, tmp_path / "out", interactions=path)
    assert "stage2" not in summary
    assert set(summary["stage1"]) == {"lightgcn", "als", "popularity", "trending", "own", "union"}
    assert summary["data"]["users"] == frame["user_id"].nunique()
    run_sql(migrated_url, "TRUNCATE feed_models CASCADE")
