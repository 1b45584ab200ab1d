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
a reader caught between them sees a mismatch and reads both once more.

The artifact's own SHA-256 cannot be stored inside it; `save` and `load` put it
into `metadata["sha256"]` of the in-memory model instead.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt

from app.features.clicks import FEATURE_NAMES

FloatArray = npt.NDArray[np.float64]

#: Version of the file layout above; bump when the stored dict changes shape.
FORMAT = 1
TRAIN_HINT = "train one with `uv run python -m ml train`"
#: How long to wait before re-reading when the checksum does not match (see above).
_RETRY_S = 0.2


class ModelError(Exception):
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


def checksum_path(path: Path) -> Path:
    """Where the checksum of the artifact at `path` lives."""
    return path.with_name(path.name + ".sha256")


def save(model: ClickModel, path: Path) -> None:
    """Write the model and its checksum atomically; sets `model.metadata["sha256"]`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = {k: v for k, v in model.metadata.items() if k != "sha256"}
    buffer = io.BytesIO()
    joblib.dump({"format": FORMAT, "estimator": model.estimator, "metadata": stored}, buffer)
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).hexdigest()
    _write_atomically(path, payload)
    _write_atomically(checksum_path(path), f"{digest}  {path.name}\n".encode())
    model.metadata["sha256"] = digest


def load(path: Path) -> ClickModel:
    """Read, verify and unpickle the model at `path`.

    Raises:
        ModelError: the file or its checksum is missing, the bytes do not match
            the checksum, the file does not unpickle into a model, or the model
            was trained on other features than `FEATURE_NAMES`.
    """
    path = Path(path)
    payload, digest = _read_verified(path)
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


def _read_verified(path: Path) -> tuple[bytes, str]:
    """The artifact's bytes and digest, once they match the checksum file."""
    for attempt in range(2):
        try:
            payload = path.read_bytes()
        except FileNotFoundError:
            raise ModelError(f"no click model at {path}; {TRAIN_HINT}") from None
        except OSError as exc:
            raise ModelError(f"cannot read the click model {path}: {exc}; {TRAIN_HINT}") from exc
        digest = hashlib.sha256(payload).hexdigest()
        expected = _expected_digest(path)
        if digest == expected:
            return payload, digest
        if attempt == 0:
            time.sleep(_RETRY_S)  # perhaps caught between the two renames of a save
    if expected is None:
        raise ModelError(
            f"the click model {path} has no readable checksum file"
            f" {checksum_path(path).name}; {TRAIN_HINT}"
        )
    raise ModelError(
        f"the click model {path} does not match its checksum (sha256 {digest},"
        f" expected {expected}): the file is damaged or incomplete; {TRAIN_HINT}"
    )


def _expected_digest(path: Path) -> str | None:
    """The digest the checksum file records, or None if it is missing or unreadable."""
    try:
        words = checksum_path(path).read_text().split()
    except (OSError, UnicodeDecodeError):
        return None
    return words[0].lower() if words else None


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename over `path`."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the model from a server's user
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
