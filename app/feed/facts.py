"""The reranker's facts read from PostgreSQL for one request: the serving path of the features.

Training computes the same facts for every user at once from the interaction
log (ml/feed/history.py); this module asks the database for one viewer and
their candidates, with the same definitions, and hands them to the same
`pair_features`. The parity test (tests/integration/test_feed_parity.py) builds
both for the same pairs and requires equal matrices, so a definition changed on
one side only fails there, not silently in production.

Definitions, shared with ml/feed/history.py: only watched interactions (watch
time above 0) count; hours are whole UTC hours of `impression_at`, shifted by the
user's `timezone_offset` and floored for the viewer's local hour; a stream's
dominant device is the one most of its watches came from (ties: the order of
`DEVICES`); popularity is the number of distinct viewers who watched the stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg
import numpy as np
import numpy.typing as npt

from app.db.limits import DEVICES
from app.feed.features import Candidates, Viewer

FloatArray = npt.NDArray[np.float64]

SOURCE_COLUMNS = ("cf", "near", "trending", "trending_language", "own")

VIEWER_SQL = """
SELECT latitude, longitude, language, timezone_offset, preferred_categories
FROM users WHERE user_id = $1
"""
CATEGORY_MINUTES_SQL = """
SELECT s.category_id, sum(i.watch_time_minutes) AS minutes
FROM interactions i JOIN streams s USING (stream_id)
WHERE i.user_id = $1 AND i.watch_time_minutes > 0
GROUP BY s.category_id
"""
LOCAL_HOURS_SQL = """
SELECT floor(extract(hour FROM i.impression_at AT TIME ZONE 'UTC')::float8
             + u.timezone_offset + 48)::int % 24 AS hour,
       count(*) AS watches
FROM interactions i JOIN users u USING (user_id)
WHERE i.user_id = $1 AND i.watch_time_minutes > 0
GROUP BY 1
"""
STREAMS_SQL = """
SELECT s.stream_id, s.creator_id, s.latitude, s.longitude, s.language, s.category_id,
       s.stream_quality_score, s.avg_viewer_count, s.creator_followers,
       s.is_partnered, s.mature_content
FROM unnest($1::text[]) WITH ORDINALITY AS c(stream_id, position)
JOIN streams s USING (stream_id)
ORDER BY c.position
"""
AUDIENCE_SQL = """
SELECT stream_id,
       count(DISTINCT user_id) AS viewers,
       array_agg(device_type) AS devices,
       array_agg(extract(hour FROM impression_at AT TIME ZONE 'UTC')::int) AS hours
FROM interactions
WHERE stream_id = ANY($1::text[]) AND watch_time_minutes > 0
GROUP BY stream_id
"""
CREATOR_HISTORY_SQL = """
SELECT s.creator_id, sum(i.watch_time_minutes) AS minutes, count(*) AS watches
FROM interactions i JOIN streams s USING (stream_id)
WHERE i.user_id = $1 AND i.watch_time_minutes > 0 AND s.creator_id = ANY($2::text[])
GROUP BY s.creator_id
"""


async def viewer(conn: asyncpg.Connection, user_id: str) -> Viewer | None:
    """The viewer's profile and viewing habits, or None for an unknown user."""
    row = await conn.fetchrow(VIEWER_SQL, user_id)
    if row is None:
        return None
    minutes = {
        r["category_id"]: float(r["minutes"])
        for r in await conn.fetch(CATEGORY_MINUTES_SQL, user_id)
    }
    total = sum(minutes.values())
    hours = np.zeros(24)
    for r in await conn.fetch(LOCAL_HOURS_SQL, user_id):
        hours[int(r["hour"]) % 24] += float(r["watches"])
    if hours.sum() > 0:
        hours = hours / hours.sum()
    return Viewer(
        latitude=float(row["latitude"]),
        longitude=float(row["longitude"]),
        language=row["language"],
        utc_offset_hours=float(row["timezone_offset"]),
        preferred_categories=frozenset(row["preferred_categories"] or ()),
        category_share={c: m / total for c, m in minutes.items()} if total > 0 else {},
        hour_share=hours,
    )


async def candidates(
    conn: asyncpg.Connection,
    user_id: str,
    stream_ids: Sequence[str],
    ranks: Mapping[str, Mapping[str, int]],
    cf_scores: Mapping[str, float],
) -> Candidates:
    """The candidates' facts, in the order of `stream_ids` (unknown streams are dropped).

    `ranks[source][stream_id]` is the stream's 1-based rank in each source that
    proposed it; `cf_scores` the embedding dot products that are known.
    """
    rows = await conn.fetch(STREAMS_SQL, list(stream_ids))
    ids = [r["stream_id"] for r in rows]
    audience = {r["stream_id"]: r for r in await conn.fetch(AUDIENCE_SQL, ids)}
    creators = sorted({r["creator_id"] for r in rows})
    history = {
        r["creator_id"]: (float(r["minutes"]), float(r["watches"]))
        for r in await conn.fetch(CREATOR_HISTORY_SQL, user_id, creators)
    }
    n = len(rows)
    profile = np.zeros((n, 24))
    dominant = np.full(n, None, dtype=object)
    popularity = np.zeros(n)
    for i, sid in enumerate(ids):
        seen = audience.get(sid)
        if seen is None:
            continue
        popularity[i] = float(seen["viewers"])
        np.add.at(profile[i], np.asarray(seen["hours"], dtype=np.int64) % 24, 1.0)
        profile[i] /= profile[i].sum()
        counts = [seen["devices"].count(d) for d in DEVICES]
        if max(counts) > 0:
            dominant[i] = DEVICES[int(np.argmax(counts))]

    def numbers(column: str) -> FloatArray:
        return np.array([float(r[column]) for r in rows], dtype=np.float64)

    def rank_of(source: str) -> FloatArray:
        given = ranks.get(source, {})
        return np.array([float(given.get(s, np.nan)) for s in ids], dtype=np.float64)

    return Candidates(
        stream_id=np.array(ids, dtype=object),
        latitude=numbers("latitude"),
        longitude=numbers("longitude"),
        language=np.array([r["language"] for r in rows], dtype=object),
        category_id=np.array([r["category_id"] for r in rows], dtype=object),
        quality=numbers("stream_quality_score"),
        avg_viewers=numbers("avg_viewer_count"),
        followers=numbers("creator_followers"),
        partnered=numbers("is_partnered"),
        mature=numbers("mature_content"),
        dominant_device=dominant,
        hour_profile=profile,
        popularity=popularity,
        creator_minutes=np.array([history.get(r["creator_id"], (0.0, 0.0))[0] for r in rows]),
        creator_sessions=np.array([history.get(r["creator_id"], (0.0, 0.0))[1] for r in rows]),
        cf_score=np.array([float(cf_scores.get(s, np.nan)) for s in ids], dtype=np.float64),
        cf_rank=rank_of("cf"),
        near_rank=rank_of("near"),
        trending_rank=rank_of("trending"),
        trending_language_rank=rank_of("trending_language"),
        own_rank=rank_of("own"),
    )
