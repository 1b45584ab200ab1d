"""`python -m bench`: the HOMETOWN endpoint over HTTP, next to its bare SQL cost.

    uv run python -m bench --streams 1000000 [--users 1000000] [--duration 20]
                           [--concurrency 1,16] [--keep-db]

1. a scratch database `<name>_bench_api` beside DATABASE_URL's, migrated and seeded
   with every stream live (`--keep-db` keeps it and reuses it when the counts match);
2. `python -m app` as its own process on a free loopback port;
3. wrk at each concurrency for `--duration` seconds after a short warm-up, POSTing
   random `user_id`s; any non-2xx answer counts as an error;
4. pgbench running the service's candidate query at the same concurrencies;
5. a markdown block on stdout (progress on stderr), the server's peak RSS included.

The server, the database and the load generator share the machine's cores, so
read the ratios to the bare SQL baseline rather than the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from types import FrameType

import asyncpg

from app.settings import Settings
from bench import database, pgbench, server, wrk
from bench.log import say
from bench.report import Report, machine

HOMETOWN_PATH = "/v1/scenarios/hometown"


def _levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError("a comma-separated list of integers") from exc
    if not levels or any(level < 1 for level in levels):
        raise argparse.ArgumentTypeError("concurrency levels must be >= 1")
    return levels


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def parser() -> argparse.ArgumentParser:
    """The command line."""
    cli = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    cli.add_argument("--streams", type=_positive, required=True)
    cli.add_argument("--users", type=_positive, default=1_000_000)
    cli.add_argument("--duration", type=_positive, default=20, help="seconds per level")
    cli.add_argument("--warmup", type=_positive, default=3, help="seconds before each level")
    cli.add_argument("--concurrency", type=_levels, default=[1, 16], help="e.g. 1,16")
    cli.add_argument("--seed", type=int, default=42)
    cli.add_argument(
        "--keep-db", action="store_true", help="keep the scratch database; reuse it if it fits"
    )
    cli.add_argument(
        "--target",
        choices=["hometown", "health"],
        default="hometown",
        help="hometown (POST random users) or health (GET /: the harness's own smoke test)",
    )
    return cli


def measure(args: argparse.Namespace, url: str) -> Report:
    """Everything between a seeded database and the report; the caller cleans up."""
    wrk_path = wrk.ensure_wrk()
    pgbench_path = pgbench.find_pgbench()
    counts = database.ensure_data(
        url, users=args.users, streams=args.streams, seed_value=args.seed, keep=args.keep_db
    )
    api = server.start(url)
    try:
        if args.target == "hometown":
            path, users = HOMETOWN_PATH, args.users
            body: bytes | None = json.dumps({"user_id": "user_000000"}).encode()
        else:
            path, users, body = "/", None, None
        status, answer = server.probe(api, path, body)
        if not 200 <= status < 300:
            raise RuntimeError(f"probe {path} answered {status}: {answer[:500]!r}")
        say(f"probe {path}: {status}, {len(answer)} bytes")
        script = wrk.lua_script(path=path, users=users, seed=args.seed)
        http = []
        for level in args.concurrency:
            say(f"http: warm-up {args.warmup}s at concurrency {level}")
            wrk.run(wrk_path, api.base_url, script, concurrency=level, duration_s=args.warmup)
            say(f"http: measuring {args.duration}s at concurrency {level}")
            result = wrk.run(
                wrk_path, api.base_url, script, concurrency=level, duration_s=args.duration
            )
            say(
                f"http c={level}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
                f"p99 {result.p99_ms:.2f} ms, errors {result.errors}"
            )
            http.append(result)
        peak_rss = api.peak_rss_bytes()
    finally:
        api.stop()

    text = pgbench.script(args.users)
    sql = {}
    for level in args.concurrency:
        say(f"sql: warm-up {args.warmup}s at {level} clients")
        pgbench.run(pgbench_path, url, text, clients=level, duration_s=args.warmup)
        say(f"sql: measuring {args.duration}s at {level} clients")
        result_sql = pgbench.run(pgbench_path, url, text, clients=level, duration_s=args.duration)
        say(
            f"sql c={level}: {result_sql.tps:,.0f} tps, p50 {result_sql.p50_ms:.2f} ms, "
            f"p99 {result_sql.p99_ms:.2f} ms"
        )
        sql[level] = result_sql
    return Report(
        machine=machine(url),
        counts=counts,
        target=f"POST {HOMETOWN_PATH}" if args.target == "hometown" else "GET /",
        duration_s=args.duration,
        http=http,
        sql=sql,
        sql_limit=pgbench.FIRST_LIMIT,
        peak_rss_bytes=peak_rss,
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: set up, measure, always clean up, print the report."""
    args = parser().parse_args(argv)
    # SIGTERM (kill, timeout, CI) unwinds like Ctrl-C, so the finally blocks stop the
    # server and drop the scratch database instead of leaving them behind.
    signal.signal(signal.SIGTERM, _interrupt)
    server_url = Settings().database_url
    url = database.api_scratch_url(server_url)
    try:
        database.prepare(server_url, url, keep=args.keep_db)
        report = measure(args, url)
    except (RuntimeError, OSError, subprocess.SubprocessError, asyncpg.PostgresError) as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        if args.keep_db:
            say(f"keeping {database.database_name(url)} (--keep-db)")
        else:
            database.drop(server_url, url)
    print(report.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
