"""Stage 2 offline: graded labels, the training table, and the LambdaRank fit.

Labels are graded from watch time, because a click that lasts a minute says
less than an evening with a channel: 0 not watched, then 1, 2, 3, 4 from
`GRADE_MINUTES`. XGBoost's `rank:ndcg` (LambdaMART) optimises NDCG over each
query's candidates, which is how the feed is judged.

Most candidates of a query are not watched; the fit keeps every watched one and
at most `NEGATIVES_PER_QUERY` others, sampled, which keeps a 10,000-user fit
within a minute while every query still teaches the order among its positives.
Queries without any watched candidate carry no gradient and are left out.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import xgboost as xgb

from app.feed.features import FEATURE_NAMES

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Watch minutes at which the grade steps up: (0, 5) -> 1, [5, 20) -> 2, [20, 60) -> 3, 60+ -> 4.
GRADE_MINUTES = (5.0, 20.0, 60.0)
NEGATIVES_PER_QUERY = 100
VALIDATION_SHARE = 0.1


def grades(minutes: FloatArray) -> FloatArray:
    """Grade 0..4 per candidate from its watch minutes in the label slice."""
    m = np.asarray(minutes, dtype=np.float64)
    steps = sum((m >= t).astype(np.float64) for t in GRADE_MINUTES)
    return np.where(m > 0, 1.0 + steps, 0.0)


@dataclass
class Table:
    """Training rows grouped by query (rows of a query are adjacent)."""

    features: list[npt.NDArray[np.float32]]
    labels: list[FloatArray]
    query_users: list[int]

    def add(
        self,
        user: int,
        features: npt.NDArray[np.float32],
        labels: FloatArray,
        rng: np.random.Generator,
    ) -> bool:
        """Add one query's rows (positives and sampled negatives); False if it has no positive."""
        positive = labels > 0
        if not positive.any():
            return False
        negatives = np.flatnonzero(~positive)
        if len(negatives) > NEGATIVES_PER_QUERY:
            negatives = np.sort(rng.choice(negatives, NEGATIVES_PER_QUERY, replace=False))
        keep = np.sort(np.concatenate([np.flatnonzero(positive), negatives]))
        self.features.append(features[keep])
        self.labels.append(labels[keep])
        self.query_users.append(user)
        return True

    def __len__(self) -> int:
        return len(self.query_users)


@dataclass(frozen=True)
class Fitted:
    """The booster and how its fit went."""

    booster: xgb.Booster
    best_iteration: int
    rows: int
    queries: int
    seconds: float
    validation_ndcg10: float
    data_hash: str


def _stack(
    parts: list[npt.NDArray[np.float32]], labels: list[FloatArray]
) -> tuple[npt.NDArray[np.float32], FloatArray, IntArray]:
    x = np.concatenate(parts) if parts else np.empty((0, len(FEATURE_NAMES)), np.float32)
    y = np.concatenate(labels) if labels else np.empty(0)
    qid = np.repeat(np.arange(len(parts)), [len(p) for p in parts]).astype(np.int64)
    return x, y, qid


def fit(table: Table, *, seed: int = 0, trees: int = 300, threads: int = 2) -> Fitted:
    """Fit LambdaRank on the table; the last VALIDATION_SHARE of queries stop it early."""
    if len(table) < 10:
        raise ValueError(
            f"only {len(table)} queries have a watched candidate: too few to train a reranker"
        )
    started = time.perf_counter()
    order = np.random.default_rng(seed).permutation(len(table))
    n_valid = max(1, round(len(table) * VALIDATION_SHARE))
    valid, train = np.sort(order[:n_valid]), np.sort(order[n_valid:])
    x, y, qid = _stack([table.features[i] for i in train], [table.labels[i] for i in train])
    xv, yv, qv = _stack([table.features[i] for i in valid], [table.labels[i] for i in valid])
    names = list(FEATURE_NAMES)
    dtrain = xgb.DMatrix(x, label=y, qid=qid, feature_names=names, missing=np.nan)
    dvalid = xgb.DMatrix(xv, label=yv, qid=qv, feature_names=names, missing=np.nan)
    params = {
        "objective": "rank:ndcg",
        "eval_metric": "ndcg@10",
        "tree_method": "hist",
        "max_depth": 6,
        "eta": 0.1,
        "min_child_weight": 1.0,
        "subsample": 0.9,
        "colsample_bytree": 0.9,
        "lambdarank_pair_method": "topk",
        "lambdarank_num_pair_per_sample": 10,
        "seed": seed,
        "nthread": threads,
    }
    log: dict[str, dict[str, list[float]]] = {}
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=trees,
        evals=[(dvalid, "validation")],
        early_stopping_rounds=30,
        evals_result=log,
        verbose_eval=False,
    )
    best = int(booster.best_iteration)
    digest = hashlib.sha256()
    digest.update(x.tobytes())
    digest.update(y.tobytes())
    return Fitted(
        booster=booster,
        best_iteration=best,
        rows=len(y) + len(yv),
        queries=len(table),
        seconds=time.perf_counter() - started,
        validation_ndcg10=float(log["validation"]["ndcg@10"][best]),
        data_hash=digest.hexdigest()[:16],
    )


def predict(booster: xgb.Booster, features: npt.NDArray[np.float32]) -> FloatArray:
    """Scores for one query's candidates (higher is better), with the best iteration's trees."""
    matrix = xgb.DMatrix(features, feature_names=list(FEATURE_NAMES), missing=np.nan)
    best = getattr(booster, "best_iteration", None)
    limit = (0, int(best) + 1) if best is not None else (0, 0)
    return np.asarray(booster.predict(matrix, iteration_range=limit), dtype=np.float64)
