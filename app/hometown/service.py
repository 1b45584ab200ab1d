"""HOMETOWN orchestration: who is asking, which rings to search, what to answer.

Ring 0 is the requested radius. When it holds fewer qualifying live streams than
asked for, the search widens ×4 per ring (from the radius, or from 1 km when the
radius is smaller) up to the whole globe and appends each wider ring's best, so a
viewer in a remote place still gets a full list while live streams exist anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy.typing as npt

from app.errors import UserNotFound
from app.hometown.candidates import (
    HALF_CIRCUMFERENCE_M,
    USER_SQL,
    Filters,
    Ring,
    count_qualifying,
    fetch_qualifying,
    to_rows,
)
from app.hometown.first_step import fetch_first_step
from app.hometown.ml_term import MLTerm
from app.hometown.scoring import Viewer
from app.hometown.search import (
    Probability,
    RingCandidates,
    RingTop,
    candidates_in_ring,
    candidates_in_rows,
    first_step_limit,
    rank,
)
from app.hometown.weights import Weights
from app.observability.context import note_search

WIDENING_FACTOR = 4.0
#: Ring 1 ends at `WIDENING_FACTOR` times the radius or this, whichever is larger.
WIDENING_FLOOR_KM = 1.0
#: Rings any request can search: ring 0, then ×4 from 1 km (4 km ... 16,384 km), then
#: the rest of the globe.
MAX_RINGS = 9
#: At most this many qualifying live streams are ranked by reading them all.
SMALL_SET = 5_000
#: The last ring reaches past the antipode by this much, so float rounding of a
#: distance near half the circumference never leaves a stream outside every ring.
GLOBE_SLACK_M = 1000.0


@dataclass(frozen=True, kw_only=True)
class Query:
    """Who to recommend for, how many, how far, and which streams qualify.

    Either `user_id` (a stored viewer) or `latitude` + `longitude` (a signed-out
    one, with optional `language`, `preferred_categories` and
    `local_preference_strength`); the API has checked that exactly one is given.
    """

    user_id: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    language: str | None = None
    preferred_categories: Sequence[str] | None = None
    local_preference_strength: float | None = None
    max_results: int = 20
    radius_km: float = 250.0
    languages: Sequence[str] | None = None
    category_ids: Sequence[str] | None = None
    include_mature: bool = True
    explain: bool = False


@dataclass(frozen=True)
class Components:
    """The score taken apart: score = proximity + base_weight·base + ml."""

    proximity: float
    quality: float
    language: float
    category: float
    popularity: float
    base: float
    ml: float


@dataclass(frozen=True, kw_only=True)
class Recommended:
    """One recommended live stream, in ranking order."""

    stream_id: str
    city: str
    score: float
    distance_km: float
    proximity_boost: float
    ring: int
    title: str
    language: str
    category_id: str
    current_viewer_count: int
    components: Components | None = None


@dataclass(frozen=True)
class RingReport:
    """One distance band searched and how many streams it gave."""

    index: int
    min_km: float
    max_km: float
    streams: int


@dataclass(frozen=True)
class Recommendation:
    """The ranked streams (ring 0 first, each ring best first) and the rings searched."""

    streams: list[Recommended]
    rings: list[RingReport]


def rings(radius_km: float) -> list[Ring]:
    """Ring 0 = the radius; each next ring ×4 farther, the last one to the antipode.

    The widening counts from `radius_km` or `WIDENING_FLOOR_KM`, whichever is larger:
    ring 0 is still exactly "within `radius_km`", but a radius of a metre (or of
    5e-324 km, which the schema allows) reaches 4 km in its second ring instead of
    taking hundreds of rings, so no request searches more than `MAX_RINGS`.
    """
    radius_m = radius_km * 1000.0
    if radius_m >= HALF_CIRCUMFERENCE_M:
        return [Ring(-1.0, HALF_CIRCUMFERENCE_M + GLOBE_SLACK_M)]
    found = [Ring(-1.0, radius_m)]
    inner, outer = radius_m, max(radius_m, WIDENING_FLOOR_KM * 1000.0) * WIDENING_FACTOR
    while outer < HALF_CIRCUMFERENCE_M:
        found.append(Ring(inner, outer))
        inner, outer = outer, outer * WIDENING_FACTOR
    found.append(Ring(inner, HALF_CIRCUMFERENCE_M + GLOBE_SLACK_M))
    return found


def viewer_from_row(row: asyncpg.Record | tuple[Any, ...]) -> Viewer:
    """A stored user as the ranking sees them: a row with `USER_SQL`'s columns, in order.

    The first statement of a search (app/hometown/first_step.py) returns the
    same columns as one record, so both come through here.
    """
    user_id, latitude, longitude, language, categories, strength, city, hours = row
    return Viewer(
        latitude=latitude,
        longitude=longitude,
        language=language,
        preferred_categories=frozenset(categories or ()),
        local_preference_strength=strength,
        user_id=user_id,
        city=city,
        total_watch_hours=hours,
    )


async def lookup_user(conn: asyncpg.Connection, user_id: str) -> Viewer:
    """A stored user by id (404 when there is none)."""
    row = await conn.fetchrow(USER_SQL, user_id)
    if row is None:
        raise UserNotFound(user_id)
    return viewer_from_row(row)


def described_viewer(request: Query, default_local_preference: float) -> Viewer:
    """The signed-out viewer the request describes (the API has checked the location)."""
    assert request.latitude is not None and request.longitude is not None  # the API's rule
    strength = request.local_preference_strength
    return Viewer(
        latitude=request.latitude,
        longitude=request.longitude,
        language=request.language,
        preferred_categories=frozenset(request.preferred_categories or ()),
        local_preference_strength=default_local_preference if strength is None else strength,
    )


async def resolve_viewer(
    conn: asyncpg.Connection, request: Query, default_local_preference: float
) -> Viewer:
    """The viewer from the users table, or from the request for a signed-out one."""
    if request.user_id is not None:
        return await lookup_user(conn, request.user_id)
    return described_viewer(request, default_local_preference)


async def recommend(
    conn: asyncpg.Connection,
    request: Query,
    weights: Weights,
    *,
    default_local_preference: float,
    probability: Probability | None = None,
    term: MLTerm | None = None,
) -> Recommendation:
    """Rank live streams for the request: exact top `max_results`, widening if needed.

    With `probability`, the score adds `term` of it (the seed's `ml_weight ·
    P(click)` when no term is given). A stored user is looked up by the search's
    first statement, not by one of its own.
    """
    who: Viewer | str = (
        request.user_id
        if request.user_id is not None
        else described_viewer(request, default_local_preference)
    )
    tops = await _ring_tops(conn, who, request, weights, probability, term)
    return _recommendation(tops, explain=request.explain)


async def search(
    conn: asyncpg.Connection,
    viewer: Viewer,
    request: Query,
    weights: Weights,
    *,
    probability: Probability | None = None,
    term: MLTerm | None = None,
) -> Recommendation:
    """`recommend` for a viewer already known (the feed has read them from its store).

    The request's `user_id`, location and viewer defaults are not read again.
    """
    tops = await _ring_tops(conn, viewer, request, weights, probability, term)
    return _recommendation(tops, explain=request.explain)


def _recommendation(tops: list[tuple[Ring, RingTop]], *, explain: bool) -> Recommendation:
    """Each ring's top as results, ring 0 first, and the rings searched."""
    streams: list[Recommended] = []
    searched: list[RingReport] = []
    for index, (ring, top) in enumerate(tops):
        ranked = _streams(top, index, explain=explain)
        streams.extend(ranked)
        searched.append(
            RingReport(
                index=index,
                min_km=max(ring.inner_m, 0.0) / 1000.0,
                max_km=min(ring.outer_m, HALF_CIRCUMFERENCE_M) / 1000.0,
                streams=len(ranked),
            )
        )
    return Recommendation(streams=streams, rings=searched)


async def search_ids(
    conn: asyncpg.Connection, viewer: Viewer, request: Query, weights: Weights
) -> list[str]:
    """The stream ids `search` would answer, in its order, and nothing else.

    For the feed's near-you source, which keeps only the ids: building the
    results it would drop was 2% of a loaded feed server's CPU.
    """
    tops = await _ring_tops(conn, viewer, request, weights, None, None)
    ids: list[str] = []
    for _, top in tops:
        ids.extend(top.rows.candidates.stream_id[top.order].tolist())
    return ids


async def _ring_tops(
    conn: asyncpg.Connection,
    who: Viewer | str,
    request: Query,
    weights: Weights,
    probability: Probability | None,
    term: MLTerm | None,
) -> list[tuple[Ring, RingTop]]:
    """Each ring searched and its exact top, ring 0 first, for `who` (or the user of that id).

    Ring 0's first statement looks a stored user up on the way (first_step.py).
    """
    filters = Filters(request.languages, request.category_ids, request.include_mature)
    term = term or MLTerm.formula(weights.ml_weight)
    ml_room = term.maximum if probability is not None else 0.0
    searched = rings(request.radius_km)
    # A filter few live streams pass would make nearest-first step over most of the
    # world to find them; when they are few, read them all once and rank in numpy.
    few = None
    first = None
    filtered = filters.languages is not None or filters.category_ids is not None
    if filtered and await count_qualifying(conn, filters, SMALL_SET + 1) <= SMALL_SET:
        viewer = who if isinstance(who, Viewer) else await lookup_user(conn, who)
        few = await fetch_qualifying(
            conn, longitude=viewer.longitude, latitude=viewer.latitude, filters=filters
        )
    elif isinstance(who, Viewer):
        viewer = who
    else:
        k = request.max_results
        first = await fetch_first_step(
            conn,
            who=who,
            ring=searched[0],
            filters=filters,
            limit=first_step_limit(k),
            k=k,
            weights=weights,
            ml_room=ml_room,
        )
        if first is None:  # PostGIS's KNN failed there; the search reads the long way
            viewer = await lookup_user(conn, who)
        elif first.viewer is None:
            raise UserNotFound(who)
        else:
            viewer = viewer_from_row(first.viewer)
    # First decide, ring by ring, which streams could make the list (scores without
    # the ML term; its maximum bounds what is unseen), then ask the model once for
    # all of them, then rank each ring exactly. How many a ring contributes never
    # depends on the model: a ring that cannot fill the list was read to the end.
    plan: list[tuple[Ring, RingCandidates, int]] = []
    taken = 0
    for ring in searched:
        wanted = request.max_results - taken
        if few is not None:
            found = candidates_in_rows(viewer, few, ring, weights, wanted, ml_room=ml_room)
        else:
            found = await candidates_in_ring(
                conn, viewer, ring, filters, weights, wanted, ml_room=ml_room, first=first
            )
            first = None  # it was ring 0's
        plan.append((ring, found, wanted))
        taken += min(wanted, len(found.records))
        if taken >= request.max_results:
            break
    rows = to_rows([record for _, found, _ in plan for record in found.records])
    ml = term(await probability(conn, viewer, rows)) if probability is not None else None

    tops: list[tuple[Ring, RingTop]] = []
    start = 0
    for ring, found, wanted in plan:
        stop = start + len(found.records)
        part = None if ml is None else ml[start:stop]
        tops.append((ring, rank(viewer, found, rows.part(start, stop), weights, wanted, part)))
        start = stop
    note_search(
        "hometown-ml" if probability else "hometown",
        candidates_read=sum(found.read for _, found, _ in plan),
        rings=len(plan),
    )
    return tops


def _streams(top: RingTop, ring: int, *, explain: bool) -> Sequence[Recommended]:
    """The ring's top as results, each column taken in ranking order at once.

    One `tolist()` per column gives the Python values in C; indexing the arrays
    and converting value by value was 2.6% of a loaded feed server's samples
    (the feed asks for the best 50).
    """
    rows, scores, order = top.rows, top.scores, top.order
    c = rows.candidates

    def column(values: npt.NDArray[Any]) -> list[Any]:
        taken: list[Any] = values[order].tolist()
        return taken

    components: list[Components | None] = [None] * len(order)
    if explain:
        parts = (
            scores.proximity,
            scores.quality,
            scores.language,
            scores.category,
            scores.popularity,
            scores.base,
            scores.ml,
        )
        components = [Components(*row) for row in zip(*map(column, parts), strict=True)]
    ids, cities, values, distances, boosts, titles, languages, categories, viewers = map(
        column,
        (
            c.stream_id,
            rows.city,
            scores.score,
            c.distance_m,
            scores.proximity_boost,
            rows.title,
            c.language,
            c.category_id,
            rows.current_viewers,
        ),
    )
    return [
        Recommended(
            stream_id=ids[j],
            city=cities[j],
            score=values[j],
            distance_km=distances[j] / 1000.0,
            proximity_boost=boosts[j],
            ring=ring,
            title=titles[j],
            language=languages[j],
            category_id=categories[j],
            current_viewer_count=viewers[j],
            components=components[j],
        )
        for j in range(len(order))
    ]
