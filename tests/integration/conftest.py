"""Shared fixtures of the integration tests: a real PostGIS, migrated, and apps on it.

Where the database comes from, in order: `TEST_DATABASE_URL` (an existing server
whose database the tests may empty), a `postgis/postgis` container through
testcontainers when a Docker engine answers, or a throwaway local cluster
started from the machine's PostgreSQL + PostGIS in a temporary directory.
Redis (`redis_server`, `redis_url`) is a throwaway redis-server on a unix socket
(tests/support/redis.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from litestar.testing import TestClient

from app.main import create_app
from app.settings import Settings, normalise_database_url
from seed.loader import load
from tests.support import frames
from tests.support.db import DROP_EVENT_MONTHS, alembic_config, run_sql
from tests.support.redis import redis_server, redis_url
from tools.cluster import LocalCluster, docker_engine_answers, free_port, wait_for

__all__ = ["redis_server", "redis_url"]  # fixtures for every integration test

POSTGIS_IMAGE = "postgis/postgis:15-3.4"  # the image docker-compose.yml uses too
#: The write key of every app the fixtures build.
API_KEY = "test-key-0123456789-abcdef"


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


@pytest.fixture(scope="session")
def migrated_url(database_url: str) -> str:
    """The test database at the newest migration (runs the real migrations)."""
    command.upgrade(alembic_config(database_url), "head")
    return database_url


@pytest.fixture
def db_url(migrated_url: str) -> Iterator[str]:
    """A migrated database whose tables are emptied after the test.

    The event and exposure logs are emptied before it too: any request of a test on
    a module's shared database (`migrated_url`) leaves exposures behind.
    """
    run_sql(migrated_url, DROP_EVENT_MONTHS)
    yield migrated_url
    run_sql(
        migrated_url,
        "TRUNCATE interactions, streams, users, feed_models,"
        " feed_user_features, feed_stream_features CASCADE",
    )
    run_sql(migrated_url, DROP_EVENT_MONTHS)


@pytest.fixture
def small_world(db_url: str) -> str:
    """Twelve users and four live streams in Paris (tests/support/frames.py)."""
    load(db_url, frames.dataset(12, 4))
    return db_url


MakeClient = Callable[..., TestClient[Any]]


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[MakeClient]:
    """Start apps on a database: `make_client(url, **settings)`; all stop after the test.

    Each app has the write key `API_KEY` and no click model unless the settings
    name one (`MODEL_PATH`).
    """
    started: list[TestClient[Any]] = []

    def make(url: str, **settings: Any) -> TestClient[Any]:
        values: dict[str, Any] = {
            "DATABASE_URL": url,
            "API_KEY": API_KEY,
            "MODEL_PATH": str(tmp_path / "no-model.joblib"),
            **settings,
        }
        client = TestClient(create_app(Settings(**values)))
        client.__enter__()
        started.append(client)
        return client

    yield make
    for client in reversed(started):
        client.__exit__(None, None, None)
