"""Home-feed training benchmark: generate, load, train both stages and evaluate, timed.

    uv run python -m bench.feed                         # the seed's set: 10K x 50K x 500K
    uv run python -m bench.feed --users 100000 --streams 1000000 --impressions 10000000

It works in a scratch database `<name>_bench_feed` beside DATABASE_URL's, created,
migrated and dropped by the run, so the real dataset is never touched. Every
step's wall time is printed, and the process's peak resident memory (the
training runs in this process, so that is what a training job needs). The
baseline measured in the same run is implicit's ALS, fitted on the same matrix:
LightGCN's time is reported as a multiple of it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from app.settings import load_settings
from bench.cli import positive, run_main
from bench.database import admin, database_name, migrate, scratch_url
from ml.feed import evaluate, train
from ml.feed.pipeline import Source
from seed.generate import generate
from seed.loader import load, say


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> int:
    """Parse the arguments and run the benchmark."""
    cli = argparse.ArgumentParser(prog="python -m bench.feed", description=__doc__)
    users, streams, impressions = train.SYNTHETIC_SIZES
    cli.add_argument("--users", type=positive, default=users)
    cli.add_argument("--streams", type=positive, default=streams)
    cli.add_argument("--impressions", type=positive, default=impressions)
    cli.add_argument("--seed", type=int, default=42)
    cli.add_argument("--max-epochs", type=positive, default=40)
    cli.add_argument("--keep-db", action="store_true", help="keep the scratch database")
    args = cli.parse_args()
    server = load_settings().database_url
    url = scratch_url(server) + "_feed"
    name = database_name(url)

    def body() -> int:
        asyncio.run(admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        asyncio.run(admin(server, f'CREATE DATABASE "{name}"'))
        try:
            return _run(args, url)
        finally:
            if not args.keep_db:
                asyncio.run(admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return run_main(body)


def _run(args: argparse.Namespace, url: str) -> int:
    migrate(url)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    load(url, generate(args.users, args.streams, args.impressions, seed=args.seed))
    seconds["generate + load"] = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = Path(scratch)
        started = time.perf_counter()
        result = train.train(
            train.Options(
                source=Source(url), model_dir=model_dir, seed=args.seed, max_epochs=args.max_epochs
            )
        )
        seconds["train"] = time.perf_counter() - started
        train_peak = _peak_mib()
        started = time.perf_counter()
        evaluation = evaluate.evaluate(
            evaluate.Options(
                source=Source(url), model_dir=model_dir, out_dir=model_dir, seed=args.seed
            )
        )
        seconds["evaluate"] = time.perf_counter() - started
    s1, s2 = evaluation.summary["stage1"], evaluation.summary.get("stage2", {})
    gcn = result.summary["lightgcn"]
    epochs = max(int(gcn["epochs_run"]), 1)
    lines = [
        f"# bench.feed: {os.cpu_count()} cores, Python {platform.python_version()}",
        f"data: {args.users:,} users, {args.streams:,} streams, {args.impressions:,} impressions",
        *(f"  {step}: {value:.0f}s" for step, value in seconds.items()),
        "  train steps: " + ", ".join(f"{k} {v:.0f}s" for k, v in result.seconds.items()),
        f"  LightGCN {result.seconds['LightGCN'] / epochs:.1f}s per epoch over {epochs} epochs;"
        f" {result.seconds['LightGCN'] / max(result.seconds['ALS'], 1e-9):.1f}x ALS's fit"
        f" ({result.seconds['ALS']:.1f}s, the same-run baseline)",
        f"  peak memory: {train_peak:,.0f} MiB after training, {_peak_mib():,.0f} MiB in all",
        f"  end to end: {sum(seconds.values()):.0f}s",
        "stage 1 Recall@100: " + ", ".join(f"{n} {m['recall@100']:.4f}" for n, m in s1.items()),
    ]
    if s2:
        c = evaluation.summary["stage2_comparison"]
        lines.append(
            "stage 2 NDCG@10: " + ", ".join(f"{n} {m['ndcg@10']:.4f}" for n, m in s2.items())
        )
        lines.append(
            f"reranker - {c['against']}: {c['difference']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}]"
        )
    say("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
