"""Memory benchmark: the server's resident memory with the click model, lean against not.

    uv run python -m bench.memory [--users 100000 --streams 100000] [--model PATH]

It seeds a scratch database `<name>_bench_memory`, then starts the API twice on it
with the same click model and reads each process's resident set (VmRSS) after
start-up and after one `/v1/scenarios/hometown-ml` request:

- `python -m app`, as deployed: it refuses pandas (app/lean.py);
- the baseline, the same server started from a process that imported pandas
  first, which is what scikit-learn did to every server before app/lean.py (it
  imports pandas whenever pandas is installed).

Both runs share the machine, the data and the model, so their difference is
what keeping pandas out is worth.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from app.settings import load_settings
from bench import database, server
from bench.cli import add_dataset_options, run_main, scratch_database
from bench.log import say
from bench.mixed import MixedDataset, ensure_data
from bench.report import code_version, machine

ML_PATH = "/v1/scenarios/hometown-ml"
#: The baseline: pandas imported first, then the very same `python -m app`.
WITH_PANDAS = ("-c", "import pandas, runpy; runpy.run_module('app', run_name='__main__')")


@dataclass(frozen=True)
class Sample:
    """One server's resident memory, in bytes."""

    name: str
    after_start: int
    after_request: int
    peak: int
    streams_answered: int


def measure_one(name: str, url: str, model: Path, python_args: tuple[str, ...]) -> Sample:
    """Start a server, ask `/hometown-ml` once, read its memory, stop it."""
    api = server.start(url, {"MODEL_PATH": str(model)}, python_args=python_args)
    try:
        after_start = api.rss_bytes()
        body = json.dumps({"user_id": "user_000000"}).encode()
        status, answer = server.probe(api, ML_PATH, body)
        if status != 200:
            raise RuntimeError(f"{ML_PATH} answered {status}: {answer[:300]!r}")
        streams = len(json.loads(answer)["streams"])
        return Sample(name, after_start, api.rss_bytes(), api.peak_rss_bytes(), streams)
    finally:
        api.stop()


def markdown(
    samples: list[Sample], dataset: database.Dataset, model: Path, url: str, load: float
) -> str:
    """The report for BENCHMARKS.md."""
    mib = 1024 * 1024
    lean, baseline = samples
    m = machine(url, load)
    lines = [
        f"Machine: {m.cores} cores, {m.ram_gib:.0f} GiB, {m.python}, PostgreSQL {m.postgres} +"
        f" PostGIS {m.postgis}; 1-minute load average at the start: {m.load_at_start:.2f}."
        f" Code: {code_version()}.",
        f"Data: {dataset.users:,} users, {dataset.streams:,} streams; model: {model.name}.",
        "",
        "| server | RSS after start-up | after one /hometown-ml | peak (VmHWM) |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {s.name} | {s.after_start / mib:.0f} MiB | {s.after_request / mib:.0f} MiB"
            f" | {s.peak / mib:.0f} MiB |"
            for s in samples
        ),
        "",
        f"Saved by keeping pandas out: {(baseline.after_request - lean.after_request) / mib:.0f}"
        f" MiB per process ({lean.after_request / baseline.after_request:.2f}x of the baseline).",
    ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    """The command line."""
    cli = argparse.ArgumentParser(
        prog="python -m bench.memory", description=(__doc__ or "").split("\n")[0]
    )
    add_dataset_options(cli, streams=100_000)
    cli.set_defaults(users=100_000)
    cli.add_argument("--model", type=Path, help="the click model (default: MODEL_PATH)")
    return cli


def main(argv: list[str] | None = None) -> int:
    """Entry point: seed, measure both servers, print the report."""
    args = parser().parse_args(argv)
    model = args.model or load_settings().model_path
    if not model.exists():
        say(f"error: no click model at {model}: train one with `make model` or pass --model")
        return 2
    dataset = MixedDataset(users=args.users, streams=args.streams, seed=args.seed)

    def body() -> int:
        with scratch_database("_memory", dataset, keep=args.keep_db) as scratch:
            ensure_data(scratch.server_url, scratch.url, dataset, reuse=scratch.reuse)
            load = os.getloadavg()[0]
            samples = [
                measure_one("python -m app (lean)", scratch.url, model, ("-m", "app")),
                measure_one("baseline: pandas imported first", scratch.url, model, WITH_PANDAS),
            ]
            report = markdown(samples, dataset, model, scratch.url, load)
        print(report)
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
