"""The numpy forest scores and explains exactly as XGBoost does, and refuses what it cannot."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from xgboost import XGBRanker

from app.feed.forest import Forest, ForestError

WIDTH = 6


def _data(seed: int, rows: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features with missing values in two columns, labels that depend on several."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, WIDTH)).astype(np.float32)
    features[:, 4] = rng.integers(0, 5, rows)  # ties on integer thresholds
    labels = np.clip(
        (features[:, 0] + 0.5 * features[:, 1] * features[:, 2] + (features[:, 4] > 2) + 1.5)
        .round()
        .astype(int),
        0,
        4,
    )
    # Missing values where the label is high in one column and low in another, so
    # the learned default directions go both ways.
    features[(labels >= 3) & (rng.random(rows) < 0.5), 1] = np.nan
    features[(labels <= 1) & (rng.random(rows) < 0.5), 3] = np.nan
    return features, labels, np.repeat(np.arange(rows // 10), 10)


def _fit(seed: int, **params: Any) -> tuple[XGBRanker, Forest, np.ndarray]:
    features, labels, groups = _data(seed)
    model = XGBRanker(objective="rank:ndcg", random_state=seed, **params)
    model.fit(features, labels, qid=groups)
    booster = model.get_booster()
    return model, Forest.from_xgboost(json.loads(booster.save_raw("json"))), features


def _probe(features: np.ndarray, seed: int) -> np.ndarray:
    """The training rows, fresh rows, rows exactly on split values, and ±inf."""
    fresh, _, _ = _data(seed + 100, rows=200)
    edges = features[:50].copy()
    edges[:25, 4] = np.arange(25) % 5  # on the integer thresholds
    extremes = np.full((4, WIDTH), np.nan, dtype=np.float32)
    extremes[1], extremes[2] = np.inf, -np.inf
    extremes[3, ::2] = 0.0
    return np.vstack([features, fresh, edges, extremes])


MODELS = {
    "shallow": {"n_estimators": 12, "max_depth": 3},
    "deep": {"n_estimators": 20, "max_depth": 8, "learning_rate": 0.3},
    "lossguide": {"n_estimators": 10, "grow_policy": "lossguide", "max_leaves": 40, "max_depth": 0},
    "stumps": {"n_estimators": 5, "max_depth": 1},
}


@pytest.mark.parametrize("name", MODELS)
def test_scores_match_xgboost(name: str) -> None:
    model, forest, features = _fit(3, **MODELS[name])
    rows = _probe(features, 3)
    expected = model.get_booster().inplace_predict(rows)
    np.testing.assert_allclose(forest.score(rows), expected, rtol=0, atol=2e-6)
    assert forest.score(rows).dtype == np.float32
    # The missing values took both directions somewhere, or the test proves less.
    assert forest.default_left[forest.threshold == forest.threshold].any()
    assert not forest.default_left[forest.threshold == forest.threshold].all()


@pytest.mark.parametrize("name", MODELS)
def test_contributions_match_xgboost(name: str) -> None:
    from xgboost import DMatrix

    model, forest, features = _fit(5, **MODELS[name])
    rows = _probe(features, 5)
    rows = rows[~np.isinf(rows).any(axis=1)]  # a DMatrix refuses infinities
    expected = model.get_booster().predict(DMatrix(rows), pred_contribs=True, approx_contribs=True)
    ours = forest.contributions(rows)
    assert ours.shape == (len(rows), WIDTH + 1)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=2e-5)
    # They add up to the score, which is what makes them an explanation of it.
    np.testing.assert_allclose(ours.sum(axis=1), forest.score(rows), rtol=0, atol=2e-5)


def test_scores_and_contributions_of_no_rows_and_wrong_widths() -> None:
    _, forest, _ = _fit(1, **MODELS["shallow"])
    assert forest.score(np.empty((0, WIDTH))).shape == (0,)
    assert forest.contributions(np.empty((0, WIDTH))).shape == (0, WIDTH + 1)
    for bad in (np.zeros((3, WIDTH - 1)), np.zeros(WIDTH)):
        with pytest.raises(ValueError, match=rf"shape \(n, {WIDTH}\)"):
            forest.score(bad)
        with pytest.raises(ValueError, match=rf"shape \(n, {WIDTH}\)"):
            forest.contributions(bad)


def test_a_single_leaf_tree_and_an_empty_forest() -> None:
    model, _, _ = _fit(2, **MODELS["stumps"])
    document = json.loads(model.get_booster().save_raw("json"))
    trees = document["learner"]["gradient_booster"]["model"]["trees"]
    leaf = {**trees[0], "left_children": [-1], "right_children": [-1], "split_indices": [0]}
    leaf |= {"split_conditions": [0.25], "default_left": [0], "sum_hessian": [10.0]}
    leaf |= {"split_type": [0], "base_weights": [0.25], "parents": [2147483647]}
    document["learner"]["gradient_booster"]["model"]["trees"] = [leaf]
    forest = Forest.from_xgboost(document)
    rows = np.array([[np.inf, np.nan, 0, 0, 0, 0], [0] * WIDTH], dtype=np.float32)
    base = forest.base_score
    np.testing.assert_allclose(forest.score(rows), [0.25 + base] * 2, atol=1e-7)
    np.testing.assert_allclose(forest.contributions(rows)[:, -1], [0.25 + base] * 2, atol=1e-7)
    document["learner"]["gradient_booster"]["model"]["trees"] = []
    empty = Forest.from_xgboost(document)
    assert empty.trees == 0
    np.testing.assert_allclose(empty.score(rows), [base, base])


def _document() -> dict[str, Any]:
    model, _, _ = _fit(4, **MODELS["shallow"])
    return dict(json.loads(model.get_booster().save_raw("json")))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["learner"].pop("objective"), "not an XGBoost JSON model"),
        (lambda d: d["learner"]["objective"].update(name="binary:logistic"), "not a ranking"),
        (lambda d: d["learner"]["gradient_booster"].update(name="gblinear"), "only gbtree"),
        (lambda d: d["learner"]["learner_model_param"].update(num_target="2"), "several outputs"),
        (lambda d: d["learner"]["learner_model_param"].update(base_score="[1,2]"), "single number"),
        (lambda d: _tree(d).update(split_type=[1] * len(_tree(d)["split_type"])), "categorical"),
        (lambda d: _tree(d)["tree_param"].update(size_leaf_vector="3"), "vector leaves"),
        (lambda d: _tree(d).update(left_children=[1]), "differ in length"),
        (lambda d: _tree(d)["left_children"].__setitem__(0, 0), "node 0 has child 0"),
        (lambda d: _tree(d)["split_indices"].__setitem__(0, WIDTH), "splits on feature 6 of 6"),
        (lambda d: _tree(d).pop("sum_hessian"), "tree 0 is malformed"),
    ],
    ids=[
        "no-objective",
        "logistic",
        "gblinear",
        "multi-target",
        "two-base-scores",
        "categorical",
        "vector-leaf",
        "ragged",
        "cycle",
        "feature-out-of-range",
        "no-hessians",
    ],
)
def test_refuses_models_it_would_get_wrong(change: Any, message: str) -> None:
    document = _document()
    change(document)
    with pytest.raises(ForestError, match=message):
        Forest.from_xgboost(document)


def _tree(document: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = document["learner"]["gradient_booster"]["model"]["trees"][0]
    return tree


def test_reads_xgboost_2s_base_score_spelling() -> None:
    document = _document()
    document["learner"]["learner_model_param"]["base_score"] = "5E-1"
    assert Forest.from_xgboost(document).base_score == 0.5
