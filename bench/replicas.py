"""`python -m bench.replicas`: 1 and 2 server processes, on the primary alone and with a replica.

    uv run python -m tools.cluster standby          # once: a hot standby of .pgdata/
    uv run python -m bench.feed_api --prepare-only  # once: the 1M world and its models
    uv run python -m bench.replicas --model-dir DIR [--database URL] [--replica URL]
                                    [--duration 20] [--warmup 5] [--concurrency 16]

For each of four set-ups (WORKERS 1 or 2; DATABASE_REPLICA_URLS unset or the
replica) it starts `python -m app` on the benchmark world and runs wrk at 1 and
`--concurrency` connections for HOMETOWN and `home_feed` (the same users and
bodies as bench/feed_api.py). It reports req/s, p50 and p99, and CPU per request
of the server, the primary and the replica, with each figure's ratio to the
first set-up (one process, primary alone) measured in the same run, because
these machines' speed drifts between runs.

On one 2-core machine a replica adds no cores: primary and standby share them,
so the replica rows show what routing costs and where the CPU goes, not the
capacity a replica on its own machine would add.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import server, wrk
from bench.cli import positive, run_main
from bench.cpu import cluster_cpu_s, postmaster_pid
from bench.feed_api import HOME_FEED_PATH, HOMETOWN_PATH, _health, _user_sample, lua_script
from bench.feed_prepare import CLICK_MODEL_FILE
from bench.log import say

SCENARIOS = (("HOMETOWN", HOMETOWN_PATH, "hometown"), ("home_feed", HOME_FEED_PATH, "feed"))
SETUPS = ((1, False), (1, True), (2, False), (2, True))
USERS = 20_000


@dataclass(frozen=True)
class Row:
    """One measured window."""

    workers: int
    replica: bool
    scenario: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_ms: float
    primary_ms: float
    replica_ms: float
    replica_reads_share: float


def _cpu(pid: int | None) -> float:
    return cluster_cpu_s(pid) if pid else 0.0


def measure(args: argparse.Namespace, users_file: Path) -> list[Row]:
    """Every set-up, scenario and level, in a fixed order."""
    wrk_path = wrk.ensure_wrk()
    primary_pm, replica_pm = postmaster_pid(args.database), postmaster_pid(args.replica)
    env = {"MODEL_PATH": str(args.model_dir / CLICK_MODEL_FILE)}
    rows: list[Row] = []
    for workers, use_replica in SETUPS:
        extra = {**env, "WORKERS": str(workers)}
        if use_replica:
            extra["DATABASE_REPLICA_URLS"] = args.replica
        api = server.start(args.database, extra)
        try:
            if use_replica:
                _wait_until_replica_serves(api)
            for scenario, path, kind in SCENARIOS:
                script = lua_script(path, users_file, kind, args.seed)
                for level in (1, args.concurrency):
                    wrk.run(
                        wrk_path, api.base_url, script, concurrency=level, duration_s=args.warmup
                    )
                    before = _reads(api), api.cpu_s(), _cpu(primary_pm), _cpu(replica_pm)
                    result = wrk.run(
                        wrk_path, api.base_url, script, concurrency=level, duration_s=args.duration
                    )
                    after = _reads(api), api.cpu_s(), _cpu(primary_pm), _cpu(replica_pm)
                    per = 1000.0 / max(result.requests, 1)
                    (p0, r0), (p1, r1) = before[0], after[0]
                    share = (r1 - r0) / max((p1 - p0) + (r1 - r0), 1)
                    row = Row(
                        workers, use_replica, scenario, level, result.rps, result.p50_ms,
                        result.p99_ms, result.errors, (after[1] - before[1]) * per,
                        (after[2] - before[2]) * per, (after[3] - before[3]) * per, share,
                    )  # fmt: skip
                    say(
                        f"W{workers} {'replica' if use_replica else 'primary'} {scenario}"
                        f" c={level}: {row.rps:,.0f} req/s, p50 {row.p50_ms:.2f} ms,"
                        f" p99 {row.p99_ms:.2f} ms, reads on the replica {share:.0%}"
                    )
                    rows.append(row)
        finally:
            api.stop()
    return rows


def _reads(api: server.Server) -> tuple[int, int]:
    """(primary reads, replica reads) the answering process reports.

    With two workers each answers for itself, so the share is one process's sample.
    """
    database = _health(api)["database"]
    return database.get("primary_reads") or 0, sum(r["reads"] for r in database["replicas"])


def _wait_until_replica_serves(api: server.Server, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        replicas = _health(api)["database"]["replicas"]
        if replicas and all(r["state"] == "up" for r in replicas):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the replica never served reads: {replicas}")
        time.sleep(0.2)


def markdown(rows: list[Row], args: argparse.Namespace) -> str:
    """The side-by-side table, each figure with its ratio to one process on the primary."""
    base = {(r.scenario, r.concurrency): r for r in rows if r.workers == 1 and not r.replica}
    lines = [
        f"`python -m bench.replicas`, {args.duration} s per window after {args.warmup} s of"
        f" warm-up, {USERS:,} sampled users; ratios against one process on the primary alone,"
        " measured in the same run.",
        "",
        "| set-up | scenario | conns | req/s | p50 ms | p99 ms | server CPU ms/req"
        " | primary CPU | replica CPU | reads on replica | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        b = base[(r.scenario, r.concurrency)]
        setup = f"{r.workers} process{'es' if r.workers > 1 else ''}, " + (
            "primary + replica" if r.replica else "primary alone"
        )
        lines.append(
            f"| {setup} | {r.scenario} | {r.concurrency} | {r.rps:,.0f} ({r.rps / b.rps:.2f}×)"
            f" | {r.p50_ms:.2f} ({r.p50_ms / b.p50_ms:.2f}×) | {r.p99_ms:.2f}"
            f" | {r.server_ms:.2f} | {r.primary_ms:.2f} | {r.replica_ms:.2f}"
            f" | {r.replica_reads_share:.0%} | {r.errors} |"
        )
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__.split("\n")[0])
    p.add_argument("--database", required=True, help="the primary's benchmark world")
    p.add_argument("--replica", required=True, help="the same database on a hot standby")
    p.add_argument("--model-dir", type=Path, required=True, help="bench.feed_api's model directory")
    p.add_argument("--duration", type=positive, default=20, help="seconds per window (20)")
    p.add_argument("--warmup", type=positive, default=5, help="seconds before each window (5)")
    p.add_argument("--concurrency", type=positive, default=16, help="the loaded level (16)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out-dir", type=Path, default=Path("reports"))
    return p


def main(argv: list[str] | None = None) -> int:
    """Sample users, run the matrix, write the report."""
    args = parser().parse_args(argv)
    version = json.loads((args.model_dir / "bench_feed_api.json").read_text())["model_version"]
    users, _ = asyncio.run(_user_sample(args.database, version, USERS, 0.1, args.seed))
    with tempfile.TemporaryDirectory() as scratch:
        users_file = Path(scratch) / "users.txt"
        users_file.write_text("\n".join(users) + "\n")
        rows = measure(args, users_file)
    report = markdown(rows, args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "bench_replicas.md").write_text(report)
    (args.out_dir / "bench_replicas.json").write_text(
        json.dumps([r.__dict__ for r in rows], indent=2)
    )
    sys.stdout.write(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
