"""The database engine: created once at start-up, disposed at shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.settings import Settings


def build_engine(settings: Settings) -> AsyncEngine:
    """An asyncpg-backed engine whose connects fail fast when the database is down.

    `pool_pre_ping` replaces connections the server dropped (a restart), so the
    service recovers by itself once the database is back.
    """
    return create_async_engine(
        settings.sqlalchemy_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
        pool_timeout=settings.db_connect_timeout_s,
        connect_args={"timeout": settings.db_connect_timeout_s},
    )


@asynccontextmanager
async def database(app: Litestar) -> AsyncIterator[None]:
    """Lifespan hook: put the engine in `app.state.engine` for the app's lifetime."""
    engine = build_engine(app.state.settings)
    app.state.engine = engine
    try:
        yield
    finally:
        await engine.dispose()
