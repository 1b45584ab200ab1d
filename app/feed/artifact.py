"""The saved feed reranker: one file, its checksum, and the checks made on loading.

Layout on disk, for a path `models/feed_reranker.bin`:

- `models/feed_reranker.bin`, four parts one after the other:
  1. the 8 magic bytes `HTRANKER`;
  2. the header's length in bytes, a little-endian unsigned 32-bit integer;
  3. the header, UTF-8 JSON: `{"format": 2, "metadata": {...}}`, where metadata
     holds feature_names (the booster's column order), data_hash, versions,
     metrics, the candidate model's version, created_at (whatever training
     records; only feature_names is required);
  4. the XGBoost booster in its documented JSON model format
     (`Booster.save_raw("json")`), to the end of the file.
- `models/feed_reranker.bin.sha256`: its SHA-256 in `sha256sum` format.

No pickle: the header and the booster are plain JSON, so loading runs no code
from the file, and XGBoost itself still reads the booster. Both files are
written atomically and the bytes are checked against the checksum before
anything is parsed (app/features/files.py, shared with the click model).
`load_ranker` refuses, with `RankerError`, a missing file, a missing or
mismatching checksum, a file that is not a reranker, another format version, a
feature list other than the one the caller builds, and a booster that is not
JSON, that app/feed/forest.py cannot reproduce, or whose input width differs
from the feature list.

The server never imports XGBoost: app/feed/forest.py walks the trees with numpy.
Format 1 held XGBoost's UBJSON instead; its files are refused with the hint to
retrain (which `make feed-model` does by itself, the file name having changed).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.features.files import ArtifactError, checksum_path, read_verified, write_checksummed
from app.feed.forest import Forest, ForestError

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
FORMAT = 2
MAGIC = b"HTRANKER"
TRAIN_HINT = "train one with `uv run python -m ml feed train`"
_LENGTH = struct.Struct("<I")

FloatArray = npt.NDArray[np.float32]


class RankerError(ArtifactError):
    """The feed reranker cannot be used; the message says why and how to fix it."""


@dataclass
class FeedRanker:
    """A fitted LambdaRank forest and what is known about how it was made.

    Attributes:
        forest: the trees (app/feed/forest.py), over columns in
            `metadata["feature_names"]` order.
        metadata: feature_names, data_hash, versions, metrics, candidate model
            version, created_at; `save_ranker` and `load_ranker` add the sha256
            of the file.
    """

    forest: Forest
    metadata: dict[str, Any]

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The columns the forest scores, in order."""
        return tuple(self.metadata.get("feature_names", ()))

    def score(self, features: np.ndarray) -> FloatArray:
        """The ranking score of every row of `features` (n × len(feature_names)), one call."""
        return self.forest.score(features)

    def contributions(self, features: np.ndarray) -> FloatArray:
        """Each feature's approximate share of each row's score: (n, width + 1), bias last.

        XGBoost's Saabas approximation (`approx_contribs`), which costs about
        0.1 ms for 30 rows where exact TreeSHAP takes some 36 ms. Missing values
        (NaN) follow the trees' default directions, as in `score`.
        """
        return self.forest.contributions(features)


def save_ranker(model: bytes, metadata: dict[str, Any], path: Path) -> FeedRanker:
    """Write a booster's JSON (`Booster.save_raw("json")`) and metadata, with a checksum.

    Returns the ranker as `load_ranker` would read it back, sha256 included.

    Raises:
        ValueError: the metadata has no feature list or is not plain JSON (NaN
            included), or the booster is not one the server can score (a
            `ForestError`, or an input width other than the feature list's).
    """
    path = Path(path)
    names = metadata.get("feature_names")
    if not names or not all(isinstance(name, str) for name in names):
        raise ValueError("ranker metadata needs feature_names, a non-empty list of strings")
    forest = Forest.from_xgboost(json.loads(model))
    if forest.width != len(names):
        raise ValueError(
            f"the booster takes {forest.width} features but feature_names lists {len(names)}"
        )
    stored = {key: value for key, value in metadata.items() if key != "sha256"}
    stored["feature_names"] = list(names)
    try:
        header = json.dumps({"format": FORMAT, "metadata": stored}, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"ranker metadata is not plain JSON: {exc}") from exc
    payload = b"".join((MAGIC, _LENGTH.pack(len(header)), header, bytes(model)))
    digest = write_checksummed(path, payload)
    return FeedRanker(forest=forest, metadata={**stored, "sha256": digest})


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
    forest = _forest(path, model_bytes)
    if forest.width != len(names):
        raise RankerError(
            f"the feed reranker {path} has a booster for {forest.width} features"
            f" but lists {len(names)}; {TRAIN_HINT}"
        )
    metadata["sha256"] = digest
    return FeedRanker(forest=forest, metadata=metadata)


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


def _forest(path: Path, model_bytes: bytes) -> Forest:
    try:
        return Forest.from_xgboost(json.loads(model_bytes))
    except ValueError as exc:  # ForestError, and JSON that does not parse
        what = "is not one the server can score" if isinstance(exc, ForestError) else "is not JSON"
        raise RankerError(
            f"the booster of the feed reranker {path} {what} ({exc}); {TRAIN_HINT}"
        ) from exc
