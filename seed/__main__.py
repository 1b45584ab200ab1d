"""`python -m seed`: generate, import or explore the dataset in DATABASE_URL.

    python -m seed generate [--users N] [--streams N] [--impressions N] [--seed S]
                            [--as-of ISO|now] [--if-empty]
    python -m seed import --users FILE --streams FILE [--interactions FILE] [--skip-invalid]
                          [--allow-empty]
    python -m seed explore --out DIR

`generate` and `import` replace the whole dataset in one swap (see seed/loader.py):
a run that fails leaves the previous data as it was.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from app.settings import load_settings


def _positive(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _as_of(text: str) -> datetime:
    if text == "now":
        return datetime.now(UTC)
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parser() -> argparse.ArgumentParser:
    """The command line, one sub-command per job."""
    root = argparse.ArgumentParser(prog="python -m seed", description=__doc__.split("\n")[0])
    jobs = root.add_subparsers(dest="job", required=True)

    gen = jobs.add_parser("generate", help="generate and load a synthetic dataset")
    gen.add_argument("--users", type=_positive, default=1_000)
    gen.add_argument("--streams", type=_positive, default=500)
    gen.add_argument("--impressions", type=_positive, default=10_000)
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument(
        "--as-of",
        type=_as_of,
        default=None,
        help="the dataset's 'now' (ISO 8601 or 'now'); fixed by default so runs repeat exactly",
    )
    gen.add_argument(
        "--live-share",
        type=float,
        default=None,
        help="share of streams live at --as-of (default 0.2; 1 makes every stream live)",
    )
    gen.add_argument(
        "--behaviour",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change a coefficient of the click model (seed/behaviour.py ClickModel), e.g."
        " distance_scale_km=60 or quality=1.6; repeatable. Another behaviour gives another"
        " world to check that a trained model generalises",
    )
    gen.add_argument(
        "--if-empty", action="store_true", help="do nothing when the database already has data"
    )

    imp = jobs.add_parser("import", help="load users/streams/interactions from parquet or CSV")
    imp.add_argument("--users", type=Path, required=True)
    imp.add_argument("--streams", type=Path, required=True)
    imp.add_argument("--interactions", type=Path)
    imp.add_argument(
        "--skip-invalid", action="store_true", help="load the good rows and report the bad ones"
    )
    imp.add_argument(
        "--allow-empty",
        action="store_true",
        help="accept users or streams files without data rows (empties the database)",
    )

    exp = jobs.add_parser("explore", help="write PNG plots of the data")
    exp.add_argument("--out", type=Path, default=Path("out/explore"))
    return root


async def _has_data(url: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return bool(
            await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM streams)"
            )
        )
    finally:
        await conn.close()


def run_generate(args: argparse.Namespace, url: str) -> int:
    """Generate the synthetic dataset and load it."""
    from seed.behaviour import click_model_from
    from seed.generate import DEFAULT_AS_OF, generate
    from seed.loader import load

    try:
        click_model = click_model_from(args.behaviour)
    except ValueError as exc:
        print(f"[seed] {exc}", file=sys.stderr)
        return 2

    if args.if_empty and asyncio.run(_has_data(url)):
        print("[seed] the database already has data; nothing to do (--if-empty)", file=sys.stderr)
        return 0
    started = time.perf_counter()
    dataset = generate(
        args.users,
        args.streams,
        args.impressions,
        seed=args.seed,
        as_of=args.as_of or DEFAULT_AS_OF,
        **({"live_share": args.live_share} if args.live_share is not None else {}),
        click_model=click_model,
    )
    summary = load(url, dataset)
    print(f"[seed] done in {time.perf_counter() - started:.1f}s: {summary}", file=sys.stderr)
    return 0


def run_import(args: argparse.Namespace, url: str) -> int:
    """Validate the files, then load them; refuse the lot on any bad row."""
    from seed.importer import InvalidDataError, read_dataset
    from seed.loader import load

    started = time.perf_counter()
    try:
        dataset, report = read_dataset(
            args.users,
            args.streams,
            args.interactions,
            skip_invalid=args.skip_invalid,
            allow_empty=args.allow_empty,
        )
    except InvalidDataError as exc:
        print(f"[import] refused, nothing was loaded:\n{exc}", file=sys.stderr)
        return 1
    print(f"[import] {report}", file=sys.stderr)
    summary = load(url, dataset)
    print(f"[import] done in {time.perf_counter() - started:.1f}s: {summary}", file=sys.stderr)
    return 0


def run_explore(args: argparse.Namespace, url: str) -> int:
    """Write the exploration plots."""
    from seed.explore import explore

    for path in explore(url, args.out):
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for `python -m seed`."""
    args = parser().parse_args(argv)
    url = load_settings().database_url
    jobs = {"generate": run_generate, "import": run_import, "explore": run_explore}
    try:
        return jobs[args.job](args, url)
    except (OSError, RuntimeError, asyncpg.PostgresError) as exc:
        # Missing schema, unreachable database, refused row: one line, no traceback.
        print(f"[seed] error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
