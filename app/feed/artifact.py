"""The saved feed reranker: one file, its checksum, and the checks made on loading.

Layout on disk, for a path `models/feed_ranker.bin`:

- `models/feed_ranker.bin`, four parts one after the other:
  1. the 8 magic bytes `HTRANKER`;
  2. the header's length in bytes, a little-endian unsigned 32-bit integer;
  3. the header, UTF-8 JSON: `{"format": 1, "metadata": {...}}`, where metadata
     holds feature_names (the booster's column order), data_hash, versions,
     metrics, the candidate model's version, created_at (whatever training
     records; only feature_names is required);
  4. the XGBoost booster in its own UBJSON format (`Booster.save_raw("ubj")`),
     to the end of the file.
- `models/feed_ranker.bin.sha256`: its SHA-256 in `sha256sum` format.

No pickle: the header is plain JSON and the booster is XGBoost's documented model
format, so loading runs no code from the file, and a newer XGBoost still reads
it. Both files are written atomically and the bytes are checked against the
checksum before anything is parsed (app/features/files.py, shared with the
click model). `load_ranker` refuses, with `RankerError`, a missing file, a
missing or mismatching checksum, a file that is not a reranker, another format
version, a feature list other than the one the caller builds, and a booster
XGBoost cannot load or whose input width differs from the feature list.

XGBoost is imported only when a ranker is saved or loaded. Under the server's
import guard (app/lean.py) it pulls in neither pandas nor scikit-learn: XGBoost
imports them only if it can, and the guard answers that it cannot
(`import_xgboost`).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from app.features.files import ArtifactError, checksum_path, read_verified, write_checksummed
from app.lean import import_xgboost

if TYPE_CHECKING:
    from xgboost import Booster

__all__ = [
    "FORMAT",
    "MAGIC",
    "TRAIN_HINT",
    "FeedRanker",
    "RankerError",
    "checksum_path",
    "load_ranker",
    "save_ranker",
]

#: Version of the layout above; bump when the header or the payload changes shape.
FORMAT = 1
MAGIC = b"HTRANKER"
TRAIN_HINT = "train one with `uv run python -m ml feed train`"
_LENGTH = struct.Struct("<I")

FloatArray = npt.NDArray[np.float32]


class RankerError(ArtifactError):
    """The feed reranker cannot be used; the message says why and how to fix it."""


@dataclass
class FeedRanker:
    """A fitted LambdaRank booster and what is known about how it was made.

    Attributes:
        booster: an `xgboost.Booster` (e.g. `XGBRanker(...).fit(...).get_booster()`)
            trained on columns in `metadata["feature_names"]` order.
        metadata: feature_names, data_hash, versions, metrics, candidate model
            version, created_at; `save_ranker` and `load_ranker` add the sha256
            of the file.
    """

    booster: Booster
    metadata: dict[str, Any]

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The columns the booster scores, in order."""
        return tuple(self.metadata.get("feature_names", ()))

    def score(self, features: np.ndarray) -> FloatArray:
        """The ranking score of every row of `features` (n × len(feature_names)), one call."""
        matrix = np.asarray(features, dtype=np.float32)
        width = len(self.feature_names)
        if matrix.ndim != 2 or matrix.shape[1] != width:
            raise ValueError(f"features must have shape (n, {width}), got {matrix.shape}")
        if matrix.shape[0] == 0:
            return np.empty(0, dtype=np.float32)
        # The columns were checked against the booster's names when it was loaded.
        scores: FloatArray = np.asarray(
            self.booster.inplace_predict(matrix, validate_features=False), dtype=np.float32
        )
        return scores

    def contributions(self, features: np.ndarray) -> FloatArray:
        """Each feature's approximate share of each row's score: (n, width + 1), bias last.

        XGBoost's Saabas approximation (`approx_contribs`): about 0.3 ms for 30
        rows, where exact TreeSHAP takes some 36 ms. Missing values (NaN) follow
        the trees' default directions, as in `score`.
        """
        DMatrix = import_xgboost().DMatrix

        matrix = np.asarray(features, dtype=np.float32)
        width = len(self.feature_names)
        if matrix.ndim != 2 or matrix.shape[1] != width:
            raise ValueError(f"features must have shape (n, {width}), got {matrix.shape}")
        if matrix.shape[0] == 0:
            return np.empty((0, width + 1), dtype=np.float32)
        data = DMatrix(matrix, nthread=1)
        values = self.booster.predict(
            data, pred_contribs=True, approx_contribs=True, validate_features=False
        )
        return np.asarray(values, dtype=np.float32)


def save_ranker(ranker: FeedRanker, path: Path) -> None:
    """Write the ranker and its checksum atomically; sets `ranker.metadata["sha256"]`.

    Raises:
        ValueError: the metadata has no feature list, the booster's input width
            differs from it, or the metadata is not plain JSON (NaN included).
    """
    path = Path(path)
    names = ranker.metadata.get("feature_names")
    if not names or not all(isinstance(name, str) for name in names):
        raise ValueError("ranker metadata needs feature_names, a non-empty list of strings")
    width = ranker.booster.num_features()
    if width != len(names):
        raise ValueError(f"the booster takes {width} features but feature_names lists {len(names)}")
    stored = {key: value for key, value in ranker.metadata.items() if key != "sha256"}
    stored["feature_names"] = list(names)
    try:
        header = json.dumps({"format": FORMAT, "metadata": stored}, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"ranker metadata is not plain JSON: {exc}") from exc
    payload = b"".join(
        (MAGIC, _LENGTH.pack(len(header)), header, bytes(ranker.booster.save_raw("ubj")))
    )
    ranker.metadata["sha256"] = write_checksummed(path, payload)


def load_ranker(path: Path, expected_features: Sequence[str]) -> FeedRanker:
    """Read and verify the ranker at `path`, for a caller that builds `expected_features`.

    Raises:
        RankerError: see the module docstring; the message ends with how to train one.
    """
    path = Path(path)
    payload, digest = read_verified(path, what="feed reranker", hint=TRAIN_HINT, error=RankerError)
    header, model_bytes = _split(path, payload)
    if header.get("format") != FORMAT:
        raise RankerError(
            f"{path} has feed reranker format {header.get('format')!r}, this code reads"
            f" {FORMAT}; {TRAIN_HINT}"
        )
    metadata = dict(header["metadata"])
    names = list(metadata.get("feature_names") or ())
    if names != list(expected_features):
        raise RankerError(
            f"the feed reranker {path} was trained on features {names},"
            f" but this code builds {list(expected_features)}; {TRAIN_HINT}"
        )
    booster = _booster(path, model_bytes)
    if booster.num_features() != len(names):
        raise RankerError(
            f"the feed reranker {path} has a booster for {booster.num_features()} features"
            f" but lists {len(names)}; {TRAIN_HINT}"
        )
    metadata["sha256"] = digest
    return FeedRanker(booster=booster, metadata=metadata)


def _split(path: Path, payload: bytes) -> tuple[dict[str, Any], bytes]:
    """The header and the booster's bytes, or RankerError if the layout is not ours."""
    not_ours = RankerError(f"{path} is not a Hometown feed reranker; {TRAIN_HINT}")
    start = len(MAGIC) + _LENGTH.size
    if len(payload) < start or not payload.startswith(MAGIC):
        raise not_ours
    (length,) = _LENGTH.unpack_from(payload, len(MAGIC))
    try:
        header = json.loads(payload[start : start + length])
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise not_ours from None
    if not isinstance(header, dict) or not isinstance(header.get("metadata"), dict):
        raise not_ours
    return header, payload[start + length :]


def _booster(path: Path, model_bytes: bytes) -> Booster:
    xgboost = import_xgboost()
    booster: Booster = xgboost.Booster()
    try:
        booster.load_model(bytearray(model_bytes))
    except xgboost.core.XGBoostError as exc:
        # XGBoost's message carries a native stack trace: its first line is the reason.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RankerError(
            f"cannot load the booster of the feed reranker {path}: {reason}; {TRAIN_HINT}"
        ) from exc
    return booster
