"""Recompute the feed's feature tables from the interaction log, in one transaction.

`feed_user_features` and `feed_stream_features` (migration 0008) hold counts,
not shares, with the definitions training uses (ml/feed/history.py):

- only watched interactions count (`watch_time_minutes > 0`);
- a viewer's local hour is the whole UTC hour of `impression_at` shifted by
  their `timezone_offset` and floored, `floor(utc_hour + offset + 48) % 24`;
- per viewer: watch minutes per category, watches per local hour, and minutes
  and watches per creator, creators ordered by minutes (most first, ties by id);
- per stream: distinct viewers who watched it (its popularity), watches per
  device in the order of `DEVICES` (other device names count for nothing) and
  watches per UTC hour.

Each table is rebuilt beside the live one (`<table>_next`, no index while it
fills) and swapped in by a DROP and a RENAME at the end of the same
transaction: readers keep reading the old facts during the aggregation and
wait only for the swap, where a TRUNCATE would lock them out for the whole
run. The transaction ends with `NOTIFY hometown_features, '<generation>'`
(delivered at commit, never for a rollback): serving processes key their cache
by that generation (app/feed/store.py), so no process serves facts from before
the refresh once it has heard it. The generation is the refresh's transaction
time in microseconds, also every row's `computed_at`, so a process that
(re)connects reads the same number back from the tables (`GENERATION_SQL`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from app.db.limits import DEVICES

#: Where refreshes are announced; the payload is the new generation.
CHANNEL = "hometown_features"
#: Advisory lock key (any constant shared by all refreshers): two refreshes queue.
_REFRESH_LOCK = 0x68_6F_6D_65_66_65_61_74  # "homefeat"

#: The watched rows once, with what every aggregate needs, in a temporary table
#: (no WAL, dropped at commit): each aggregate below then reads 16 bytes a row
#: instead of joining the whole log again.
WATCHED_SQL = """
CREATE TEMPORARY TABLE feed_watched ON COMMIT DROP AS
SELECT i.user_id, i.stream_id, s.creator_id, s.category_id,
       i.watch_time_minutes AS minutes,
       floor(extract(hour FROM i.impression_at AT TIME ZONE 'UTC')::float8
             + u.timezone_offset + 48)::int % 24 AS local_hour,
       extract(hour FROM i.impression_at AT TIME ZONE 'UTC')::int AS utc_hour,
       i.device_type
FROM interactions i
JOIN streams s ON s.stream_id = i.stream_id
JOIN users u ON u.user_id = i.user_id
WHERE i.watch_time_minutes > 0
"""


def _cells(column: str, values: Sequence[object], cast: str) -> str:
    """`ARRAY[sum(n) FILTER (WHERE column = v), ...]`, 0 where no row has v."""
    cells = ", ".join(f"coalesce(sum(n) FILTER (WHERE {column} = {v!r}), 0)" for v in values)
    return f"ARRAY[{cells}]::{cast}"


USERS_SQL = f"""
INSERT INTO feed_user_features_next
    (user_id, category_ids, category_minutes, hour_watches,
     creator_ids, creator_minutes, creator_watches, computed_at)
WITH hours AS (
    SELECT user_id, {_cells("local_hour", range(24), "float8[]")} AS hour_watches
    FROM (SELECT user_id, local_hour, count(*) AS n FROM feed_watched GROUP BY 1, 2) per_hour
    GROUP BY user_id
),
categories AS (
    SELECT user_id, array_agg(category_id ORDER BY category_id COLLATE "C") AS ids,
           array_agg(minutes ORDER BY category_id COLLATE "C") AS minutes
    FROM (
        SELECT user_id, category_id, sum(minutes) AS minutes
        FROM feed_watched GROUP BY 1, 2
    ) per_category
    GROUP BY user_id
),
creators AS (
    SELECT user_id,
           array_agg(creator_id ORDER BY minutes DESC, creator_id COLLATE "C") AS ids,
           array_agg(minutes ORDER BY minutes DESC, creator_id COLLATE "C") AS minutes,
           array_agg(watches ORDER BY minutes DESC, creator_id COLLATE "C") AS watches
    FROM (
        SELECT user_id, creator_id, sum(minutes) AS minutes, count(*)::float8 AS watches
        FROM feed_watched GROUP BY 1, 2
    ) per_creator
    GROUP BY user_id
)
SELECT h.user_id, c.ids, c.minutes, h.hour_watches, k.ids, k.minutes, k.watches, now()
FROM hours h JOIN categories c USING (user_id) JOIN creators k USING (user_id)
"""

STREAMS_SQL = f"""
INSERT INTO feed_stream_features_next
    (stream_id, viewers, device_watches, hour_watches, computed_at)
WITH viewers AS (
    SELECT stream_id, count(*)::int AS viewers
    FROM (SELECT DISTINCT stream_id, user_id FROM feed_watched) pairs
    GROUP BY stream_id
),
devices AS (
    SELECT stream_id, {_cells("device_type", DEVICES, "int[]")} AS device_watches
    FROM (SELECT stream_id, device_type, count(*) AS n FROM feed_watched GROUP BY 1, 2) d
    GROUP BY stream_id
),
hours AS (
    SELECT stream_id, {_cells("utc_hour", range(24), "int[]")} AS hour_watches
    FROM (SELECT stream_id, utc_hour, count(*) AS n FROM feed_watched GROUP BY 1, 2) h
    GROUP BY stream_id
)
SELECT stream_id, v.viewers, d.device_watches, h.hour_watches, now()
FROM viewers v JOIN devices d USING (stream_id) JOIN hours h USING (stream_id)
"""

#: The generation of the facts in the tables: their `computed_at` in microseconds
#: (every row of one refresh has the same), 0 when both tables are empty.
_MICROS = "floor(extract(epoch FROM {}) * 1000000)::bigint"
GENERATION_SQL = f"""
SELECT coalesce(
    (SELECT {_MICROS.format("computed_at")} FROM feed_user_features LIMIT 1),
    (SELECT {_MICROS.format("computed_at")} FROM feed_stream_features LIMIT 1),
    0)
"""
TABLES = ("feed_user_features", "feed_stream_features")


@dataclass(frozen=True)
class RefreshSummary:
    """What a refresh wrote, and how long it took."""

    users: int
    streams: int
    seconds: float
    generation: int

    def __str__(self) -> str:
        return (
            f"feature tables refreshed: {self.users:,} users, {self.streams:,} streams"
            f" in {self.seconds:.1f}s (generation {self.generation})"
        )


async def generation(conn: asyncpg.Connection) -> int:
    """The generation of the facts the tables hold now (see the module docstring)."""
    return int(await conn.fetchval(GENERATION_SQL))


async def refresh_features(conn: asyncpg.Connection) -> RefreshSummary:
    """Rebuild both feature tables from `interactions`, atomically, and announce it.

    `conn` must not be inside a transaction the caller may roll back.
    """
    started = time.perf_counter()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _REFRESH_LOCK)
        # Hash aggregates over millions of rows: keep them in memory.
        await conn.execute("SET LOCAL work_mem = '256MB'")
        for table in TABLES:
            await conn.execute(f"DROP TABLE IF EXISTS {table}_next")
            await conn.execute(
                f"CREATE TABLE {table}_next (LIKE {table} INCLUDING DEFAULTS"
                " INCLUDING CONSTRAINTS INCLUDING COMMENTS EXCLUDING INDEXES)"
            )
        await conn.execute(WATCHED_SQL)
        await conn.execute("ANALYZE feed_watched")
        users = _count(await conn.execute(USERS_SQL))
        streams = _count(await conn.execute(STREAMS_SQL))
        for table, key in zip(TABLES, ("user_id", "stream_id"), strict=True):
            comment = await conn.fetchval("SELECT obj_description($1::regclass, 'pg_class')", table)
            await conn.execute(
                f"ALTER TABLE {table}_next ADD CONSTRAINT {table}_next_pkey PRIMARY KEY ({key})"
            )
            # The swap: readers wait only from here to the commit.
            await conn.execute(f"DROP TABLE {table}")
            await conn.execute(f"ALTER TABLE {table}_next RENAME TO {table}")
            await conn.execute(
                f"ALTER TABLE {table} RENAME CONSTRAINT {table}_next_pkey TO {table}_pkey"
            )
            if comment:
                await conn.execute(f"COMMENT ON TABLE {table} IS {_literal(comment)}")
        stamp = int(await conn.fetchval(f"SELECT {_MICROS.format('now()')}"))
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(stamp))
    for table in TABLES:
        await conn.execute(f"ANALYZE {table}")
    return RefreshSummary(
        users=users, streams=streams, seconds=time.perf_counter() - started, generation=stamp
    )


def _count(status: str) -> int:
    """Rows from a command tag such as `INSERT 0 1234`."""
    return int(status.rsplit(" ", 1)[-1])


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
