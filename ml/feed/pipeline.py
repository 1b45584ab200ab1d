"""What training and evaluation share: read the data, split it, build the matrices.

Both commands call `prepare` with the same ratios, so the evaluation's test
slice is exactly the one training never saw; `data_hash` ties a trained model
to the log it was trained on, and the evaluation refuses a model whose hash
differs (other data, or another split).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from app.feed.ranker import RERANKER_FILE as RERANKER_FILE
from ml.feed.data import Data, Log, Progress, from_database, from_file
from ml.feed.split import Split, split

BoolArray = npt.NDArray[np.bool_]

#: What `ml feed train` writes into the model directory (the server reads the reranker).
SUMMARY_FILE = "feed_training.json"


@dataclass(frozen=True)
class Source:
    """Where the interactions come from: a file alone, or the database."""

    database_url: str
    interactions: Path | None = None
    watch_time_unit: str = "minutes"
    #: In the database: "interactions" (imported) or "log" (what the service logged).
    table: str = "interactions"


@dataclass(frozen=True)
class Prepared:
    """The data, its split, and the fit/tune positives as users × streams matrices."""

    data: Data
    split: Split
    fit: sp.csr_matrix
    tune: sp.csr_matrix
    data_hash: str

    @property
    def log(self) -> Log:
        """The interaction log."""
        return self.data.log


def positives(log: Log, mask: BoolArray, weights: str = "binary") -> sp.csr_matrix:
    """The watched rows of `mask` as a users × streams matrix.

    `binary`: 1 per watched pair, float32 (what the collaborative models fit);
    `minutes`: the pair's summed watch minutes, float64 (labels are graded from them).
    """
    rows = np.flatnonzero(mask & log.positive)
    values = np.ones(len(rows)) if weights == "binary" else log.minutes[rows]
    matrix = sp.csr_matrix(
        (values, (log.user[rows], log.item[rows])), shape=(log.n_users, log.n_items)
    )
    matrix.sum_duplicates()
    if weights == "binary":
        matrix.data[:] = 1.0
    matrix.sort_indices()
    return matrix.astype(np.float32) if weights == "binary" else matrix


def log_hash(log: Log, test_ratio: float, tune_ratio: float) -> str:
    """A short digest of the log's content and the split ratios."""
    digest = hashlib.sha256()
    for ids in (log.user_ids, log.stream_ids):
        digest.update("\x1f".join(map(str, ids)).encode())
    for array in (log.user, log.item, log.at_us, log.minutes):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(f"{test_ratio}/{tune_ratio}".encode())
    return digest.hexdigest()[:16]


def prepare(
    source: Source, test_ratio: float, tune_ratio: float, progress: Progress | None = None
) -> Prepared:
    """Read and split the interactions."""
    if source.interactions is not None:
        data = from_file(
            source.interactions, watch_time_unit=source.watch_time_unit, progress=progress
        )
    else:
        data = from_database(source.database_url, progress=progress, source=source.table)
    cut = split(data.log, test_ratio=test_ratio, tune_ratio=tune_ratio)
    return Prepared(
        data=data,
        split=cut,
        fit=positives(data.log, cut.fit),
        tune=positives(data.log, cut.tune),
        data_hash=log_hash(data.log, test_ratio, tune_ratio),
    )
