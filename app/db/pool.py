"""The asyncpg connection pool: created at start-up, closed at shutdown.

The request path talks to asyncpg directly rather than through SQLAlchemy: the
search runs a few small prepared statements per request, and asyncpg's
statement cache and binary protocol keep each one near the bare round trip.
(SQLAlchemy still describes the schema for Alembic.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from litestar import Litestar

from app.errors import DatabaseUnavailable
from app.settings import Settings

#: What a dead or unreachable database raises; each becomes a 503 with Retry-After.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query: the request path leaves no session state.

    By default every release runs `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`, one more round trip per request. The service takes no advisory
    locks, opens no cursors, listens to nothing and never runs SET, so that query
    would reset nothing. asyncpg still rolls back a transaction left open.
    """


def create_pool(settings: Settings) -> asyncpg.Pool:
    """A lazy pool (min size 0): the app starts even while the database is down.

    JIT and parallel query are off for these sessions: both cost milliseconds of
    set-up (compiling; starting worker processes) on queries that run in well under
    one. The planner underestimates how many rows a tier's radius holds and picked
    parallel plans for a `UNION ALL` of tiers that then took 20-35 ms instead of 0.5.

    Prepared statements always run their generic plan. Left to choose, PostgreSQL
    re-planned the first step of every request (its generic cost estimate looks
    worse than the custom one), which cost more of the backend's CPU than the
    query itself. Every statement on the request path has one sensible plan: the
    spatial and partial indexes are chosen by constants in the SQL, not by the
    parameters.
    """
    return asyncpg.create_pool(
        settings.database_url,
        min_size=0,
        max_size=settings.db_pool_size,
        timeout=settings.db_connect_timeout_s,
        reset=_keep_session,
        server_settings={
            "jit": "off",
            "max_parallel_workers_per_gather": "0",
            "plan_cache_mode": "force_generic_plan",
            "application_name": "hometown",
        },
    )


@asynccontextmanager
async def database(app: Litestar) -> AsyncIterator[None]:
    """Lifespan hook: the pool lives in `app.state.pool` for the app's lifetime."""
    pool = create_pool(app.state.settings)
    await pool  # with min_size=0 this opens no connection yet
    app.state.pool = pool
    try:
        yield
    finally:
        await pool.close()


@asynccontextmanager
async def connection(pool: asyncpg.Pool, timeout_s: float) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection; an unreachable database becomes `DatabaseUnavailable`."""
    try:
        async with pool.acquire(timeout=timeout_s) as conn:
            yield conn
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable(
            f"the database is unavailable: {type(exc).__name__}", retry_after_s=5
        ) from exc
