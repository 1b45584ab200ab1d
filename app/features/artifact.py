"""The saved click model: a joblib file, its checksum, and the checks made on loading.

Layout on disk, for a model path `models/hometown_model.joblib`:

- `models/hometown_model.joblib`: joblib of `{"format", "estimator", "metadata"}`
  (plain types around the sklearn estimator, so renaming a class here cannot
  break old files);
- `models/hometown_model.joblib.sha256`: its SHA-256 in `sha256sum` format, so
  `sha256sum -c` checks it by hand too.

A joblib file is a pickle, and unpickling runs code: `load` reads the bytes once,
checks them against the checksum and only then unpickles those same bytes, so a
truncated or damaged file is refused before anything runs. (The checksum
guards against accidents, not attackers: whoever can write the model can write
its checksum.) Both files are written to a temporary name in the same directory
and renamed into place, so a server that loads while training saves sees the
old model or the new one, never half of one. The two renames are not one step;
a reader caught between them sees a mismatch and reads both once more. The
checksum and atomic-write helpers live in app/features/files.py, shared with
the feed reranker's artifact (app/feed/artifact.py).

The artifact's own SHA-256 cannot be stored inside it; `save` and `load` put it
into `metadata["sha256"]` of the in-memory model instead.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt

from app.features.clicks import FEATURE_NAMES
from app.features.files import ArtifactError, checksum_path, read_verified, write_checksummed

#: `checksum_path` is part of this module's interface (tests and tools find the checksum file).
__all__ = ["FORMAT", "TRAIN_HINT", "ClickModel", "ModelError", "checksum_path", "load", "save"]

FloatArray = npt.NDArray[np.float64]

#: Version of the file layout above; bump when the stored dict changes shape.
FORMAT = 1
TRAIN_HINT = "train one with `uv run python -m ml train`"


class ModelError(ArtifactError):
    """The click model cannot be used; the message says why and how to fix it."""


@dataclass
class ClickModel:
    """A fitted click model and what is known about how it was made.

    Attributes:
        estimator: a fitted sklearn estimator or pipeline with `predict_proba`,
            trained on columns in `FEATURE_NAMES` order.
        metadata: feature_names, library versions, training rows, data hash,
            metrics, created_at, model kind, sha256 of the artifact.
    """

    estimator: Any
    metadata: dict[str, Any]

    def probability(self, features: np.ndarray) -> FloatArray:
        """P(click) for every row of `features` (n × 14), in one predict_proba call."""
        matrix = np.asarray(features, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(FEATURE_NAMES):
            raise ValueError(
                f"features must have shape (n, {len(FEATURE_NAMES)}), got {matrix.shape}"
            )
        if matrix.shape[0] == 0:  # sklearn refuses empty input; no candidates, no scores
            return np.empty(0, dtype=np.float64)
        proba = self.estimator.predict_proba(matrix)
        # Column of the positive class: classes_ is sorted, so True (or 1) comes last.
        clicked: FloatArray = np.asarray(proba[:, -1], dtype=np.float64)
        return clicked


def save(model: ClickModel, path: Path) -> None:
    """Write the model and its checksum atomically; sets `model.metadata["sha256"]`."""
    path = Path(path)
    stored = {k: v for k, v in model.metadata.items() if k != "sha256"}
    buffer = io.BytesIO()
    joblib.dump({"format": FORMAT, "estimator": model.estimator, "metadata": stored}, buffer)
    model.metadata["sha256"] = write_checksummed(path, buffer.getvalue())


def load(path: Path) -> ClickModel:
    """Read, verify and unpickle the model at `path`.

    Raises:
        ModelError: the file or its checksum is missing, the bytes do not match
            the checksum, the file does not unpickle into a model, or the model
            was trained on other features than `FEATURE_NAMES`.
    """
    path = Path(path)
    payload, digest = read_verified(path, what="click model", hint=TRAIN_HINT, error=ModelError)
    try:
        stored = joblib.load(io.BytesIO(payload))
    except Exception as exc:  # any unpickling failure means the same thing here
        raise ModelError(f"cannot read the click model {path}: {exc}; {TRAIN_HINT}") from exc
    if not isinstance(stored, dict) or not {"estimator", "metadata"} <= stored.keys():
        raise ModelError(f"{path} is not a Hometown click model; {TRAIN_HINT}")
    if stored.get("format") != FORMAT:
        raise ModelError(
            f"{path} has artifact format {stored.get('format')!r}, this code reads {FORMAT};"
            f" {TRAIN_HINT}"
        )
    estimator, metadata = stored["estimator"], dict(stored["metadata"])
    names = tuple(metadata.get("feature_names", ()))
    if names != FEATURE_NAMES:
        raise ModelError(
            f"the click model {path} was trained on features {list(names)},"
            f" but this code builds {list(FEATURE_NAMES)}; {TRAIN_HINT}"
        )
    if not callable(getattr(estimator, "predict_proba", None)):
        raise ModelError(f"the click model {path} cannot predict probabilities; {TRAIN_HINT}")
    metadata["sha256"] = digest
    return ClickModel(estimator=estimator, metadata=metadata)
