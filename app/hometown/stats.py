"""`GET /v1/scenarios/hometown/stats`: what the scenario can draw on, computed in SQL.

One statement answers everything: one pass over streams groups them by city (all
streams, live streams, current viewers), and the totals and both top-10 lists are
aggregates over those groups. At a million streams that takes a noticeable fraction
of a second, so the answer is cached for a few seconds (`STATS_CACHE_SECONDS`) and
computed by one request at a time.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import asyncpg

#: How many cities each top list holds.
TOP_CITIES = 10

STATS_SQL = f"""
WITH per_city AS (
    SELECT city,
           count(*) AS streams,
           count(*) FILTER (WHERE is_live) AS live_streams,
           coalesce(sum(current_viewer_count) FILTER (WHERE is_live), 0)::int8 AS viewers
    FROM streams
    GROUP BY city
)
SELECT (SELECT count(*) FROM users) AS users,
       coalesce(sum(streams), 0)::int8 AS streams,
       coalesce(sum(live_streams), 0)::int8 AS live_streams,
       count(*) AS cities,
       count(*) FILTER (WHERE live_streams > 0) AS live_cities,
       (array_agg(city ORDER BY streams DESC, city))[1:{TOP_CITIES}] AS top_cities,
       (array_agg(streams ORDER BY streams DESC, city))[1:{TOP_CITIES}] AS top_streams,
       (array_agg(city ORDER BY live_streams DESC, city)
            FILTER (WHERE live_streams > 0))[1:{TOP_CITIES}] AS top_live_cities,
       (array_agg(live_streams ORDER BY live_streams DESC, city)
            FILTER (WHERE live_streams > 0))[1:{TOP_CITIES}] AS top_live_streams,
       (array_agg(viewers ORDER BY live_streams DESC, city)
            FILTER (WHERE live_streams > 0))[1:{TOP_CITIES}] AS top_live_viewers
FROM per_city
"""


@dataclass(frozen=True)
class LiveCity:
    """Live streams (and their current viewers) in one city."""

    city: str
    live_streams: int
    viewers: int


@dataclass(frozen=True)
class Totals:
    """The dataset as the scenario sees it."""

    users: int
    streams: int
    live_streams: int
    cities: int
    live_cities: int
    #: All streams (live or not) per city: the 10 largest, by count desc then city.
    top_cities: dict[str, int]
    #: The 10 cities with the most live streams, by count desc then city.
    top_live_cities: list[LiveCity]


@dataclass
class StatsCache:
    """The last answer and when it was computed; one refresh at a time."""

    ttl_s: float
    value: Totals | None = None
    at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def get(self, conn: asyncpg.Connection) -> Totals:
        """The cached totals, recomputed when older than the TTL."""
        if self.value is not None and time.monotonic() - self.at < self.ttl_s:
            return self.value
        async with self.lock:
            if self.value is None or time.monotonic() - self.at >= self.ttl_s:
                self.value = await compute(conn)
                self.at = time.monotonic()
            return self.value


async def compute(conn: asyncpg.Connection) -> Totals:
    """Count users, streams, live streams and cities; the two top-10 city lists."""
    row = await conn.fetchrow(STATS_SQL)
    live = zip(
        row["top_live_cities"] or (),
        row["top_live_streams"] or (),
        row["top_live_viewers"] or (),
        strict=True,
    )
    return Totals(
        users=row["users"],
        streams=row["streams"],
        live_streams=row["live_streams"],
        cities=row["cities"],
        live_cities=row["live_cities"],
        top_cities=dict(zip(row["top_cities"] or (), row["top_streams"] or (), strict=True)),
        top_live_cities=[LiveCity(city, n, viewers) for city, n, viewers in live],
    )
