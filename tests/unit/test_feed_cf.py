"""Retrieval, popularity and ALS: exact top-k against a full sort, counts by hand.

`top_k` is the one piece every stage-1 model goes through, so it is checked against
the obvious oracle, a stable full argsort, on data with many ties (rounded scores),
with and without a candidate mask and per-user exclusions, across block boundaries.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ml.feed import retrieval
from ml.feed.als import fit_als
from ml.feed.lightgcn import recall_at_k
from ml.feed.popularity import popularity_scores
from ml.feed.retrieval import Embeddings, top_k, top_k_scores
from tests.unit.test_lightgcn import planted, popularity_recall


def oracle(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Descending score, ties by ascending index: a stable sort of the negated scores."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def tied_vectors(n: int, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Small integer vectors, so dot products are exact in float32 and tie often."""
    rng = np.random.default_rng(seed)
    users = rng.integers(-2, 3, size=(n, 3)).astype(np.float32)
    items = rng.integers(-2, 3, size=(m, 3)).astype(np.float32)
    return users, items


@pytest.mark.parametrize("k", [1, 5, 37, 200, 500])
def test_top_k_equals_a_stable_full_sort_with_ties(k: int, monkeypatch) -> None:
    monkeypatch.setattr(retrieval, "_BLOCK_CELLS", 7 * 200)  # 7 users a block: several blocks
    users, items = tied_vectors(30, 200)
    indices, scores = top_k(users, items, k)
    expected_index, expected_score = oracle(users @ items.T, min(k, 200))
    np.testing.assert_array_equal(indices, expected_index)
    np.testing.assert_array_equal(scores, expected_score)
    assert indices.dtype == np.int64 and scores.dtype == np.float32


def test_top_k_with_a_candidate_mask_returns_only_candidates_in_full_indices() -> None:
    users, items = tied_vectors(20, 100, seed=1)
    mask = np.random.default_rng(2).random(100) < 0.3
    indices, scores = top_k(users, items, 10, candidates_mask=mask)
    full = users @ items.T
    full[:, ~mask] = -np.inf
    expected_index, expected_score = oracle(full, 10)
    np.testing.assert_array_equal(indices, expected_index)
    np.testing.assert_array_equal(scores, expected_score)
    assert mask[indices].all()
    # Fewer candidates than k: k' is the number of candidates.
    few = np.zeros(100, dtype=bool)
    few[[3, 50, 97]] = True
    assert top_k(users, items, 10, candidates_mask=few)[0].shape == (20, 3)


def test_top_k_excludes_each_users_items() -> None:
    users, items = tied_vectors(25, 80, seed=3)
    rng = np.random.default_rng(4)
    seen = sp.random(25, 80, density=0.2, format="csr", random_state=5)
    full = users @ items.T
    full[seen.toarray() != 0] = -np.inf
    mask = rng.random(80) < 0.6
    masked = full.copy()
    masked[:, ~mask] = -np.inf
    for kwargs, reference in (({}, full), ({"candidates_mask": mask}, masked)):
        indices, scores = top_k(users, items, 15, exclude=seen, **kwargs)
        expected_index, expected_score = oracle(reference, 15)
        np.testing.assert_array_equal(indices, expected_index)
        np.testing.assert_array_equal(scores, expected_score)
        assert not (seen.toarray()[np.arange(25)[:, None], indices] != 0).any()


def test_top_k_scores_for_one_vector_a_matrix_and_with_exclusions() -> None:
    scores = np.array([3.0, 1.0, 3.0, 0.0, 2.0, 3.0])
    indices, values = top_k_scores(scores, 4)
    np.testing.assert_array_equal(indices, [0, 2, 5, 4])
    np.testing.assert_array_equal(values, [3.0, 3.0, 3.0, 2.0])
    assert indices.dtype == np.int64 and values.dtype == np.float64
    seen = sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 0], [0, 0, 1, 0, 1, 1]]))
    indices, values = top_k_scores(scores, 3, exclude=seen)
    np.testing.assert_array_equal(indices, [[2, 5, 4], [0, 1, 3]])
    np.testing.assert_array_equal(scores, [3.0, 1.0, 3.0, 0.0, 2.0, 3.0])  # input untouched
    matrix = np.random.default_rng(0).integers(0, 4, size=(9, 30)).astype(np.float64)
    np.testing.assert_array_equal(top_k_scores(matrix, 8)[0], oracle(matrix, 8)[0])


def test_top_k_refuses_what_it_cannot_rank() -> None:
    users, items = tied_vectors(3, 10)
    with pytest.raises(ValueError, match="k must be"):
        top_k(users, items, 0)
    with pytest.raises(ValueError, match="cannot score"):
        top_k(users, items[:, :2], 3)
    with pytest.raises(ValueError, match="no candidate"):
        top_k(users, items, 3, candidates_mask=np.zeros(10, dtype=bool))
    with pytest.raises(ValueError, match="exclude"):
        top_k(users, items, 3, exclude=sp.csr_matrix((3, 9)))


def test_popularity_counts_distinct_users_with_a_positive() -> None:
    # Duplicate (user, item) entries count once; zeros and weights do not matter.
    rows = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3])
    cols = np.array([0, 0, 2, 2, 3, 2, 0, 4, 1])
    values = np.array([1.0, 5.0, 2.0, 0.5, 0.0, 9.0, 1.0, 3.0, 1.0])
    train = sp.csr_matrix((values, (rows, cols)), shape=(4, 6))
    counts = popularity_scores(train)
    np.testing.assert_array_equal(counts, [2.0, 1.0, 3.0, 0.0, 1.0, 0.0])
    assert counts.dtype == np.float64
    # Ties (items 1 and 4, then 3 and 5) go to the lower index.
    np.testing.assert_array_equal(top_k_scores(counts, 6)[0], [2, 0, 1, 4, 3, 5])


@pytest.fixture(scope="module")
def planted_als():
    train, test = planted()
    return train, test, fit_als(train, dim=32, iterations=10, seed=0)


def test_als_beats_popularity_on_planted_communities(planted_als) -> None:
    train, test, embeddings = planted_als
    als = recall_at_k(embeddings, train, test, 50)
    popularity = popularity_recall(train, test, 50)
    assert als > 2 * popularity, (als, popularity)
    assert isinstance(embeddings, Embeddings)
    assert embeddings.users.dtype == embeddings.items.dtype == np.float32
    assert embeddings.users.shape == (600, 32) and embeddings.items.shape == (800, 32)


def test_als_is_deterministic_for_a_seed(planted_als) -> None:
    train, _, embeddings = planted_als
    again = fit_als(train, dim=32, iterations=10, seed=0)
    np.testing.assert_array_equal(embeddings.users, again.users)
    np.testing.assert_array_equal(embeddings.items, again.items)


def test_wide_rows_take_the_sampled_bound_and_stay_exact() -> None:
    """60,000 items: the strided-sample path, with ties, exclusions and a misjudged row."""
    users, items = tied_vectors(40, 60_000, seed=3)
    exclude = sp.random(40, 60_000, density=0.01, format="csr", random_state=1)
    scores = users @ items.T
    indices, got = top_k(users, items, 200, exclude=exclude)
    expected = scores.copy()
    expected[exclude.nonzero()] = -np.inf
    expected_index, expected_score = oracle(expected, 200)
    np.testing.assert_array_equal(indices, expected_index)
    np.testing.assert_array_equal(got, expected_score)
    # A row whose best scores sit only in the sampled columns: the bound is too high
    # for 200 cells to reach it, and that row must fall back to the full partition.
    block = np.zeros((2, 60_000), dtype=np.float32)
    block[0, ::8][:60] = 5.0
    block[1] = np.arange(60_000, dtype=np.float32) % 7
    index, value = retrieval._block_top_k(block, 200)
    expected_index, expected_value = oracle(block, 200)
    np.testing.assert_array_equal(index, expected_index)
    np.testing.assert_array_equal(value, expected_value)
