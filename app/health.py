"""What `GET /` reports: is the service up, can it reach PostGIS, how much data.

Cheap enough to poll every second at a million rows: row counts are the
planner's estimates (`pg_class.reltuples`, refreshed by ANALYZE after each
load), except for small tables, which are counted exactly.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

TABLES = ("users", "streams", "interactions")
EXACT_COUNT_MAX_PAGES = 1000  # below ~8 MB a count(*) costs well under a millisecond

SIZES_SQL = text(
    """
    SELECT c.relname AS name, c.reltuples AS estimate, c.relpages AS pages
    FROM pg_class c
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
      AND c.relname IN ('users', 'streams', 'interactions')
    """
)


@dataclass(frozen=True)
class DatabaseHealth:
    """The database part of the health report."""

    postgis_version: str
    rows: dict[str, int]
    rows_estimated: bool


async def check_database(engine: AsyncEngine, timeout_s: float) -> DatabaseHealth:
    """Ask the database for its PostGIS version and table sizes, within `timeout_s`."""
    return await asyncio.wait_for(_query(engine), timeout=timeout_s)


async def _query(engine: AsyncEngine) -> DatabaseHealth:
    async with engine.connect() as conn:
        version = await conn.scalar(text("SELECT postgis_lib_version()"))
        sizes = (await conn.execute(SIZES_SQL)).mappings().all()
        rows: dict[str, int] = {}
        estimated = False
        for size in sizes:
            name = str(size["name"])
            if size["pages"] < EXACT_COUNT_MAX_PAGES:
                # Table names come from the fixed TABLES list above, never from input.
                rows[name] = int(await conn.scalar(text(f"SELECT count(*) FROM {name}")) or 0)
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
