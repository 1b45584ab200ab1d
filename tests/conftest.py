"""A real PostGIS for the whole test session, migrated with Alembic.

Where it comes from, in order: `TEST_DATABASE_URL` (an existing server whose
database the tests may empty), a `postgis/postgis` container through
testcontainers when a Docker engine answers, or a throwaway local cluster
started from the machine's PostgreSQL + PostGIS in a temporary directory.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from alembic.config import Config

from app.settings import normalise_database_url
from tools.cluster import LocalCluster, docker_engine_answers, free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
POSTGIS_IMAGE = "postgis/postgis:15-3.4"  # the image docker-compose.yml uses too


def _container_url() -> Iterator[str]:
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer(
        POSTGIS_IMAGE, username="hometown", password="hometown", dbname="hometown", driver=None
    ) as container:
        yield normalise_database_url(container.get_connection_url())


def _local_cluster_url() -> Iterator[str]:
    root = Path(tempfile.mkdtemp(prefix="hometown-pg-"))
    os.chmod(root, 0o755)
    cluster = LocalCluster(root, port=free_port(), fsync=False)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """URL of an empty-able PostGIS database for this session."""
    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        url = normalise_database_url(explicit)
        wait_for(url, timeout_s=30)
        yield url
    elif docker_engine_answers():
        yield from _container_url()
    else:
        yield from _local_cluster_url()


def alembic_config(url: str) -> Config:
    """Alembic configured for `url`, as `alembic upgrade head` would be."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", url)
    return config


@pytest.fixture(scope="session")
def migrated_url(database_url: str) -> str:
    """The test database at the newest migration (runs the real migrations)."""
    command.upgrade(alembic_config(database_url), "head")
    return database_url


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def run_sql(url: str, sql: str) -> None:
    """Run one or more statements synchronously (test set-up and clean-up)."""
    asyncio.run(_execute(url, sql))


@pytest.fixture
def db_url(migrated_url: str) -> Iterator[str]:
    """A migrated database whose tables are emptied after the test."""
    yield migrated_url
    run_sql(migrated_url, "TRUNCATE interactions, streams, users")


async def _fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """Fetch rows synchronously, for assertions."""
    return asyncio.run(_fetch(url, sql, *args))
