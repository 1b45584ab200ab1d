"""Ranking metrics against hand-computed values, sklearn, and the bootstrap's invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from ml import metrics
from ml.metrics import (
    average_precision,
    evaluate_lists,
    hit_rate_at,
    ndcg_at,
    paired_bootstrap,
    per_user_metrics,
    precision_at,
    rank,
    recall_at,
    reciprocal_rank,
)

LOG2_3 = math.log2(3)

# --- nDCG ----------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [[1], [1, 1, 0, 0], [3, 2, 1, 0], [2, 2, 1]])
def test_a_perfect_ranking_has_ndcg_one(labels: list[int]) -> None:
    for k in (1, 2, 3, 10):
        assert ndcg_at(labels, k) == pytest.approx(1.0)


def test_ndcg_by_hand() -> None:
    # one click at rank 2: DCG = 1/log2(3); the ideal puts it at rank 1, DCG 1
    assert ndcg_at([0, 1], 2) == pytest.approx(1 / LOG2_3)
    assert ndcg_at([0, 1], 1) == 0.0
    # graded, linear gain: (1 + 2/log2 3) / (2 + 1/log2 3)
    assert ndcg_at([1, 2], 2) == pytest.approx((1 + 2 / LOG2_3) / (2 + 1 / LOG2_3))
    # the ideal is cut at k too: at k=1 the best label (2) is the ideal gain
    assert ndcg_at([1, 2], 1) == pytest.approx(0.5)


def test_ndcg_past_the_end_of_the_list_sees_the_whole_list() -> None:
    assert ndcg_at([0, 1], 10) == pytest.approx(ndcg_at([0, 1], 2))


def test_ndcg_without_a_relevant_item_is_zero() -> None:
    assert ndcg_at([0, 0, 0], 2) == 0.0
    assert ndcg_at([], 5) == 0.0


def test_ndcg_matches_sklearn_on_random_cases() -> None:
    # sklearn's ndcg_score uses the label itself as the gain (not 2^rel - 1) and the
    # same log2(rank + 1) discount, which is our convention. It takes (labels, scores)
    # and ranks by score itself; continuous scores leave no ties for it to average.
    rng = np.random.default_rng(7)
    for _ in range(50):
        n = int(rng.integers(2, 30))
        labels = rng.integers(0, 4, size=n).astype(float)
        labels[rng.integers(0, n)] = max(labels.max(), 1.0)  # at least one relevant
        scores = rng.random(n)
        ids = np.arange(n)
        in_rank_order = labels[rank(scores, ids)]
        for k in (1, 3, 5, 10, 50):
            expected = ndcg_score(labels[np.newaxis, :], scores[np.newaxis, :], k=k)
            assert ndcg_at(in_rank_order, k) == pytest.approx(expected, abs=1e-12)


# --- precision, recall, hit rate ---------------------------------------------------------


def test_precision_recall_and_hit_by_hand() -> None:
    rel = [1, 0, 1]
    assert precision_at(rel, 1) == 1.0
    assert precision_at(rel, 2) == 0.5
    assert precision_at(rel, 3) == pytest.approx(2 / 3)
    assert recall_at(rel, 1) == 0.5
    assert recall_at(rel, 2) == 0.5
    assert recall_at(rel, 3) == 1.0
    assert hit_rate_at([0, 0, 1], 2) == 0.0
    assert hit_rate_at([0, 0, 1], 3) == 1.0


def test_k_longer_than_the_list() -> None:
    # precision@k divides by k even past the end; recall and hit see the whole list
    assert precision_at([1, 0, 1], 10) == pytest.approx(0.2)
    assert precision_at([1], 5) == pytest.approx(0.2)
    assert recall_at([1, 0, 1], 10) == 1.0
    assert hit_rate_at([0, 0, 1], 10) == 1.0


def test_no_relevant_item_scores_zero_everywhere() -> None:
    for rel in ([0, 0, 0], []):
        assert precision_at(rel, 2) == 0.0
        assert recall_at(rel, 2) == 0.0
        assert hit_rate_at(rel, 2) == 0.0
        assert average_precision(rel) == 0.0
        assert reciprocal_rank(rel) == 0.0


def test_graded_labels_count_as_relevant_when_above_zero() -> None:
    assert precision_at([3, 0, 0.5], 3) == pytest.approx(2 / 3)
    assert recall_at([3, 0, 0.5], 1) == 0.5
    assert average_precision([2, 0, 3]) == pytest.approx(average_precision([1, 0, 1]))


# --- AP and RR ------------------------------------------------------------------------


def test_average_precision_by_hand() -> None:
    assert average_precision([1, 0, 1]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([0, 1, 1]) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert average_precision([1, 1, 0, 0]) == 1.0
    assert average_precision([0, 0, 0, 1]) == pytest.approx(0.25)


def test_reciprocal_rank_by_hand() -> None:
    assert reciprocal_rank([0, 0, 1]) == pytest.approx(1 / 3)
    assert reciprocal_rank([1, 0, 1]) == 1.0
    assert reciprocal_rank([0, 2, 0]) == 0.5


# --- rank ---------------------------------------------------------------------------


def test_rank_is_descending_score_then_ascending_id() -> None:
    ids = np.array(["b", "a", "c", "d"], dtype=object)
    scores = np.array([1.0, 1.0, 2.0, 0.5])
    assert [ids[i] for i in rank(scores, ids)] == ["c", "a", "b", "d"]


def test_rank_ties_ignore_input_order() -> None:
    scores = np.array([0.5, 0.5, 0.5])
    for ids in ([3, 1, 2], [1, 2, 3], [2, 3, 1]):
        order = rank(scores, np.array(ids))
        assert [ids[i] for i in order] == [1, 2, 3]


def test_rank_rejects_unparallel_input() -> None:
    with pytest.raises(ValueError, match="parallel"):
        rank([1.0, 2.0], [1])


# --- many lists ------------------------------------------------------------------------


def test_evaluate_lists_by_hand() -> None:
    lists = [np.array([1, 0, 0, 0]), np.array([0, 1])]
    result = evaluate_lists(lists, ks=(1, 2))
    assert set(result) == {
        "ndcg@1",
        "precision@1",
        "recall@1",
        "hit_rate@1",
        "ndcg@2",
        "precision@2",
        "recall@2",
        "hit_rate@2",
        "map",
        "mrr",
    }
    assert result["ndcg@1"] == 0.5
    assert result["ndcg@2"] == pytest.approx((1 + 1 / LOG2_3) / 2)
    assert result["precision@1"] == 0.5
    assert result["precision@2"] == 0.5
    assert result["recall@1"] == 0.5
    assert result["recall@2"] == 1.0
    assert result["hit_rate@1"] == 0.5
    assert result["hit_rate@2"] == 1.0
    assert result["map"] == 0.75
    assert result["mrr"] == 0.75


def test_default_keys() -> None:
    result = evaluate_lists([np.array([0, 1])])
    assert {"ndcg@5", "ndcg@10", "precision@5", "recall@10", "hit_rate@10", "map", "mrr"} <= set(
        result
    )


@pytest.mark.parametrize("block_cells", [1 << 22, 7])
def test_per_user_metrics_equal_the_per_list_functions(
    monkeypatch: pytest.MonkeyPatch, block_cells: int
) -> None:
    # Zero-padding lists of different lengths into blocks must change nothing,
    # also when the blocks are small enough that the users are split across many.
    monkeypatch.setattr(metrics, "_BLOCK_CELLS", block_cells)
    rng = np.random.default_rng(3)
    lists = [rng.integers(0, 3, size=int(rng.integers(0, 15))) for _ in range(40)]
    per_user = per_user_metrics(lists, ks=(1, 5, 20))
    for i, rel in enumerate(lists):
        for k in (1, 5, 20):
            assert per_user[f"ndcg@{k}"][i] == pytest.approx(ndcg_at(rel, k))
            assert per_user[f"precision@{k}"][i] == pytest.approx(precision_at(rel, k))
            assert per_user[f"recall@{k}"][i] == pytest.approx(recall_at(rel, k))
            assert per_user[f"hit_rate@{k}"][i] == hit_rate_at(rel, k)
        assert per_user["map"][i] == pytest.approx(average_precision(rel))
        assert per_user["mrr"][i] == pytest.approx(reciprocal_rank(rel))
    means = evaluate_lists(lists, ks=(1, 5, 20))
    assert means == {name: pytest.approx(values.mean()) for name, values in per_user.items()}


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at([1, 0], 0)
    with pytest.raises(ValueError, match="non-negative"):
        precision_at([1, -1], 2)
    with pytest.raises(ValueError, match="1-D"):
        average_precision([[1, 0]])
    with pytest.raises(ValueError, match="no lists"):
        evaluate_lists([])


# --- paired bootstrap ---------------------------------------------------------------------


def test_identical_inputs_give_a_zero_width_interval_at_zero() -> None:
    a = np.random.default_rng(0).random(300)
    assert paired_bootstrap(a, a.copy()) == (0.0, 0.0, 0.0)


def test_a_constant_shift_is_recovered_exactly() -> None:
    a = np.random.default_rng(1).random(300)
    mean_diff, low, high = paired_bootstrap(a, a + 0.1)
    assert mean_diff == pytest.approx(0.1, abs=1e-12)
    assert low == pytest.approx(0.1, abs=1e-12)
    assert high == pytest.approx(0.1, abs=1e-12)


def test_a_noisy_positive_effect_excludes_zero() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(0.5, 0.2, size=500)
    b = a + 0.05 + rng.normal(0.0, 0.1, size=500)
    mean_diff, low, high = paired_bootstrap(a, b)
    assert 0.0 < low < mean_diff < high


def test_zero_mean_noise_contains_zero() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(0.5, 0.2, size=500)
    noise = rng.normal(0.0, 0.1, size=500)
    mean_diff, low, high = paired_bootstrap(a, a + noise - noise.mean())
    assert mean_diff == pytest.approx(0.0, abs=1e-12)
    assert low < 0.0 < high


def test_pairing_narrows_the_interval() -> None:
    # Users differ far more from each other than the two rankers differ on a user;
    # resampling the pairs together cancels the between-user spread.
    rng = np.random.default_rng(5)
    a = rng.normal(0.5, 0.3, size=400)
    b = a + 0.02 + rng.normal(0.0, 0.02, size=400)
    _, low, high = paired_bootstrap(a, b)
    assert low > 0.0
    assert high - low < 0.01


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(6)
    a, b = rng.random(200), rng.random(200)
    assert paired_bootstrap(a, b, seed=11) == paired_bootstrap(a, b, seed=11)
    assert paired_bootstrap(a, b, seed=11) != paired_bootstrap(a, b, seed=12)


def test_bootstrap_chunks_fill_every_resample(monkeypatch: pytest.MonkeyPatch) -> None:
    # 100 users in chunks of 3 resamples, with 2000 % 3 != 0: an unfilled resample
    # would leave garbage in the interval of a constant shift.
    monkeypatch.setattr(metrics, "_BLOCK_CELLS", 300)
    a = np.random.default_rng(8).random(100)
    mean_diff, low, high = paired_bootstrap(a, a + 0.1)
    assert (mean_diff, low, high) == pytest.approx((0.1, 0.1, 0.1), abs=1e-12)
    rng = np.random.default_rng(9)
    b = a + 0.05 + rng.normal(0.0, 0.1, size=100)
    _, low, high = paired_bootstrap(a, b)
    assert low < 0.05 < high


def test_bootstrap_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="paired"):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="no users"):
        paired_bootstrap([], [])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap([1.0], [1.0], confidence=1.0)
    with pytest.raises(ValueError, match="n_resamples"):
        paired_bootstrap([1.0], [1.0], n_resamples=0)
