"""Scores, score bounds and top-k: numpy only, no I/O, so plain arrays test it.

The exact search (search.py) needs two things from here: the score of every
candidate it has read, and an upper bound on the score of every candidate it has
not, given what the two sorted accesses have shown so far.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.hometown.tiers import STATIC_POPULARITY_CAP, STATIC_POPULARITY_DIVISOR
from app.hometown.weights import Weights

FloatArray = npt.NDArray[np.float64]
#: Highest stream_quality_score the schema allows (a CHECK constraint).
QUALITY_MAX = 10.0


@dataclass(frozen=True)
class Viewer:
    """Who the ranking is for: a known user, or a signed-out viewer's stated defaults."""

    latitude: float
    longitude: float
    language: str | None
    preferred_categories: frozenset[str]
    local_preference_strength: float
    user_id: str | None = None
    #: Only the click model reads these; a signed-out viewer has no city and no history.
    city: str | None = None
    total_watch_hours: float = 0.0


@dataclass(frozen=True)
class Candidates:
    """Columns of candidate streams, one entry per stream (parallel arrays)."""

    stream_id: npt.NDArray[np.object_]
    distance_m: FloatArray
    quality: FloatArray
    avg_viewers: FloatArray
    language: npt.NDArray[np.object_]
    category_id: npt.NDArray[np.object_]

    def __len__(self) -> int:
        return len(self.stream_id)


@dataclass(frozen=True)
class Scores:
    """The score of each candidate and its parts (for `explain`)."""

    score: FloatArray
    proximity_boost: FloatArray
    proximity: FloatArray
    quality: FloatArray
    language: FloatArray
    category: FloatArray
    popularity: FloatArray
    base: FloatArray
    ml: FloatArray


def score(
    viewer: Viewer,
    candidates: Candidates,
    weights: Weights,
    ml: FloatArray | None = None,
) -> Scores:
    """The seed formula over all candidates at once (see app/hometown/weights.py).

    `ml` is the click model's term for each candidate, already weighted
    (app/hometown/ml_term.py); without it the term is 0.
    """
    n = len(candidates)
    proximity_boost = 1.0 / (1.0 + candidates.distance_m / 1000.0)
    proximity = (
        weights.proximity_weight * proximity_boost * (1.0 + viewer.local_preference_strength)
    )
    quality = weights.quality_weight * candidates.quality
    same_language = (
        candidates.language == viewer.language if viewer.language else np.zeros(n, dtype=bool)
    )
    language = weights.language_bonus * same_language.astype(np.float64)
    if viewer.preferred_categories:
        # A set lookup per row: np.isin's sorting costs more than it saves at this size.
        liked = np.fromiter(
            (c in viewer.preferred_categories for c in candidates.category_id), bool, count=n
        )
    else:
        liked = np.zeros(n, dtype=bool)
    category = weights.category_bonus * liked.astype(np.float64)
    popularity = np.minimum(
        candidates.avg_viewers / weights.popularity_divisor, weights.popularity_cap
    )
    base = quality + language + category + popularity
    if ml is None:
        ml = np.zeros(n)
    total = proximity + weights.base_weight * base + ml
    return Scores(
        total, proximity_boost, proximity, quality, language, category, popularity, base, ml
    )


def top_k(scores: FloatArray, stream_ids: npt.NDArray[np.object_], k: int) -> npt.NDArray[np.intp]:
    """Positions of the k best, best first; equal scores in ascending `stream_id` order.

    `np.lexsort` sorts by the last key first: descending score, then id. The id
    tie-break is what makes the result deterministic and equal to a brute force.
    """
    if k <= 0 or len(scores) == 0:
        return np.empty(0, dtype=np.intp)
    order = np.lexsort((stream_ids, -scores))
    return order[:k]


@functools.lru_cache(maxsize=1024)
def max_static_base(static_below: float, weights: Weights) -> float:
    """Highest `quality_weight·q + min(v / divisor, cap)` under a static-score ceiling.

    Cached: it depends on the weights and a tier's floor alone, and one search
    asks for it dozens of times (each stopping test, over each remaining tier).

    The stored static score is `q + min(v / 1000, 2)`; a stream whose static
    score is below `static_below` can score no more than this in the base terms.
    With the default weights the answer is `static_below` itself. For other
    weights it is the maximum of a piecewise-linear function of q, so it sits at a
    breakpoint: q at its largest, q = 0, or where either popularity term
    saturates. Keeping the bound valid for any weights keeps the search exact
    when someone retunes them in settings.
    """
    q_max = min(QUALITY_MAX, static_below)
    if q_max < 0:
        return 0.0
    saturates = (
        static_below
        - weights.popularity_cap * weights.popularity_divisor / STATIC_POPULARITY_DIVISOR
    )
    breakpoints = {q_max, static_below - STATIC_POPULARITY_CAP, saturates, 0.0}
    best = 0.0
    for q in (min(max(point, 0.0), q_max) for point in breakpoints):
        room = static_below - q  # what the stored popularity term may still use
        if room >= STATIC_POPULARITY_CAP:
            popularity = weights.popularity_cap
        else:
            viewers = max(room, 0.0) * STATIC_POPULARITY_DIVISOR
            popularity = min(viewers / weights.popularity_divisor, weights.popularity_cap)
        best = max(best, weights.quality_weight * q + popularity)
    return best


def score_bound(
    viewer: Viewer,
    weights: Weights,
    *,
    min_distance_m: float,
    static_below: float,
    bonus_language: bool,
    bonus_category: bool,
    ml_room: float,
) -> float:
    """Upper bound on the score of any stream the search has not read yet.

    Unseen streams are at least `min_distance_m` away and have a static score
    below `static_below`; their user-dependent bonuses are taken at the maximum.

    Args:
        viewer: the viewer (local preference strength scales proximity).
        weights: the score's weights.
        min_distance_m: unseen streams are at least this far (the nearest-first read).
        static_below: unseen streams' static score is below this (the tier read).
        bonus_language: whether an unseen stream could still match the viewer's language.
        bonus_category: whether it could still be in the viewer's preferred categories.
        ml_room: the most the ML term could add to an unseen stream (0 without a model).
    """
    proximity = (
        weights.proximity_weight
        * (1.0 + viewer.local_preference_strength)
        / (1.0 + min_distance_m / 1000.0)
    )
    base = max_static_base(static_below, weights)
    base += weights.language_bonus if bonus_language else 0.0
    base += weights.category_bonus if bonus_category else 0.0
    return proximity + weights.base_weight * base + ml_room
