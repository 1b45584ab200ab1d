"""Ranking metrics for the offline evaluation: numpy only, no I/O.

A *ranking* here is one user's candidates reduced to their relevance labels, in
the order the ranker put them (best first): 0/1 for click / no click, or graded
labels (any non-negative number). The evaluation builds one such list per user,
with `rank` doing the ordering the service does.

Conventions, chosen once and used by every function:

- **Relevant** means a label above 0. Precision, recall, hit rate, AP and RR
  only ask whether an item is relevant; nDCG also uses how relevant.
- **nDCG gain is the label itself** (linear gain), discounted by
  `log2(rank + 1)` with ranks from 1. This is the convention of
  `sklearn.metrics.ndcg_score` and of recommenders' `ndcg_at_k`, so the numbers
  can be checked against both; for 0/1 clicks it equals the `2^rel - 1` gain.
  The ideal DCG sorts the same list's labels, so nDCG measures the order of the
  candidates the ranker was given, not retrieval.
- **k longer than the list**: positions past the end count as non-relevant.
  Precision@k therefore still divides by k (the standard definition, so a short
  list cannot score a perfect precision it did not earn), while nDCG, recall
  and hit rate simply see the whole list.
- **A list with no relevant item** scores 0 on every metric. Such users carry no
  signal about the order and would drag every mean towards 0, so the caller
  should leave users without a click out before evaluating; these functions do
  not drop them silently, so the mean is always over the lists passed in.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: Largest padded block (users × positions) evaluated at once, to bound memory.
_BLOCK_CELLS = 1 << 22


# --- per-list metrics --------------------------------------------------------------


def ndcg_at(relevance_in_rank_order: npt.ArrayLike, k: int) -> float:
    """Normalised discounted cumulative gain of the top k.

    DCG@k = sum over ranks i = 1..k of `rel_i / log2(i + 1)`, divided by the DCG@k
    of the same labels sorted best first. Linear gain, as in sklearn's
    `ndcg_score`; see the module docstring.

    Args:
        relevance_in_rank_order: labels of one user's candidates, best-ranked first.
        k: cut-off, at least 1.

    Returns:
        A value in [0, 1]; 0 when the list has no relevant item.
    """
    return float(_ndcg(_as_matrix(relevance_in_rank_order), _check_k(k))[0])


def precision_at(relevance_in_rank_order: npt.ArrayLike, k: int) -> float:
    """Share of the top k that is relevant, always divided by k (even past the list's end)."""
    return float(_precision(_as_matrix(relevance_in_rank_order), _check_k(k))[0])


def recall_at(relevance_in_rank_order: npt.ArrayLike, k: int) -> float:
    """Relevant items in the top k over all relevant items in the list; 0 if there are none."""
    return float(_recall(_as_matrix(relevance_in_rank_order), _check_k(k))[0])


def hit_rate_at(relevance_in_rank_order: npt.ArrayLike, k: int) -> float:
    """1 if any of the top k is relevant, else 0 (a user-level "did we get one right")."""
    return float(_hit_rate(_as_matrix(relevance_in_rank_order), _check_k(k))[0])


def average_precision(relevance_in_rank_order: npt.ArrayLike) -> float:
    """MAP's per-user term: the mean of precision@i over the ranks i of the relevant items.

    Taken over the whole list (no cut-off), so every relevant item counts and
    moving any of them up raises it. 0 when the list has no relevant item.
    """
    return float(_average_precision(_as_matrix(relevance_in_rank_order))[0])


def reciprocal_rank(relevance_in_rank_order: npt.ArrayLike) -> float:
    """MRR's per-user term: 1 / rank of the first relevant item, 0 if there is none."""
    return float(_reciprocal_rank(_as_matrix(relevance_in_rank_order))[0])


def rank(scores: npt.ArrayLike, ids: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """Order candidates as the service does: descending score, ties by ascending id.

    The id tie-break is the one `app.hometown.scoring.top_k` uses; without it
    equal scores would be ordered by input position, and a metric could change
    with the order rows happened to come back from the database.

    Args:
        scores: one score per candidate.
        ids: one id per candidate (strings or numbers), parallel to `scores`.

    Returns:
        Positions into `scores`/`ids`, best first. Index the labels with it:
        `relevance[rank(scores, ids)]`.
    """
    s = np.asarray(scores, dtype=np.float64)
    i = np.asarray(ids)
    if s.ndim != 1 or s.shape != i.shape:
        raise ValueError(f"scores and ids must be 1-D and parallel, got {s.shape} and {i.shape}")
    # lexsort sorts by the last key first.
    return np.lexsort((i, -s))


# --- many lists ----------------------------------------------------------------------


def per_user_metrics(
    lists: Sequence[npt.ArrayLike], ks: Sequence[int] = (5, 10)
) -> dict[str, FloatArray]:
    """Every metric for every list, one value per user, in the order of `lists`.

    The per-user arrays are what `paired_bootstrap` needs to compare two rankers
    over the same users. Keys are those of `evaluate_lists`.

    Lists of different lengths are zero-padded into blocks and scored together;
    padding is exact, because under the conventions above trailing non-relevant
    positions change no metric.
    """
    cutoffs = [_check_k(k) for k in ks]
    rows = [_as_row(r) for r in lists]
    names = [f"{m}@{k}" for k in cutoffs for m in ("ndcg", "precision", "recall", "hit_rate")]
    out = {name: np.empty(len(rows)) for name in [*names, "map", "mrr"]}
    for start, block in _blocks(rows):
        end = start + len(block)
        for k in cutoffs:
            out[f"ndcg@{k}"][start:end] = _ndcg(block, k)
            out[f"precision@{k}"][start:end] = _precision(block, k)
            out[f"recall@{k}"][start:end] = _recall(block, k)
            out[f"hit_rate@{k}"][start:end] = _hit_rate(block, k)
        out["map"][start:end] = _average_precision(block)
        out["mrr"][start:end] = _reciprocal_rank(block)
    return out


def evaluate_lists(lists: Sequence[npt.ArrayLike], ks: Sequence[int] = (5, 10)) -> dict[str, float]:
    """Mean of every metric over the lists, one number per metric and cut-off.

    Keys: `ndcg@k`, `precision@k`, `recall@k`, `hit_rate@k` for each k in `ks`,
    then `map` and `mrr`. Each list is one user's labels in rank order. Users
    without a relevant item score 0 everywhere; leave them out before calling
    (see the module docstring).
    For confidence intervals use `per_user_metrics` and `paired_bootstrap`.

    Raises:
        ValueError: when `lists` is empty, since a mean over no users is undefined.
    """
    if len(lists) == 0:
        raise ValueError("no lists to evaluate")
    return {name: float(values.mean()) for name, values in per_user_metrics(lists, ks).items()}


class BootstrapResult(NamedTuple):
    """The observed mean difference b − a and its percentile confidence interval."""

    mean_diff: float
    low: float
    high: float


def paired_bootstrap(
    a_per_user: npt.ArrayLike,
    b_per_user: npt.ArrayLike,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Confidence interval for mean(b) − mean(a) over the same users, by a paired bootstrap.

    Users are resampled with replacement and the *same* resample is applied to
    both rankers (equivalently, to the per-user differences). Pairing removes
    the between-user spread (some users are easy for every ranker), which is
    usually most of the variance, so a real but small improvement shows up.
    The interval is the percentile interval of the resampled mean differences.

    Resamples are drawn as a (resamples × users) index matrix in chunks of at
    most about four million cells, so memory stays bounded for large user counts
    and there is no Python loop per resample.

    Args:
        a_per_user: metric per user for the baseline (e.g. `per_user_metrics(...)["ndcg@10"]`).
        b_per_user: the same metric for the same users, same order, for the candidate.
        n_resamples: bootstrap resamples.
        confidence: interval coverage, in (0, 1).
        seed: seed for `numpy.random.default_rng`; a fixed seed gives a fixed result.

    Returns:
        `(mean_diff, low, high)`, where `mean_diff` is the observed mean of b − a.
    """
    a = np.asarray(a_per_user, dtype=np.float64)
    b = np.asarray(b_per_user, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"a and b must be 1-D and paired, got {a.shape} and {b.shape}")
    if len(a) == 0:
        raise ValueError("no users to resample")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")

    diff = b - a
    n = len(diff)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, _BLOCK_CELLS // n)
    for start in range(0, n_resamples, chunk):
        rows = min(chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(rows, n))
        means[start : start + rows] = diff[idx].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return BootstrapResult(float(diff.mean()), float(low), float(high))


# --- vectorised cores over a (users × positions) block, zero-padded ---------------------


def _discounts(n: int) -> FloatArray:
    """`1 / log2(rank + 1)` for ranks 1..n."""
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def _dcg(rel: FloatArray, k: int) -> FloatArray:
    top = rel[:, :k]
    return top @ _discounts(top.shape[1])


def _ndcg(rel: FloatArray, k: int) -> FloatArray:
    ideal = _dcg(-np.sort(-rel, axis=1), k)
    actual = _dcg(rel, k)
    out = np.zeros(len(rel))
    np.divide(actual, ideal, out=out, where=ideal > 0)
    return out


def _hits_in_top(rel: FloatArray, k: int) -> FloatArray:
    hits: FloatArray = np.sum(rel[:, :k] > 0, axis=1, dtype=np.float64)
    return hits


def _n_relevant(rel: FloatArray) -> FloatArray:
    total: FloatArray = np.sum(rel > 0, axis=1, dtype=np.float64)
    return total


def _precision(rel: FloatArray, k: int) -> FloatArray:
    return _hits_in_top(rel, k) / k


def _recall(rel: FloatArray, k: int) -> FloatArray:
    total = _n_relevant(rel)
    out = np.zeros(len(rel))
    np.divide(_hits_in_top(rel, k), total, out=out, where=total > 0)
    return out


def _hit_rate(rel: FloatArray, k: int) -> FloatArray:
    return (_hits_in_top(rel, k) > 0).astype(np.float64)


def _average_precision(rel: FloatArray) -> FloatArray:
    relevant = rel > 0
    precision_at_i = np.cumsum(relevant, axis=1) / np.arange(1, rel.shape[1] + 1)
    total = _n_relevant(rel)
    out = np.zeros(len(rel))
    np.divide((precision_at_i * relevant).sum(axis=1), total, out=out, where=total > 0)
    return out


def _reciprocal_rank(rel: FloatArray) -> FloatArray:
    relevant = rel > 0
    if relevant.shape[1] == 0:
        return np.zeros(len(rel))
    first = relevant.argmax(axis=1)
    return np.where(relevant.any(axis=1), 1.0 / (first + 1.0), 0.0)


# --- input checks -------------------------------------------------------------------------


def _check_k(k: int) -> int:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return int(k)


def _as_row(relevance: npt.ArrayLike) -> FloatArray:
    r = np.asarray(relevance, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"a ranking must be 1-D, got shape {r.shape}")
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ValueError("relevance labels must be finite and non-negative")
    return r


def _as_matrix(relevance: npt.ArrayLike) -> FloatArray:
    return _as_row(relevance)[np.newaxis, :]


def _blocks(rows: list[FloatArray]) -> Iterator[tuple[int, FloatArray]]:
    """Yield `(first row, block)`: rows zero-padded into 2-D blocks of at most `_BLOCK_CELLS` cells.

    Lists are taken in order, so one very long list only widens its own block,
    and only one block is in memory at a time.
    """
    start = 0
    while start < len(rows):
        width = len(rows[start])
        end = start + 1
        while end < len(rows):
            wider = max(width, len(rows[end]))
            if wider * (end - start + 1) > _BLOCK_CELLS:
                break
            width = wider
            end += 1
        block = np.zeros((end - start, width))
        for i, r in enumerate(rows[start:end]):
            block[i, : len(r)] = r
        yield start, block
        start = end
