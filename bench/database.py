"""The scratch database `<name>_bench_api`: create, migrate, seed, count, drop.

It sits next to the database in DATABASE_URL on the same server, so the real
dataset is never touched. The helpers come from the load benchmark (seed/bench.py)
so both benchmarks name and migrate their scratch databases the same way.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass

import asyncpg

from bench.log import say
from seed.bench import _admin, migrate, scratch_url

#: Generating and loading 1M users + 1M streams takes ~40 s here; allow for a slow box.
SEED_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Counts:
    """How much data the scratch database holds."""

    users: int
    streams: int
    live: int


def api_scratch_url(server_url: str) -> str:
    """`<name>_bench_api` on the same server (`<name>_bench` belongs to seed.bench)."""
    return scratch_url(server_url) + "_api"


def database_name(url: str) -> str:
    """The database part of a URL, without query parameters."""
    return url.rpartition("/")[2].split("?")[0]


async def _exists(server_url: str, name: str) -> bool:
    conn = await asyncpg.connect(server_url)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


def prepare(server_url: str, url: str, *, keep: bool) -> None:
    """Create (or, with `keep`, reuse) the scratch database and migrate it to head."""
    name = database_name(url)
    exists = asyncio.run(_exists(server_url, name))
    if exists and not keep:
        say(f"dropping a leftover {name}")
        asyncio.run(_admin(server_url, f'DROP DATABASE "{name}"'))
        exists = False
    if not exists:
        say(f"creating {name}")
        asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    migrate(url)


def drop(server_url: str, url: str) -> None:
    """Drop the scratch database (FORCE: a killed server may leave sessions behind)."""
    name = database_name(url)
    say(f"dropping {name}")
    asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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


def seed(url: str, *, users: int, streams: int, seed: int) -> None:
    """Load the dataset with `python -m seed generate`, every stream live.

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
        f"--users={users}",
        f"--streams={streams}",
        "--impressions=0",
        "--live-share=1",
        f"--seed={seed}",
    ]
    say(f"seeding: {' '.join(command[1:])}")
    env = {**os.environ, "DATABASE_URL": url}
    result = subprocess.run(
        command, env=env, stdout=sys.stderr, timeout=SEED_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"seeding failed (exit {result.returncode})")


def ensure_data(url: str, *, users: int, streams: int, seed_value: int, keep: bool) -> Counts:
    """Seed unless (with `keep`) the database already holds exactly the requested data."""
    if keep:
        have = counts(url)
        if have == Counts(users=users, streams=streams, live=streams):
            say(f"reusing the kept database: {users:,} users, {streams:,} live streams")
            return have
    seed(url, users=users, streams=streams, seed=seed_value)
    have = counts(url)
    if have != Counts(users=users, streams=streams, live=streams):
        raise RuntimeError(f"seeded database holds {have}, expected {users} users/{streams} live")
    return have
