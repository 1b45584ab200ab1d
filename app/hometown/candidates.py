"""All geo SQL of the HOMETOWN search: the two sorted accesses over live streams.

Distance model: the sphere, everywhere. The KNN operator `<->` on geography
measures on the sphere (radius 6,371,008.77 m), so filtering
(`ST_DWithin(..., false)`), ordering (`<->`) and the reported distance
(`ST_Distance(..., false)`) use it too, and a stream is inside a radius exactly
when its reported distance says so. The spheroid would differ by up to 0.5%.

A ring is `inner < distance <= outer` (ring 0 has no inner edge, so a stream at
distance 0 belongs to it).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import numpy as np

from app.hometown.scoring import Candidates, Viewer
from app.hometown.tiers import Tier
from app.hometown.weights import Weights

#: Half the sphere's circumference: no two points are farther apart.
EARTH_RADIUS_M = 6_371_008.771415
HALF_CIRCUMFERENCE_M = np.pi * EARTH_RADIUS_M

_POINT = "ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography"


def columns_sql(part: int, point: str = _POINT) -> str:
    """The candidate columns, and `part`: which access produced the row.

    0 is nearest-first, 1 a tier; the first step sends both in one round trip.
    `point` is the viewer's location (the request's `$1`, `$2` unless given).
    """
    return f"""
    stream_id, city, title, language, category_id, stream_quality_score,
    avg_viewer_count, current_viewer_count, ST_Distance(location, {point}, false) AS distance_m,
    {part} AS part
"""


def filters_sql(point: str = _POINT) -> str:
    """$4 inner radius (< 0: none), $5 languages, $6 categories, $7 mature ok."""
    return f"""
    AND ($4::float8 < 0 OR NOT ST_DWithin(location, {point}, $4::float8, false))
    AND ($5::text[] IS NULL OR language = ANY($5::text[]))
    AND ($6::text[] IS NULL OR category_id = ANY($6::text[]))
    AND ($7 OR NOT mature_content)
"""


#: The filters at the request's point (`$3`, where a query has it, is the outer radius).
_FILTERS = filters_sql()

#: Nearest-first: the `$8` nearest qualifying live streams beyond the inner edge.
#: Deliberately without an outer `ST_DWithin`: the planner underestimates how many
#: streams a dense city's radius holds, and with that filter it chose to read them
#: all and sort (180 ms at 1M live streams) over the KNN walk that stops after
#: `$8` rows (under 1 ms). The caller drops rows beyond the outer edge; `$3` is
#: unused here, so both queries take the same arguments.
NEAREST_SQL = f"""
SELECT {columns_sql(0)}
FROM streams
WHERE is_live AND $3::float8 IS NOT NULL {_FILTERS}
ORDER BY location <-> {_POINT}
LIMIT $8
"""


#: The same rows without the KNN index, for the rare point where it fails (see below).
NEAREST_FALLBACK_SQL = f"""
SELECT {columns_sql(0)}
FROM streams
WHERE is_live AND ST_DWithin(location, {_POINT}, $3, false) {_FILTERS}
ORDER BY ST_Distance(location, {_POINT}, false)
LIMIT $8
"""
#: PostGIS 3.3's geography KNN can compute an index distance a rounding error
#: above the exact one for points that coincide across the antimeridian or at a
#: pole (lon -180 against 180); PostgreSQL then aborts the ordered scan with this.
KNN_ROUNDING_ERROR = "index returned tuples in wrong order"


def tier_sql(tier: Tier, point: str = _POINT, condition: str = "") -> str:
    """All live streams of a ring in one static-score tier (its partial index serves it).

    `condition` (SQL starting with AND) is one more that rows must meet.
    """
    return (
        f"SELECT {columns_sql(1, point)} FROM streams WHERE {tier.predicate}"
        f" AND ST_DWithin(location, {point}, $3, false) {filters_sql(point)} {condition}"
    )


#: The seed score of a row, plus room for the ML term, from `Floor`'s parameters
#: `$9`..`$18`: the same terms as app/hometown/scoring.py's `score`, so a row
#: below `$8` here scores below it there (a test holds the two together).
_SCORE_CEILING = """
    $9::float8 / (1.0 + distance_m / 1000.0)
    + $10::float8 * (
        $11::float8 * stream_quality_score
        + LEAST(avg_viewer_count / $12::float8, $13::float8)
        + CASE WHEN language = $14::text THEN $15::float8 ELSE 0.0 END
        + CASE WHEN category_id = ANY($16::text[]) THEN $17::float8 ELSE 0.0 END
    )
    + $18::float8
"""


@functools.lru_cache(maxsize=256)
def tiers_sql(tiers: tuple[Tier, ...]) -> str:
    """Several tiers in one round trip, only their rows that could still make the list.

    Each part still uses its own partial index; what they find is then kept only
    if its score could reach the floor (`$8`).
    """
    parts = "\nUNION ALL\n".join(tier_sql(tier) for tier in tiers)
    return f"SELECT * FROM (\n{parts}\n) tier WHERE {_SCORE_CEILING} >= $8::float8"


def _qualifying(filters: Filters, first: int) -> tuple[str, list[object]]:
    """The filters as SQL with parameters numbered from `first`, and their values.

    Only the filters that are set appear, so each combination is its own prepared
    statement and the planner sees plain `= ANY($n)` conditions, which the partial
    btree indexes of migration 0004 serve (an `$n IS NULL OR ...` would hide them).
    """
    args: list[object] = [filters.include_mature]
    parts = ["is_live", f"(${first} OR NOT mature_content)"]
    if filters.languages is not None:
        args.append(list(filters.languages))
        parts.append(f"language = ANY(${first + len(args) - 1}::text[])")
    if filters.category_ids is not None:
        args.append(list(filters.category_ids))
        parts.append(f"category_id = ANY(${first + len(args) - 1}::text[])")
    return " AND ".join(parts), args


async def count_qualifying(conn: asyncpg.Connection, filters: Filters, at_most: int) -> int:
    """How many live streams pass the filters, counting no further than `at_most`."""
    condition, args = _qualifying(filters, 1)
    sql = f"SELECT count(*) FROM (SELECT 1 FROM streams WHERE {condition} LIMIT ${len(args) + 1}) q"
    return int(await conn.fetchval(sql, *args, at_most))


async def fetch_qualifying(
    conn: asyncpg.Connection, *, longitude: float, latitude: float, filters: Filters
) -> list[asyncpg.Record]:
    """Every live stream that passes the filters, with its distance (for small sets)."""
    condition, args = _qualifying(filters, 3)
    sql = f"SELECT {columns_sql(1)} FROM streams WHERE {condition}"
    return list(await conn.fetch(sql, longitude, latitude, *args))


USER_SQL = """
SELECT user_id, latitude, longitude, language, preferred_categories, local_preference_strength,
       city, total_watch_hours
FROM users WHERE user_id = $1
"""


@dataclass(frozen=True)
class Filters:
    """Which live streams qualify; None means no restriction."""

    languages: Sequence[str] | None = None
    category_ids: Sequence[str] | None = None
    include_mature: bool = True


@dataclass(frozen=True)
class Floor:
    """What a tier read may leave out: rows whose score cannot reach `kth`.

    `kth` is the k-th best score the search holds (without the ML term), and
    `ml_room` the most the ML term could add; `_SCORE_CEILING` is the viewer's
    score under `weights`.
    """

    kth: float
    viewer: Viewer
    weights: Weights
    ml_room: float = 0.0

    def arguments(self) -> tuple[object, ...]:
        """The values of `$8`..`$18`, in order."""
        w, viewer = self.weights, self.viewer
        return (
            self.kth,
            w.proximity_weight * (1.0 + viewer.local_preference_strength),
            w.base_weight,
            w.quality_weight,
            w.popularity_divisor,
            w.popularity_cap,
            viewer.language,
            w.language_bonus,
            sorted(viewer.preferred_categories),
            w.category_bonus,
            self.ml_room,
        )


#: `Floor.arguments()` for no floor: every row of the tiers read.
_NO_FLOOR: tuple[object, ...] = (-math.inf, 0.0, 0.0, 0.0, 1.0, 0.0, None, 0.0, [], 0.0, 0.0)


@dataclass(frozen=True)
class Ring:
    """A distance band in metres: `inner < d <= outer` (inner < 0: from the viewer)."""

    inner_m: float
    outer_m: float


@dataclass
class Rows:
    """Candidate rows as read, with the display columns kept beside the scored ones."""

    candidates: Candidates
    city: np.ndarray
    title: np.ndarray
    current_viewers: np.ndarray

    def part(self, start: int, stop: int) -> Rows:
        """Rows `start` to `stop` (views, not copies): one ring's share of a request's rows."""
        c = self.candidates
        return Rows(
            candidates=Candidates(
                stream_id=c.stream_id[start:stop],
                distance_m=c.distance_m[start:stop],
                quality=c.quality[start:stop],
                avg_viewers=c.avg_viewers[start:stop],
                language=c.language[start:stop],
                category_id=c.category_id[start:stop],
            ),
            city=self.city[start:stop],
            title=self.title[start:stop],
            current_viewers=self.current_viewers[start:stop],
        )


def to_rows(records: Sequence[asyncpg.Record]) -> Rows:
    """Turn fetched records into parallel arrays (one pass, then numpy from there on)."""
    # The first nine columns: `part` and what the first statement adds only route
    # rows, and records from different statements differ in how many they carry
    # (zip stops at the shortest, which still has the nine).
    columns = list(zip(*records))[:9] if records else [()] * 9  # noqa: B905
    (ids, city, title, language, category, quality, viewers, current, distance) = columns
    return Rows(
        candidates=Candidates(
            stream_id=np.array(ids, dtype=object),
            distance_m=np.array(distance, dtype=np.float64),
            quality=np.array(quality, dtype=np.float64),
            avg_viewers=np.array(viewers, dtype=np.float64),
            language=np.array(language, dtype=object),
            category_id=np.array(category, dtype=object),
        ),
        city=np.array(city, dtype=object),
        title=np.array(title, dtype=object),
        current_viewers=np.array(current, dtype=np.int64),
    )


def ring_arguments(
    longitude: float | None, latitude: float | None, ring: Ring, filters: Filters
) -> tuple[object, ...]:
    """`$1`..`$7` of every search read: where, which ring, which streams qualify.

    The first statement passes no location for a stored user (it reads theirs).
    """
    return (
        longitude,
        latitude,
        ring.outer_m,
        ring.inner_m,
        list(filters.languages) if filters.languages is not None else None,
        list(filters.category_ids) if filters.category_ids is not None else None,
        filters.include_mature,
    )


async def fetch_nearest(
    conn: asyncpg.Connection,
    *,
    longitude: float,
    latitude: float,
    ring: Ring,
    filters: Filters,
    limit: int,
) -> list[asyncpg.Record]:
    """The `limit` nearest qualifying live streams beyond the ring's inner edge.

    Rows past the outer edge come back too (see NEAREST_SQL); the caller drops them
    and knows from the first one that the ring is exhausted.
    """
    args = ring_arguments(longitude, latitude, ring, filters)
    try:
        return list(await conn.fetch(NEAREST_SQL, *args, limit))
    except asyncpg.InternalServerError as exc:
        if KNN_ROUNDING_ERROR not in str(exc):
            raise
    # Read the ring (not beyond it) through the plain spatial index and sort: the
    # caller's contract holds, since fewer than `limit` rows still means exhausted.
    return list(await conn.fetch(NEAREST_FALLBACK_SQL, *args, limit))


async def fetch_tiers(
    conn: asyncpg.Connection,
    *,
    longitude: float,
    latitude: float,
    ring: Ring,
    filters: Filters,
    tiers: Sequence[Tier],
    floor: Floor | None = None,
) -> list[asyncpg.Record]:
    """The qualifying live streams of `ring` in `tiers` whose score could reach `floor`."""
    args = ring_arguments(longitude, latitude, ring, filters)
    bound = _NO_FLOOR if floor is None else floor.arguments()
    return list(await conn.fetch(tiers_sql(tuple(tiers)), *args, *bound))
