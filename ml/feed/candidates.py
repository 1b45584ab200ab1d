"""Stage 1 offline: each source's list for a set of queries, their union, and its features.

A *query* is one user at one cut: the reranker is trained on queries cut
before the tune slice and evaluated on queries cut before the test slice. For
each query the sources the serving side will use propose streams:

- **collaborative**: the top `CF_K` streams by the dot product of the user's and
  the streams' embeddings (LightGCN; ALS when there is no LightGCN model);
- **near**: the `NEAR_K` streams closest to the user (tables only). Serving asks
  the HOMETOWN exact search for its best within the region instead; offline,
  with no live state to search, the nearest streams stand in for it;
- **trending**: the `TRENDING_K` streams with most watches in the last days of
  the history, and the `TRENDING_LANGUAGE_K` such streams in the user's language;
- **own channels**: the `OWN_K` streams the user watched longest.

The union keeps each stream once, in round-robin order over the sources (first
of each source, then second of each, ...), which is the order stage 1 alone
is evaluated in. The catalogue is every stream: the log spans weeks, so which
stream was live when is not known offline, and a viewer coming back to a
channel they watched is the most common thing a viewer does, so watched
streams are not excluded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.neighbors import BallTree

from app.db.limits import DEVICES
from app.feed.features import Candidates, Context, Viewer, pair_features
from app.feed.sources import CF_K, NEAR_K, OWN_K, SOURCES, TRENDING_K, TRENDING_LANGUAGE_K
from ml.feed.data import Log, Tables
from ml.feed.history import History, row_values
from ml.feed.retrieval import Embeddings, top_k

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_US_PER_HOUR = 3_600_000_000


@dataclass(frozen=True)
class Queries:
    """Users to recommend for, and the moment of each request."""

    user: IntArray
    at_us: IntArray  # when the request happens: the first row of the label slice
    device: IntArray  # codes into DEVICES, -1 unknown


@dataclass(frozen=True)
class SourceLists:
    """Every source's ranked streams, one row (or list) per query."""

    cf: IntArray | None  # (queries, CF_K)
    near: IntArray | None  # (queries, NEAR_K)
    trending: IntArray  # (TRENDING_K,): the same for everyone
    trending_language: list[IntArray]
    own: list[IntArray]

    def of(self, source: str, q: int) -> IntArray:
        """Source `source`'s list for query `q` (empty when the source has none)."""
        if source == "trending":
            return self.trending
        if source in ("trending_language", "own"):
            lists: list[IntArray] = getattr(self, source)
            return lists[q]
        matrix: IntArray | None = getattr(self, source)
        return matrix[q] if matrix is not None else np.empty(0, dtype=np.int64)


def queries_for(log: Log, labels: npt.NDArray[np.bool_], users: IntArray) -> Queries:
    """One query per user in `users`, at their first row of the label slice."""
    rows = np.flatnonzero(labels)
    order = rows[np.lexsort((rows, log.at_us[rows], log.user[rows]))]
    first_of = np.full(log.n_users, -1, dtype=np.int64)
    first_of[log.user[order][::-1]] = order[::-1]  # the earliest row wins
    first = first_of[users]
    if (first < 0).any():
        raise ValueError("every query user needs a row in the label slice")
    return Queries(user=users, at_us=log.at_us[first], device=log.device[first])


def _ranked(scores: FloatArray, k: int) -> IntArray:
    """The k best positions, ties by lower position (= lower stream_id)."""
    order = np.lexsort((np.arange(len(scores)), -scores))
    return order[: min(k, len(scores))].astype(np.int64)


def gather(
    queries: Queries,
    history: History,
    tables: Tables | None,
    embeddings: Embeddings | None,
) -> SourceLists:
    """Run every source for every query."""
    cf = None
    if embeddings is not None:
        # A stream the model never saw has a zero vector: nothing to retrieve it by,
        # and leaving it out spares most of a million-stream catalogue's scoring.
        known = np.flatnonzero(np.any(embeddings.items != 0, axis=1))
        cf, _ = top_k(embeddings.users[queries.user], embeddings.items[known], CF_K)
        cf = known[cf].astype(np.int64)
    near = None
    trending = _ranked(history.recent, TRENDING_K)
    trending_language: list[IntArray] = [np.empty(0, dtype=np.int64)] * len(queries.user)
    if tables is not None:
        streams, users = tables.streams, tables.users
        points = np.radians(streams[["latitude", "longitude"]].to_numpy(dtype=np.float64))
        tree = BallTree(points, metric="haversine")
        where = np.radians(users[["latitude", "longitude"]].to_numpy(dtype=np.float64))
        k = min(NEAR_K, len(points))
        distance, near_index = tree.query(where[queries.user], k=k)
        # BallTree's order among equal distances is its own: sort by distance, then id.
        near = np.stack(
            [idx[np.lexsort((idx, d))] for d, idx in zip(distance, near_index, strict=True)]
        ).astype(np.int64)
        language = streams["language"].astype(str).to_numpy()
        per_language = {
            code: _ranked(np.where(language == code, history.recent, -np.inf), TRENDING_LANGUAGE_K)
            for code in np.unique(language)
        }
        for code in per_language:
            keep = per_language[code]
            per_language[code] = keep[language[keep] == code]
        user_language = users["language"].astype(str).to_numpy()
        trending_language = [
            per_language.get(user_language[u], np.empty(0, dtype=np.int64)) for u in queries.user
        ]
    own = []
    for u in queries.user:
        start, end = history.minutes.indptr[u], history.minutes.indptr[u + 1]
        items = history.minutes.indices[start:end].astype(np.int64)
        minutes = history.minutes.data[start:end]
        own.append(items[np.lexsort((items, -minutes))][:OWN_K])
    return SourceLists(
        cf=cf, near=near, trending=trending, trending_language=trending_language, own=own
    )


def union(lists: SourceLists, q: int) -> tuple[IntArray, dict[str, FloatArray]]:
    """The query's de-duplicated candidates in round-robin order, and each source's ranks.

    Returns the stream codes and, per source, the 1-based rank of each candidate
    in that source (NaN where the source did not propose it).
    """
    per_source = {s: lists.of(s, q) for s in SOURCES}
    longest = max((len(v) for v in per_source.values()), default=0)
    grid = np.full((longest, len(SOURCES)), -1, dtype=np.int64)
    for j, source in enumerate(SOURCES):
        grid[: len(per_source[source]), j] = per_source[source]
    flat = grid.ravel()
    flat = flat[flat >= 0]
    _, first = np.unique(flat, return_index=True)
    items = flat[np.sort(first)]
    ranks = {}
    for source, ranked in per_source.items():
        rank = np.full(len(items), np.nan)
        if len(ranked):
            position = {int(s): r for r, s in enumerate(ranked.tolist(), start=1)}
            rank = np.array([position.get(int(s), np.nan) for s in items], dtype=np.float64)
        ranks[source] = rank
    return items, ranks


def viewer_of(history: History, tables: Tables | None, u: int) -> Viewer:
    """What the history and the users table say about user `u`."""
    hours = history.user_hours[u]
    if tables is None:
        return Viewer(hour_share=hours)
    row = tables.users.iloc[u]
    share = {}
    if history.category_share is not None:
        values = history.category_share[u]
        share = {history.categories[i]: float(values[i]) for i in np.flatnonzero(values)}
    return Viewer(
        latitude=float(row["latitude"]),
        longitude=float(row["longitude"]),
        language=str(row["language"]),
        utc_offset_hours=float(row["timezone_offset"]),
        preferred_categories=frozenset(row["preferred_categories"]),
        category_share=share,
        hour_share=hours,
    )


@dataclass(frozen=True)
class Catalogue:
    """The streams' attributes as arrays (NaN / None where there are no tables)."""

    stream_id: npt.NDArray[np.object_]
    latitude: FloatArray
    longitude: FloatArray
    language: npt.NDArray[np.object_]
    category_id: npt.NDArray[np.object_]
    quality: FloatArray
    avg_viewers: FloatArray
    followers: FloatArray
    partnered: FloatArray
    mature: FloatArray

    @classmethod
    def of(cls, log: Log, tables: Tables | None) -> Catalogue:
        """From the streams table, or all-unknown for a file alone."""
        ids = log.stream_ids.to_numpy(dtype=object)
        n = len(ids)
        if tables is None:
            unknown = np.full(n, np.nan)
            none = np.full(n, None, dtype=object)
            return cls(
                ids, unknown, unknown, none, none, unknown, unknown, unknown, unknown, unknown
            )
        s = tables.streams

        def numbers(column: str) -> FloatArray:
            return s[column].to_numpy(dtype=np.float64)

        return cls(
            ids,
            numbers("latitude"),
            numbers("longitude"),
            s["language"].astype(str).to_numpy(dtype=object),
            s["category_id"].astype(str).to_numpy(dtype=object),
            numbers("quality"),
            numbers("avg_viewers"),
            numbers("followers"),
            numbers("partnered"),
            numbers("mature"),
        )


def candidates_of(
    catalogue: Catalogue,
    history: History,
    u: int,
    items: IntArray,
    ranks: dict[str, FloatArray],
    embeddings: Embeddings | None,
) -> Candidates:
    """The reranker's view of one query's candidates."""
    creators = history.creator[items]
    devices = np.array([*DEVICES, None], dtype=object)
    cf_score = (
        (embeddings.items[items] @ embeddings.users[u]).astype(np.float64)
        if embeddings is not None
        else np.full(len(items), np.nan)
    )
    return Candidates(
        stream_id=catalogue.stream_id[items],
        latitude=catalogue.latitude[items],
        longitude=catalogue.longitude[items],
        language=catalogue.language[items],
        category_id=catalogue.category_id[items],
        quality=catalogue.quality[items],
        avg_viewers=catalogue.avg_viewers[items],
        followers=catalogue.followers[items],
        partnered=catalogue.partnered[items],
        mature=catalogue.mature[items],
        dominant_device=devices[history.dominant_device[items]],
        hour_profile=history.stream_hours[items],
        popularity=history.popularity[items],
        creator_minutes=row_values(history.creator_minutes, u, creators),
        creator_sessions=row_values(history.creator_watches, u, creators),
        cf_score=cf_score,
        cf_rank=ranks["cf"],
        near_rank=ranks["near"],
        trending_rank=ranks["trending"],
        trending_language_rank=ranks["trending_language"],
        own_rank=ranks["own"],
    )


def context_of(queries: Queries, q: int, viewer: Viewer) -> Context:
    """The request's moment: its time and device; the locale is the viewer's language."""
    hour = (queries.at_us[q] % (24 * _US_PER_HOUR)) / _US_PER_HOUR
    device = int(queries.device[q])
    return Context(
        hour_utc=float(hour),
        device=DEVICES[device] if device >= 0 else None,
        locale_language=viewer.language,
    )


@dataclass(frozen=True)
class QueryRows:
    """One query's candidates with their features."""

    q: int
    user: int
    items: IntArray
    features: npt.NDArray[np.float32]
    viewer: Viewer
    candidates: Candidates


def featurise(
    queries: Queries,
    lists: SourceLists,
    history: History,
    tables: Tables | None,
    log: Log,
    embeddings: Embeddings | None,
) -> Iterator[QueryRows]:
    """Each query's union of candidates and its feature matrix, one query at a time."""
    catalogue = Catalogue.of(log, tables)
    for q, u in enumerate(queries.user.tolist()):
        items, ranks = union(lists, q)
        viewer = viewer_of(history, tables, u)
        candidates = candidates_of(catalogue, history, u, items, ranks, embeddings)
        features = pair_features(viewer, candidates, context_of(queries, q, viewer))
        yield QueryRows(q, u, items, features, viewer, candidates)
