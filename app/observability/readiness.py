"""Readiness: the database answers, and its schema is at the migrations' head.

Cheaper than the health report (`GET /`): one pooled connection and one
one-row query, so a load balancer can poll it every second.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from pathlib import Path

import asyncpg

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


class NotReady(Exception):
    """The database answers but cannot serve yet (not migrated, or behind the code)."""


@lru_cache(maxsize=1)
def schema_head() -> str | None:
    """The newest migration's revision, or None where the migrations are not shipped."""
    if not MIGRATIONS.is_dir():
        return None
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


async def check_ready(pool: asyncpg.Pool, timeout_s: float, head: str | None) -> None:
    """Return when the schema is at `head` (any version when None); raise why not."""
    await asyncio.wait_for(_check(pool, timeout_s, head), timeout=timeout_s)


async def _check(pool: asyncpg.Pool, timeout_s: float, head: str | None) -> None:
    async with pool.acquire(timeout=timeout_s) as conn:
        try:
            version = await conn.fetchval("SELECT version_num FROM alembic_version")
        except asyncpg.UndefinedTableError as exc:
            raise NotReady("the schema is not migrated (run `alembic upgrade head`)") from exc
    if version is None:
        raise NotReady("the schema is not migrated (run `alembic upgrade head`)")
    if head is not None and version != head:
        raise NotReady(f"the schema is at revision {version}, this code needs {head}")
