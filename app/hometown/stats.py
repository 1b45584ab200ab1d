"""`GET /v1/scenarios/hometown/stats`: what the scenario can draw on, computed in SQL.

One pass over streams answers the totals; at a million streams that takes a
noticeable fraction of a second, so the answer is cached for a few seconds
(`STATS_CACHE_SECONDS`) and computed by one request at a time.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import asyncpg

TOTALS_SQL = """
SELECT (SELECT count(*) FROM users) AS users,
       count(*) AS streams,
       count(*) FILTER (WHERE is_live) AS live_streams,
       count(DISTINCT city) AS cities,
       count(DISTINCT city) FILTER (WHERE is_live) AS live_cities
FROM streams
"""
TOP_CITIES_SQL = """
SELECT city, count(*) AS live_streams, sum(current_viewer_count) AS viewers
FROM streams WHERE is_live
GROUP BY city ORDER BY live_streams DESC, city LIMIT 10
"""


@dataclass(frozen=True)
class CityCount:
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
    top_cities: list[CityCount]


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
    """Count users, streams, live streams and cities; the top 10 cities by live streams."""
    totals = await conn.fetchrow(TOTALS_SQL)
    cities = await conn.fetch(TOP_CITIES_SQL)
    return Totals(
        users=totals["users"],
        streams=totals["streams"],
        live_streams=totals["live_streams"],
        cities=totals["cities"],
        live_cities=totals["live_cities"],
        top_cities=[
            CityCount(r["city"], r["live_streams"], int(r["viewers"] or 0)) for r in cities
        ],
    )
