"""The scratch database `<name>_bench_api`: create, migrate, seed, count, drop.

It sits next to the database in DATABASE_URL on the same server, so the real
dataset is never touched. Every benchmark (bench/load.py, the HTTP, mixed and soak
runs) names, migrates and drops its scratch database with these helpers.

`--keep-db` reuses a database only when it was built from the same migrations, the
same generator code and the same arguments: a fingerprint of those is stored as the
database's COMMENT after seeding. Alembic alone cannot tell, since a migration that
is edited in place keeps its revision id.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config

from bench.log import say

#: Generating and loading 1M users + 1M streams takes ~45 s here; allow for a slow box.
SEED_TIMEOUT_S = 900.0
#: What a kept database was built from: the schema and the data generator.
REPO = Path(__file__).resolve().parent.parent
FINGERPRINTED = ("migrations/versions/*.py", "seed/*.py")


@dataclass(frozen=True)
class Counts:
    """How much data the scratch database holds."""

    users: int
    streams: int
    live: int


@dataclass(frozen=True)
class Dataset:
    """What to seed: `python -m seed generate` arguments (impressions 0, all live)."""

    users: int
    streams: int
    seed: int
    #: Share of streams live (the HTTP benchmark: all of them).
    live_share: float = 1.0

    def fingerprint(self) -> str:
        """Hash of the arguments and of every file the schema and the rows come from."""
        digest = hashlib.sha256(f"{self.users}/{self.streams}/{self.seed}".encode())
        for pattern in FINGERPRINTED:
            for path in sorted(REPO.glob(pattern)):
                digest.update(path.relative_to(REPO).as_posix().encode())
                digest.update(path.read_bytes())
        return "bench " + digest.hexdigest()[:16]


def scratch_url(url: str) -> str:
    """The URL of `<database>_bench` on the same server."""
    base, _, name = url.rpartition("/")
    name = name.split("?")[0]
    return f"{base}/{name}_bench"


async def admin(url: str, sql: str) -> None:
    """Run one statement on `url` (CREATE/DROP DATABASE need their own connection)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def migrate(url: str) -> None:
    """`alembic upgrade head` on `url`."""
    config = Config("alembic.ini")
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")


def api_scratch_url(server_url: str) -> str:
    """`<name>_bench_api` on the same server (`<name>_bench` belongs to bench.load)."""
    return scratch_url(server_url) + "_api"


def database_name(url: str) -> str:
    """The database part of a URL, without query parameters."""
    return url.rpartition("/")[2].split("?")[0]


async def _comment(server_url: str, name: str) -> tuple[bool, str | None]:
    """Whether the database exists, and its COMMENT."""
    conn = await asyncpg.connect(server_url)
    try:
        row = await conn.fetchrow(
            "SELECT shobj_description(oid, 'pg_database') AS comment"
            " FROM pg_database WHERE datname = $1",
            name,
        )
    finally:
        await conn.close()
    return row is not None, None if row is None else row["comment"]


def prepare(server_url: str, url: str, dataset: Dataset, *, keep: bool) -> bool:
    """Create the scratch database and migrate it; True when a kept one can be reused.

    A leftover database is dropped unless `keep` is set and its fingerprint matches.
    """
    name = database_name(url)
    exists, comment = asyncio.run(_comment(server_url, name))
    reusable = exists and keep and comment == dataset.fingerprint()
    if exists and not reusable:
        why = "built from other code or arguments" if keep else "left over"
        say(f"dropping {name} ({why})")
        asyncio.run(admin(server_url, f'DROP DATABASE "{name}" WITH (FORCE)'))
    if not reusable:
        say(f"creating {name}")
        asyncio.run(admin(server_url, f'CREATE DATABASE "{name}"'))
    migrate(url)
    return reusable


def drop(server_url: str, url: str) -> None:
    """Drop the scratch database (FORCE: a killed server may leave sessions behind)."""
    name = database_name(url)
    say(f"dropping {name}")
    asyncio.run(admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _counts(url: str) -> Counts:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM users) AS users,"
            " (SELECT count(*) FROM streams) AS streams,"
            " (SELECT count(*) FROM streams WHERE is_live) AS live"
        )
    finally:
        await conn.close()
    assert row is not None
    return Counts(users=int(row["users"]), streams=int(row["streams"]), live=int(row["live"]))


def counts(url: str) -> Counts:
    """Exact row counts (a count(*) over 1M rows costs well under a second)."""
    return asyncio.run(_counts(url))


def seed(url: str, dataset: Dataset) -> None:
    """Load the dataset with `python -m seed generate` (`dataset.live_share` live).

    It runs as a child process with DATABASE_URL pointing at the scratch database
    (the same command a developer would type); its progress, and its stdout too, goes
    to our stderr, since our stdout is the report. No impressions: the endpoint reads
    users and streams only.
    """
    command = [
        sys.executable,
        "-m",
        "seed",
        "generate",
        f"--users={dataset.users}",
        f"--streams={dataset.streams}",
        "--impressions=0",
        f"--live-share={dataset.live_share:g}",
        f"--seed={dataset.seed}",
    ]
    say(f"seeding: {' '.join(command[1:])}")
    env = {**os.environ, "DATABASE_URL": url}
    result = subprocess.run(
        command, env=env, stdout=sys.stderr, timeout=SEED_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"seeding failed (exit {result.returncode})")


def ensure_data(server_url: str, url: str, dataset: Dataset, *, reuse: bool) -> Counts:
    """Seed unless `reuse` and the database already holds exactly the requested rows."""
    wanted = Counts(users=dataset.users, streams=dataset.streams, live=dataset.streams)
    if reuse and counts(url) == wanted:
        say(f"reusing the kept database: {dataset.users:,} users, {dataset.streams:,} live")
        return wanted
    seed(url, dataset)
    have = counts(url)
    if have != wanted:
        raise RuntimeError(f"the seeded database holds {have}, expected {wanted}")
    # Fingerprint and name are ours (hex digits; the name comes from DATABASE_URL).
    name = database_name(url)
    asyncio.run(admin(server_url, f"COMMENT ON DATABASE \"{name}\" IS '{dataset.fingerprint()}'"))
    return have
