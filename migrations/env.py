"""Alembic environment: async engine over asyncpg, geoalchemy2-aware autogenerate.

The URL comes from `sqlalchemy.url` when a caller set it (the tests do), else from
the app's settings (`DATABASE_URL`). geoalchemy2's helpers keep autogenerate from
emitting spatial indexes twice and render Geography types correctly.
"""

from __future__ import annotations

import asyncio

from alembic import context
from geoalchemy2 import alembic_helpers
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.models import Base
from app.settings import load_settings, normalise_database_url

config = context.config
target_metadata = Base.metadata


def database_url() -> str:
    explicit = config.get_main_option("sqlalchemy.url")
    url = normalise_database_url(explicit) if explicit else load_settings().database_url
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    # PostGIS's own tables (spatial_ref_sys, topology...) are not ours to manage.
    if type_ == "table" and reflected and compare_to is None:
        return False
    return alembic_helpers.include_object(obj, name, type_, reflected, compare_to)


def configure(connection: Connection | None = None, **kwargs: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        process_revision_directives=alembic_helpers.writer,
        render_item=alembic_helpers.render_item,
        compare_type=True,
        **kwargs,  # type: ignore[arg-type]
    )


def run_offline() -> None:
    configure(url=database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    engine = create_async_engine(database_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run_sync)
    await engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    asyncio.run(run_online())
