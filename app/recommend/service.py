"""HOMETOWN orchestration: who is asking, which rings to search, what to answer.

Ring 0 is the requested radius. When it holds fewer qualifying live streams than
asked for, the search widens ×4 per ring up to the whole globe and appends each
wider ring's best, so a viewer in a remote place still gets a full list while
live streams exist anywhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from app.api.schemas import (
    HometownRequest,
    HometownResponse,
    RecommendedStream,
    ScoreComponents,
)
from app.api.schemas import Ring as RingReport
from app.errors import UserNotFound
from app.observability.context import current_request_id, note_search
from app.recommend.candidates import (
    HALF_CIRCUMFERENCE_M,
    USER_SQL,
    Filters,
    Ring,
    count_qualifying,
    fetch_qualifying,
    to_rows,
)
from app.recommend.scoring import Viewer
from app.recommend.search import (
    Probability,
    RingCandidates,
    RingTop,
    candidates_in_ring,
    candidates_in_rows,
    rank,
)
from app.recommend.weights import Weights

WIDENING_FACTOR = 4.0
#: At most this many qualifying live streams are ranked by reading them all.
SMALL_SET = 5_000
#: The last ring reaches past the antipode by this much, so float rounding of a
#: distance near half the circumference never leaves a stream outside every ring.
GLOBE_SLACK_M = 1000.0


def rings(radius_km: float) -> list[Ring]:
    """Ring 0 = the radius; each next ring ×4 farther, the last one to the antipode."""
    found: list[Ring] = []
    inner, outer = -1.0, radius_km * 1000.0
    while outer < HALF_CIRCUMFERENCE_M:
        found.append(Ring(inner, outer))
        inner, outer = outer, outer * WIDENING_FACTOR
    found.append(Ring(inner, HALF_CIRCUMFERENCE_M + GLOBE_SLACK_M))
    return found


def viewer_from_row(row: asyncpg.Record) -> Viewer:
    """A stored user as the ranking sees them (a row with `USER_SQL`'s columns)."""
    return Viewer(
        latitude=row["latitude"],
        longitude=row["longitude"],
        language=row["language"],
        preferred_categories=frozenset(row["preferred_categories"] or ()),
        local_preference_strength=row["local_preference_strength"],
        user_id=row["user_id"],
        city=row["city"],
        total_watch_hours=row["total_watch_hours"],
    )


async def resolve_viewer(
    conn: asyncpg.Connection, request: HometownRequest, default_local_preference: float
) -> Viewer:
    """The viewer from the users table, or from the request for a signed-out one."""
    if request.user_id is not None:
        row = await conn.fetchrow(USER_SQL, request.user_id)
        if row is None:
            raise UserNotFound(request.user_id)
        return viewer_from_row(row)
    assert request.latitude is not None and request.longitude is not None  # schema rule
    strength = request.local_preference_strength
    return Viewer(
        latitude=request.latitude,
        longitude=request.longitude,
        language=request.language,
        preferred_categories=frozenset(request.preferred_categories or ()),
        local_preference_strength=default_local_preference if strength is None else strength,
    )


async def recommend(
    conn: asyncpg.Connection,
    request: HometownRequest,
    weights: Weights,
    *,
    default_local_preference: float,
    probability: Probability | None = None,
) -> HometownResponse:
    """Rank live streams for the request: exact top `max_results`, widening if needed."""
    viewer = await resolve_viewer(conn, request, default_local_preference)
    filters = Filters(request.languages, request.category_ids, request.include_mature)
    # A filter few live streams pass would make nearest-first step over most of the
    # world to find them; when they are few, read them all once and rank in numpy.
    few = None
    filtered = filters.languages is not None or filters.category_ids is not None
    if filtered and await count_qualifying(conn, filters, SMALL_SET + 1) <= SMALL_SET:
        few = await fetch_qualifying(
            conn, longitude=viewer.longitude, latitude=viewer.latitude, filters=filters
        )
    # First decide, ring by ring, which streams could make the list (scores without
    # the ML term; its maximum bounds what is unseen), then ask the model once for
    # all of them, then rank each ring exactly. How many a ring contributes never
    # depends on the model: a ring that cannot fill the list was read to the end.
    ml_max = 1.0 if probability else 0.0
    plan: list[tuple[Ring, RingCandidates, int]] = []
    taken = 0
    for ring in rings(request.radius_km):
        wanted = request.max_results - taken
        if few is not None:
            found = candidates_in_rows(viewer, few, ring, weights, wanted, ml_max=ml_max)
        else:
            found = await candidates_in_ring(
                conn, viewer, ring, filters, weights, wanted, ml_max=ml_max
            )
        plan.append((ring, found, wanted))
        taken += min(wanted, len(found.records))
        if taken >= request.max_results:
            break
    rows = to_rows([record for _, found, _ in plan for record in found.records])
    ml = await probability(conn, viewer, rows) if probability else None

    streams: list[RecommendedStream] = []
    searched: list[RingReport] = []
    start = 0
    for index, (ring, found, wanted) in enumerate(plan):
        stop = start + len(found.records)
        part = None if ml is None else ml[start:stop]
        top = rank(viewer, found, rows.part(start, stop), weights, wanted, part)
        start = stop
        ranked = _streams(top, index, explain=request.explain)
        streams.extend(ranked)
        searched.append(
            RingReport(
                index=index,
                min_km=max(ring.inner_m, 0.0) / 1000.0,
                max_km=min(ring.outer_m, HALF_CIRCUMFERENCE_M) / 1000.0,
                streams=len(ranked),
            )
        )
    note_search(
        "hometown-ml" if probability else "hometown",
        candidates_read=sum(found.read for _, found, _ in plan),
        rings=len(plan),
    )
    # The id the response's X-Request-ID header carries, so a body and a log line match.
    request_id = current_request_id() or uuid.uuid4().hex
    return HometownResponse(request_id=request_id, streams=streams, rings=searched)


def _streams(top: RingTop, ring: int, *, explain: bool) -> Sequence[RecommendedStream]:
    rows, scores = top.rows, top.scores
    out = []
    for i in top.order:
        components = None
        if explain:
            components = ScoreComponents(
                proximity=float(scores.proximity[i]),
                quality=float(scores.quality[i]),
                language=float(scores.language[i]),
                category=float(scores.category[i]),
                popularity=float(scores.popularity[i]),
                base=float(scores.base[i]),
                ml=float(scores.ml[i]),
            )
        out.append(
            RecommendedStream(
                stream_id=str(rows.candidates.stream_id[i]),
                city=str(rows.city[i]),
                score=float(scores.score[i]),
                distance_km=float(rows.candidates.distance_m[i]) / 1000.0,
                proximity_boost=float(scores.proximity_boost[i]),
                ring=ring,
                title=str(rows.title[i]),
                language=str(rows.candidates.language[i]),
                category_id=str(rows.candidates.category_id[i]),
                current_viewer_count=int(rows.current_viewers[i]),
                components=components,
            )
        )
    return out
