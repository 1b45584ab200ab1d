"""The feed's in-memory live set: resync time, query times, memory, freshness, trigger cost.

    uv run python -m bench.live_set                                  # 100K streams, all live
    uv run python -m bench.live_set --streams 1000000 --live-share 0.1 --users 10000

In a scratch database `<name>_bench_live` beside DATABASE_URL's (dropped after),
seeded by `python -m seed generate` and given a random model of `--dim`
dimensions for every stream, it measures:

1. a full resync (the follower's one query, then building the columns), median of 5;
2. `top_by_dot` (k = 200) over all live streams and within one category,
   `trending` (uncached) and `of_creators` (50 creators), per query;
3. the live set's memory (tracemalloc: what the columns and the id index allocate)
   per live stream;
4. freshness: a follower running in this process, the time from a committed
   live-status batch of 5,000 updates (app/live/status.py) to the live set
   showing it, going offline and going live again (which fetches embeddings);
5. the cost of migration 0008's NOTIFY triggers on the write path: 20 batches of
   5,000 live-status updates with the triggers on and with
   `ALTER TABLE streams DISABLE TRIGGER USER`, with a listener attached.

Numbers go to stdout, progress to stderr. OpenBLAS threads contend with the
database on a small machine: `OPENBLAS_NUM_THREADS=1` measures what one server
process on one core does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import numpy as np

from app.feed.embeddings import save_model
from app.feed.follow import Follower, read_live_set
from app.feed.live import LiveSet
from app.live import status
from app.live.status import StatusUpdate
from app.settings import Settings
from bench import database, server
from bench.cli import positive, run_main, scratch_database
from bench.log import say

BATCH = 5_000
BATCHES = 20
#: Seconds a started server is given to sync its live set before its memory is read.
SETTLE_S = 8.0


def main() -> int:
    """Parse the arguments and run the benchmark."""
    cli = argparse.ArgumentParser(prog="python -m bench.live_set", description=__doc__)
    cli.add_argument("--streams", type=positive, default=100_000)
    cli.add_argument("--users", type=positive, default=1_000)
    cli.add_argument("--live-share", type=float, default=1.0)
    cli.add_argument("--dim", type=positive, default=64)
    cli.add_argument("--seed", type=int, default=42)
    args = cli.parse_args()
    dataset = database.Dataset(
        users=args.users, streams=args.streams, seed=args.seed, live_share=args.live_share
    )

    def body() -> int:
        with scratch_database("_live", dataset, keep=False) as scratch:
            database.seed(scratch.url, dataset)
            asyncio.run(_run(scratch.url, args.dim, args.seed))
        return 0

    return run_main(body)


def _ms(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"median {1000 * statistics.median(ordered):.3f} ms, p99 {1000 * p99:.3f} ms"


def _timed(fn: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


async def _run(url: str, dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    conn = await asyncpg.connect(url)
    try:
        ids = [r[0] for r in await conn.fetch("SELECT stream_id FROM streams")]
        live_count = await conn.fetchval("SELECT count(*) FROM streams WHERE is_live")
        say(f"storing a {dim}-dimension model for {len(ids):,} streams")
        await save_model(
            conn,
            version="bench",
            kind="als",
            user_ids=["u"],
            users=rng.standard_normal((1, dim)),
            stream_ids=ids,
            streams=rng.standard_normal((len(ids), dim)).astype(np.float32),
            metadata={},
        )
        print(f"streams {len(ids):,}, live {live_count:,}, dim {dim}")
        live = await _resync(conn)
        _queries(live, rng, dim)
        await _freshness(url, conn)
        _server_memory(url, live_count)
        await _trigger_cost(url, conn)
    finally:
        await conn.close()


async def _resync(conn: asyncpg.Connection) -> LiveSet:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        live, _ = await read_live_set(conn)
        times.append(time.perf_counter() - start)
        del live
    print(
        f"full resync: {statistics.median(times):.3f} s (count, then query, decode and"
        " add group by group)"
    )
    gc.collect()
    tracemalloc.start()
    fresh, _ = await read_live_set(conn)
    gc.collect()
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    n = len(fresh)
    print(
        f"memory: {held / 2**20:.1f} MiB for {n:,} live streams = {held / max(n, 1):.0f} bytes"
        f" per stream (the embedding alone {4 * fresh.dim}); nbytes() estimate"
        f" {fresh.nbytes() / max(n, 1):.0f}; peak while resyncing {peak / 2**20:.1f} MiB"
    )
    return fresh


def _queries(live: LiveSet, rng: np.random.Generator, dim: int) -> None:
    queries = iter(rng.standard_normal((1000, dim)).astype(np.float32))
    category = max(live._categories.names, key=live.count)
    language = live._languages.names[0]

    def dot(category: str | None = None) -> Callable[[], object]:
        return lambda: live.top_by_dot(next(queries), 200, category)

    def trending(language: str | None = None, category: str | None = None) -> Callable[[], object]:
        def run() -> object:
            live._trending.clear()  # measure the computation, not the cache
            return live.trending(200, language, category)

        return run

    step = max(1, len(live._creators.names) // 50)
    creators = live._creators.names[::step][:50]
    for label, fn in (
        ("top_by_dot k=200, all live", dot()),
        (f"top_by_dot k=200, category {category} ({live.count(category):,} live)", dot(category)),
        ("trending k=200, uncached", trending()),
        (f"trending k=200, {language} + {category}, uncached", trending(language, category)),
        ("of_creators, 50 creators, k=50", lambda: live.of_creators(creators, 50)),
    ):
        print(f"{label}: {_ms(_timed(fn, 300))}")


def _server_memory(url: str, live_count: int) -> None:
    """Peak RSS of `python -m app` once its follower has loaded the live set."""
    process = server.start(url)
    try:
        time.sleep(SETTLE_S)  # the follower's first sync runs in the background
        peak = process.peak_rss_bytes()
    finally:
        process.stop()
    budget = 150 * 2**20 + 300 * live_count
    print(
        f"server peak RSS with {live_count:,} live streams loaded: {peak / 2**20:.0f} MiB"
        f" (budget 150 MiB + 300 B per live stream = {budget / 2**20:.0f} MiB)"
    )


def _updates(ids: list[str], is_live: bool) -> list[StatusUpdate]:
    at = datetime.now(UTC)
    return [StatusUpdate(sid, is_live, at, 7 if is_live else None) for sid in ids]


async def _wait(check: Callable[[], bool], timeout_s: float = 10.0) -> float:
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > timeout_s:
            raise RuntimeError("the live set did not follow within 10 s")
        await asyncio.sleep(0.001)
    return time.perf_counter() - start


async def _freshness(url: str, conn: asyncpg.Connection) -> None:
    live = LiveSet()
    follower = Follower(Settings.model_validate({"DATABASE_URL": url}), live)
    task = asyncio.create_task(follower.run())
    try:
        await _wait(lambda: live.status.listener_connected, 30)
        chosen = random.Random(1).sample(sorted(live._slots), BATCH)
        writer = await asyncpg.connect(url)
        try:
            await status.apply(writer, _updates(chosen, False))
            gone = await _wait(lambda: not any(s in live for s in chosen))
            await status.apply(writer, _updates(chosen, True))
            back = await _wait(lambda: all(s in live for s in chosen))
        finally:
            await writer.close()
        print(
            f"freshness, batch of {BATCH:,}: offline seen after {1000 * gone:.1f} ms,"
            f" live again (with embeddings fetched) after {1000 * back:.1f} ms"
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _trigger_cost(url: str, conn: asyncpg.Connection) -> None:
    ids = [r[0] for r in await conn.fetch("SELECT stream_id FROM streams")]
    rng = random.Random(2)
    listener = await asyncpg.connect(url)
    heard: list[str] = []
    await listener.add_listener("hometown_live", lambda *a: heard.append(a[3]))
    try:
        results: dict[str, list[float]] = {}
        for label, sql in (
            ("triggers on", "ALTER TABLE streams ENABLE TRIGGER USER"),
            ("triggers off", "ALTER TABLE streams DISABLE TRIGGER USER"),
            ("triggers on", "ALTER TABLE streams ENABLE TRIGGER USER"),
        ):
            await conn.execute(sql)
            times = []
            for _ in range(BATCHES):
                chosen = rng.sample(ids, BATCH)
                flip = rng.random() < 0.5
                updates = [
                    StatusUpdate(s, flip != (i % 2 == 0), datetime.now(UTC), i % 100)
                    for i, s in enumerate(chosen)
                ]
                start = time.perf_counter()
                await status.apply(conn, updates)
                times.append(time.perf_counter() - start)
            results.setdefault(label, []).extend(times)
        for label, times in results.items():
            print(
                f"{BATCHES} batches of {BATCH:,} live-status updates, {label}:"
                f" median {1000 * statistics.median(times):.1f} ms,"
                f" mean {1000 * statistics.mean(times):.1f} ms per batch"
            )
        print(f"notifications heard by the listener: {len(heard):,}")
    finally:
        await conn.execute("ALTER TABLE streams ENABLE TRIGGER USER")
        await listener.close()


if __name__ == "__main__":
    raise SystemExit(main())
