"""`python -m bench`: the HOMETOWN endpoint over HTTP, next to its bare SQL cost.

    uv run python -m bench --streams 1000000 [--users 1000000] [--duration 20]
                           [--concurrency 1,16] [--workers 1] [--keep-db]

1. a scratch database `<name>_bench_api` beside DATABASE_URL's, migrated and seeded
   with every stream live (`--keep-db` keeps it and reuses it when the counts match);
2. `python -m app` on a free loopback port, with `--workers` processes (WORKERS);
3. wrk at each concurrency for `--duration` seconds after a short warm-up, POSTing
   random `user_id`s; any non-2xx answer counts as an error;
4. pgbench running the service's candidate query at the same concurrencies;
5. a markdown block on stdout (progress on stderr), the server's peak RSS included
   (with several workers, the PSS of all its processes together instead).

The server, the database and the load generator share the machine's cores, so
read the ratios to the bare SQL baseline rather than the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from bench import database, pgbench, server, wrk
from bench.cli import add_dataset_options, positive, run_main, scratch_database
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


def parser() -> argparse.ArgumentParser:
    """The command line."""
    cli = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    add_dataset_options(cli, streams=None)
    cli.add_argument("--duration", type=positive, default=20, help="seconds per level")
    cli.add_argument("--warmup", type=positive, default=3, help="seconds before each level")
    cli.add_argument("--concurrency", type=_levels, default=[1, 16], help="e.g. 1,16")
    cli.add_argument("--workers", type=positive, default=1, help="server processes (WORKERS)")
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
    api = server.start(url, {"WORKERS": str(args.workers)})
    try:
        meter = CpuMeter(postmaster, server_pid=api.process.pid)
        http, http_cpu = drive_http(args, api, wrk_path, meter)
        peak_rss = api.peak_rss_bytes() if args.workers == 1 else api.pss_bytes()
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
        workers=args.workers,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point: set up, measure, always clean up, print the report."""
    args = parser().parse_args(argv)
    dataset = database.Dataset(users=args.users, streams=args.streams, seed=args.seed)

    def body() -> int:
        with scratch_database("_api", dataset, keep=args.keep_db) as scratch:
            report = measure(args, scratch.server_url, scratch.url, dataset, reuse=scratch.reuse)
        print(report.markdown())
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
