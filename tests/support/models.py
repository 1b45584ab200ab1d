"""A small click model fitted in the test run, so no test depends on a committed binary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from app.features.artifact import ClickModel, save
from app.features.clicks import FEATURE_NAMES


def fitted_model(seed: int = 5, feature_names: tuple[str, ...] = FEATURE_NAMES) -> ClickModel:
    """A scaler + logistic regression fitted to labels that favour nearby, popular streams."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(4000, len(feature_names))) * 3 + 2
    logit = -features[:, 0] * 0.8 + features[:, 9] * 0.5 + features[:, 5] * 0.7
    labels = rng.random(4000) < 1 / (1 + np.exp(-logit))
    estimator = make_pipeline(StandardScaler(), LogisticRegression()).fit(features, labels)
    metadata = {
        "feature_names": list(feature_names),
        "model_kind": "logistic",
        "created_at": "2026-11-22T00:00:00+00:00",
        "training_rows": 4000,
    }
    return ClickModel(estimator=estimator, metadata=metadata)


def saved_model(folder: Path) -> tuple[ClickModel, Path]:
    """`fitted_model()` saved (with its checksum) as `folder/click.joblib`."""
    model = fitted_model()
    path = folder / "click.joblib"
    save(model, path)
    return model, path
