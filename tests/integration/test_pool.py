"""The request path's sessions: settings that keep small queries small."""

from __future__ import annotations

import asyncio

from app.db.pool import create_pool
from app.settings import Settings

SETTINGS = ("jit", "max_parallel_workers_per_gather", "plan_cache_mode")


async def _sessions(url: str) -> tuple[dict[str, str], bool, bool]:
    async with create_pool(Settings(DATABASE_URL=url, DB_POOL_SIZE=1)) as pool:
        async with pool.acquire() as conn:
            shown = {name: await conn.fetchval(f"SHOW {name}") for name in SETTINGS}
            first = await conn.fetchval("SELECT pg_backend_pid()")
            await conn.execute("BEGIN")  # a request that failed mid-transaction
        async with pool.acquire() as conn:
            same = await conn.fetchval("SELECT pg_backend_pid()") == first
            return shown, same, conn.is_in_transaction()


def test_sessions_run_without_jit_parallel_workers_or_re_planning(migrated_url: str) -> None:
    shown, same_connection, in_transaction = asyncio.run(_sessions(migrated_url))
    assert shown == {
        "jit": "off",
        "max_parallel_workers_per_gather": "0",
        "plan_cache_mode": "force_generic_plan",
    }
    # Releasing skips the reset query but still rolls back what was left open.
    assert same_connection
    assert not in_transaction
