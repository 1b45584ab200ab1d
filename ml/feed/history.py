"""What the past says, from the rows before a cut: per-user and per-stream aggregates.

Every number the reranker's features need from history is computed here, once,
from a row mask of the log (the fit slice when the reranker is trained, fit +
tune when it is evaluated), and only from watched rows. Nothing else reads the
log for features, so no row outside the mask can reach a feature: that is the
leak test's whole premise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from app.db.limits import DEVICES
from ml.feed.data import Log, Tables

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: "Trending" counts the watches of the last days of the history window.
TRENDING_DAYS = 7
_US_PER_HOUR = 3_600_000_000


@dataclass(frozen=True)
class History:
    """Aggregates over the watched rows of one mask."""

    minutes: sp.csr_matrix  # users × streams: minutes watched
    watches: sp.csr_matrix  # users × streams: watched interactions
    creator_minutes: sp.csr_matrix  # users × creators
    creator_watches: sp.csr_matrix  # users × creators
    creator: IntArray  # creator code of every stream
    popularity: FloatArray  # per stream: distinct viewers who watched it
    recent: FloatArray  # per stream: watches in the last TRENDING_DAYS of the window
    user_hours: FloatArray  # users × 24: share of watches per local hour
    stream_hours: FloatArray  # streams × 24: share of watches per UTC hour
    dominant_device: IntArray  # per stream: the device most of its watches came from, -1 none
    category_share: FloatArray | None  # users × categories: share of minutes
    categories: tuple[str, ...]
    end_us: int  # the latest watched row in the mask

    @property
    def n_users(self) -> int:
        """Rows of the user matrices."""
        return int(self.minutes.shape[0])


def _matrix(
    rows: IntArray, cols: IntArray, values: FloatArray, shape: tuple[int, int]
) -> sp.csr_matrix:
    """Summed duplicates, sorted indices: row slices are searchable."""
    matrix = sp.csr_matrix((values, (rows, cols)), shape=shape, dtype=np.float64)
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


def _shares(counts: FloatArray) -> FloatArray:
    total = counts.sum(axis=1, keepdims=True)
    return np.asarray(np.divide(counts, total, out=np.zeros_like(counts), where=total > 0))


def creators_of(log: Log, tables: Tables | None) -> IntArray:
    """Creator code per stream: the streams table's creator_id, or the stream itself."""
    if tables is None:
        return np.arange(log.n_items, dtype=np.int64)
    _, inverse = np.unique(tables.streams["creator_id"].astype(str).to_numpy(), return_inverse=True)
    return inverse.astype(np.int64)


def build(log: Log, mask: BoolArray, tables: Tables | None) -> History:
    """Aggregate the watched rows of `mask`."""
    rows = np.flatnonzero(mask & log.positive)
    user, item, minutes = log.user[rows], log.item[rows], log.minutes[rows]
    at = log.at_us[rows]
    n_users, n_items = log.n_users, log.n_items
    ones = np.ones(len(rows))
    creator = creators_of(log, tables)
    n_creators = int(creator.max()) + 1 if len(creator) else 0
    watched = _matrix(user, item, ones, (n_users, n_items))
    end_us = int(at.max()) if len(at) else 0
    recent_rows = at >= end_us - TRENDING_DAYS * 24 * _US_PER_HOUR

    offset = (
        tables.users["timezone_offset"].to_numpy(dtype=np.float64)
        if tables is not None
        else np.zeros(n_users)
    )
    utc_hour = (at // _US_PER_HOUR) % 24
    local = np.floor((utc_hour + offset[user]) % 24).astype(np.int64) % 24
    user_hours = np.zeros((n_users, 24))
    np.add.at(user_hours, (user, local), 1.0)
    stream_hours = np.zeros((n_items, 24))
    np.add.at(stream_hours, (item, utc_hour), 1.0)

    device = log.device[rows]
    known = device >= 0
    device_counts = np.zeros((n_items, len(DEVICES)))
    np.add.at(device_counts, (item[known], device[known]), 1.0)
    dominant = np.where(device_counts.sum(axis=1) > 0, device_counts.argmax(axis=1), -1)

    category_share: FloatArray | None = None
    categories: tuple[str, ...] = ()
    if tables is not None:
        names, stream_category = np.unique(
            tables.streams["category_id"].astype(str).to_numpy(), return_inverse=True
        )
        by_category = np.zeros((n_users, len(names)))
        np.add.at(by_category, (user, stream_category[item]), minutes)
        category_share, categories = _shares(by_category), tuple(str(n) for n in names)

    return History(
        minutes=_matrix(user, item, minutes, (n_users, n_items)),
        watches=watched,
        creator_minutes=_matrix(user, creator[item], minutes, (n_users, n_creators)),
        creator_watches=_matrix(user, creator[item], ones, (n_users, n_creators)),
        creator=creator,
        popularity=np.asarray((watched > 0).sum(axis=0), dtype=np.float64).ravel(),
        recent=np.bincount(item[recent_rows], minlength=n_items).astype(np.float64),
        user_hours=_shares(user_hours),
        stream_hours=_shares(stream_hours),
        dominant_device=dominant.astype(np.int64),
        category_share=category_share,
        categories=categories,
        end_us=end_us,
    )


def row_values(matrix: sp.csr_matrix, row: int, columns: IntArray) -> FloatArray:
    """matrix[row, columns] as a dense array, by binary search in the sorted row."""
    start, end = matrix.indptr[row], matrix.indptr[row + 1]
    indices, data = matrix.indices[start:end], matrix.data[start:end]
    at = np.searchsorted(indices, columns)
    found = at < len(indices)
    found[found] = indices[at[found]] == columns[found]
    out = np.zeros(len(columns))
    out[found] = data[at[found]]
    return out
