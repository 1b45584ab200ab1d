"""Stage 1's union and the fallback order: round robin, first place kept, ties by id."""

from __future__ import annotations

import numpy as np

from app.feed.service import RRF_K, fallback_scores, ranked
from app.feed.sources import union


def test_union_is_round_robin_and_keeps_first_places() -> None:
    merged, ranks = union({"cf": ["a", "b", "c"], "near": ["b", "d"], "own": ["e"]})
    assert merged == ["a", "b", "e", "d", "c"]
    assert ranks == {"cf": {"a": 1, "b": 2, "c": 3}, "near": {"b": 1, "d": 2}, "own": {"e": 1}}


def test_union_of_nothing_is_empty() -> None:
    assert union({}) == ([], {})
    assert union({"cf": []}) == ([], {"cf": {}})


def test_fallback_is_reciprocal_rank_fusion() -> None:
    ranks = {"cf": {"a": 1, "b": 2}, "near": {"b": 1}}
    scores = fallback_scores(["a", "b", "c"], ranks)
    expected = [1 / (RRF_K + 1), 1 / (RRF_K + 2) + 1 / (RRF_K + 1), 0.0]
    np.testing.assert_allclose(scores, expected)


def test_ranked_breaks_ties_by_stream_id_and_puts_nan_last() -> None:
    ids = ["s9", "s10", "s2", "s1"]
    order = ranked(ids, np.array([1.0, 2.0, np.nan, 1.0]))
    assert [ids[i] for i in order] == ["s10", "s1", "s9", "s2"]
