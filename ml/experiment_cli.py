"""`python -m ml experiment report|simulate`: an experiment's report; a closed-loop run."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from pathlib import Path

import httpx

from app.experiments import Experiment
from app.features import artifact
from app.features.artifact import ClickModel, ModelError
from app.settings import Settings
from ml import closed_loop, experiment
from ml.arguments import fail, positive
from ml.paired import Paired


def add(jobs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `experiment` job and its two actions."""
    job = jobs.add_parser(
        "experiment",
        help="report an A/B experiment: CTR and watch minutes per variant, with intervals",
        description="Per variant of an experiment declared in EXPERIMENTS: users,"
        " impressions (the exposures logged), CTR and watch minutes per impression with"
        " 95%% intervals (users as the unit), the difference to the control, and a"
        " sample-ratio-mismatch check. Writes markdown, JSON and a PNG.",
    )
    actions = job.add_subparsers(dest="action", required=True)
    report = actions.add_parser("report", help="write the report of experiment NAME")
    report.add_argument("name", help="the experiment's name in EXPERIMENTS")
    report.add_argument(
        "--out-dir", type=Path, default=Path("reports"), help="where to write (default reports/)"
    )
    report.add_argument(
        "--since",
        type=_instant,
        help="only answers served from this ISO 8601 time with a zone on (default: all)",
    )
    simulate = actions.add_parser(
        "simulate",
        help="run experiment NAME end to end with simulated viewers against a running API",
        description="Simulated viewers from the generator's behaviour model ask the API at"
        " --url for their lists (HOMETOWN or home_feed, whichever the experiment covers),"
        " click and watch by that model, send the events to POST /v1/events (API_KEY), and"
        " then the experiment's report is written for this run's answers. Says whether the"
        " report names the variant the behaviour model favours (exit 1 if not). Needs a"
        " database filled by `python -m seed generate` and a server started with the same"
        " EXPERIMENTS.",
    )
    simulate.add_argument("name", help="the experiment's name in EXPERIMENTS")
    simulate.add_argument("--url", default="http://127.0.0.1:8000", help="the running API")
    simulate.add_argument(
        "--sessions", type=positive, default=20_000, help="lists asked for (default 20,000)"
    )
    simulate.add_argument(
        "--connections", type=positive, default=8, help="viewers at once (default 8)"
    )
    simulate.add_argument("--seed", type=int, default=7, help="seed of the viewers' draws")
    simulate.add_argument(
        "--world-seed",
        type=int,
        default=42,
        help="the --seed the database was generated with (default 42, the generator's)",
    )
    simulate.add_argument(
        "--behaviour",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="the viewers follow the click model with this coefficient changed (repeatable)",
    )
    simulate.add_argument(
        "--out-dir", type=Path, default=Path("reports"), help="where to write (default reports/)"
    )


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give the time zone too (2026-12-04T17:00Z): {text!r}")
    return value


def main(args: argparse.Namespace, settings: Settings) -> None:
    """Run `ml experiment <action>`."""
    try:
        found = experiment.find(settings.experiments, args.name)
    except experiment.ReportError as exc:
        fail(str(exc))
    if args.action == "simulate":
        _simulate(args, settings, found)
        return
    report = _report(settings, found, args.since)
    paths = experiment.write(report, args.out_dir)
    print("[experiment] wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    print(experiment.markdown(report), flush=True)


def _report(settings: Settings, found: Experiment, since: datetime | None) -> experiment.Report:
    try:
        users = asyncio.run(experiment.read_users(settings.database_url, found.name, since))
        report = experiment.summarise(users, found)
    except experiment.ReportError as exc:
        fail(str(exc))
    if not any(arm.impressions for arm in report.arms):
        when = f" since {since.isoformat()}" if since else ""
        fail(f"no exposures logged under experiment {found.name!r}{when} yet")
    return report


def _simulate(args: argparse.Namespace, settings: Settings, found: Experiment) -> None:
    from seed.behaviour import click_model_from

    if settings.api_key is None:
        fail("set API_KEY (the server's): the simulated viewers send events to POST /v1/events")
    try:
        behaviour = click_model_from(args.behaviour)
    except ValueError as exc:
        fail(str(exc))
    options = closed_loop.Options(
        url=args.url,
        experiment=found,
        database_url=settings.database_url,
        api_key=settings.api_key.get_secret_value(),
        sessions=args.sessions,
        connections=args.connections,
        seed=args.seed,
        world_seed=args.world_seed,
        behaviour=behaviour,
    )
    model = _click_model(settings)
    try:
        viewers = closed_loop.load_viewers(settings.database_url, args.world_seed)
        outcome, paired = asyncio.run(_run(options, viewers, settings, model))
    except closed_loop.SimulationError as exc:
        fail(str(exc))
    except httpx.HTTPError as exc:
        fail(f"the API at {args.url} cannot be reached: {exc}")
    report = _report(settings, found, outcome.started_at)
    paths = experiment.write(report, args.out_dir)
    verdict = closed_loop.verdict(outcome, report, paired)
    loop = closed_loop.markdown(outcome, verdict, paired)
    loop_path = args.out_dir / f"simulation_{found.name}.md"
    loop_path.write_text(loop, encoding="utf-8")
    closed_loop.say("wrote " + ", ".join(str(p) for p in [*paths, loop_path]))
    print(experiment.markdown(report) + "\n" + loop, flush=True)
    if not verdict.agrees:
        raise SystemExit(1)


def _click_model(settings: Settings) -> ClickModel | None:
    """The click model the server loads from the same MODEL_PATH, if there is one."""
    try:
        return artifact.load(settings.model_path)
    except ModelError:
        return None


async def _run(
    options: closed_loop.Options,
    viewers: closed_loop.Viewers,
    settings: Settings,
    model: ClickModel | None,
) -> tuple[closed_loop.Outcome, Paired | None]:
    limits = httpx.Limits(max_connections=options.connections)
    headers = {"x-api-key": options.api_key}
    async with httpx.AsyncClient(
        base_url=options.url, headers=headers, limits=limits, timeout=30.0
    ) as client:
        outcome = await closed_loop.simulate(options, viewers, client)
    logged = await closed_loop.wait_for_exposures(options.database_url, outcome.request_ids)
    if logged < len(outcome.request_ids):
        closed_loop.say(
            f"only {logged:,} of {len(outcome.request_ids):,} answers were logged as exposures"
            " (see `exposures` in GET /): the report covers those"
        )
    return outcome, await closed_loop.pair(options, viewers, outcome, settings, model)
