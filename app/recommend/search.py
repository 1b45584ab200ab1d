"""Exact top-k of one ring: Fagin's threshold algorithm over two sorted accesses.

PostgreSQL cannot walk an index in order of a score that mixes distance with
per-stream quality, and reading every live stream of a dense city's radius costs
hundreds of milliseconds at a million streams. So the search reads two lists
that the indexes *can* produce cheaply, in growing steps:

- nearest-first (`<->` on the live-stream GiST index): after it, every unseen
  stream is at least as far as the last one read;
- best-static-score-first, tier by tier (tiers.py): after it, every unseen
  stream's static score is below the last tier's floor.

An unseen stream can then score at most `score_bound(nearest distance, tier
floor)` (its user-dependent bonuses at their maximum). As soon as the k-th best
score in hand beats that bound, no unseen stream can enter the top k, and the
answer equals scoring every stream of the ring. If either list runs out first,
every stream of the ring has been read, which is exact too. Nearest-first alone
degenerates where many streams crowd one spot; tiers alone where the ring holds
few streams; together they stop early in both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import numpy as np

from app.recommend.candidates import Filters, Ring, Rows, fetch_nearest, fetch_tier, to_rows
from app.recommend.scoring import FloatArray, Scores, Viewer, score, score_bound, top_k
from app.recommend.tiers import STATIC_MAX, TIERS
from app.recommend.weights import Weights

#: Streams read nearest-first in the first step (then ×4 per step).
FIRST_STEP = 64
#: Slack on the bound, far above float rounding, far below any real score gap.
BOUND_SLACK = 1e-9

#: Optional ML term: probabilities for the rows read (the ML issue plugs in here).
Probability = Callable[[Viewer, Rows], FloatArray]


@dataclass
class RingTop:
    """The best streams of one ring, best first, and what it took to find them."""

    rows: Rows
    scores: Scores
    order: np.ndarray
    read: int
    queries: int


class _Reader:
    """The rows read so far, without duplicates (both lists can return a stream)."""

    def __init__(self) -> None:
        self.records: list[asyncpg.Record] = []
        self.ids: set[str] = set()

    def add(self, records: list[asyncpg.Record], outer_m: float) -> None:
        """Keep the new rows that lie inside the ring's outer edge."""
        for record in records:
            # One membership test for rows from either query: the reported distance.
            if record["distance_m"] <= outer_m and record[0] not in self.ids:
                self.ids.add(record[0])
                self.records.append(record)


async def top_in_ring(
    conn: asyncpg.Connection,
    viewer: Viewer,
    ring: Ring,
    filters: Filters,
    weights: Weights,
    k: int,
    probability: Probability | None = None,
) -> RingTop:
    """The exact top `k` live streams of `ring` by score, ties by `stream_id`."""
    point = {"longitude": viewer.longitude, "latitude": viewer.latitude}
    reader = _Reader()
    tiers = list(TIERS)
    static_below = STATIC_MAX + 1.0  # every stream is below this until a tier is read
    nearest_m = max(ring.inner_m, 0.0)
    limit = max(FIRST_STEP, 4 * k)
    queries = 0
    bonus_language = viewer.language is not None and (
        filters.languages is None or viewer.language in filters.languages
    )
    bonus_category = bool(viewer.preferred_categories) and (
        filters.category_ids is None
        or not viewer.preferred_categories.isdisjoint(filters.category_ids)
    )

    def evaluate() -> tuple[Rows, Scores]:
        rows = to_rows(reader.records)
        ml = probability(viewer, rows) if probability else None
        return rows, score(viewer, rows.candidates, weights, ml)

    def proven(scores: Scores) -> bool:
        if len(scores.score) < k:
            return False
        kth = np.partition(scores.score, len(scores.score) - k)[len(scores.score) - k]
        bound = score_bound(
            viewer,
            weights,
            min_distance_m=nearest_m,
            static_below=static_below,
            bonus_language=bonus_language,
            bonus_category=bonus_category,
            ml_max=1.0 if probability else 0.0,
        )
        return bool(kth > bound + BOUND_SLACK)

    while True:
        nearest = await fetch_nearest(conn, **point, ring=ring, filters=filters, limit=limit)
        queries += 1
        reader.add(nearest, ring.outer_m)
        if len(nearest) < limit or nearest[-1]["distance_m"] > ring.outer_m:
            break  # the ring is exhausted: every stream of it has been read
        nearest_m = float(nearest[-1]["distance_m"])
        if proven(evaluate()[1]):
            break
        # Tiers next, as long as they cost less than the nearest-first step just
        # taken: in a sparse ring each tier returns a handful of rows and several
        # of them prove the answer long before nearest-first would reach the edge.
        budget = len(nearest)
        done = False
        while tiers and budget > 0 and not done:
            tier = tiers.pop(0)
            tiered = await fetch_tier(conn, **point, ring=ring, filters=filters, tier=tier)
            queries += 1
            reader.add(tiered, ring.outer_m)
            budget -= max(len(tiered), 1)
            static_below = tier.low
            # The bottom tier completes the ring; otherwise stop once the bound is beaten.
            done = tier.index is None or proven(evaluate()[1])
        if done:
            break
        limit *= 4

    rows, scores = evaluate()
    order = top_k(scores.score, rows.candidates.stream_id, k)
    return RingTop(rows, scores, order, read=len(reader.records), queries=queries)
