"""What every benchmark command shares: option types, SIGTERM, the scratch database's lifetime.

Each benchmark seeds a scratch database beside the one in DATABASE_URL, measures,
and must drop that database and stop its server however it ends: a normal end, an
error, Ctrl-C, or SIGTERM from `timeout` or CI (which `stop_on_sigterm` turns into
the same KeyboardInterrupt as Ctrl-C, so every `finally` runs).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

import asyncpg

from app.settings import load_settings
from bench import database
from bench.log import say

#: What a benchmark that fails for a reason outside our code raises: reported as
#: one line and exit code 1, not a traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    RuntimeError,
    OSError,
    subprocess.SubprocessError,
    asyncpg.PostgresError,
)


def positive(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def add_dataset_options(cli: argparse.ArgumentParser, *, streams: int | None) -> None:
    """`--streams` (required when `streams` is None), `--users`, `--seed` and `--keep-db`."""
    if streams is None:
        cli.add_argument("--streams", type=positive, required=True)
    else:
        cli.add_argument("--streams", type=positive, default=streams)
    cli.add_argument("--users", type=positive, default=1_000_000)
    cli.add_argument("--seed", type=int, default=42)
    cli.add_argument(
        "--keep-db", action="store_true", help="keep the scratch database; reuse it if it fits"
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def stop_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so servers stop and scratch databases are dropped."""
    signal.signal(signal.SIGTERM, _interrupt)


@dataclass(frozen=True)
class Scratch:
    """A migrated scratch database and the server it lives on."""

    server_url: str
    url: str
    #: A kept database (`--keep-db`) built from the same code and arguments: already seeded.
    reuse: bool


@contextmanager
def scratch_database(suffix: str, dataset: database.Dataset, *, keep: bool) -> Iterator[Scratch]:
    """`<name>_bench<suffix>` beside DATABASE_URL's database, migrated; dropped afterwards.

    With `keep`, the database stays for the next run, which reuses it when its
    fingerprint matches (bench/database.py).
    """
    server_url = load_settings().database_url
    url = database.scratch_url(server_url) + suffix
    reuse = database.prepare(server_url, url, dataset, keep=keep)
    try:
        yield Scratch(server_url, url, reuse)
    finally:
        if keep:
            say(f"keeping {database.database_name(url)} (--keep-db)")
        else:
            database.drop(server_url, url)


def run_main(body: Callable[[], int], *, errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run a benchmark's body: expected failures become one line and exit 1, Ctrl-C exit 130."""
    stop_on_sigterm()
    try:
        return body()
    except (*EXPECTED_ERRORS, *errors) as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
