"""Training rows from the database: every impression as a (user, stream) pair and its click.

The impressions are joined to their user and stream in SQL only to compute the
distance there, with the expression the service uses, so the two cannot drift:
`ST_Distance(stream.location, user.location, false)`, on the sphere, stream first.
The argument order matters: PostGIS's spherical distance is not bit-for-bit
symmetric (a few rows in a thousand differ in the last bit), and the service
passes the stream's location first (app/hometown/candidates.py).

Everything else about the pair comes from the users and streams tables, read
once each, and is spread over the rows with integer indexing. The rows
themselves stream out with `COPY (SELECT ...) TO STDOUT` as CSV, which pyarrow
parses on all cores: ten million impressions carry only two ids, a flag and a
number each. The features are then built by `app.features.clicks.feature_matrix`, the
function the service calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from app.features.clicks import BoolArray, ObjectArray, Pairs

IntArray = npt.NDArray[np.int64]
Progress = Callable[[str], None]

IMPRESSIONS_SQL = """
SELECT i.user_id, i.stream_id, i.clicked,
       ST_Distance(s.location, u.location, false) / 1000.0 AS distance_km
FROM interactions i
JOIN users u USING (user_id)
JOIN streams s USING (stream_id)
"""
#: The same columns from what the service itself logged: each stream of an answer to a
#: signed-in user is an impression, clicked when a click event names that answer and
#: stream (migrations 0010 and 0011; app/events/).
LOGGED_IMPRESSIONS_SQL = """
SELECT x.user_id, shown.stream_id, (c.request_id IS NOT NULL) AS clicked,
       ST_Distance(s.location, u.location, false) / 1000.0 AS distance_km
FROM exposures x
CROSS JOIN LATERAL unnest(x.stream_ids) WITH ORDINALITY AS shown(stream_id, position)
JOIN users u ON u.user_id = x.user_id
JOIN streams s ON s.stream_id = shown.stream_id
LEFT JOIN (
    SELECT DISTINCT request_id, stream_id FROM events WHERE type = 'click'
) c ON c.request_id = x.request_id AND c.stream_id = shown.stream_id
"""
#: Where `python -m ml train --source` reads impressions: the imported log, or the service's.
SOURCES = ("interactions", "log")
_IMPRESSION_COLUMNS = ("user_id", "stream_id", "clicked", "distance_km")

USERS_SQL = """
SELECT user_id, city, language, preferred_categories,
       local_preference_strength, total_watch_hours
FROM users
"""
STREAMS_SQL = """
SELECT stream_id, city, language, category_id, stream_quality_score,
       avg_viewer_count, creator_followers, is_partnered, mature_content
FROM streams
"""


@dataclass(frozen=True)
class TrainingData:
    """The impressions as pairs, grouped by user (rows of one user are adjacent).

    Grouping keeps each user's repeated values next to each other in memory,
    which makes `feature_matrix` several times faster on millions of rows.
    """

    pairs: Pairs
    clicked: BoolArray
    user_ids: ObjectArray  # one per row, for the split by user
    stream_ids: ObjectArray  # one per row
    seconds: float

    def __len__(self) -> int:
        return len(self.clicked)


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def impressions_query(max_rows: int | None, source: str = "interactions") -> str:
    """The impression query of `source`, capped at its first `max_rows` impressions if given.

    `interactions` is the imported impression log, `log` the exposures and click
    events the service recorded itself (first by time, then by answer and position).
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    query, order = (
        (IMPRESSIONS_SQL, "i.interaction_id")
        if source == "interactions"
        else (LOGGED_IMPRESSIONS_SQL, "x.at, x.request_id, shown.position")
    )
    if max_rows is None:
        return query
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    # An int, checked above: safe to put into the text (COPY takes no parameters).
    return f"{query} ORDER BY {order} LIMIT {int(max_rows)}"


async def _copy_csv(conn: asyncpg.Connection, query: str) -> bytes:
    parts: list[bytes] = []

    async def collect(chunk: bytes) -> None:
        parts.append(chunk)

    await conn.copy_from_query(query, output=collect, format="csv")
    return b"".join(parts)


def parse_impressions(csv: bytes) -> pa.Table:
    """The COPY output as an Arrow table; ids come dictionary-encoded (few distinct)."""
    text_ids = pa.dictionary(pa.int32(), pa.string())
    return pacsv.read_csv(
        pa.BufferReader(csv),
        read_options=pacsv.ReadOptions(column_names=list(_IMPRESSION_COLUMNS)),
        convert_options=pacsv.ConvertOptions(
            column_types={
                "user_id": text_ids,
                "stream_id": text_ids,
                "clicked": pa.bool_(),
                "distance_km": pa.float64(),
            },
            true_values=["t"],
            false_values=["f"],
        ),
    )


def positions(column: pa.ChunkedArray, index: pd.Index) -> IntArray:
    """Row positions in `index` of every id in a dictionary-encoded column.

    Each chunk's dictionary (its distinct ids) is looked up once; the rows then
    only index into that small answer.
    """
    parts = []
    for chunk in column.chunks:
        lookup = index.get_indexer(chunk.dictionary.to_numpy(zero_copy_only=False))
        parts.append(lookup[chunk.indices.to_numpy(zero_copy_only=False)])
    found = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    if (found < 0).any():
        raise RuntimeError("an impression names a user or stream the tables do not hold")
    return found.astype(np.int64)


def _object(values: list[object]) -> ObjectArray:
    return np.fromiter(values, dtype=object, count=len(values))


def _interned_sets(lists: list[list[str]]) -> ObjectArray:
    """One frozenset per distinct list, shared by every user holding it (cheap to factorise)."""
    seen: dict[frozenset[str], frozenset[str]] = {}
    return _object([seen.setdefault(s, s) for s in map(frozenset, lists)])


async def load_training_data_async(
    url: str,
    *,
    max_rows: int | None = None,
    progress: Progress | None = None,
    source: str = "interactions",
) -> TrainingData:
    """Read users, streams and impressions (from `source`), and build the training pairs."""
    started = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        # Planner settings for one big read: let it hash-join in memory.
        await conn.execute("SET work_mem = '512MB'")
        users = await conn.fetch(USERS_SQL)
        streams = await conn.fetch(STREAMS_SQL)
        _say(progress, f"{len(users):,} users and {len(streams):,} streams read")
        step = time.perf_counter()
        csv = await _copy_csv(conn, impressions_query(max_rows, source))
        _say(
            progress,
            f"impressions copied: {len(csv) / 1e6:,.0f} MB of CSV"
            f" in {time.perf_counter() - step:.1f}s",
        )
    finally:
        await conn.close()

    step = time.perf_counter()
    table = parse_impressions(csv)
    del csv
    user_ids = _object([r["user_id"] for r in users])
    stream_ids = _object([r["stream_id"] for r in streams])
    user_pos = positions(table.column("user_id"), pd.Index(user_ids))
    stream_pos = positions(table.column("stream_id"), pd.Index(stream_ids))
    clicked = table.column("clicked").to_numpy().astype(bool)
    distance = table.column("distance_km").to_numpy().astype(np.float64)
    del table
    order = np.argsort(user_pos, kind="stable")
    user_pos, stream_pos = user_pos[order], stream_pos[order]
    clicked, distance = clicked[order], distance[order]

    preferred = _interned_sets([r["preferred_categories"] for r in users])

    def user_column(name: str) -> ObjectArray:
        return _object([r[name] for r in users])

    def stream_column(name: str) -> ObjectArray:
        return _object([r[name] for r in streams])

    def numbers(column: ObjectArray) -> npt.NDArray[np.float64]:
        return column.astype(np.float64)

    pairs = Pairs(
        distance_km=distance,
        user_city=user_column("city")[user_pos],
        user_language=user_column("language")[user_pos],
        user_preferred_categories=preferred[user_pos],
        user_local_preference=numbers(user_column("local_preference_strength"))[user_pos],
        user_total_watch_hours=numbers(user_column("total_watch_hours"))[user_pos],
        stream_city=stream_column("city")[stream_pos],
        stream_language=stream_column("language")[stream_pos],
        stream_category_id=stream_column("category_id")[stream_pos],
        stream_quality_score=numbers(stream_column("stream_quality_score"))[stream_pos],
        stream_avg_viewers=numbers(stream_column("avg_viewer_count"))[stream_pos],
        creator_followers=numbers(stream_column("creator_followers"))[stream_pos],
        is_partnered=stream_column("is_partnered").astype(bool)[stream_pos],
        mature_content=stream_column("mature_content").astype(bool)[stream_pos],
    )
    _say(
        progress,
        f"{len(clicked):,} impressions parsed and joined in {time.perf_counter() - step:.1f}s",
    )
    return TrainingData(
        pairs=pairs,
        clicked=clicked,
        user_ids=user_ids[user_pos],
        stream_ids=stream_ids[stream_pos],
        seconds=time.perf_counter() - started,
    )


def load_training_data(
    url: str,
    *,
    max_rows: int | None = None,
    progress: Progress | None = None,
    source: str = "interactions",
) -> TrainingData:
    """Synchronous wrapper of `load_training_data_async` for the command line and tests."""
    return asyncio.run(
        load_training_data_async(url, max_rows=max_rows, progress=progress, source=source)
    )
