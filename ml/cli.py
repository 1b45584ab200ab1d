"""The `python -m ml` command line: train, evaluate, compare, experiment (run by __main__)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from app.errors import UserNotFound
from app.features.artifact import ModelError
from app.hometown.service import Query
from app.settings import load_settings
from ml import compare, evaluate, experiment_cli
from ml.arguments import fail, positive, share
from ml.dataset import SOURCES
from ml.feed import cli as feed_cli
from ml.term import DEFAULT_ROOM
from ml.train import BOOSTING_MAX_ROWS, Options, say, summary, train


def parser() -> argparse.ArgumentParser:
    """The argument parser (defaults that depend on settings are filled in by `main`)."""
    root = argparse.ArgumentParser(prog="python -m ml", description=__doc__)
    jobs = root.add_subparsers(dest="job", required=True)
    job = jobs.add_parser(
        "train",
        help="fit the click model on the impressions in DATABASE_URL (or a parquet file)",
        description="Fit logistic regression and gradient boosting, evaluate both on"
        " held-out users, and save the better one (by log loss) to the model path.",
    )
    job.add_argument(
        "--model-path",
        type=Path,
        default=None,
        help="where to save the model (default: MODEL_PATH, models/hometown_model.joblib)",
    )
    job.add_argument(
        "--parquet",
        type=Path,
        default=None,
        help="train from this parquet file (`clicked` + the 14 feature columns"
        " [+ user_id]) instead of the database",
    )
    job.add_argument(
        "--source",
        choices=SOURCES,
        default="interactions",
        help="impressions from the imported log (interactions, the default) or from what"
        " the service logged itself (log: exposures, clicked when a click event names them)",
    )
    job.add_argument("--max-rows", type=positive, default=None, help="use at most N impressions")
    job.add_argument("--seed", type=int, default=42, help="seed for sampling and the models")
    job.add_argument(
        "--test-share", type=share, default=0.2, help="share of users held out (default 0.2)"
    )
    job.add_argument(
        "--validation-share",
        type=share,
        default=0.2,
        help="share of users the click model is not fitted on, to choose the ML term on"
        " (default 0.2; see ml/term.py)",
    )
    job.add_argument(
        "--term",
        choices=("fit", "formula"),
        default="fit",
        help="fit how P(click) enters /hometown-ml's score on the validation users (default),"
        " or keep the seed's ml_weight·P(click)",
    )
    job.add_argument(
        "--ml-room",
        type=_room,
        default=DEFAULT_ROOM,
        help="the largest value the fitted term may add to a score (default"
        f" {DEFAULT_ROOM:g}); the exact search reads more rows the larger it is",
    )
    job.add_argument(
        "--model",
        choices=("auto", "logistic", "boosting"),
        default="auto",
        help="which model to keep: auto picks the lower held-out log loss (default)",
    )
    job.add_argument(
        "--boosting-max-rows",
        type=positive,
        default=BOOSTING_MAX_ROWS,
        help=f"training rows the boosted model sees at most (default {BOOSTING_MAX_ROWS:,})",
    )
    _add_evaluate(jobs)
    _add_compare(jobs)
    experiment_cli.add(jobs)
    feed_cli.add(jobs)
    return root


def _room(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 100.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 100], got {value}")
    return value


def _radius(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 20_000.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 20000] km, got {value}")
    return value


def _add_evaluate(jobs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    job = jobs.add_parser(
        "evaluate",
        help="rank held-out impressions with basic, ML and baselines; report ranking metrics",
        description="Rank each held-out user's shown streams with the basic score, the score"
        " with the click model, and baselines; print a markdown table and write"
        " evaluation.json and evaluation.png. See ml/evaluate.py for the definitions.",
    )
    job.add_argument(
        "--model-path",
        type=Path,
        default=None,
        help="the model to evaluate (default: MODEL_PATH, models/hometown_model.joblib)",
    )
    job.add_argument(
        "--out-dir", type=Path, default=Path("reports"), help="where to write (default reports/)"
    )
    job.add_argument(
        "--seed", type=int, default=42, help="seed of the random baselines and the bootstrap"
    )
    job.add_argument(
        "--resamples", type=positive, default=2000, help="bootstrap resamples (default 2000)"
    )
    job.add_argument(
        "--radius-km",
        type=_radius,
        default=evaluate.DEFAULT_RADIUS_KM,
        help="radius of the random-within-radius baseline (default 250, the API's)",
    )


def _add_compare(jobs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    job = jobs.add_parser(
        "compare",
        help="one user's /hometown and /hometown-ml lists side by side, with score parts",
        description="Ask the service for one user's basic and ML lists (the endpoints' code)"
        " and print them side by side.",
    )
    job.add_argument("--user", required=True, help="the user_id to recommend for")
    job.add_argument(
        "--max-results", type=positive, default=20, help="list length, 1..100 (default 20)"
    )
    job.add_argument("--radius-km", type=_radius, default=250.0, help="radius (default 250)")
    job.add_argument(
        "--model-path",
        type=Path,
        default=None,
        help="the model (default: MODEL_PATH, models/hometown_model.joblib)",
    )


def _train_to(model_path: Path | None) -> str:
    """The training command for a model path given on the command line."""
    if model_path is None:
        return ""
    return f" (for this path: `uv run python -m ml train --model-path {model_path}`)"


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and run the job."""
    args = parser().parse_args(argv)
    settings = load_settings()
    if args.job == "feed":
        feed_cli.main(args, settings)
        return
    if args.job == "experiment":
        experiment_cli.main(args, settings)
        return
    if args.job == "evaluate":
        try:
            evaluate.run(
                evaluate.Options(
                    database_url=settings.database_url,
                    model_path=args.model_path or settings.model_path,
                    out_dir=args.out_dir,
                    weights=settings.weights,
                    seed=args.seed,
                    resamples=args.resamples,
                    radius_km=args.radius_km,
                )
            )
        except ModelError as exc:
            fail(str(exc) + _train_to(args.model_path))
        except evaluate.EvaluationError as exc:
            fail(str(exc))
        return
    if args.job == "compare":
        if args.max_results > 100:
            fail(f"--max-results must be at most 100 (as in the API), got {args.max_results}")
        try:
            model = compare.load_model(args.model_path or settings.model_path)
            request = Query(
                user_id=args.user,
                max_results=args.max_results,
                radius_km=args.radius_km,
                explain=True,
            )
            result = asyncio.run(
                compare.compare(
                    settings.database_url,
                    model,
                    request,
                    settings.weights,
                    default_local_preference=settings.default_local_preference,
                )
            )
        except ModelError as exc:
            fail(str(exc) + _train_to(args.model_path))
        except UserNotFound as exc:
            fail(str(exc))
        print(compare.table(result), flush=True)
        return
    options = Options(
        model_path=args.model_path or settings.model_path,
        database_url=settings.database_url,
        parquet=args.parquet,
        max_rows=args.max_rows,
        seed=args.seed,
        test_share=args.test_share,
        model=args.model,
        boosting_max_rows=args.boosting_max_rows,
        source=args.source,
        validation_share=args.validation_share,
        term=args.term,
        ml_room=args.ml_room,
        weights=settings.weights,
    )
    say(f"training from {options.parquet or 'the database'}; model goes to {options.model_path}")
    print(summary(train(options)), flush=True)
