"""`python -m ml feed train`: fit both stages of the home feed and save them.

1. Read the interactions (database, a file alone, or a freshly generated
   synthetic set) and split them per user in time (ml/feed/split.py).
2. Stage 1 on the fit slice: LightGCN (early stopping on the tune slice), and in
   the same run the baselines it must beat: implicit's ALS and popularity.
3. Stage 2: for every user with a tune-slice row, the candidates the sources
   propose from the fit slice, their features, and graded labels from the tune
   slice's watch time; LambdaRank learns to order them.
4. Save: the embeddings of LightGCN (active) and ALS (the fallback) into
   PostgreSQL, where every serving process reads them; the reranker to
   `--model-dir` with its checksum; a JSON summary beside it.
5. Refresh the feature tables the server reads (app/feed/refresh.py) from the
   database's interactions, so serving sees the facts of the data the models
   were trained on, and servers drop the facts they cached. Only when training
   read the database: a model trained from a file (`--interactions`) leaves the
   tables alone, since they describe the database's dataset, not the file's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import numpy as np
import numpy.typing as npt

from app.feed import artifact, embeddings
from app.feed.features import FEATURE_NAMES
from app.feed.refresh import RefreshSummary, refresh_features
from ml.feed import candidates, history, rerank
from ml.feed.als import fit_als
from ml.feed.lightgcn import LightGCNConfig, fit_lightgcn
from ml.feed.pipeline import RERANKER_FILE, SUMMARY_FILE, Prepared, Source, positives, prepare
from ml.feed.retrieval import Embeddings
from ml.feed.split import warm_users

T = TypeVar("T")

#: The seed's synthetic home-feed set (`--force-synthetic`).
SYNTHETIC_SIZES = (10_000, 50_000, 500_000)


def say(message: str) -> None:
    """Progress on stderr, as the other long jobs print it."""
    print(f"[feed] {message}", file=sys.stderr, flush=True)


def versions() -> dict[str, str]:
    """Library versions the models were made with, kept in their metadata.

    An XGBoost booster reads across versions, but a surprise in a score is easier
    to explain with them at hand.
    """
    import implicit
    import scipy
    import xgboost

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "implicit": implicit.__version__,
        "xgboost": xgboost.__version__,
    }


@dataclass(frozen=True)
class Options:
    """What `ml feed train` was asked to do."""

    source: Source
    model_dir: Path
    test_ratio: float = 0.2
    tune_ratio: float = 0.2
    seed: int = 42
    max_epochs: int = 40
    store: bool = True


@dataclass
class Result:
    """What training produced and how long each step took."""

    prepared: Prepared
    lightgcn: Embeddings
    als: Embeddings
    reranker: rerank.Fitted | None
    versions: dict[str, str]
    reranker_path: Path | None
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _timed(label: str, seconds: dict[str, float], work: Callable[[], T]) -> T:
    started = time.perf_counter()
    value = work()
    seconds[label] = time.perf_counter() - started
    say(f"{label}: {seconds[label]:.1f}s")
    return value


def training_table(
    prepared: Prepared,
    cf: Embeddings,
    seed: int,
    progress: Callable[[str], None] = say,
    users: npt.NDArray[np.int64] | None = None,
) -> rerank.Table:
    """Stage 2's training queries: cut before the tune slice, labelled by it.

    `users` (codes) limits the queries to those users; default: every user with an
    interaction in the tune slice (the benchmark trains on a sample).
    """
    log, cut = prepared.log, prepared.split
    if users is None:
        users = np.flatnonzero(np.bincount(log.user[cut.tune], minlength=log.n_users) > 0)
    queries = candidates.queries_for(log, cut.tune, users.astype(np.int64))
    past = history.build(log, cut.fit, prepared.data.tables)
    lists = candidates.gather(queries, past, prepared.data.tables, cf)
    label_minutes = positives(log, cut.tune, weights="minutes")
    table = rerank.Table([], [], [])
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for done, rows in enumerate(
        candidates.featurise(queries, lists, past, prepared.data.tables, log, cf), start=1
    ):
        minutes = history.row_values(label_minutes, rows.user, rows.items)
        table.add(rows.user, rows.features, rerank.grades(minutes), rng)
        if done % 2000 == 0:
            progress(
                f"reranker queries: {done:,} / {len(users):,}"
                f" ({time.perf_counter() - started:.0f}s)"
            )
    progress(f"reranker queries: {len(table):,} of {len(users):,} users have a watched candidate")
    return table


async def _store(
    url: str,
    prepared: Prepared,
    models: dict[str, tuple[str, Embeddings]],
    metadata: dict[str, Any],
) -> None:
    conn = await asyncpg.connect(url)
    try:
        for kind, (version, vectors) in models.items():
            await embeddings.save_model(
                conn,
                version=version,
                kind=kind,
                user_ids=[str(u) for u in prepared.log.user_ids],
                users=vectors.users,
                stream_ids=[str(s) for s in prepared.log.stream_ids],
                streams=vectors.items,
                metadata={**metadata, "kind": kind},
                activate=kind == "lightgcn",
            )
        await embeddings.prune(conn)
    finally:
        await conn.close()


async def _refresh(url: str) -> RefreshSummary:
    conn = await asyncpg.connect(url)
    try:
        return await refresh_features(conn)
    finally:
        await conn.close()


def refresh(url: str) -> RefreshSummary:
    """Recompute the feature tables from the database's interactions (step 5)."""
    return asyncio.run(_refresh(url))


def train(options: Options) -> Result:
    """Run every step; see the module docstring."""
    seconds: dict[str, float] = {}
    prepared = _timed(
        "read and split",
        seconds,
        lambda: prepare(options.source, options.test_ratio, options.tune_ratio, say),
    )
    log, cut = prepared.log, prepared.split
    warm = warm_users(log, cut.fit)
    say(
        f"split: fit {int(cut.fit.sum()):,}, tune {int(cut.tune.sum()):,},"
        f" test {int(cut.test.sum()):,} rows; {int(prepared.fit.nnz):,} watched pairs to fit;"
        f" {int((~warm).sum()):,} of {log.n_users:,} users cold-start before the tune slice"
    )
    config = LightGCNConfig(
        max_epochs=options.max_epochs, seed=options.seed, exclude_seen=False, threads=2
    )
    gcn = _timed(
        "LightGCN",
        seconds,
        lambda: fit_lightgcn(prepared.fit, prepared.tune, config, progress=say),
    )
    als = _timed("ALS", seconds, lambda: fit_als(prepared.fit, seed=options.seed))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    versions_by_kind = {
        kind: f"{kind}-{stamp}-{prepared.data_hash[:8]}" for kind in ("lightgcn", "als")
    }
    metadata: dict[str, Any] = {
        "data_hash": prepared.data_hash,
        "source": log.source,
        "test_ratio": options.test_ratio,
        "tune_ratio": options.tune_ratio,
        "users": log.n_users,
        "streams": log.n_items,
        "interactions": len(log),
        "trained_at": stamp,
        "versions": versions(),
    }
    options.model_dir.mkdir(parents=True, exist_ok=True)
    path: Path | None = None
    fitted: rerank.Fitted | None = None
    if prepared.data.tables is None:
        say("stage 2 skipped: a file alone has no users or streams tables to rank by")
    else:
        table = _timed(
            "reranker candidates and features",
            seconds,
            lambda: training_table(prepared, gcn.embeddings, options.seed),
        )
        fitted = _timed("reranker fit", seconds, lambda: rerank.fit(table, seed=options.seed))
        path = options.model_dir / RERANKER_FILE
        kept = fitted.booster[: fitted.best_iteration + 1]  # the trees early stopping kept
        artifact.save_ranker(
            bytes(kept.save_raw("json")),
            {
                **metadata,
                "feature_names": list(FEATURE_NAMES),
                "candidate_models": versions_by_kind,
                "rows": fitted.rows,
                "queries": fitted.queries,
                "best_iteration": fitted.best_iteration,
                "validation_ndcg@10": fitted.validation_ndcg10,
                "training_data_hash": fitted.data_hash,
            },
            path,
        )
    if options.store:
        _timed(
            "store embeddings",
            seconds,
            lambda: asyncio.run(
                _store(
                    options.source.database_url,
                    prepared,
                    {
                        "lightgcn": (versions_by_kind["lightgcn"], gcn.embeddings),
                        "als": (versions_by_kind["als"], als),
                    },
                    {**metadata, "best_epoch": gcn.best_epoch, "epochs_run": gcn.epochs_run},
                )
            ),
        )
    features: RefreshSummary | None = None
    if options.store and options.source.interactions is None:
        features = _timed("refresh features", seconds, lambda: refresh(options.source.database_url))
        say(str(features))
    elif options.store:
        say("feature tables left as they are: trained from a file, not the database")
    summary = {
        **metadata,
        "features": (dataclasses.asdict(features) if features is not None else None),
        "models": versions_by_kind,
        "reranker": str(path) if path is not None else None,
        "lightgcn": {
            "best_epoch": gcn.best_epoch,
            "epochs_run": gcn.epochs_run,
            "history": gcn.history,
        },
        "reranker_fit": (
            {
                "queries": fitted.queries,
                "rows": fitted.rows,
                "best_iteration": fitted.best_iteration,
                "validation_ndcg@10": fitted.validation_ndcg10,
            }
            if fitted is not None
            else None
        ),
        "seconds": seconds,
    }
    (options.model_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str))
    return Result(prepared, gcn.embeddings, als, fitted, versions_by_kind, path, summary, seconds)


def report(result: Result) -> str:
    """The closing summary, a few lines."""
    s = result.seconds
    total = sum(s.values())
    fit = result.summary["reranker_fit"]
    gcn = result.summary["lightgcn"]
    lines = [
        f"trained the home feed on {result.prepared.log.source} in {total:.0f}s:",
        f"  LightGCN: best epoch {gcn['best_epoch']} of {gcn['epochs_run']}"
        f" ({s.get('LightGCN', 0):.0f}s); ALS {s.get('ALS', 0):.1f}s",
    ]
    if fit is None:
        lines.append("  reranker: not trained (no users or streams tables)")
    else:
        lines.append(
            f"  reranker: {fit['queries']:,} queries, {fit['rows']:,} rows,"
            f" {fit['best_iteration'] + 1} trees, validation NDCG@10"
            f" {fit['validation_ndcg@10']:.4f} ({s.get('reranker fit', 0):.0f}s),"
            f" saved to {result.reranker_path}"
        )
    lines += [
        f"  embeddings in PostgreSQL: {', '.join(result.versions.values())}",
        "  evaluate with: uv run python -m ml feed evaluate",
    ]
    return "\n".join(lines)
