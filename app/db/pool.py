"""The asyncpg connection pool: created at start-up, closed at shutdown.

The request path talks to asyncpg directly rather than through SQLAlchemy: the
search runs a few small prepared statements per request, and asyncpg's
statement cache and binary protocol keep each one near the bare round trip.
(SQLAlchemy still describes the schema for Alembic.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from litestar import Litestar

from app.errors import DatabaseBusy, DatabaseTimeout, DatabaseUnavailable
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

#: What a connection the server killed mid-operation can raise instead of a clean
#: connection error: asyncpg's protocol is left half-way ("cannot switch to state 12;
#: another operation (2) is in progress", MagicStack/asyncpg#1069). Seen when the
#: database stops under load. Such a connection must never serve another request.
BROKEN_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    *CONNECTION_ERRORS,
    asyncpg.InternalClientError,
)

#: What a query that ran out of time raises: PostgreSQL's `statement_timeout` and
#: `lock_timeout` (both QueryCanceledError / LockNotAvailableError), a session killed
#: by `idle_in_transaction_session_timeout`, and asyncpg's own `command_timeout`
#: (TimeoutError), the backstop for a server that no longer answers at all.
QUERY_TIMEOUTS: tuple[type[BaseException], ...] = (
    asyncpg.QueryCanceledError,
    asyncpg.LockNotAvailableError,
    asyncpg.IdleInTransactionSessionTimeoutError,
    TimeoutError,
)

#: Seconds a client is told to wait: an outage takes a while to end, a busy pool not.
RETRY_AFTER_DOWN_S = 5
RETRY_AFTER_BUSY_S = 1
#: How much longer than `statement_timeout` asyncpg waits for an answer before it
#: gives up on its own: the server's timeout should always fire first.
CLIENT_TIMEOUT_MARGIN_S = 1.0


class Pool(asyncpg.Pool):  # type: ignore[misc]  # asyncpg ships no type hints
    """asyncpg's pool, plus how long a request may wait for one of its connections."""

    def __init__(self, *args: Any, acquire_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout_s = acquire_timeout_s


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query: the request path leaves no session state.

    By default every release runs `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`, one more round trip per request. The service takes no advisory
    locks, opens no cursors, listens to nothing and never runs SET, so that query
    would reset nothing. asyncpg still rolls back a transaction left open.
    """


def create_pool(settings: Settings) -> Pool:
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

    Every statement has a deadline, set once per session at connect time (so no
    request pays a round trip for it): `statement_timeout` from the settings;
    `lock_timeout` at half of it, so a wait behind a lock (a migration, a long
    write) fails naming the lock; `idle_in_transaction_session_timeout` at five
    times it, so a transaction a crashed handler left open cannot hold its locks
    for long. asyncpg's `command_timeout` is a client-side backstop a second later,
    for a server that stopped answering altogether.
    """
    statement_ms = settings.db_statement_timeout_ms
    return Pool(
        settings.database_url,
        acquire_timeout_s=settings.db_pool_acquire_timeout_s,
        min_size=0,
        max_size=settings.db_pool_size,
        max_queries=50_000,  # asyncpg's defaults, spelled out: Pool() has none
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        timeout=settings.db_connect_timeout_s,
        command_timeout=statement_ms / 1000 + CLIENT_TIMEOUT_MARGIN_S,
        reset=_keep_session,
        server_settings={
            "jit": "off",
            "max_parallel_workers_per_gather": "0",
            "plan_cache_mode": "force_generic_plan",
            "application_name": "hometown",
            "statement_timeout": str(statement_ms),
            "lock_timeout": str(max(statement_ms // 2, 1)),
            "idle_in_transaction_session_timeout": str(statement_ms * 5),
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
    """A pooled connection; every database fault becomes a 503 with Retry-After.

    Waiting for a connection is bounded by the pool's own `DB_POOL_ACQUIRE_TIMEOUT`
    (`timeout_s` for a plain asyncpg pool): when all are busy, requests queue that
    long, then get `DatabaseBusy`. A query past its deadline is `DatabaseTimeout`;
    a database that is down or went away mid-request is `DatabaseUnavailable`.
    Nothing here adds a round trip: acquire and release are what
    `async with pool.acquire()` does.
    """
    bound = pool.acquire_timeout_s if isinstance(pool, Pool) else timeout_s
    try:
        # asyncio.timeout, not acquire(timeout=): asyncpg bounds the wait with
        # wait_for, which starts a task and costs a loop turn on every acquire,
        # also when a connection is free (1-2% of a loaded server's CPU).
        async with asyncio.timeout(bound):
            conn = await pool.acquire()
    except TimeoutError as exc:
        raise DatabaseBusy(
            f"no database connection free within {bound:g}s", retry_after_s=RETRY_AFTER_BUSY_S
        ) from exc
    except CONNECTION_ERRORS as exc:
        raise _unavailable(exc) from exc
    try:
        try:
            yield conn
        except BROKEN_CONNECTION_ERRORS:
            # Closed for good, so the pool opens a fresh one instead of handing
            # out a connection whose state nobody knows (includes a client-side
            # timeout: a server that went silent is not trusted again either).
            conn.terminate()
            raise
        finally:
            await pool.release(conn, timeout=bound)
    except QUERY_TIMEOUTS as exc:
        raise DatabaseTimeout(
            f"the database query timed out: {type(exc).__name__}",
            retry_after_s=RETRY_AFTER_BUSY_S,
        ) from exc
    except BROKEN_CONNECTION_ERRORS as exc:
        raise _unavailable(exc) from exc


def _unavailable(exc: BaseException) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"the database is unavailable: {type(exc).__name__}", retry_after_s=RETRY_AFTER_DOWN_S
    )
