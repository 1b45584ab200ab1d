"""LightGCN by hand: the gradient against finite differences, quality, determinism.

The gradient check is the test that matters most: the backward pass is written out
(propagation applied to the gradient, sparse scatters, the L2 term), so a sign or a
transpose wrong anywhere would still train, only worse. Central differences in
float64 on a tiny graph catch it exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ml.feed.lightgcn import (
    LightGCNConfig,
    NormalizedAdjacency,
    bpr_loss_and_grad,
    fit_lightgcn,
    loss_and_grad,
    propagate,
    recall_at_k,
    sample_negatives,
)
from ml.feed.popularity import popularity_scores
from ml.feed.retrieval import Embeddings, top_k_scores


def planted(
    n_users: int = 600,
    n_items: int = 800,
    communities: int = 8,
    per_user: int = 25,
    inside: float = 0.85,
    seed: int = 0,
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Users and items in hidden communities; returns (train, held-out) positives.

    Each user draws `per_user` items, a share `inside` from their own community
    (Zipf-like within it) and the rest from the whole catalogue by global popularity,
    then a random 20% of each user's items is held out. Popularity alone cannot see
    the communities, so a collaborative model must beat it clearly.
    """
    rng = np.random.default_rng(seed)
    user_community = rng.integers(0, communities, n_users)
    item_community = rng.permutation(np.arange(n_items) % communities)
    weight = 1.0 / (1.0 + rng.permutation(n_items)) ** 0.6
    rows, cols = [], []
    for user in range(n_users):
        own = np.flatnonzero(item_community == user_community[user])
        n_own = round(per_user * inside)
        picked = rng.choice(own, n_own, replace=False, p=weight[own] / weight[own].sum())
        others = rng.choice(n_items, per_user - n_own, replace=False, p=weight / weight.sum())
        items = np.unique(np.concatenate([picked, others]))
        rows.append(np.full(items.size, user))
        cols.append(items)
    row, col = np.concatenate(rows), np.concatenate(cols)
    held = rng.random(row.size) < 0.2
    shape = (n_users, n_items)
    train = sp.csr_matrix((np.ones((~held).sum()), (row[~held], col[~held])), shape=shape)
    test = sp.csr_matrix((np.ones(held.sum()), (row[held], col[held])), shape=shape)
    return train, test


def popularity_recall(train: sp.csr_matrix, test: sp.csr_matrix, k: int) -> float:
    """Recall@k of the popularity ranking, train items excluded, as `recall_at_k`."""
    evaluated = np.flatnonzero(np.diff(test.indptr) > 0)
    indices, _ = top_k_scores(popularity_scores(train), k, exclude=train[evaluated])
    truth = test[evaluated].toarray() > 0
    hits = np.take_along_axis(truth, indices, axis=1).sum(axis=1)
    return float(np.mean(hits / truth.sum(axis=1)))


# --- the gradient -------------------------------------------------------------------


def tiny_problem() -> tuple[NormalizedAdjacency, np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    train = sp.csr_matrix(
        np.array(
            [
                [1, 1, 0, 0, 0, 0],
                [0, 1, 1, 0, 1, 0],
                [1, 0, 0, 1, 0, 0],
                [0, 0, 0, 0, 0, 0],  # a user without interactions
                [0, 0, 1, 1, 1, 0],  # item 5 has none either
            ],
            dtype=np.float64,
        )
    )
    adj = NormalizedAdjacency.build(train, dtype=np.float64)
    rng = np.random.default_rng(3)
    ego_users = rng.normal(size=(5, 4))
    ego_items = rng.normal(size=(6, 4))
    # Repeated users and items, so the scatter must sum their contributions.
    users = np.array([0, 1, 1, 2, 4, 0])
    batch = (users, np.array([1, 2, 4, 0, 3, 0]), np.array([3, 0, 5, 2, 5, 5]))
    return adj, ego_users, ego_items, batch


def numeric_gradient(loss, arrays: list[np.ndarray], step: float = 1e-6) -> list[np.ndarray]:
    grads = []
    for array in arrays:
        grad = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            saved = array[index]
            array[index] = saved + step
            up = loss()
            array[index] = saved - step
            down = loss()
            array[index] = saved
            grad[index] = (up - down) / (2 * step)
        grads.append(grad)
    return grads


@pytest.mark.parametrize("layers", [0, 1, 3])
def test_the_gradient_through_the_propagation_matches_finite_differences(layers: int) -> None:
    adj, ego_users, ego_items, (users, pos, neg) = tiny_problem()
    l2 = 0.3  # large, so a wrong L2 gradient would show

    def loss() -> float:
        return loss_and_grad(adj, ego_users, ego_items, users, pos, neg, layers=layers, l2=l2)[0]

    _, grad_users, grad_items = loss_and_grad(
        adj, ego_users, ego_items, users, pos, neg, layers=layers, l2=l2
    )
    numeric_users, numeric_items = numeric_gradient(loss, [ego_users, ego_items])
    np.testing.assert_allclose(grad_users, numeric_users, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_items, numeric_items, rtol=1e-6, atol=1e-8)
    assert np.abs(grad_users).max() > 1e-3  # the check is not vacuous


def test_the_bpr_gradient_on_final_embeddings_matches_finite_differences() -> None:
    _, ego_users, ego_items, (users, pos, neg) = tiny_problem()
    final_users, final_items = ego_users * 2.0, ego_items * 2.0

    def loss() -> float:
        return bpr_loss_and_grad(
            final_users, final_items, ego_users, ego_items, users, pos, neg, 0.0
        ).loss

    grad = bpr_loss_and_grad(final_users, final_items, ego_users, ego_items, users, pos, neg, 0.0)
    numeric_users, numeric_items = numeric_gradient(loss, [final_users, final_items])
    np.testing.assert_allclose(grad.final_users, numeric_users, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad.final_items, numeric_items, rtol=1e-6, atol=1e-8)


def test_propagation_is_the_mean_of_the_layers_of_the_symmetric_normalised_graph() -> None:
    adj, ego_users, ego_items, _ = tiny_problem()
    n_users, n_items = adj.shape
    r = adj.user_items.toarray()
    full = np.block([[np.zeros((n_users, n_users)), r], [r.T, np.zeros((n_items, n_items))]])
    # Â = D^-1/2 A D^-1/2 built from the raw bipartite adjacency, independently.
    a = (full > 0).astype(float)
    degree = a.sum(axis=1)
    scale = np.where(degree > 0, 1 / np.sqrt(np.maximum(degree, 1)), 0.0)
    a_hat = scale[:, None] * a * scale[None, :]
    np.testing.assert_allclose(full, a_hat)
    e0 = np.vstack([ego_users, ego_items])
    layers = [e0]
    for _ in range(3):
        layers.append(a_hat @ layers[-1])
    expected = np.mean(layers, axis=0)
    users, items = propagate(adj, ego_users, ego_items, 3)
    np.testing.assert_allclose(np.vstack([users, items]), expected, rtol=1e-12)
    # The isolated user and item keep only their ego share.
    np.testing.assert_allclose(users[3], ego_users[3] / 4)
    np.testing.assert_allclose(items[5], ego_items[5] / 4)


def test_threaded_propagation_equals_the_single_threaded_one() -> None:
    from concurrent.futures import ThreadPoolExecutor

    train, _ = planted(n_users=200, n_items=300)
    rng = np.random.default_rng(0)
    ego_users = rng.normal(size=(200, 8)).astype(np.float32)
    ego_items = rng.normal(size=(300, 8)).astype(np.float32)
    single = propagate(NormalizedAdjacency.build(train), ego_users, ego_items, 3)
    with ThreadPoolExecutor(3) as pool:
        split = propagate(
            NormalizedAdjacency.build(train, blocks=3), ego_users, ego_items, 3, executor=pool
        )
    np.testing.assert_array_equal(single[0], split[0])
    np.testing.assert_array_equal(single[1], split[1])


def test_negatives_avoid_the_users_positives() -> None:
    train, _ = planted(n_users=50, n_items=40, communities=2, per_user=20)
    coo = train.tocoo()
    keys = np.sort(coo.row.astype(np.int64) * 40 + coo.col)
    users = np.repeat(np.arange(50), 200)
    negatives = sample_negatives(users, keys, 40, np.random.default_rng(0))
    assert not np.isin(users * 40 + negatives, keys).any()
    assert np.unique(negatives).size > 15  # still spread over the catalogue


# --- training -----------------------------------------------------------------------

CONFIG = LightGCNConfig(dim=32, batch=1024, max_epochs=40, patience=3, k=50, seed=7)


@pytest.fixture(scope="module")
def planted_fit():
    train, test = planted()
    messages: list[str] = []
    return train, test, fit_lightgcn(train, test, CONFIG, progress=messages.append), messages


def test_lightgcn_beats_popularity_on_planted_communities(planted_fit) -> None:
    train, test, result, messages = planted_fit
    lightgcn = recall_at_k(result.embeddings, train, test, 50)
    popularity = popularity_recall(train, test, 50)
    assert lightgcn > 2 * popularity, (lightgcn, popularity)
    assert lightgcn == max(h["recall"] for h in result.history if h["recall"] is not None)
    assert result.history[result.best_epoch - 1]["recall"] == lightgcn
    assert len(messages) == result.epochs_run == len(result.history)
    assert "recall@50" in messages[0]
    users, items = result.embeddings.users, result.embeddings.items
    assert users.dtype == items.dtype == np.float32
    assert users.shape == (600, 32) and items.shape == (800, 32)


def test_early_stopping_stops_after_patience_evaluations_without_improvement(planted_fit) -> None:
    """It stops at the `patience`-th evaluation in a row without a `min_gain` gain, keeping
    the best epoch even when that epoch's gain was too small to reset the patience."""
    _, _, result, _ = planted_fit
    recalls = [h["recall"] for h in result.history]
    assert all(r <= recalls[result.best_epoch - 1] for r in recalls)
    stale, best, stop = 0, None, None
    for epoch, recall in enumerate(recalls, start=1):
        gained = best is None or recall > best * (1 + CONFIG.min_gain)
        best = recall if best is None else max(best, recall)
        stale = 0 if gained else stale + 1
        if stale >= CONFIG.patience:
            stop = epoch
            break
    assert result.epochs_run == (stop if stop is not None else CONFIG.max_epochs)


def test_training_is_deterministic_for_a_seed() -> None:
    train, test = planted(n_users=150, n_items=200)
    config = LightGCNConfig(dim=8, batch=256, max_epochs=3, seed=1)
    first = fit_lightgcn(train, test, config)
    second = fit_lightgcn(train, test, config)
    np.testing.assert_array_equal(first.embeddings.users, second.embeddings.users)
    np.testing.assert_array_equal(first.embeddings.items, second.embeddings.items)
    other = fit_lightgcn(train, test, LightGCNConfig(dim=8, batch=256, max_epochs=3, seed=2))
    assert not np.array_equal(first.embeddings.users, other.embeddings.users)
    # Threads split the rows of each product, so their number changes nothing.
    single = fit_lightgcn(train, test, LightGCNConfig(dim=8, batch=256, max_epochs=3, seed=1,
                                                      threads=1))  # fmt: skip
    np.testing.assert_array_equal(first.embeddings.users, single.embeddings.users)
    np.testing.assert_array_equal(first.embeddings.items, single.embeddings.items)


def test_users_and_items_without_interactions_do_not_break_training() -> None:
    train, test = planted(n_users=100, n_items=120, communities=4)
    train = sp.vstack([train, sp.csr_matrix((5, 120))]).tocsr()  # 5 silent users
    train = sp.hstack([train, sp.csr_matrix((105, 7))]).tocsr()  # 7 silent items
    test = sp.csr_matrix((test.data, test.indices, test.indptr), shape=(100, 127))
    test = sp.vstack([test, sp.csr_matrix((5, 127))]).tocsr()
    result = fit_lightgcn(train, test, LightGCNConfig(dim=8, batch=256, max_epochs=2))
    assert result.embeddings.users.shape == (105, 8)
    assert result.embeddings.items.shape == (127, 8)
    assert np.isfinite(result.embeddings.users).all() and np.isfinite(result.embeddings.items).all()


def test_without_validation_all_epochs_run_and_the_last_is_kept() -> None:
    train, _ = planted(n_users=100, n_items=120, communities=4)
    result = fit_lightgcn(train, None, LightGCNConfig(dim=8, batch=256, max_epochs=2))
    assert result.epochs_run == result.best_epoch == 2
    assert all(h["recall"] is None for h in result.history)
    assert isinstance(result.embeddings, Embeddings)


def test_the_validation_sample_does_not_change_what_is_trained() -> None:
    train, test = planted(n_users=150, n_items=200)
    # Evaluated once, at the last epoch, so that epoch is kept whatever its recall.
    sampled = LightGCNConfig(dim=8, batch=256, max_epochs=2, eval_every=2,
                             validation_users=20)  # fmt: skip
    with_sample = fit_lightgcn(train, test, sampled)
    without = fit_lightgcn(train, None, LightGCNConfig(dim=8, batch=256, max_epochs=2))
    assert with_sample.best_epoch == 2 and with_sample.history[0]["recall"] is None
    np.testing.assert_array_equal(with_sample.embeddings.users, without.embeddings.users)
    np.testing.assert_array_equal(with_sample.embeddings.items, without.embeddings.items)
