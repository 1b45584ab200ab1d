"""A request's first statement: who is asking, the nearest streams, the best tiers.

Most HOMETOWN requests are settled by what this one statement reads, so it does
in the database what would otherwise take three round trips and send ~140 rows:

- it looks the viewer up (a stored user by id, or the signed-out viewer's
  stated location and defaults) and returns them as one `viewer` record;
- it reads the `$8` nearest qualifying live streams and the ring's streams in
  the best `FIRST_TIERS` static-score tiers (each through its partial index);
- it scores what it read with the same formula as app/hometown/scoring.py and
  sends back only the rows whose score, with the ML term at its largest, could
  still reach the k-th best among them; the viewer's row also says how many
  nearest-first rows were read (`nearest_seen`) and the farthest one's distance.

A row left out scores below k rows already read, so it can never make the top
k (the same argument as `Floor`), and the search's bounds still come from what
was read: the farthest nearest-first distance and the last tier's floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from app.hometown.candidates import (
    KNN_ROUNDING_ERROR,
    Filters,
    Ring,
    columns_sql,
    filters_sql,
    ring_arguments,
    tier_sql,
)
from app.hometown.scoring import Viewer
from app.hometown.tiers import TIERS, Tier
from app.hometown.weights import Weights

#: Tiers the first statement reads. After the nearest 64 and the best tier alone
#: nearly every request at 1M streams needed a second statement for the next two;
#: reading three at once settles most of them here (BENCHMARKS.md, issue 15).
FIRST_TIERS = 3
#: Slack on the k-th best, the same as the search's (far above float rounding).
SLACK = 1e-9

_HERE = "here.location"
_NAMES = (
    "stream_id, city, title, language, category_id, stream_quality_score,"
    " avg_viewer_count, current_viewer_count, distance_m"
)
# The viewer: a stored user by `$9`, or (when `$9` is NULL) the one the request
# describes: `$1` longitude, `$2` latitude, `$10` language, `$11` categories,
# `$12` local preference strength.
_VIEWER = """
    SELECT user_id, latitude, longitude, language, preferred_categories,
           local_preference_strength, city, total_watch_hours, location
    FROM users WHERE user_id = $9::text
    UNION ALL
    SELECT NULL, $2::float8, $1::float8, $10::text, $11::text[], $12::float8, NULL, 0.0,
           ST_SetSRID(ST_MakePoint($1::float8, $2::float8), 4326)::geography
    WHERE $9::text IS NULL
"""


def _base(row: str) -> str:
    """The base terms of scoring.score times `base_weight`, for columns prefixed `row`."""
    return f"""
    $15::float8 * (
        $16::float8 * {row}stream_quality_score
        + LEAST({row}avg_viewer_count / $17::float8, $18::float8)
        + CASE WHEN {row}language = NULLIF(here.language, '') THEN $19::float8 ELSE 0.0 END
        + CASE WHEN {row}category_id = ANY(here.preferred_categories) THEN $20::float8 ELSE 0.0 END
    )
"""


def _proximity(distance_m: str) -> str:
    """The proximity term of scoring.score at `distance_m` (weight `$14`)."""
    return f"$14::float8 * (1.0 + here.local_preference_strength) / (1.0 + {distance_m} / 1000.0)"


def _score(row: str) -> str:
    """scoring.score without the ML term, weights `$14`..`$20`, for `row` and the viewer."""
    return f"{_proximity(f'{row}.distance_m')} + {_base(f'{row}.')}"


#: The most a row of a later tier could score, from its own columns alone: its base
#: terms, the proximity of the farthest nearest-first row (a tier row nearer than
#: that was read nearest-first) and the ML room. Cheap next to the distance, so
#: PostgreSQL tests it first and skips the geography maths for rows it rules out.
_CEILING = f"""
    {_base("")} + {_proximity("COALESCE((SELECT m FROM farthest), 0.0)")} + $21::float8
"""
# Each stream once: a tier row nearer than the farthest nearest-first row was
# read nearest-first too; one just as far may have been.
_ONCE = """
    WHERE farthest.m IS NULL OR t.distance_m > farthest.m OR (
        t.distance_m = farthest.m
        AND NOT EXISTS (SELECT FROM nearest WHERE nearest.stream_id = t.stream_id)
    )
"""


def _kth(rows: str) -> str:
    """The k-th best `lower` among `rows` inside the ring (no row while fewer than k)."""
    return f"""
    SELECT lower FROM {rows} WHERE distance_m <= $3::float8
    ORDER BY lower DESC OFFSET $13 - 1 LIMIT 1
"""


def first_step_sql(tiers: Sequence[Tier]) -> str:
    """The statement; `$3` outer radius, `$8` nearest rows, `$13` k, `$21` ML room.

    The best tier is read whole; the k-th best of it and the nearest rows then
    rules rows of the later tiers out before their distance is computed (at 1M
    live streams a city's later tiers hold ~260 rows, most of them out of reach).
    """
    first, *later = tiers
    ruled = f"AND {_CEILING} >= COALESCE((SELECT lower FROM kth_best), '-infinity') - {SLACK!r}"
    later_parts = "\nUNION ALL\n".join(tier_sql(tier, _HERE, ruled) for tier in later)
    later_rows = (
        f"""UNION ALL
    SELECT t.*, {_score("t")} FROM here CROSS JOIN LATERAL ({later_parts}) t, farthest
    {_ONCE}"""
        if later
        else ""
    )
    return f"""
WITH viewer AS ({_VIEWER}),
here AS (SELECT location, language, preferred_categories, local_preference_strength FROM viewer),
nearest AS (
    SELECT s.*, {_score("s")} AS lower FROM here CROSS JOIN LATERAL (
        SELECT {columns_sql(0, _HERE)} FROM streams
        WHERE is_live {filters_sql(_HERE)}
        ORDER BY location <-> {_HERE} LIMIT $8
    ) s
),
farthest AS (SELECT max(distance_m) AS m FROM nearest),
best AS (
    SELECT * FROM nearest
    UNION ALL
    SELECT t.*, {_score("t")} FROM here CROSS JOIN LATERAL ({tier_sql(first, _HERE)}) t, farthest
    {_ONCE}
),
kth_best AS ({_kth("best")}),
read AS (
    SELECT * FROM best
    {later_rows}
),
kth AS ({_kth("read")})
SELECT {_NAMES}, part, NULL::bigint AS nearest_seen, NULL::record AS viewer
FROM read
WHERE NOT EXISTS (SELECT FROM kth)
   OR read.lower + $21::float8 >= (SELECT lower FROM kth) - {SLACK!r}
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       (SELECT m FROM farthest), 2, (SELECT count(*) FROM nearest),
       ROW(user_id, latitude, longitude, language, preferred_categories,
           local_preference_strength, city, total_watch_hours)
FROM viewer
"""


FIRST_STEP_SQL = first_step_sql(TIERS[:FIRST_TIERS])


@dataclass(frozen=True)
class FirstStep:
    """What the first statement found.

    `viewer` is the viewer's row in `USER_SQL`'s columns (None for an unknown
    user id; a described viewer comes back as described). `seen` nearest-first rows
    were read, the farthest at `farthest_m` (None when none was); `nearest` and
    `tiered` are the rows sent back.
    """

    viewer: tuple[object, ...] | None
    nearest: list[asyncpg.Record]
    tiered: list[asyncpg.Record]
    seen: int
    farthest_m: float | None


def arguments(
    *,
    who: str | Viewer,
    ring: Ring,
    filters: Filters,
    limit: int,
    k: int,
    weights: Weights,
    ml_room: float,
) -> tuple[object, ...]:
    """`$1`..`$21` for a stored user's id or a viewer already known."""
    if isinstance(who, str):
        where = ring_arguments(None, None, ring, filters)
        viewer: tuple[object, ...] = (who, None, None, None)
    else:
        where = ring_arguments(who.longitude, who.latitude, ring, filters)
        viewer = (
            None,
            who.language,
            sorted(who.preferred_categories),
            who.local_preference_strength,
        )
    return (
        *where,
        limit,
        *viewer,
        k,
        weights.proximity_weight,
        weights.base_weight,
        weights.quality_weight,
        weights.popularity_divisor,
        weights.popularity_cap,
        weights.language_bonus,
        weights.category_bonus,
        ml_room,
    )


async def fetch_first_step(
    conn: asyncpg.Connection,
    *,
    who: str | Viewer,
    ring: Ring,
    filters: Filters,
    limit: int,
    k: int,
    weights: Weights,
    ml_room: float,
) -> FirstStep | None:
    """Run the first statement; None where PostGIS's KNN fails (see KNN_ROUNDING_ERROR).

    The caller then takes the long way: the user lookup and the plain reads.
    """
    args = arguments(
        who=who, ring=ring, filters=filters, limit=limit, k=k, weights=weights, ml_room=ml_room
    )
    try:
        records = await conn.fetch(FIRST_STEP_SQL, *args)
    except asyncpg.InternalServerError as exc:
        if KNN_ROUNDING_ERROR not in str(exc):
            raise
        return None
    nearest: list[asyncpg.Record] = []
    tiered: list[asyncpg.Record] = []
    viewer = None
    seen = 0
    farthest_m = None
    for record in records:
        part = record["part"]
        if part == 0:
            nearest.append(record)
        elif part == 1:
            tiered.append(record)
        else:  # the viewer, and what the nearest-first read saw
            viewer, seen, farthest_m = (
                record["viewer"],
                record["nearest_seen"],
                record["distance_m"],
            )
    return FirstStep(viewer, nearest, tiered, seen, farthest_m)
