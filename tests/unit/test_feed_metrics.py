"""The feed evaluation's metrics on cases checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ml.feed.metrics import labels_of, stage1, stage2_metrics
from ml.feed.rerank import grades


def test_grades_step_up_with_watch_minutes() -> None:
    assert grades(np.array([0.0, 0.5, 4.99, 5.0, 19.0, 20.0, 59.9, 60.0, 500.0])).tolist() == [
        0,
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
    ]


def test_stage1_recall_counts_every_watched_stream_even_unretrieved_ones() -> None:
    # The user watched stream 7 (grade 2) and stream 3 (grade 1); the source found 7 only.
    relevant = [(np.array([3, 7]), np.array([1.0, 2.0]))]
    found = stage1(relevant, {"source": [np.array([7, 1, 2])]})["source"]
    assert found["recall@20"] == pytest.approx(0.5)
    assert found["recall@200"] == pytest.approx(0.5)
    ideal = 2.0 + 1.0 / math.log2(3)
    assert found["ndcg@20"] == pytest.approx(2.0 / ideal)


def test_stage1_cut_offs_see_only_the_retrieved_prefix() -> None:
    # Stream 9 is found at rank 31: inside @50, outside @20.
    ranked = [*range(100, 130), 9]
    relevant = [(np.array([9]), np.array([1.0]))]
    found = stage1(relevant, {"source": [np.array(ranked)]})["source"]
    assert found["recall@20"] == 0.0
    assert found["recall@50"] == found["recall@100"] == 1.0
    assert found["ndcg@20"] == 0.0
    # A short list (a source with 5 streams) is padded, never credited with misses.
    short = stage1(relevant, {"s": [np.array([1, 2, 3, 4, 5])]})["s"]
    assert short["recall@200"] == 0.0


def test_stage1_means_over_users() -> None:
    relevant = [(np.array([1]), np.array([1.0])), (np.array([2, 3]), np.array([1.0, 1.0]))]
    found = stage1(relevant, {"s": [np.array([1]), np.array([3])]})["s"]
    assert found["recall@20"] == pytest.approx((1.0 + 0.5) / 2)
    assert found["users"] == 2


def test_stage2_metrics_by_hand() -> None:
    # Ranked labels: a miss, then grade 2, then a miss, then grade 1.
    labels = [np.array([0.0, 2.0, 0.0, 1.0])]
    m = stage2_metrics({"r": labels})["r"]
    dcg = 2.0 / math.log2(3) + 1.0 / math.log2(5)
    assert m["ndcg@10"][0] == pytest.approx(dcg / (2.0 + 1.0 / math.log2(3)))
    assert m["recall@10"][0] == 1.0
    assert m["mrr"][0] == pytest.approx(0.5)
    assert m["map"][0] == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_labels_of_finds_each_retrieved_streams_grade() -> None:
    labels, hit = labels_of(np.array([2, 5, 9]), np.array([1.0, 3.0, 2.0]), np.array([9, 1, 5, 12]))
    assert labels.tolist() == [2.0, 0.0, 3.0, 0.0]
    assert hit.tolist() == [False, True, True]
