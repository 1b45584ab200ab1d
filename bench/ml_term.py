"""`python -m bench.ml_term`: what the ML term's maximum costs the exact search.

    uv run python -m bench.ml_term [--model PATH] [--requests 300] [--rooms 0.5,2,4,8,16]

The exact search bounds every stream it has not read with the ML term at its
maximum (app/hometown/ml_term.py), so a fitted term with a larger `weight · cap`
reads more rows before it can stop. This runs `service.recommend` in-process,
one request at a time, for the same random users under each maximum: the basic
search (no term) first, then `--rooms`, each a term `room · min(P, 1)/1` with the
model at `--model` scoring the rows kept. It reports rows read per request and
milliseconds (median, p99) with their ratios to the basic search measured in the
same run.

The database is `python -m bench`'s kept one (`<name>_bench_api`, every stream
live): run `uv run python -m bench --streams 1000000 --keep-db` first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path

import asyncpg
import numpy as np

from app.features import artifact
from app.hometown import service
from app.hometown.click_model import probability_of
from app.hometown.ml_term import MLTerm
from app.observability.context import begin_request, end_request
from app.settings import load_settings
from bench import database
from bench.cli import positive, run_main
from bench.log import say
from bench.report import code_version, machine


def _rooms(text: str) -> list[float]:
    try:
        rooms = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError("a comma-separated list of numbers") from exc
    if not rooms or any(r <= 0 for r in rooms):
        raise argparse.ArgumentTypeError("rooms must be > 0")
    return rooms


def parser() -> argparse.ArgumentParser:
    """The command line."""
    cli = argparse.ArgumentParser(prog="python -m bench.ml_term", description=__doc__)
    cli.add_argument("--model", type=Path, default=None, help="click model (default MODEL_PATH)")
    cli.add_argument("--requests", type=positive, default=300, help="users per setting")
    cli.add_argument("--rooms", type=_rooms, default=[0.5, 2.0, 4.0, 8.0, 16.0])
    cli.add_argument("--seed", type=int, default=7)
    return cli


async def _measure(
    url: str, user_ids: list[str], term: MLTerm | None, model: artifact.ClickModel
) -> tuple[list[float], list[int]]:
    settings = load_settings()
    conn = await asyncpg.connect(url)
    times, read = [], []
    try:
        for user_id in user_ids:
            record, token = begin_request("bench")
            started = time.perf_counter()
            await service.recommend(
                conn,
                service.Query(user_id=user_id),
                settings.weights,
                default_local_preference=settings.default_local_preference,
                probability=probability_of(model) if term is not None else None,
                term=term,
            )
            times.append((time.perf_counter() - started) * 1000.0)
            end_request(token)
            read.append(record.candidates_read or 0)
    finally:
        await conn.close()
    return times, read


async def _users(url: str, n: int, seed: int) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        total = await conn.fetchval("SELECT count(*) FROM users")
        if not total:
            raise SystemExit(f"{database.database_name(url)} has no users")
        picks = np.random.default_rng(seed).choice(total, min(n, total), replace=False)
        rows = await conn.fetch(
            "SELECT user_id FROM (SELECT user_id, row_number() OVER (ORDER BY user_id) - 1 AS i"
            " FROM users) u WHERE i = ANY($1::bigint[]) ORDER BY user_id",
            [int(p) for p in picks],
        )
        return [r["user_id"] for r in rows]
    finally:
        await conn.close()


def main() -> int:
    """Measure every setting on the same users; print a markdown table."""
    args = parser().parse_args()
    settings = load_settings()
    url = database.api_scratch_url(settings.database_url)
    model = artifact.load(args.model or settings.model_path)
    users = asyncio.run(_users(url, args.requests, args.seed))
    say(f"{len(users)} users of {database.database_name(url)}")
    asyncio.run(_measure(url, users[:30], None, model))  # warm the caches
    settings_tried: list[tuple[str, MLTerm | None]] = [("basic (no term)", None)]
    settings_tried += [(f"room {room:g}", MLTerm(room, 1.0, "fitted")) for room in args.rooms]
    box = machine(url, os.getloadavg()[0])
    lines = [
        f"Machine: {box.cores} cores, {box.ram_gib:.0f} GiB, {box.python}, PostgreSQL"
        f" {box.postgres}, PostGIS {box.postgis}; code {code_version()}."
        f" {len(users)} users of {database.database_name(url)}, one request at a time,"
        " in-process.",
        "",
        "| search | rows read (mean) | p50 ms | p99 ms | p50 vs basic |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    basic_p50 = None
    for label, term in settings_tried:
        times, read = asyncio.run(_measure(url, users, term, model))
        p50 = statistics.median(times)
        p99 = float(np.percentile(times, 99))
        basic_p50 = basic_p50 or p50
        say(f"{label}: {np.mean(read):.0f} rows, p50 {p50:.2f} ms")
        lines.append(
            f"| {label} | {np.mean(read):,.0f} | {p50:.2f} | {p99:.2f} | {p50 / basic_p50:.2f}× |"
        )
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
