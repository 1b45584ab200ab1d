"""`python -m ml feed train|evaluate|features`: the home feed's models (ml/cli.py routes here)."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.settings import Settings
from ml.arguments import fail, positive, share


def _common(job: argparse.ArgumentParser) -> None:
    job.add_argument(
        "--interactions",
        type=Path,
        default=None,
        help="a file alone in the seed's real-data format (parquet or CSV): user_id, stream_id,"
        " watch_time, rating (optional), timestamp; default: the database's interactions",
    )
    job.add_argument(
        "--source",
        choices=("interactions", "log"),
        default="interactions",
        help="in the database: the imported interactions (default) or what the service"
        " logged itself (log: each stream of an answer, with the minutes of the watch"
        " events naming it)",
    )
    job.add_argument(
        "--watch-time-unit",
        choices=("minutes", "seconds"),
        default="minutes",
        help="the unit of the file's watch_time (default minutes)",
    )
    job.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="where the reranker and the training summary live (default: MODEL_PATH's directory)",
    )
    job.add_argument("--seed", type=int, default=42, help="seed of every random step")


def add(jobs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `feed` command and its two jobs."""
    feed = jobs.add_parser("feed", help="the home feed's models: LightGCN, ALS, the reranker")
    feed_jobs = feed.add_subparsers(dest="feed_job", required=True)
    train = feed_jobs.add_parser(
        "train",
        help="fit LightGCN, ALS and popularity, then the LambdaRank reranker",
        description="Split each user's interactions in time (fit, tune, test), fit the"
        " candidate models on the fit slice and the reranker on the tune slice, store the"
        " embeddings in PostgreSQL and the reranker in --model-dir.",
    )
    _common(train)
    train.add_argument(
        "--force-synthetic",
        action="store_true",
        help="first generate the seed's synthetic set (10,000 users, 50,000 streams, 500,000"
        " interactions) and load it into DATABASE_URL, replacing what the database holds",
    )
    train.add_argument(
        "--test-ratio", type=share, default=0.2, help="each user's latest share held out (0.2)"
    )
    train.add_argument(
        "--tune-ratio",
        type=share,
        default=0.2,
        help="share of the rest the reranker learns from and LightGCN stops on (0.2)",
    )
    train.add_argument(
        "--max-epochs", type=positive, default=40, help="LightGCN epochs at most (default 40)"
    )
    evaluate = feed_jobs.add_parser(
        "evaluate",
        help="measure each stage on the test slice: recall of the sources, NDCG of the orders",
        description="Rebuild training's split, rank each test user's candidates with every"
        " source and ranker, print markdown, write feed_evaluation.json and PNGs.",
    )
    feed_jobs.add_parser(
        "features",
        help="recompute the feature tables the server reads from the database's interactions",
        description="Aggregate the interactions into feed_user_features and feed_stream_features"
        " in one transaction (the facts the reranker's features come from); running servers"
        " drop the facts they cached.",
    )
    _common(evaluate)
    evaluate.add_argument(
        "--out-dir", type=Path, default=Path("reports"), help="where to write (default reports/)"
    )
    evaluate.add_argument(
        "--resamples", type=positive, default=2000, help="bootstrap resamples (default 2000)"
    )


def main(args: argparse.Namespace, settings: Settings) -> None:
    """Run `ml feed <job>`."""
    from app.feed.artifact import RankerError
    from ml.feed import evaluate, train
    from ml.feed.data import FeedDataError
    from ml.feed.pipeline import Source

    if args.feed_job == "features":
        import asyncpg

        try:
            print(train.refresh(settings.database_url), flush=True)
        except (OSError, asyncpg.PostgresError) as exc:
            fail(f"cannot refresh the feature tables: {type(exc).__name__}: {exc}")
        return
    if args.interactions is not None and args.source == "log":
        fail("--interactions FILE and --source log exclude each other: train from one")
    source = Source(
        database_url=settings.database_url,
        interactions=args.interactions,
        watch_time_unit=args.watch_time_unit,
        table=args.source,
    )
    model_dir = args.model_dir or settings.model_path.parent
    try:
        if args.feed_job == "train":
            if args.force_synthetic:
                if args.interactions is not None or args.source == "log":
                    fail("--force-synthetic excludes --interactions and --source log")
                from seed.generate import generate
                from seed.loader import load

                load(settings.database_url, generate(*train.SYNTHETIC_SIZES, seed=args.seed))
            result = train.train(
                train.Options(
                    source=source,
                    model_dir=model_dir,
                    test_ratio=args.test_ratio,
                    tune_ratio=args.tune_ratio,
                    seed=args.seed,
                    max_epochs=args.max_epochs,
                )
            )
            print(train.report(result), flush=True)
        else:
            evaluate.run(
                evaluate.Options(
                    source=source,
                    model_dir=model_dir,
                    out_dir=args.out_dir,
                    seed=args.seed,
                    resamples=args.resamples,
                )
            )
    except (FeedDataError, RankerError, evaluate.EvaluationError, ValueError) as exc:
        fail(str(exc))
