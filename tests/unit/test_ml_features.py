"""Each feature's definition on hand-made pairs, and the two category_match paths agree."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import app.features.clicks as features
from app.features.clicks import FEATURE_NAMES, LOCAL_KM, REGIONAL_KM, Pairs, feature_matrix


def _pairs(n: int, **columns: Any) -> Pairs:
    """n neutral pairs (nothing matches), with the given columns replaced."""
    defaults: dict[str, Any] = {
        "distance_km": [5000.0] * n,
        "user_city": ["Paris"] * n,
        "user_language": ["fr"] * n,
        "user_preferred_categories": [frozenset({"music"})] * n,
        "user_local_preference": [0.25] * n,
        "user_total_watch_hours": [12.5] * n,
        "stream_city": ["Lima"] * n,
        "stream_language": ["es"] * n,
        "stream_category_id": ["gaming"] * n,
        "stream_quality_score": [3.5] * n,
        "stream_avg_viewers": [40.0] * n,
        "creator_followers": [900.0] * n,
        "is_partnered": [False] * n,
        "mature_content": [False] * n,
    }
    defaults.update(columns)
    arrays: dict[str, Any] = {}
    for name, values in defaults.items():
        if name in {"is_partnered", "mature_content"}:
            arrays[name] = np.asarray(values, dtype=bool)
        elif name.startswith(("user_city", "user_language", "user_pref", "stream_c", "stream_l")):
            column = np.empty(len(values), dtype=object)
            for i, value in enumerate(values):
                column[i] = value
            arrays[name] = column
        else:
            arrays[name] = np.asarray(values, dtype=np.float64)
    return Pairs(**arrays)


def _column(matrix: np.ndarray, name: str) -> list[float]:
    return matrix[:, FEATURE_NAMES.index(name)].tolist()


def test_names_and_thresholds() -> None:
    assert FEATURE_NAMES == (
        "distance_km",
        "proximity_boost",
        "is_local_match",
        "is_regional_match",
        "same_city",
        "same_language",
        "user_local_preference",
        "user_total_watch_hours",
        "stream_quality_score",
        "stream_avg_viewers",
        "creator_followers",
        "is_partnered",
        "mature_content",
        "category_match",
    )
    assert (LOCAL_KM, REGIONAL_KM) == (100.0, 1000.0)


def test_shape_and_dtype() -> None:
    matrix = feature_matrix(_pairs(3))
    assert matrix.shape == (3, 14)
    assert matrix.dtype == np.float64
    assert feature_matrix(_pairs(0)).shape == (0, 14)


def test_distance_features_at_the_edges() -> None:
    distances = [0.0, 99.999, 100.0, 100.001, 999.999, 1000.0, 20_000.0]
    matrix = feature_matrix(_pairs(len(distances), distance_km=distances))
    assert _column(matrix, "distance_km") == distances
    assert _column(matrix, "proximity_boost") == [1.0 / (1.0 + d) for d in distances]
    assert _column(matrix, "proximity_boost")[0] == 1.0
    # Strictly below the threshold: exactly 100 km is not local, exactly 1000 km not regional.
    assert _column(matrix, "is_local_match") == [1, 1, 0, 0, 0, 0, 0]
    assert _column(matrix, "is_regional_match") == [1, 1, 1, 1, 1, 0, 0]


def test_same_city_and_language_never_match_missing_values() -> None:
    users = ["Paris", "Paris", None, None, "Lyon", ""]
    streams = ["Paris", "Lyon", "Paris", None, None, ""]
    matrix = feature_matrix(
        _pairs(
            6, user_city=users, stream_city=streams, user_language=users, stream_language=streams
        )
    )
    assert _column(matrix, "same_city") == [1, 0, 0, 0, 0, 1]
    assert _column(matrix, "same_language") == [1, 0, 0, 0, 0, 1]


def test_category_match_with_any_collection_and_empty_preferences() -> None:
    preferred = [
        frozenset({"gaming", "music"}),
        ["gaming"],
        ("music",),
        frozenset(),
        [],
        frozenset({"gaming"}),
    ]
    categories = ["gaming", "gaming", "gaming", "gaming", "gaming", "music"]
    matrix = feature_matrix(
        _pairs(6, user_preferred_categories=preferred, stream_category_id=categories)
    )
    assert _column(matrix, "category_match") == [1, 1, 0, 0, 0, 0]


def test_stored_values_pass_through_unchanged() -> None:
    matrix = feature_matrix(
        _pairs(
            2,
            user_local_preference=[0.0, 1.0],
            user_total_watch_hours=[0.0, 1234.5],
            stream_quality_score=[1.0, 10.0],
            stream_avg_viewers=[0.0, 250_000.0],
            creator_followers=[3.0, 9_000_000.0],
            is_partnered=[True, False],
            mature_content=[False, True],
        )
    )
    assert matrix[:, 6:13].tolist() == [
        [0.0, 0.0, 1.0, 0.0, 3.0, 1.0, 0.0],
        [1.0, 1234.5, 10.0, 250_000.0, 9_000_000.0, 0.0, 1.0],
    ]


def test_columns_of_different_lengths_are_refused() -> None:
    pairs = _pairs(2)
    with pytest.raises(ValueError, match="differ in length"):
        Pairs(**{**pairs.__dict__, "stream_city": np.array(["Paris"], dtype=object)})


def test_for_viewer_repeats_the_user_values() -> None:
    streams = _pairs(3, stream_city=["Paris", "Lima", None], stream_category_id=["a", "b", "c"])
    viewer = Pairs.for_viewer(
        distance_km=[1.0, 2.0, 3.0],
        user_city="Paris",
        user_language=None,
        user_preferred_categories=["b", "c"],
        user_local_preference=0.5,
        user_total_watch_hours=7.0,
        stream_city=streams.stream_city,
        stream_language=streams.stream_language,
        stream_category_id=streams.stream_category_id,
        stream_quality_score=streams.stream_quality_score,
        stream_avg_viewers=streams.stream_avg_viewers,
        creator_followers=streams.creator_followers,
        is_partnered=streams.is_partnered,
        mature_content=streams.mature_content,
    )
    assert list(viewer.user_preferred_categories) == [["b", "c"]] * 3
    matrix = feature_matrix(viewer)
    assert _column(matrix, "same_city") == [1, 0, 0]
    assert _column(matrix, "same_language") == [0, 0, 0]
    assert _column(matrix, "category_match") == [0, 1, 1]
    assert _column(matrix, "user_local_preference") == [0.5] * 3


@pytest.mark.parametrize("dense_table_max", [features._DENSE_TABLE_MAX, 0])
@pytest.mark.parametrize("as_lists", [False, True])
def test_category_match_paths_agree(
    monkeypatch: pytest.MonkeyPatch, dense_table_max: int, as_lists: bool
) -> None:
    """Above the row-lookup size the factorised path (dense or sparse table) gives the same."""
    monkeypatch.setattr(features, "_DENSE_TABLE_MAX", dense_table_max)
    rng = np.random.default_rng(7)
    categories = [f"c{i}" for i in range(12)]
    sets = [
        frozenset(rng.choice(categories, size=rng.integers(0, 5), replace=False)) for _ in range(60)
    ]
    n = features._ROW_LOOKUP_MAX * 3
    preferred = np.empty(n, dtype=object)
    for i, j in enumerate(rng.integers(0, len(sets), n)):
        preferred[i] = sorted(sets[j]) if as_lists else sets[j]
    stream_categories = np.array(
        [categories[k] if k < len(categories) else None for k in rng.integers(0, 14, n)],
        dtype=object,
    )
    preferred[5] = None  # a missing collection matches nothing
    expected = [p is not None and c in p for c, p in zip(stream_categories, preferred, strict=True)]
    fast = features.category_match(stream_categories, preferred)
    assert fast.tolist() == expected
    assert 0 < fast.sum() < n
    small = features.category_match(stream_categories[:1000], preferred[:1000])
    assert small.tolist() == expected[:1000]
