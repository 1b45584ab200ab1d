"""HOME_FEED and CATEGORY_FEED: gather candidates from several sources, rerank, explain.

One request, top to bottom:

1. **Who**: the viewer's features from the feature store (cache, else
   PostgreSQL), with their embedding in the active candidate model. Unknown: 404.
2. **Stage 1**, each source restricted to the category for `category_feed`:
   - `cf`: the exact top `CF_K` live streams by dot product with the viewer's
     embedding, over the live set held in memory (app/feed/live.py);
   - `near`: the HOMETOWN exact search's best `NEAR_K` for the viewer (as the
     store has them: no user lookup of its own), started first, on a connection
     of its own, so that its queries run while this request walks the in-memory
     sources;
   - `trending`, `trending_language`: most current viewers, overall and in the
     viewer's language (cached for at most a second by the live set);
   - `own`: live streams of the creators the viewer watched most;
   - `popular`, only for a viewer with no history: the live streams most
     viewers watched (cached a minute; see `PopularStreams`).
   Their union is in round-robin order (app/feed/sources.py).
3. **Stage 2**: the reranker scores every candidate once; ties go by
   `stream_id`. Without a reranker the order is the fallback: reciprocal-rank
   fusion of the sources (`fallback_scores`).
4. **Live now**: the best of that order are checked against PostgreSQL
   (`_live_now`) until `max_results` are confirmed live: a stream that went
   offline a moment ago is dropped even if the live set has not heard yet, and
   the viewer counts shown are current.
5. **Why**: each shown stream's reason from the reranker's contributions
   (app/feed/reasons.py), or from its best source in the fallback order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import numpy as np
import numpy.typing as npt

from app.errors import UserNotFound
from app.feed import reasons
from app.feed.artifact import FeedRanker
from app.feed.features import FEATURE_NAMES, Context, pair_features
from app.feed.live import LiveSet
from app.feed.sources import (
    CF_K,
    NEAR_K,
    OWN_K,
    POPULAR,
    POPULAR_K,
    SOURCES,
    TRENDING_K,
    TRENDING_LANGUAGE_K,
    union,
)
from app.feed.store import Connect, FeatureStore, StreamFacts, UserFacts
from app.feed.store import candidates as candidates_of
from app.hometown import service as hometown
from app.hometown.scoring import Viewer as NearViewer
from app.hometown.weights import Weights
from app.observability.context import note_search

#: Reciprocal-rank fusion's damping constant (Cormack et al. use 60): the fallback
#: score of a stream is the sum over the sources that proposed it of 1 / (60 + rank).
RRF_K = 60.0

#: Streams checked beyond the `max_results` asked for in the first liveness query:
#: room for a few that went offline, so one query nearly always settles the answer.
LIVE_CHECK_SLACK = 5

LIVE_NOW_SQL = """
SELECT stream_id, current_viewer_count
FROM streams WHERE stream_id = ANY($1::text[]) AND is_live
"""


@dataclass(frozen=True, kw_only=True)
class FeedQuery:
    """A feed request: who, which category (None for the home feed), when, on what."""

    user_id: str
    category_id: str | None = None
    #: The request's moment; None means now.
    at: datetime | None = None
    #: One of app.db.limits.DEVICES, or None when unknown.
    device: str | None = None
    #: The locale's language; None means the viewer's own.
    locale_language: str | None = None
    max_results: int = 30
    explain: bool = False


@dataclass(frozen=True)
class FeedStream:
    """One recommended live stream, best first."""

    stream_id: str
    score: float
    reason: str
    reason_kind: str
    title: str
    city: str
    category_id: str
    language: str
    current_viewer_count: int
    sources: list[str]
    contributions: dict[str, float] | None = None


@dataclass(frozen=True)
class Served:
    """Which models made the answer."""

    candidate_model: str | None
    reranker: str | None
    order: str  # "reranker" or "fallback"


@dataclass(frozen=True)
class Feed:
    """The answer: the streams, what served them, and how many the category had."""

    streams: list[FeedStream]
    served: Served
    candidates: int
    sources: dict[str, int]
    category_id: str | None = None
    live_in_category: int | None = None
    note: str | None = None


@dataclass
class PopularStreams:
    """The live streams most viewers watched, per category, kept for `ttl_s`.

    Popularity changes only when the feature tables are refreshed, so a minute
    old list is as good as a new one; one query per category per minute, and
    concurrent requests wait for the same query instead of each running it.
    """

    ttl_s: float = 60.0
    _cached: dict[str | None, tuple[float, list[str]]] = field(default_factory=dict)
    _locks: dict[str | None, asyncio.Lock] = field(default_factory=dict)

    async def get(self, conn: asyncpg.Connection, category: str | None, k: int) -> list[str]:
        """The top `k` (at most `POPULAR_K`) popular live streams, ties by stream_id."""
        found = self._fresh(category)
        if found is None:
            async with self._locks.setdefault(category, asyncio.Lock()):
                found = self._fresh(category)
                if found is None:
                    rows = await conn.fetch(POPULAR_SQL, category, POPULAR_K)
                    found = [row["stream_id"] for row in rows]
                    self._cached[category] = (time.monotonic(), found)
        return found[:k]

    def _fresh(self, category: str | None) -> list[str] | None:
        hit = self._cached.get(category)
        if hit is None or time.monotonic() - hit[0] > self.ttl_s:
            return None
        return hit[1]


POPULAR_SQL = """
SELECT s.stream_id
FROM streams s JOIN feed_stream_features f USING (stream_id)
WHERE s.is_live AND ($1::text IS NULL OR s.category_id = $1)
ORDER BY f.viewers DESC, s.stream_id COLLATE "C"
LIMIT $2
"""


@dataclass(frozen=True)
class Parts:
    """What a feed request needs besides the connection: the shared, long-lived pieces."""

    live: LiveSet
    store: FeatureStore
    popular: PopularStreams
    ranker: FeedRanker | None
    ranker_version: str | None
    weights: Weights


async def recommend(connect: Connect, query: FeedQuery, parts: Parts) -> Feed:
    """The feed for `query`: see the module docstring for the steps.

    `connect()` lends a pooled connection. The near-you search is the one source
    that waits on PostgreSQL for milliseconds, so once the viewer is known it
    runs on a connection of its own while this request walks the in-memory
    sources. Neither side holds a connection while it waits for the other, so
    a pool of any size cannot deadlock on two connections per request.
    """
    live = parts.live
    user = await parts.store.user_via(connect, query.user_id, live.model_version)
    if user is None:
        raise UserNotFound(query.user_id)
    near = asyncio.create_task(_near(connect, query, user, parts))
    try:
        found, cf_scores = _in_memory(query, user, parts)
        lists = {"cf": found.pop("cf")} if "cf" in found else {}  # in `SOURCES` order
        lists["near"] = await near
        lists.update(found)
        async with connect() as conn:
            if not user.has_history:
                lists[POPULAR] = await parts.popular.get(conn, query.category_id, POPULAR_K)
            merged, ranks = union(lists)
            facts = await parts.store.streams(conn, merged)
            kept = [facts[s] for s in merged if s in facts]
            scored = _score(query, parts, user, kept, ranks, cf_scores)
            shown, viewers = await _live_now(conn, kept, scored.order, query.max_results)
    finally:
        # After an early exit (unknown viewer, a database error) the search is not
        # needed: cancel it and collect its outcome, so a failure is not logged as
        # lost. gather() still lets a cancellation of this request itself through.
        near.cancel()
        await asyncio.gather(near, return_exceptions=True)
    return _answer(query, parts, user, lists, ranks, kept, scored, shown, viewers)


@dataclass(frozen=True)
class _Scored:
    """Stage 2's output for every candidate: scores, features, and the order by score."""

    scores: npt.NDArray[np.float64]
    order: list[int]
    features: npt.NDArray[np.float32] | None


def _score(
    query: FeedQuery,
    parts: Parts,
    user: UserFacts,
    kept: Sequence[StreamFacts],
    ranks: Mapping[str, Mapping[str, int]],
    cf_scores: Mapping[str, float],
) -> _Scored:
    """The reranker's score of every candidate (the fallback's without one), best first."""
    ranker = parts.ranker
    features = None
    if ranker is not None and kept:
        candidates = candidates_of(user, kept, ranks, cf_scores)
        features = pair_features(user.viewer, candidates, _context(query, user))
        scores = ranker.score(features).astype(np.float64)
    else:
        scores = fallback_scores([s.stream_id for s in kept], ranks)
    return _Scored(scores, ranked([s.stream_id for s in kept], scores), features)


async def _live_now(
    conn: asyncpg.Connection, kept: Sequence[StreamFacts], order: Sequence[int], k: int
) -> tuple[list[int], dict[str, int]]:
    """The first `k` of `order` that PostgreSQL says are live now, and their viewers.

    The sources proposed streams the live set or a query believed live a moment
    ago; a stream that went offline since must not be shown, and the viewer
    counts shown must be current. A stream's score does not depend on which
    others are candidates, so checking the best ones in order gives the same
    answer as checking all of them first, for a tenth of the rows: usually one
    query for `k` + `LIVE_CHECK_SLACK` streams. Each further query checks twice
    as many as the last, so even a mass of streams that just went offline costs
    a few queries.
    """
    shown: list[int] = []
    viewers: dict[str, int] = {}
    start, extra = 0, LIVE_CHECK_SLACK
    while len(shown) < k and start < len(order):
        batch = order[start : start + k - len(shown) + extra]
        start += len(batch)
        extra *= 2
        rows = await conn.fetch(LIVE_NOW_SQL, [kept[i].stream_id for i in batch])
        now = {row["stream_id"]: int(row["current_viewer_count"]) for row in rows}
        for i in batch:
            sid = kept[i].stream_id
            if sid in now and len(shown) < k:
                shown.append(i)
                viewers[sid] = now[sid]
    return shown, viewers


def _answer(
    query: FeedQuery,
    parts: Parts,
    user: UserFacts,
    lists: Mapping[str, Sequence[str]],
    ranks: Mapping[str, Mapping[str, int]],
    kept: Sequence[StreamFacts],
    scored: _Scored,
    shown: Sequence[int],
    viewers: Mapping[str, int],
) -> Feed:
    """The reasons and the answer for the streams shown: no I/O from here on."""
    live, category = parts.live, query.category_id
    ranker, features, scores = parts.ranker, scored.features, scored.scores
    contributions = strengths = None
    if ranker is not None and features is not None and shown:
        contributions = ranker.contributions(features[list(shown)])
        strengths = reasons.group_strengths(contributions)

    streams = [
        _stream(
            kept[i],
            float(scores[i]),
            viewers[kept[i].stream_id],
            user,
            ranks,
            None if contributions is None else contributions[row],
            None if strengths is None else strengths[row],
            explain=query.explain,
        )
        for row, i in enumerate(shown)
    ]
    live_in_category = live.count(category) if category is not None else None
    note = None
    if category is not None and len(streams) < query.max_results:
        note = (
            f"only {len(streams)} live stream{'s' if len(streams) != 1 else ''} in"
            f" category {category!r} right now (asked for {query.max_results});"
            " streams of other categories are not added"
        )
    note_search(
        "category_feed" if category is not None else "home_feed",
        candidates_read=len(kept),
        rings=0,
    )
    return Feed(
        streams=streams,
        served=Served(
            candidate_model=live.model_version,
            reranker=parts.ranker_version if ranker is not None else None,
            order="reranker" if ranker is not None else "fallback",
        ),
        candidates=len(kept),
        sources={source: len(items) for source, items in lists.items()},
        category_id=category,
        live_in_category=live_in_category,
        note=note,
    )


def _in_memory(
    query: FeedQuery, user: UserFacts, parts: Parts
) -> tuple[dict[str, list[str]], dict[str, float]]:
    """The sources the live set answers without I/O: cf, trending, trending_language, own."""
    live, category = parts.live, query.category_id
    lists: dict[str, list[str]] = {}
    cf_scores: dict[str, float] = {}
    embedding = user.embedding
    # LightGCN gives a viewer with no training positive an all-zero vector: every
    # stream would tie at 0, so such a viewer has no collaborative source at all.
    if embedding is not None and live.dim == len(embedding) and np.any(embedding):
        ids, scores = live.top_by_dot(embedding, CF_K, category)
        lists["cf"] = list(ids)
        cf_scores = dict(zip(ids, np.asarray(scores, dtype=np.float64).tolist(), strict=True))
    lists["trending"] = live.trending(TRENDING_K, category=category)
    if user.language:
        lists["trending_language"] = live.trending(
            TRENDING_LANGUAGE_K, language=user.language, category=category
        )
    lists["own"] = live.of_creators(user.creator_ids, OWN_K, category)
    return lists, cf_scores


async def _near(connect: Connect, query: FeedQuery, user: UserFacts, parts: Parts) -> list[str]:
    """The HOMETOWN exact search's best `NEAR_K` for the viewer (in the category).

    The viewer comes from the feature store, as HOMETOWN would read them from
    `users`: the search sends no user lookup of its own.
    """
    viewer = NearViewer(
        latitude=user.viewer.latitude,
        longitude=user.viewer.longitude,
        language=user.language,
        preferred_categories=user.viewer.preferred_categories,
        local_preference_strength=user.local_preference_strength,
        user_id=user.user_id,
        city=user.city,
    )
    async with connect() as conn:
        return await hometown.search_ids(
            conn,
            viewer,
            hometown.Query(
                user_id=query.user_id,
                max_results=NEAR_K,
                category_ids=None if query.category_id is None else [query.category_id],
            ),
            parts.weights,
        )


def _context(query: FeedQuery, user: UserFacts) -> Context:
    at = query.at or datetime.now(UTC)
    hour = at.hour + at.minute / 60.0 + at.second / 3600.0
    return Context(
        hour_utc=hour,
        device=query.device,
        locale_language=query.locale_language or user.language,
    )


def fallback_scores(
    stream_ids: Sequence[str], ranks: Mapping[str, Mapping[str, int]]
) -> npt.NDArray[np.float64]:
    """Reciprocal-rank fusion: each stream's sum over sources of 1 / (`RRF_K` + rank).

    The order the endpoints answer in when no reranker is loaded: a stream
    several sources put near their top comes first, and it needs no model.
    """
    return np.array(
        [
            sum(1.0 / (RRF_K + given[s]) for given in ranks.values() if s in given)
            for s in stream_ids
        ],
        dtype=np.float64,
    )


def ranked(stream_ids: Sequence[str], scores: npt.NDArray[np.float64]) -> list[int]:
    """Indices by score, best first, ties by stream_id (code-point order); NaN last.

    `np.lexsort` sorts by its last key first; numpy's unicode arrays compare by
    code point, as Python's `str` does, and NaN sorts after every number.
    """
    order: list[int] = np.lexsort((np.array(stream_ids, dtype=str), -scores)).tolist()
    return order


def _stream(
    facts: StreamFacts,
    score: float,
    viewers: int,
    user: UserFacts,
    ranks: Mapping[str, Mapping[str, int]],
    contributions: npt.NDArray[np.float32] | None,
    strengths: npt.NDArray[np.float64] | None,
    *,
    explain: bool,
) -> FeedStream:
    sid = facts.stream_id
    sources = sorted(
        (source for source, given in ranks.items() if sid in given),
        key=lambda source: (ranks[source][sid], _SOURCE_ORDER.get(source, len(SOURCES))),
    )
    subject = reasons.Subject(
        creator_id=facts.creator_id,
        category_id=facts.category_id,
        city=facts.city,
        viewers=viewers,
        channels=user.creator_ids,
    )
    if strengths is None:
        reason = reasons.from_sources(subject, sources)
    else:
        reason = reasons.from_model(strengths, subject, sources)
    shown = None
    if explain and contributions is not None:
        shown = {name: float(contributions[i]) for i, name in enumerate(FEATURE_NAMES)}
        shown["bias"] = float(contributions[-1])
    return FeedStream(
        stream_id=sid,
        score=score,
        reason=reason.text,
        reason_kind=reason.kind,
        title=facts.title,
        city=facts.city,
        category_id=facts.category_id,
        language=facts.language,
        current_viewer_count=viewers,
        sources=[s for s in (*SOURCES, POPULAR) if s in sources],
        contributions=shown,
    )


_SOURCE_ORDER = {source: i for i, source in enumerate(SOURCES)}
