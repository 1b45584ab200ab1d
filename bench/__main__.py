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
import os
import signal
import subprocess
import sys
from types import FrameType

import asyncpg

from app.settings import load_settings
from bench import database, pgbench, server, wrk
from bench.cpu import CpuMeter, CpuSplit, postmaster_pid
from bench.log import say
from bench.report import Report, code_version, machine

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


def drive_http(
    args: argparse.Namespace, api: server.Server, wrk_path: str, meter: CpuMeter
) -> tuple[list[wrk.WrkResult], dict[int, CpuSplit]]:
    """Probe once, then wrk at each concurrency: a warm-up, then the measured window."""
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
    results, cpu = [], {}
    for level in args.concurrency:
        say(f"http: warm-up {args.warmup}s at concurrency {level}")
        wrk.run(wrk_path, api.base_url, script, concurrency=level, duration_s=args.warmup)
        say(f"http: measuring {args.duration}s at concurrency {level}")
        meter.start()
        result = wrk.run(
            wrk_path, api.base_url, script, concurrency=level, duration_s=args.duration
        )
        cpu[level] = meter.split(result.requests)
        say(
            f"http c={level}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
            f"p99 {result.p99_ms:.2f} ms, errors {result.errors}"
        )
        results.append(result)
    return results, cpu


def drive_sql(
    args: argparse.Namespace, url: str, pgbench_path: str, meter: CpuMeter
) -> tuple[dict[int, pgbench.PgbenchResult], dict[int, CpuSplit]]:
    """Run pgbench at each concurrency: a warm-up, then the measured window."""
    text = pgbench.script(args.users)
    results, cpu = {}, {}
    for level in args.concurrency:
        say(f"sql: warm-up {args.warmup}s at {level} clients")
        pgbench.run(pgbench_path, url, text, clients=level, duration_s=args.warmup)
        say(f"sql: measuring {args.duration}s at {level} clients")
        meter.start()
        result = pgbench.run(pgbench_path, url, text, clients=level, duration_s=args.duration)
        cpu[level] = meter.split(result.transactions)
        say(
            f"sql c={level}: {result.tps:,.0f} tps, p50 {result.p50_ms:.2f} ms, "
            f"p99 {result.p99_ms:.2f} ms"
        )
        results[level] = result
    return results, cpu


def measure(
    args: argparse.Namespace, server_url: str, url: str, dataset: database.Dataset, *, reuse: bool
) -> Report:
    """Everything between a migrated database and the report; the caller cleans up."""
    wrk_path = wrk.ensure_wrk()
    pgbench_path = pgbench.find_pgbench()
    counts = database.ensure_data(server_url, url, dataset, reuse=reuse)
    postmaster = postmaster_pid(url)
    if postmaster is None:
        say("the database runs elsewhere: its CPU is left out of the split")
    load_at_start = os.getloadavg()[0]
    api = server.start(url)
    try:
        meter = CpuMeter(postmaster, server_pid=api.process.pid)
        http, http_cpu = drive_http(args, api, wrk_path, meter)
        peak_rss = api.peak_rss_bytes()
    finally:
        api.stop()
    # The server is stopped: pgbench has the database (and the cores) to itself.
    sql, sql_cpu = drive_sql(args, url, pgbench_path, CpuMeter(postmaster))
    return Report(
        machine=machine(url, load_at_start),
        code=code_version(),
        counts=counts,
        target=f"POST {HOMETOWN_PATH}" if args.target == "hometown" else "GET /",
        duration_s=args.duration,
        http=http,
        http_cpu=http_cpu,
        sql=sql,
        sql_cpu=sql_cpu,
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
    server_url = load_settings().database_url
    url = database.api_scratch_url(server_url)
    try:
        dataset = database.Dataset(users=args.users, streams=args.streams, seed=args.seed)
        reuse = database.prepare(server_url, url, dataset, keep=args.keep_db)
        report = measure(args, server_url, url, dataset, reuse=reuse)
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
