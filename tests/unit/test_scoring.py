"""Scores, tie-breaks and the bounds the exact search trusts, on plain arrays."""

from __future__ import annotations

import numpy as np
import pytest

from app.hometown.scoring import (
    Candidates,
    Viewer,
    max_static_base,
    score,
    score_bound,
    top_k,
)
from app.hometown.weights import Weights

VIEWER = Viewer(48.85, 2.35, "fr", frozenset({"gaming"}), 0.5)


def candidates(**columns: list[object]) -> Candidates:
    n = len(next(iter(columns.values())))
    defaults: dict[str, list[object]] = {
        "stream_id": [f"s{i}" for i in range(n)],
        "distance_m": [0.0] * n,
        "quality": [5.0] * n,
        "avg_viewers": [0.0] * n,
        "language": ["en"] * n,
        "category_id": ["music"] * n,
    }
    defaults.update(columns)
    return Candidates(
        stream_id=np.array(defaults["stream_id"], dtype=object),
        distance_m=np.array(defaults["distance_m"], dtype=float),
        quality=np.array(defaults["quality"], dtype=float),
        avg_viewers=np.array(defaults["avg_viewers"], dtype=float),
        language=np.array(defaults["language"], dtype=object),
        category_id=np.array(defaults["category_id"], dtype=object),
    )


def test_the_seed_formula_by_hand() -> None:
    c = candidates(
        distance_m=[9000.0, 0.0],
        quality=[7.0, 2.0],
        avg_viewers=[500.0, 5000.0],
        language=["fr", "en"],
        category_id=["gaming", "music"],
    )
    s = score(VIEWER, c, Weights())
    # 1.5 · 1/(1+9) · 1.5 + (7 + 1 + 0.5 + 0.5)
    assert s.score[0] == pytest.approx(0.225 + 9.0)
    # 1.5 · 1 · 1.5 + (2 + 0 + 0 + 2 capped)
    assert s.score[1] == pytest.approx(2.25 + 4.0)
    assert s.proximity_boost.tolist() == pytest.approx([0.1, 1.0])
    parts = s.proximity + s.base + s.ml
    assert parts.tolist() == pytest.approx(s.score.tolist())


def test_ties_go_to_the_smaller_stream_id() -> None:
    ids = np.array(["b", "a", "c", "d"], dtype=object)
    scores = np.array([1.0, 1.0, 2.0, 0.5])
    assert [ids[i] for i in top_k(scores, ids, 3)] == ["c", "a", "b"]
    assert len(top_k(scores, ids, 0)) == 0


def test_no_language_or_preferences_means_no_bonus() -> None:
    anonymous = Viewer(0.0, 0.0, None, frozenset(), 0.5)
    s = score(anonymous, candidates(language=["fr"], category_id=["gaming"]), Weights())
    assert s.language[0] == 0.0
    assert s.category[0] == 0.0


@pytest.mark.parametrize(
    "weights",
    [
        Weights(),
        Weights(quality_weight=2.0),
        Weights(quality_weight=0.1, popularity_cap=5.0, popularity_divisor=100.0),
        Weights(popularity_divisor=5000.0, popularity_cap=0.5),
        Weights(quality_weight=0.0),
    ],
)
def test_static_bound_holds_for_any_weights(weights: Weights) -> None:
    """No feasible (quality, viewers) under a static ceiling beats the bound."""
    rng = np.random.default_rng(7)
    quality = rng.uniform(0, 10, 200_000)
    viewers = rng.exponential(2000, 200_000)
    stored = quality + np.minimum(viewers / 1000.0, 2.0)
    actual = weights.quality_weight * quality + np.minimum(
        viewers / weights.popularity_divisor, weights.popularity_cap
    )
    for ceiling in (0.5, 2.0, 4.0, 6.0, 9.5, 11.5, 12.0, 13.0):
        below = stored < ceiling
        bound = max_static_base(ceiling, weights)
        assert actual[below].max(initial=0.0) <= bound + 1e-12
        # ...and it is tight: within 2% of the best sampled stream (default weights: exact).
        if weights == Weights() and below.any():
            assert bound == pytest.approx(min(ceiling, 12.0))


def test_score_bound_covers_every_unseen_stream() -> None:
    rng = np.random.default_rng(3)
    n = 50_000
    c = candidates(
        stream_id=[f"s{i}" for i in range(n)],
        distance_m=list(rng.uniform(0, 2e6, n)),
        quality=list(rng.uniform(0, 10, n)),
        avg_viewers=list(rng.exponential(1500, n)),
        language=list(rng.choice(["fr", "en"], n)),
        category_id=list(rng.choice(["gaming", "music"], n)),
    )
    s = score(VIEWER, c, Weights())
    static = c.quality + np.minimum(c.avg_viewers / 1000.0, 2.0)
    for min_d, ceiling in ((0.0, 12.0), (1e4, 9.5), (3e5, 6.0), (1e6, 4.0)):
        unseen = (c.distance_m >= min_d) & (static < ceiling)
        bound = score_bound(
            VIEWER,
            Weights(),
            min_distance_m=min_d,
            static_below=ceiling,
            bonus_language=True,
            bonus_category=True,
            ml_room=0.0,
        )
        assert s.score[unseen].max() <= bound
