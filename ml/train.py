"""Fit the click model on logged impressions and keep the better of two on held-out users.

Two candidates, both plain sklearn so the service needs nothing else to load them:

- `logistic`: StandardScaler + LogisticRegression, the default. Cheap to score,
  and its coefficients on the scaled features read as "how much each feature
  moves the log-odds per standard deviation".
- `boosting`: HistGradientBoostingClassifier. The generator's click model has
  shapes a linear model cannot follow (exp(-d/150 km), ln(1 + quality), a
  quality × category interaction), so trees usually fit it better. It is fitted
  on at most `boosting_max_rows` training rows (a seeded sample) to keep ten
  million impressions in minutes on a small machine.

Both are judged on the same held-out users (ml/split.py) by log loss, the
metric that rewards calibrated probabilities, which is what the ranking adds to
its score. A tie goes to the logistic model, the simpler one.
"""

from __future__ import annotations

import hashlib
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import joblib
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from app.features import artifact
from app.features.clicks import FEATURE_NAMES, feature_matrix
from app.hometown.ml_term import METADATA_KEY
from app.hometown.weights import Weights
from ml import term as ml_term
from ml.dataset import load_training_data
from ml.split import is_test_user, is_validation_user
from ml.term import DEFAULT_ROOM

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ModelChoice = Literal["auto", "logistic", "boosting"]
KINDS = ("logistic", "boosting")

#: Training rows the boosted model sees at most (a seeded sample beyond that).
BOOSTING_MAX_ROWS = 2_000_000
#: Held-out rows used for permutation importances (each costs 14 × repeats predictions).
IMPORTANCE_ROWS = 50_000
IMPORTANCE_REPEATS = 3
CALIBRATION_BINS = 10
#: Log losses closer than this count as a tie (and the tie goes to the logistic model).
TIE_TOLERANCE = 1e-4


def say(message: str) -> None:
    """Progress on stderr, one line per step."""
    print(f"[train] {message}", file=sys.stderr, flush=True)


@dataclass
class Options:
    """What `python -m ml train` was asked to do."""

    model_path: Path
    database_url: str
    parquet: Path | None = None
    max_rows: int | None = None
    seed: int = 42
    test_share: float = 0.2
    model: ModelChoice = "auto"
    boosting_max_rows: int = BOOSTING_MAX_ROWS
    #: Where the impressions come from (ml/dataset.py's SOURCES).
    source: str = "interactions"
    #: Users the click model is not fitted on; the ML term is chosen on them (ml/term.py).
    validation_share: float = 0.2
    term: Literal["fit", "formula"] = "fit"
    ml_room: float = DEFAULT_ROOM
    weights: Weights = field(default_factory=Weights)


@dataclass
class Matrix:
    """Features, labels and which rows are held out."""

    features: FloatArray
    clicked: BoolArray
    test: BoolArray
    source: str
    split: str  # how `test` was chosen, in words
    #: Rows of the validation users (left out of fitting when the term is fitted).
    validation: BoolArray | None = None
    train_users: int | None = None
    test_users: int | None = None


@dataclass
class Result:
    """The saved model and everything the summary reports."""

    model: artifact.ClickModel
    path: Path
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def matrix_from_database(
    url: str,
    *,
    max_rows: int | None,
    test_share: float,
    source: str = "interactions",
    validation_share: float = 0.0,
) -> Matrix:
    """Training rows from the impressions of `source`, split by user."""
    data = load_training_data(url, max_rows=max_rows, progress=say, source=source)
    if len(data) == 0 and source == "log":
        raise SystemExit(
            "no logged impressions: the service records exposures of signed-in users as it"
            " answers, and clients report clicks with POST /v1/events"
        )
    if len(data) == 0:
        raise SystemExit(
            "no impressions in the database: generate some with"
            " `uv run python -m seed generate` (or import them with `python -m seed import`)"
        )
    started = time.perf_counter()
    features = feature_matrix(data.pairs)
    say(f"features built for {len(data):,} rows in {time.perf_counter() - started:.1f}s")
    test = is_test_user(data.user_ids, test_share)
    validation = is_validation_user(data.user_ids, test_share, validation_share)
    users_test = pd.unique(data.user_ids[test])
    users_train = pd.unique(data.user_ids[~test & ~validation])
    split = f"by user (stable hash, {test_share:.0%} of users held out"
    if validation_share:
        split += f", {validation_share:.0%} more to choose the ML term on"
    return Matrix(
        features,
        data.clicked,
        test,
        source="database",
        split=split + ")",
        train_users=len(users_train),
        test_users=len(users_test),
        validation=validation,
    )


def matrix_from_parquet(
    path: Path, *, max_rows: int | None, test_share: float, seed: int
) -> Matrix:
    """Training rows from a parquet file in the seed's training format.

    The file holds `clicked` and the 14 feature columns, already computed; the
    features are taken as they are. With a `user_id` column the split is by user,
    as for the database; without one it can only be a seeded split of rows,
    which lets one user's impressions sit on both sides.
    """
    schema = pq.read_schema(path)
    missing = [c for c in (*FEATURE_NAMES, "clicked") if c not in schema.names]
    if missing:
        raise SystemExit(f"{path} lacks the columns {missing}")
    has_users = "user_id" in schema.names
    columns = [*FEATURE_NAMES, "clicked", *(["user_id"] if has_users else [])]
    table = pq.read_table(path, columns=columns)
    if max_rows is not None:
        table = table.slice(0, max_rows)
    if table.num_rows == 0:
        raise SystemExit(f"{path} holds no rows")
    features = np.empty((table.num_rows, len(FEATURE_NAMES)), dtype=np.float64, order="F")
    for j, name in enumerate(FEATURE_NAMES):
        features[:, j] = _numbers(table.column(name), f"{path}: column {name}")
    clicked = _numbers(table.column("clicked"), f"{path}: column clicked") > 0
    say(f"{table.num_rows:,} rows read from {path}")
    if has_users:
        user_ids = table.column("user_id").to_numpy(zero_copy_only=False).astype(object)
        test = is_test_user(user_ids, test_share)
        return Matrix(
            features,
            clicked,
            test,
            source=f"parquet {path}",
            split=f"by user (stable hash, {test_share:.0%} of users held out)",
            train_users=len(pd.unique(user_ids[~test])),
            test_users=len(pd.unique(user_ids[test])),
        )
    test = np.random.default_rng(seed).random(table.num_rows) < test_share
    return Matrix(
        features,
        clicked,
        test,
        source=f"parquet {path}",
        split=(
            f"by ROW, seeded ({test_share:.0%} of rows held out): the file has no user_id"
            " column, so a user's impressions can sit on both sides and the held-out"
            " metrics are optimistic"
        ),
    )


def _numbers(column: pa.ChunkedArray, what: str) -> FloatArray:
    if column.null_count:
        raise SystemExit(f"{what} has {column.null_count} missing values")
    values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    if not np.isfinite(values).all():
        raise SystemExit(f"{what} has values that are not finite numbers")
    return values


def fit_logistic(features: FloatArray, clicked: BoolArray) -> Pipeline:
    """StandardScaler + LogisticRegression (L2, C = 1): the default model."""
    model = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=1000))])
    return model.fit(features, clicked)


def fit_boosting(
    features: FloatArray, clicked: BoolArray, *, seed: int
) -> HistGradientBoostingClassifier:
    """Gradient-boosted trees with early stopping on a seeded 10% of the training rows."""
    model = HistGradientBoostingClassifier(
        max_iter=300,
        learning_rate=0.1,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        random_state=seed,
    )
    return model.fit(features, clicked)


def evaluate(model: Any, features: FloatArray, clicked: BoolArray) -> dict[str, Any]:
    """Held-out metrics: accuracy, ROC AUC, log loss, Brier score and a calibration table.

    The calibration table sorts the rows by predicted probability and cuts them
    into ten equal-count bins (equal-width bins would leave most empty at a 10%
    click rate); each bin compares the mean prediction with the observed rate.
    `ece` is their count-weighted mean absolute gap.
    """
    p = np.clip(model.predict_proba(features)[:, -1], 0.0, 1.0)
    y = clicked.astype(np.float64)
    bins = []
    order = np.argsort(p, kind="stable")
    for part in np.array_split(order, min(CALIBRATION_BINS, max(len(order), 1))):
        if len(part):
            bins.append(
                {
                    "rows": len(part),
                    "predicted": float(p[part].mean()),
                    "observed": float(y[part].mean()),
                }
            )
    ece = sum(b["rows"] * abs(b["predicted"] - b["observed"]) for b in bins) / max(len(p), 1)
    both_classes = 0 < y.sum() < len(y)
    majority = max(y.mean(), 1 - y.mean()) if len(y) else float("nan")
    return {
        "rows": len(y),
        "click_rate": float(y.mean()),
        "accuracy": float(accuracy_score(clicked, p >= 0.5)),
        "majority_accuracy": float(majority),
        "roc_auc": float(roc_auc_score(clicked, p)) if both_classes else None,
        "log_loss": float(log_loss(clicked, p, labels=[False, True])),
        "brier": float(brier_score_loss(clicked, p)),
        "ece": float(ece),
        "calibration": bins,
    }


def logistic_coefficients(model: Pipeline) -> dict[str, float]:
    """Coefficients on the standardised features (log-odds per standard deviation)."""
    coefficients = model.named_steps["model"].coef_[0]
    return {name: float(c) for name, c in zip(FEATURE_NAMES, coefficients, strict=True)}


def importances(
    model: Any, features: FloatArray, clicked: BoolArray, *, seed: int
) -> dict[str, float]:
    """Permutation importance on held-out rows: how much log loss worsens when a column is shuffled.

    HistGradientBoosting has no built-in importances; permutation importance
    also reads the same way for any model. At most `IMPORTANCE_ROWS` rows are used.
    """
    rng = np.random.default_rng(seed)
    rows = np.arange(len(clicked))
    if len(rows) > IMPORTANCE_ROWS:
        rows = np.sort(rng.choice(rows, IMPORTANCE_ROWS, replace=False))
    result = permutation_importance(
        model,
        features[rows],
        clicked[rows],
        scoring="neg_log_loss",
        n_repeats=IMPORTANCE_REPEATS,
        random_state=seed,
    )
    return {name: float(v) for name, v in zip(FEATURE_NAMES, result.importances_mean, strict=True)}


def choose(metrics: dict[str, dict[str, Any]], requested: ModelChoice) -> str:
    """The model to keep: the one asked for, or the lower held-out log loss (tie: logistic)."""
    if requested != "auto":
        return requested
    if "boosting" not in metrics:
        return "logistic"
    if "logistic" not in metrics:
        return "boosting"
    better = metrics["boosting"]["log_loss"] < metrics["logistic"]["log_loss"] - TIE_TOLERANCE
    return "boosting" if better else "logistic"


def data_hash(features: FloatArray, clicked: BoolArray) -> str:
    """SHA-256 of the feature names, the feature matrix and the labels (as trained on)."""
    digest = hashlib.sha256(",".join(FEATURE_NAMES).encode())
    columns = np.asfortranarray(features)  # column after column, without a copy if already so
    digest.update(np.ascontiguousarray(columns.T).data)
    digest.update(np.ascontiguousarray(clicked, dtype=np.uint8).data)
    return digest.hexdigest()


def versions() -> dict[str, str]:
    """Library versions the artifact was made with (pickles are version-sensitive)."""
    return {
        "python": platform.python_version(),
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "pyarrow": pa.__version__,
        "joblib": joblib.__version__,
    }


def _timed(label: str, seconds: dict[str, float], work: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    value = work()
    seconds[label] = time.perf_counter() - started
    return value


def train(options: Options) -> Result:
    """Load, split, fit, evaluate, choose and save; returns what the summary needs."""
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    notes: list[str] = []
    fits_term = options.term == "fit" and options.parquet is None
    if options.term == "fit" and not fits_term:
        notes.append("ML term: the seed's formula (a term is fitted on database impressions only)")
    validation_share = options.validation_share if fits_term else 0.0
    if options.parquet is not None:
        matrix = _timed(
            "load",
            seconds,
            lambda: matrix_from_parquet(
                options.parquet,  # type: ignore[arg-type]
                max_rows=options.max_rows,
                test_share=options.test_share,
                seed=options.seed,
            ),
        )
        notes.append(
            "features taken from the parquet file as they are (not rebuilt by app.features.clicks)"
        )
    else:
        matrix = _timed(
            "load",
            seconds,
            lambda: matrix_from_database(
                options.database_url,
                max_rows=options.max_rows,
                test_share=options.test_share,
                source=options.source,
                validation_share=validation_share,
            ),
        )
        if options.source == "log":
            notes.append("impressions from the service's own log (exposures and click events)")
    notes.append(f"split {matrix.split}")
    fitted_on = ~matrix.test if matrix.validation is None else ~matrix.test & ~matrix.validation
    x_train, y_train = matrix.features[fitted_on], matrix.clicked[fitted_on]
    x_test, y_test = matrix.features[matrix.test], matrix.clicked[matrix.test]
    if len(np.unique(y_train)) < 2:
        raise SystemExit("the training rows need both clicks and non-clicks")
    if len(y_test) == 0:
        raise SystemExit("no rows are held out: raise --test-share or add users")
    say(f"{len(y_train):,} training rows, {len(y_test):,} held-out rows")

    kinds = KINDS if options.model == "auto" else (options.model,)
    estimators: dict[str, Any] = {}
    metrics: dict[str, dict[str, Any]] = {}
    explanations: dict[str, dict[str, float]] = {}
    boosting_rows = None
    for kind in kinds:
        step = time.perf_counter()
        if kind == "logistic":
            say(f"fitting logistic regression on {len(y_train):,} rows")
            estimators[kind] = fit_logistic(x_train, y_train)
        else:
            rows = _sample(len(y_train), options.boosting_max_rows, options.seed)
            boosting_rows = len(rows)
            if boosting_rows < len(y_train):
                notes.append(
                    f"boosting fitted on a seeded sample of {boosting_rows:,} of the"
                    f" {len(y_train):,} training rows (--boosting-max-rows)"
                )
            say(f"fitting gradient boosting on {boosting_rows:,} rows")
            estimators[kind] = fit_boosting(x_train[rows], y_train[rows], seed=options.seed)
        seconds[f"fit {kind}"] = time.perf_counter() - step
        say(f"{kind} fitted in {seconds[f'fit {kind}']:.1f}s")
        step = time.perf_counter()
        metrics[kind] = evaluate(estimators[kind], x_test, y_test)
        if kind == "logistic":
            explanations["logistic_coefficients"] = logistic_coefficients(estimators[kind])
        else:
            explanations["boosting_permutation_importance"] = importances(
                estimators[kind], x_test, y_test, seed=options.seed
            )
        seconds[f"evaluate {kind}"] = time.perf_counter() - step
        say(
            f"{kind}: held-out log loss {metrics[kind]['log_loss']:.5f},"
            f" evaluated in {seconds[f'evaluate {kind}']:.1f}s"
        )

    chosen = choose(metrics, options.model)
    score_term = None
    if fits_term:
        step = time.perf_counter()
        say(f"choosing the ML term on validation users (room {options.ml_room:g})")
        fitted = artifact.ClickModel(estimators[chosen], {"feature_names": list(FEATURE_NAMES)})
        score_term = ml_term.choose(
            fitted,
            options.database_url,
            test_share=options.test_share,
            validation_share=validation_share,
            weights=options.weights,
            room=options.ml_room,
        )
        seconds["choose term"] = time.perf_counter() - step
        say(f"ML term: {score_term.term.describe()} ({score_term.term.source})")
    metadata: dict[str, Any] = {
        "feature_names": list(FEATURE_NAMES),
        "model_kind": chosen,
        "estimator": _describe(estimators[chosen]),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": versions(),
        "training_rows": len(y_train),
        "data_sha256": data_hash(matrix.features, matrix.clicked),
        "data": {
            "source": matrix.source,
            "rows": len(matrix.clicked),
            "clicks": int(matrix.clicked.sum()),
            "click_rate": float(matrix.clicked.mean()),
            "train_rows": len(y_train),
            "test_rows": len(y_test),
            "train_users": matrix.train_users,
            "test_users": matrix.test_users,
            "split": matrix.split,
            "test_share": options.test_share,
            "validation_share": validation_share,
            "validation_rows": int(matrix.validation.sum()) if matrix.validation is not None else 0,
            "seed": options.seed,
            "max_rows": options.max_rows,
            "boosting_rows": boosting_rows,
        },
        "metrics": metrics,
        "selection": {
            "requested": options.model,
            "chosen": chosen,
            "rule": "lowest held-out log loss; a tie (within 1e-4) goes to logistic",
        },
        "explanations": explanations,
    }
    if score_term is not None:
        metadata["term_selection"] = score_term.summary
        if score_term.term.source == "fitted":
            metadata[METADATA_KEY] = score_term.term.to_metadata()
    metadata["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    model = artifact.ClickModel(estimator=estimators[chosen], metadata=metadata)
    _timed("save", seconds, lambda: artifact.save(model, options.model_path))
    seconds["total"] = time.perf_counter() - started
    return Result(model=model, path=options.model_path, seconds=seconds, notes=notes)


def _sample(n: int, at_most: int, seed: int) -> npt.NDArray[np.intp]:
    """All of range(n), or a sorted seeded sample of `at_most` of it."""
    if n <= at_most:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, at_most, replace=False))


def _describe(estimator: Any) -> str:
    if isinstance(estimator, Pipeline):
        return "Pipeline(" + ", ".join(type(s).__name__ for _, s in estimator.steps) + ")"
    return type(estimator).__name__


def summary(result: Result) -> str:
    """The readable end-of-run report."""
    meta = result.model.metadata
    data, metrics = meta["data"], meta["metrics"]
    lines = [
        f"data:    {data['source']}: {data['rows']:,} impressions, {data['clicks']:,} clicks"
        f" (click rate {data['click_rate']:.2%})",
        f"split:   {data['split']}",
    ]
    if data["train_users"] is not None:
        lines.append(
            f"         train {data['train_rows']:,} rows / {data['train_users']:,} users,"
            f" held out {data['test_rows']:,} rows / {data['test_users']:,} users"
        )
    else:
        lines.append(f"         train {data['train_rows']:,} rows, held out {data['test_rows']:,}")
    lines += [f"note:    {note}" for note in result.notes if not note.startswith("split")]
    lines += ["", "held-out metrics:"]
    lines.append(
        f"  {'model':<9} {'log loss':>9} {'ROC AUC':>8} {'accuracy':>9} {'Brier':>8} {'ECE':>7}"
    )
    for kind, m in metrics.items():
        auc = f"{m['roc_auc']:.4f}" if m["roc_auc"] is not None else "n/a"
        lines.append(
            f"  {kind:<9} {m['log_loss']:>9.5f} {auc:>8} {m['accuracy']:>9.4f}"
            f" {m['brier']:>8.5f} {m['ece']:>7.4f}"
        )
    first = next(iter(metrics.values()))
    lines.append(
        f"  (accuracy at p >= 0.5; always predicting the majority class scores"
        f" {first['majority_accuracy']:.4f})"
    )
    for kind, m in metrics.items():
        lines += ["", f"calibration, {kind} (10 equal-count bins of predicted P(click)):"]
        lines.append(f"  {'rows':>9} {'predicted':>10} {'observed':>9}")
        lines += [
            f"  {b['rows']:>9,} {b['predicted']:>10.4f} {b['observed']:>9.4f}"
            for b in m["calibration"]
        ]
    explanations = meta["explanations"]
    if "logistic_coefficients" in explanations:
        lines += ["", "logistic coefficients (log-odds per standard deviation of the feature):"]
        lines += _ranked(explanations["logistic_coefficients"], "{:+.4f}")
    if "boosting_permutation_importance" in explanations:
        lines += ["", "boosting permutation importance (held-out log loss increase):"]
        lines += _ranked(explanations["boosting_permutation_importance"], "{:.5f}")
    lines += [
        "",
        f"chosen:  {meta['model_kind']} ({meta['estimator']}; requested"
        f" {meta['selection']['requested']}: {meta['selection']['rule']})",
        *_term_lines(meta),
        f"saved:   {result.path} (sha256 {meta['sha256'][:16]}…)",
        "seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items()),
    ]
    return "\n".join(lines)


def _term_lines(meta: dict[str, Any]) -> list[str]:
    """How P(click) enters /hometown-ml's score, and the validation numbers behind it."""
    selection = meta.get("term_selection")
    if not selection:
        return ["ml term: the seed's ml_weight·P(click) (not fitted)"]
    if not selection.get("users"):
        return [f"ml term: the seed's ml_weight·P(click) ({selection['reason']})"]
    chosen = selection["chosen"]
    stored = meta.get(METADATA_KEY)
    what = (
        f"{stored['weight']:.4g}·min(P(click), {stored['cap']:.4g})"
        if stored
        else "the seed's ml_weight·P(click) (nothing tried beat it)"
    )
    return [
        f"ml term: {what}, chosen on {selection['users']:,} validation users of"
        f" {len(selection['tried'])} tried (room {selection['room']:g}):"
        f" nDCG@10 basic {selection['basic']:.4f}, formula {selection['formula']:.4f},"
        f" chosen {chosen['ndcg@10']:.4f}",
    ]


def _ranked(values: dict[str, float], fmt: str) -> list[str]:
    order = sorted(values, key=lambda name: -abs(values[name]))
    return [f"  {name:<24} {fmt.format(values[name])}" for name in order]
