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

Once k rows are in hand, a tier read returns only the rows whose score could
still reach the k-th best (`Floor`: PostgreSQL evaluates the score's ceiling on
the rows the tier's index finds). The rows it leaves out score below a row
already read, so they could never enter the top k, and the bound above still
covers every stream not read. In a dense city this drops four rows in five of
the tier reads (at k = 50 on 1M streams: 735 rows read a request become 310).
The first statement of a ring (first_step.py) applies the same rule to what it
reads, with the k-th best of its own rows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import numpy as np

from app.hometown.candidates import (
    Filters,
    Floor,
    Ring,
    Rows,
    fetch_nearest,
    fetch_tiers,
    to_rows,
)
from app.hometown.first_step import FIRST_TIERS, FirstStep, fetch_first_step
from app.hometown.scoring import FloatArray, Scores, Viewer, score, score_bound, top_k
from app.hometown.tiers import STATIC_MAX, TIERS
from app.hometown.weights import Weights

#: Streams read nearest-first in the first step, or k if more (then ×4 per step).
#: Since the tier reads keep only rows that can reach the k-th best, reading 4k
#: nearest-first rows up front no longer pays: asking for k instead made a search
#: 9% faster at k = 50 in a city and 24% from random points on the globe (1M
#: streams, 100K live; BENCHMARKS.md).
FIRST_STEP = 64
#: Tier rows worth reading per nearest-first row while a tier floor can prove the answer.
TIER_BUDGET = 8
#: Tiers in the first tier read after the first statement (then ×2 per read).
FIRST_TIER_BATCH = 2
#: Slack on the bound, far above float rounding, far below any real score gap.
BOUND_SLACK = 1e-9

#: The ML term: P(click) for each row, called once per request with every candidate
#: that could still make the list (see `could_make_it`). It may read the database.
Probability = Callable[[asyncpg.Connection, Viewer, Rows], Awaitable[FloatArray]]


@dataclass
class RingCandidates:
    """The rows of one ring that could still make its top k, and what it took to find them.

    `lower` is each row's score without the ML term: a lower bound on its score
    when the term is on (probabilities are never negative), the score itself when
    it is off.
    """

    records: list[asyncpg.Record]
    lower: FloatArray
    read: int
    queries: int


@dataclass
class RingTop:
    """The best streams of one ring, best first, and what it took to find them."""

    rows: Rows
    scores: Scores
    order: np.ndarray
    read: int
    queries: int


def first_step_limit(k: int) -> int:
    """How many streams the first nearest-first read asks for, for a top `k`."""
    return max(FIRST_STEP, k)


class _Reader:
    """The rows read so far, without duplicates, each scored once on arrival.

    Both lists can return the same stream. Scores of rows already read never
    change, so each batch is scored when it arrives and the stopping test only
    looks at the k-th best of the running totals.
    """

    def __init__(self, score_rows: Callable[[Rows], FloatArray]) -> None:
        self.records: list[asyncpg.Record] = []
        self.ids: set[str] = set()
        self.scores: list[FloatArray] = []
        self.score_rows = score_rows
        # (rows in hand, k) -> k-th best: each stopping test, floor and tier count
        # asks again between two reads, and the answer only changes when rows arrive.
        self._kth: tuple[int, int, float | None] | None = None

    def add(self, records: list[asyncpg.Record], outer_m: float) -> None:
        """Keep (and score) the new rows that lie inside the ring's outer edge."""
        # One membership test for rows from either query: the reported distance.
        fresh = [r for r in records if r["distance_m"] <= outer_m and r[0] not in self.ids]
        if fresh:
            self.ids.update(r[0] for r in fresh)
            self.records.extend(fresh)
            self.scores.append(self.score_rows(to_rows(fresh)))

    def kth_best(self, k: int) -> float | None:
        """The k-th best score read so far (None while fewer than k rows are in hand)."""
        total = len(self.records)
        if self._kth is not None and self._kth[:2] == (total, k):
            return self._kth[2]
        kth = None
        if total >= k:
            every = np.concatenate(self.scores)
            kth = float(np.partition(every, total - k)[total - k])
        self._kth = (total, k, kth)
        return kth


async def candidates_in_ring(
    conn: asyncpg.Connection,
    viewer: Viewer,
    ring: Ring,
    filters: Filters,
    weights: Weights,
    k: int,
    *,
    ml_room: float = 0.0,
    first: FirstStep | None = None,
) -> RingCandidates:
    """Every live stream of `ring` that could be in its exact top `k`, ties by `stream_id`.

    The search runs on scores without the ML term. With `ml_room` > 0 (the largest
    value the term can take, `MLTerm.maximum`), unseen streams are bounded with the term at
    that maximum while read ones count without it, so when the search stops no
    unseen stream can beat the k-th best read, whatever the model says; and a read
    row is kept only if its score with the term at its maximum still reaches that
    k-th best. The caller then needs the model once, for the rows kept.

    `first` is the ring's first statement when the caller has run it already
    (it looked the viewer up on the way).
    """
    point = {"longitude": viewer.longitude, "latitude": viewer.latitude}
    reader = _Reader(lambda rows: score(viewer, rows.candidates, weights).score)
    tiers = list(TIERS)
    static_below = STATIC_MAX + 1.0  # every stream is below this until a tier is read
    nearest_m = max(ring.inner_m, 0.0)
    limit = first_step_limit(k)
    queries = 0
    bonus_language = viewer.language is not None and (
        filters.languages is None or viewer.language in filters.languages
    )
    bonus_category = bool(viewer.preferred_categories) and (
        filters.category_ids is None
        or not viewer.preferred_categories.isdisjoint(filters.category_ids)
    )

    def bound(static_ceiling: float) -> float:
        return score_bound(
            viewer,
            weights,
            min_distance_m=nearest_m,
            static_below=static_ceiling,
            bonus_language=bonus_language,
            bonus_category=bonus_category,
            ml_room=ml_room,
        )

    def proven() -> bool:
        kth = reader.kth_best(k)
        return kth is not None and kth > bound(static_below) + BOUND_SLACK

    def floor() -> Floor | None:
        """Rows a tier read may leave out: those that cannot reach the k-th best."""
        kth = reader.kth_best(k)
        if kth is None:
            return None
        return Floor(kth - BOUND_SLACK, viewer, weights, ml_room)

    def tiers_to_proof() -> int | None:
        """How many remaining tiers must be read before their floor beats the bound.

        None if no floor in reach would, at the current nearest-first distance.
        Reading tiers never lowers the k-th best, so the count only shrinks.
        """
        kth = reader.kth_best(k)
        if kth is None:
            return None
        for count, tier in enumerate(tiers, 1):
            if kth > bound(tier.low) + BOUND_SLACK:
                return count
        return None

    nearest_rows = tier_rows = 0
    batch = FIRST_TIER_BATCH
    while True:
        if queries == 0:
            step = first or await fetch_first_step(
                conn,
                who=viewer,
                ring=ring,
                filters=filters,
                limit=limit,
                k=k,
                weights=weights,
                ml_room=ml_room,
            )
            if step is None:  # PostGIS's KNN failed on this point: the plain reads
                nearest = await fetch_nearest(
                    conn, **point, ring=ring, filters=filters, limit=limit
                )
                first_tiers = await fetch_tiers(
                    conn, **point, ring=ring, filters=filters, tiers=tiers[:FIRST_TIERS], floor=None
                )
                seen, farthest_m = len(nearest), _farthest(nearest)
            else:
                nearest, first_tiers = step.nearest, step.tiered
                seen, farthest_m = step.seen, step.farthest_m
            tiers, static_below = tiers[FIRST_TIERS:], tiers[FIRST_TIERS - 1].low
            reader.add(first_tiers, ring.outer_m)
            tier_rows = len(first_tiers)
        else:
            nearest = await fetch_nearest(conn, **point, ring=ring, filters=filters, limit=limit)
            seen, farthest_m = len(nearest), _farthest(nearest)
        queries += 1
        nearest_rows = seen
        reader.add(nearest, ring.outer_m)
        if seen < limit or farthest_m is None or farthest_m > ring.outer_m:
            break  # the ring is exhausted: every stream of it has been read
        nearest_m = farthest_m
        if proven():
            break
        # Then tiers, best first, in batches of 2, 4, 8... per round trip. While a
        # floor within reach would prove the answer at this distance, read towards it
        # as long as tiers cost no more than TIER_BUDGET times the nearest-first
        # rows; otherwise only while they cost less than those rows (each tier can
        # raise the k-th best). In a dense city one batch of two settles nearly every
        # request at 1M streams; in a sparse ring a few batches of tiny tiers do,
        # long before nearest-first would. (Reading all tiers down to the proving
        # floor at once instead read up to 10,000 rows where one batch would do.)
        done = False
        while tiers and not done:
            needed = tiers_to_proof()
            if needed is not None and tier_rows <= TIER_BUDGET * nearest_rows:
                take = min(needed, batch)
            elif tier_rows < nearest_rows:
                take = batch
            else:
                break
            batch *= 2
            chosen, tiers = tiers[:take], tiers[take:]
            tiered = await fetch_tiers(
                conn, **point, ring=ring, filters=filters, tiers=chosen, floor=floor()
            )
            queries += 1
            tier_rows += len(tiered)
            reader.add(tiered, ring.outer_m)
            static_below = chosen[-1].low
            # The bottom tier completes the ring; otherwise stop once the bound is beaten.
            done = chosen[-1].index is None or proven()
        if done:
            break
        limit *= 4

    lower = np.concatenate(reader.scores) if reader.scores else np.empty(0)
    return could_make_it(reader.records, lower, k, ml_room, queries=queries)


def _farthest(nearest: list[asyncpg.Record]) -> float | None:
    """The distance of the last nearest-first row (None when there is none)."""
    return float(nearest[-1]["distance_m"]) if nearest else None


def candidates_in_rows(
    viewer: Viewer,
    records: list[asyncpg.Record],
    ring: Ring,
    weights: Weights,
    k: int,
    *,
    ml_room: float = 0.0,
) -> RingCandidates:
    """`candidates_in_ring` among rows already in hand (the small-set path).

    Ring membership is the same test the search applies to rows it reads:
    beyond the inner edge, within the outer one, by the reported distance.
    """
    inside = (
        [r for r in records if ring.inner_m < r["distance_m"] <= ring.outer_m]
        if ring.inner_m >= 0
        else [r for r in records if r["distance_m"] <= ring.outer_m]
    )
    lower = score(viewer, to_rows(inside).candidates, weights).score
    return could_make_it(inside, lower, k, ml_room, queries=0)


def could_make_it(
    records: list[asyncpg.Record], lower: FloatArray, k: int, ml_room: float, *, queries: int
) -> RingCandidates:
    """The rows whose score could still reach the k-th best lower bound.

    A row's final score lies between `lower` and `lower + ml_room`, so one whose
    upper end stays below the k-th best `lower` can never make the top k. Ties
    with that k-th best are kept: the id may break them in the row's favour.
    """
    read = len(records)
    if read > k:
        kth = float(np.partition(lower, read - k)[read - k])
        keep = np.flatnonzero(lower + ml_room >= kth - BOUND_SLACK)
        records = [records[i] for i in keep]
        lower = lower[keep]
    return RingCandidates(records, lower, read=read, queries=queries)


def rank(
    viewer: Viewer,
    found: RingCandidates,
    rows: Rows,
    weights: Weights,
    k: int,
    ml: FloatArray | None = None,
) -> RingTop:
    """The exact top `k` of a ring's candidates (`rows` are `found.records` as arrays)."""
    scores = score(viewer, rows.candidates, weights, ml)
    order = top_k(scores.score, rows.candidates.stream_id, k)
    return RingTop(rows, scores, order, read=found.read, queries=found.queries)
