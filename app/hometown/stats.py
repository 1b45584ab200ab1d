"""`GET /v1/scenarios/hometown/stats`: what the scenario can draw on, computed in SQL.

One statement answers everything: one pass over streams groups them by city (all
streams, live streams, current viewers), and the totals and both top-10 lists are
aggregates over those groups. At a million streams that takes a noticeable fraction
of a second, so the answer is cached for a few seconds (`STATS_CACHE_SECONDS`) and
computed by one request at a time. With `REDIS_URL` the answer is shared through
Redis (app/hometown/stats_redis.py), so `WORKERS` processes and several hosts
compute it once per period between them, not once each.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

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


class SharedTotals(Protocol):
    """Where processes share the answer: None from `get` when absent or unreachable."""

    async def get(self) -> tuple[Totals, float] | None:
        """The shared totals and their age in seconds."""
        ...

    async def put(self, totals: Totals, ttl_s: float) -> None:
        """Share `totals` for `ttl_s` seconds (best effort)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


@dataclass
class StatsCache:
    """The last answer and when it was computed; one refresh at a time.

    With `shared`, a process whose own copy is stale first takes the shared one
    (aged as it is there, so no answer is older than the TTL), and computes only
    when there is none; what it computes it shares.
    """

    ttl_s: float
    value: Totals | None = None
    at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    shared: SharedTotals | None = None

    def _fresh(self) -> bool:
        return self.value is not None and time.monotonic() - self.at < self.ttl_s

    async def get(self, conn: asyncpg.Connection) -> Totals:
        """The cached totals, recomputed when older than the TTL."""
        if self._fresh():
            assert self.value is not None
            return self.value
        async with self.lock:
            if not self._fresh():
                shared = self.shared if self.ttl_s > 0 else None  # a TTL of 0: no caching
                hit = await shared.get() if shared is not None else None
                if hit is not None:
                    self.value, self.at = hit[0], time.monotonic() - hit[1]
                else:
                    self.value, self.at = await compute(conn), time.monotonic()
                    if shared is not None:
                        await shared.put(self.value, self.ttl_s)
            assert self.value is not None
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
