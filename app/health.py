"""What `GET /` reports: is the service up, can it reach PostGIS, how much data.

Cheap enough to poll every second at a million rows: row counts are the
planner's estimates (`pg_class.reltuples`, refreshed by ANALYZE after each
load), except for small tables, which are counted exactly.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg

TABLES = ("users", "streams", "interactions")
EXACT_COUNT_MAX_PAGES = 1000  # below ~8 MB a count(*) costs well under a millisecond

SIZES_SQL = """
    SELECT c.relname AS name, c.reltuples AS estimate, c.relpages AS pages
    FROM pg_class c
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
      AND c.relname = ANY($1::text[])
"""


@dataclass(frozen=True)
class DatabaseHealth:
    """The database part of the health report."""

    postgis_version: str
    rows: dict[str, int]
    rows_estimated: bool


async def check_database(pool: asyncpg.Pool, timeout_s: float) -> DatabaseHealth:
    """Ask the database for its PostGIS version and table sizes, within `timeout_s`."""
    return await asyncio.wait_for(_query(pool, timeout_s), timeout=timeout_s)


async def _query(pool: asyncpg.Pool, timeout_s: float) -> DatabaseHealth:
    async with pool.acquire(timeout=timeout_s) as conn:
        version = await conn.fetchval("SELECT postgis_lib_version()")
        rows: dict[str, int] = {}
        estimated = False
        for size in await conn.fetch(SIZES_SQL, list(TABLES)):
            name = str(size["name"])
            if size["pages"] < EXACT_COUNT_MAX_PAGES:
                # `name` is one of TABLES (the query filters on them), never input.
                rows[name] = int(await conn.fetchval(f"SELECT count(*) FROM {name}"))
            else:
                rows[name] = max(int(size["estimate"]), 0)
                estimated = True
    missing = [table for table in TABLES if table not in rows]
    if missing:
        raise LookupError(f"tables missing: {', '.join(missing)} (run `alembic upgrade head`)")
    return DatabaseHealth(
        postgis_version=str(version),
        rows={table: rows[table] for table in TABLES},
        rows_estimated=estimated,
    )
