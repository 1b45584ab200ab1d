"""Command line: `python -m ml train [options]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.settings import get_settings
from ml.train import BOOSTING_MAX_ROWS, Options, say, summary, train


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {value}")
    return value


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
    job.add_argument("--max-rows", type=_positive, default=None, help="use at most N impressions")
    job.add_argument("--seed", type=int, default=42, help="seed for sampling and the models")
    job.add_argument(
        "--test-share", type=_share, default=0.2, help="share of users held out (default 0.2)"
    )
    job.add_argument(
        "--model",
        choices=("auto", "logistic", "boosting"),
        default="auto",
        help="which model to keep: auto picks the lower held-out log loss (default)",
    )
    job.add_argument(
        "--boosting-max-rows",
        type=_positive,
        default=BOOSTING_MAX_ROWS,
        help=f"training rows the boosted model sees at most (default {BOOSTING_MAX_ROWS:,})",
    )
    return root


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and run the job."""
    args = parser().parse_args(argv)
    settings = get_settings()
    options = Options(
        model_path=args.model_path or settings.model_path,
        database_url=settings.database_url,
        parquet=args.parquet,
        max_rows=args.max_rows,
        seed=args.seed,
        test_share=args.test_share,
        model=args.model,
        boosting_max_rows=args.boosting_max_rows,
    )
    say(f"training from {options.parquet or 'the database'}; model goes to {options.model_path}")
    print(summary(train(options)), flush=True)


if __name__ == "__main__":
    main()
