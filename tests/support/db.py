"""Database helpers for tests: the Alembic config, and synchronous SQL for set-up and checks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from alembic.config import Config

ROOT = Path(__file__).resolve().parent.parent.parent


def alembic_config(url: str) -> Config:
    """Alembic configured for `url`, as `alembic upgrade head` would be."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", url)
    return config


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def run_sql(url: str, sql: str) -> None:
    """Run one or more statements synchronously (test set-up and clean-up)."""
    asyncio.run(_execute(url, sql))


async def _fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """Fetch rows synchronously, for assertions."""
    return asyncio.run(_fetch(url, sql, *args))


#: The event and exposure logs' monthly partitions go with their rows: the next test
#: starts with none.
DROP_EVENT_MONTHS = """
DO $$
DECLARE part record;
BEGIN
    FOR part IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent IN ('events'::regclass, 'exposures'::regclass) LOOP
        EXECUTE format('DROP TABLE %I', part.relname);
    END LOOP;
END $$
"""
