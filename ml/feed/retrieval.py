"""Exact top-k retrieval by dot product, with deterministic ties.

Every stage-1 model ends as either a pair of embedding matrices (LightGCN, ALS) or a
score per item (popularity); this module turns both into ranked candidate lists.
Retrieval is exact (a matmul, `argpartition`, then a sort of only the k kept): at the
sizes of this project it costs well under a millisecond per user, and an approximate
index would make the offline recall depend on the index instead of the model.

Ties are broken by the lower item index, always. `np.argpartition` alone picks an
arbitrary subset of the items tied at the k-th score, so two runs (or two machines)
could disagree on the candidates; here the k-th score's ties are resolved explicitly,
which also lets the tests compare against a stable full sort.

Users are processed in blocks so memory stays bounded: a block holds at most
`_BLOCK_CELLS` scores (1,000 users × 50K items by default), whatever the number of
users asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

#: Largest users × items block scored at once (float32: 200 MB).
_BLOCK_CELLS = 1_000 * 50_000


@dataclass(frozen=True)
class Embeddings:
    """User and item vectors of one model: the score of a pair is their dot product.

    Attributes:
        users: float32 array (n_users, dim), row u is user index u.
        items: float32 array (n_items, dim), row i is item index i.
    """

    users: np.ndarray
    items: np.ndarray

    def __post_init__(self) -> None:
        if self.users.ndim != 2 or self.items.ndim != 2:
            raise ValueError("embeddings must be 2-D arrays")
        if self.users.shape[1] != self.items.shape[1]:
            raise ValueError(
                f"users have {self.users.shape[1]} dimensions, items {self.items.shape[1]}"
            )

    @property
    def dim(self) -> int:
        """Number of dimensions shared by users and items."""
        return int(self.users.shape[1])


def top_k(
    user_vectors: npt.ArrayLike,
    item_vectors: npt.ArrayLike,
    k: int,
    *,
    candidates_mask: npt.ArrayLike | None = None,
    exclude: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k items with the highest dot product for each user, best first.

    Args:
        user_vectors: (n, d) query vectors, one row per user.
        item_vectors: (m, d) item vectors.
        k: items to return per user, at least 1.
        candidates_mask: optional boolean (m,) array; only items where it is True are
            ranked (the live set, a category). Returned indices are still indices into
            `item_vectors`.
        exclude: optional (n, m) sparse matrix, row-aligned with `user_vectors`; an
            item stored in a user's row (any stored entry) is not returned for that
            user, e.g. the items already in the user's training history.

    Returns:
        `(indices, scores)`: int64 and float32 arrays of shape (n, k') with
        k' = min(k, number of candidate items), rows sorted by descending score, ties
        by ascending item index. When `exclude` leaves a user fewer than k' items, the
        row is padded with excluded items scored -inf (still in index order).
    """
    users = np.asarray(user_vectors, dtype=np.float32)
    items = np.asarray(item_vectors, dtype=np.float32)
    if users.ndim != 2 or items.ndim != 2 or users.shape[1] != items.shape[1]:
        raise ValueError(f"cannot score {users.shape} users against {items.shape} items")
    _check_exclude(exclude, users.shape[0], items.shape[0])
    kept, items = _apply_mask(candidates_mask, items)
    k = _check_k(k, items.shape[0])
    n = users.shape[0]
    indices = np.empty((n, k), dtype=np.int64)
    scores = np.empty((n, k), dtype=np.float32)
    step = _block_rows(items.shape[0])
    for start in range(0, n, step):
        stop = min(start + step, n)
        block = users[start:stop] @ items.T
        _mask_excluded(block, exclude, start, stop, kept)
        indices[start:stop], scores[start:stop] = _block_top_k(block, k)
    if kept is not None:
        indices = kept[indices]
    return indices, scores


def top_k_scores(
    scores: npt.ArrayLike,
    k: int,
    *,
    exclude: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k highest-scored items of a score matrix, or of one score vector for everyone.

    For models that score items without embeddings (popularity, a trending count).

    Args:
        scores: (n, m) scores per user and item, or a (m,) vector shared by all users.
        k: items to return per row, at least 1.
        exclude: optional (n, m) sparse matrix of items not to return per user (see
            `top_k`). With a score vector, it also gives the number of users n.

    Returns:
        `(indices, scores)`: int64 indices and the scores in the input's float dtype,
        sorted by descending score with ties by ascending item index. Shape (k',) for a
        score vector without `exclude`, (n, k') otherwise, k' = min(k, m).
    """
    values = np.asarray(scores)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    if values.ndim == 1:
        k = _check_k(k, values.shape[0])
        if exclude is None:
            index, value = _block_top_k(values[None, :], k)
            return index[0], value[0]
        values = np.broadcast_to(values, (exclude.shape[0], values.shape[0]))
    if values.ndim != 2:
        raise ValueError(f"scores must be 1-D or 2-D, not {values.ndim}-D")
    n, m = values.shape
    k = _check_k(k, m)
    _check_exclude(exclude, n, m)
    indices = np.empty((n, k), dtype=np.int64)
    out = np.empty((n, k), dtype=values.dtype)
    step = _block_rows(m)
    for start in range(0, n, step):
        stop = min(start + step, n)
        block = np.array(values[start:stop])  # a copy: masking must not touch the input
        _mask_excluded(block, exclude, start, stop, None)
        indices[start:stop], out[start:stop] = _block_top_k(block, k)
    return indices, out


#: Wide rows are pre-filtered through every `_SAMPLE_STRIDE`-th column (see `_block_top_k`).
_SAMPLE_STRIDE = 8
_SAMPLE_MIN_COLUMNS = 20_000


def _block_top_k(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top k of every row of a dense block, ties by lower index, exactly.

    A full partition of a million-column row costs milliseconds, and a hundred
    thousand users made it the whole of a training run's candidate step. So a wide
    row first takes a lower bound from a strided sample of its columns: the
    (2k/stride)-th largest sampled score, which about 2k cells of the row reach.
    Wherever at least k cells do reach it, the row's top k are all among them (the
    k-th largest score is then at least the bound), and only those few cells are
    sorted. A row where fewer do (scores the sample misjudged) takes the full path.
    """
    rows, m = block.shape
    if m < _SAMPLE_MIN_COLUMNS or k * _SAMPLE_STRIDE * 4 > m:
        return _exact_block_top_k(block, k)
    sample = block[:, ::_SAMPLE_STRIDE]
    rank = max(1, 2 * k // _SAMPLE_STRIDE)
    bound = np.partition(sample, sample.shape[1] - rank, axis=1)[:, sample.shape[1] - rank]
    reached = block >= bound[:, None]
    enough = reached.sum(axis=1) >= k
    index = np.empty((rows, k), dtype=np.int64)
    value = np.empty((rows, k), dtype=block.dtype)
    if not enough.all():
        short = np.flatnonzero(~enough)
        index[short], value[short] = _exact_block_top_k(block[short], k)
    good = np.flatnonzero(enough)
    cell_rows, cell_cols = np.nonzero(reached[good])
    values = block[good[cell_rows], cell_cols]
    order = np.lexsort((cell_cols, -values, cell_rows))  # by row, best first, then index
    cell_rows, cell_cols, values = cell_rows[order], cell_cols[order], values[order]
    starts = np.searchsorted(cell_rows, np.arange(len(good)))
    take = (starts[:, None] + np.arange(k)[None, :]).ravel()
    index[good] = cell_cols[take].reshape(len(good), k)
    value[good] = values[take].reshape(len(good), k)
    return index, value


def _exact_block_top_k(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top k of every row of a dense block, ties at the k-th score by lower index.

    `np.partition` finds each row's k-th largest score t (one copy of the block, far
    cheaper than `np.argpartition`'s index array). One `np.nonzero` over `block >= t`
    then lists, row by row in index order, every cell above t (fewer than k per row)
    and every cell tied at t; each row keeps all of the former and as many of the
    latter, in index order, as it still needs. A stable sort by descending score keeps
    that index order among equal scores. (Scores must not be NaN; -inf is fine and is
    how exclusions are written.)
    """
    rows, m = block.shape
    threshold = np.partition(block, m - k, axis=1)[:, m - k]
    cell_rows, cell_cols = np.nonzero(block >= threshold[:, None])
    values = block[cell_rows, cell_cols]
    tied = values == threshold[cell_rows]
    # Every row has at least k cells here, so each row's first cell exists.
    row_starts = np.searchsorted(cell_rows, np.arange(rows))
    above = np.add.reduceat(~tied, row_starts)
    tied_before = np.cumsum(tied) - tied  # tied cells earlier in the whole list
    rank_in_row = tied_before - tied_before[row_starts][cell_rows]
    keep = ~tied | (rank_in_row < (k - above)[cell_rows])
    index = cell_cols[keep].reshape(rows, k)
    value = values[keep].reshape(rows, k)
    order = np.argsort(-value, axis=1, kind="stable")
    return (
        np.take_along_axis(index, order, axis=1).astype(np.int64, copy=False),
        np.take_along_axis(value, order, axis=1),
    )


def _apply_mask(
    candidates_mask: npt.ArrayLike | None, items: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray]:
    """The kept item indices (None for all) and the item rows they select."""
    if candidates_mask is None:
        return None, items
    mask = np.asarray(candidates_mask, dtype=bool)
    if mask.shape != (items.shape[0],):
        raise ValueError(f"candidates_mask has shape {mask.shape}, expected ({items.shape[0]},)")
    kept = np.flatnonzero(mask)
    return kept, items[kept]


def _mask_excluded(
    block: np.ndarray,
    exclude: sp.csr_matrix | None,
    start: int,
    stop: int,
    kept: np.ndarray | None,
) -> None:
    """Set the excluded items of users `start:stop` to -inf in their score block."""
    if exclude is None:
        return
    part = exclude[start:stop].tocoo()
    rows, cols = part.row, part.col
    if kept is not None:
        # Map full item indices to columns of the masked block; drop masked-out ones.
        position = np.searchsorted(kept, cols)
        inside = (position < kept.size) & (kept[np.minimum(position, kept.size - 1)] == cols)
        rows, cols = rows[inside], position[inside]
    block[rows, cols] = -np.inf


def _check_exclude(exclude: sp.csr_matrix | None, n: int, m: int) -> None:
    if exclude is not None and exclude.shape != (n, m):
        raise ValueError(f"exclude has shape {exclude.shape}, expected ({n}, {m})")


def _check_k(k: int, m: int) -> int:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if m < 1:
        raise ValueError("there are no candidate items to rank")
    return min(int(k), m)


def _block_rows(m: int) -> int:
    return max(1, _BLOCK_CELLS // max(m, 1))
