"""`python -m ml feed evaluate`: each stage measured on the test slice training never saw.

The evaluation rebuilds the split training used (same ratios, and the data hash
recorded with the models must match), loads the stored embeddings, and asks
every source for each test user's candidates with the history that precedes
the test slice (fit + tune).

- **Stage 1**: Recall@20/50/100/200 and NDCG@20 of each source alone and of
  their union (round-robin order), against every stream the user watched in
  the test slice. Recall counts every watched stream, also those no source
  proposed; NDCG's gain is the watch-time grade (ml/feed/rerank.py).
- **Stage 2**: the union's candidates ordered by the reranker and by each
  single signal (LightGCN's and ALS's dot products, popularity, the HOMETOWN
  basic score, random): NDCG@10, Recall@10, MAP and MRR over the users with at
  least one watched candidate, and a paired bootstrap 95% interval for the
  reranker against the best single ranker.

Warm and cold-start users (fewer than 3 watched interactions before the test
slice) are reported apart. A file without users or streams tables gets stage 1
only: there is no place, language or category to rank by.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt

from app.feed import artifact, embeddings
from app.feed.features import FEATURE_NAMES
from app.geo import haversine_km
from app.hometown import scoring
from app.hometown.weights import Weights
from ml import metrics
from ml.feed import candidates, history, rerank
from ml.feed.metrics import STAGE1_KS, STAGE2_K, labels_of, stage1, stage2_metrics
from ml.feed.pipeline import RERANKER_FILE, SUMMARY_FILE, Prepared, Source, positives, prepare
from ml.feed.retrieval import Embeddings, top_k
from ml.feed.split import MIN_HISTORY, warm_users

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SINGLE_RANKERS = ("lightgcn", "als", "popularity", "hometown")
#: Queries whose candidates are scored together, then dropped: memory stays bounded.
SCORED_AT_ONCE = 2_000


class EvaluationError(Exception):
    """The evaluation cannot run as asked; the message says why."""


def say(message: str) -> None:
    """Progress on stderr."""
    print(f"[feed evaluate] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Options:
    """What to evaluate, and where to write."""

    source: Source
    model_dir: Path
    out_dir: Path
    seed: int = 42
    resamples: int = 2000


@dataclass
class Evaluation:
    """The report's numbers (`summary` is what feed_evaluation.json holds)."""

    summary: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- loading


async def _vectors(url: str, versions: dict[str, str], prepared: Prepared) -> dict[str, Embeddings]:
    conn = await asyncpg.connect(url)
    out = {}
    try:
        for kind, version in versions.items():
            user_ids, users = await embeddings.load_vectors(conn, version, "user")
            stream_ids, streams = await embeddings.load_vectors(conn, version, "stream")
            if len(user_ids) == 0:
                raise EvaluationError(
                    f"no embeddings of {kind} model {version} in the database;"
                    " train with: uv run python -m ml feed train"
                )
            out[kind] = Embeddings(
                users=_aligned(prepared.log.user_ids, user_ids, users),
                items=_aligned(prepared.log.stream_ids, stream_ids, streams),
            )
    finally:
        await conn.close()
    return out


def _aligned(
    index: Any, ids: list[str], vectors: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Rows in the log's code order; zeros for ids the model does not know."""
    out = np.zeros((len(index), vectors.shape[1]), dtype=np.float32)
    where = index.get_indexer(ids)
    known = where >= 0
    out[where[known]] = vectors[known]
    return out


# --------------------------------------------------------------------------- stage 1


# --------------------------------------------------------------------------- stage 2


def _hometown_scores(rows: candidates.QueryRows, tables: Any, u: int) -> FloatArray:
    user = tables.users.iloc[u]
    viewer = scoring.Viewer(
        latitude=float(user["latitude"]),
        longitude=float(user["longitude"]),
        language=str(user["language"]),
        preferred_categories=frozenset(user["preferred_categories"]),
        local_preference_strength=float(user["local_preference_strength"]),
    )
    c = rows.candidates
    distance_m = 1000.0 * haversine_km(viewer.latitude, viewer.longitude, c.latitude, c.longitude)
    found = scoring.Candidates(
        stream_id=c.stream_id,
        distance_m=distance_m,
        quality=c.quality,
        avg_viewers=c.avg_viewers,
        language=c.language,
        category_id=c.category_id,
    )
    return np.asarray(scoring.score(viewer, found, Weights()).score, dtype=np.float64)


def _means(
    per_user: dict[str, dict[str, FloatArray]], rows: npt.NDArray[np.bool_]
) -> dict[str, dict[str, float]]:
    return {
        name: {m: float(v[rows].mean()) if rows.any() else float("nan") for m, v in values.items()}
        | {"users": int(rows.sum())}
        for name, values in per_user.items()
    }


# --------------------------------------------------------------------------- run


def evaluate(options: Options) -> Evaluation:
    """Build every list and score it; see the module docstring."""
    started = time.perf_counter()
    ranker_path = options.model_dir / RERANKER_FILE
    summary_path = options.model_dir / SUMMARY_FILE
    try:
        trained = json.loads(summary_path.read_text())
    except (OSError, ValueError) as exc:
        raise EvaluationError(
            f"no training summary at {summary_path} ({exc});"
            " train with: uv run python -m ml feed train"
        ) from exc
    prepared = prepare(options.source, trained["test_ratio"], trained["tune_ratio"], say)
    if prepared.data_hash != trained["data_hash"]:
        raise EvaluationError(
            f"the models in {options.model_dir} were trained on other data (hash"
            f" {trained['data_hash']}, this data {prepared.data_hash}); retrain with:"
            " uv run python -m ml feed train"
        )
    log, cut, tables = prepared.log, prepared.split, prepared.data.tables
    vectors = asyncio.run(_vectors(options.source.database_url, trained["models"], prepared))
    test_minutes = positives(log, cut.test, weights="minutes")
    users = np.flatnonzero(np.diff(test_minutes.indptr) > 0).astype(np.int64)
    if len(users) == 0:
        raise EvaluationError("no user watched anything in the test slice")
    warm = warm_users(log, cut.history)[users]
    say(f"{len(users):,} test users with a watched stream ({int((~warm).sum()):,} cold-start)")
    queries = candidates.queries_for(log, cut.test, users)
    past = history.build(log, cut.history, tables)
    lists = candidates.gather(queries, past, tables, vectors["lightgcn"])

    relevant = []
    for u in users.tolist():
        start, end = test_minutes.indptr[u], test_minutes.indptr[u + 1]
        relevant.append(
            (
                test_minutes.indices[start:end].astype(np.int64),
                rerank.grades(test_minutes.data[start:end]),
            )
        )
    # ALS, like LightGCN, retrieves among the streams it was fitted on.
    fitted = np.flatnonzero(np.diff(prepared.fit.tocsc().indptr) > 0)
    als_top, _ = top_k(vectors["als"].users[users], vectors["als"].items[fitted], max(STAGE1_KS))
    als_top = fitted[als_top]
    popular = candidates._ranked(past.popularity, max(STAGE1_KS))
    ranked: dict[str, list[IntArray]] = {
        "lightgcn": list(lists.cf) if lists.cf is not None else [],
        "als": [row.astype(np.int64) for row in als_top],
        "popularity": [popular] * len(users),
    }
    if lists.near is not None:
        ranked["near"] = list(lists.near)
    ranked["trending"] = [lists.trending] * len(users)
    if tables is not None:
        ranked["trending_language"] = lists.trending_language
    ranked["own"] = lists.own
    ranked["union"] = [candidates.union(lists, q)[0] for q in range(len(users))]
    first = {"all": np.ones(len(users), bool), "warm": warm, "cold": ~warm}
    s1 = {}
    for group, mask in first.items():
        if mask.any():
            picked = np.flatnonzero(mask)
            s1[group] = stage1(
                [relevant[i] for i in picked],
                {n: [v[i] for i in picked] for n, v in ranked.items()},
            )
    say(f"stage 1 measured ({time.perf_counter() - started:.0f}s)")

    result: dict[str, Any] = {
        "data": {
            "source": log.source,
            "users": log.n_users,
            "streams": log.n_items,
            "interactions": len(log),
            "test_users": len(users),
            "cold_start_users": int((~warm).sum()),
            "min_history": MIN_HISTORY,
            "data_hash": prepared.data_hash,
        },
        "stage1": s1["warm"] if "warm" in s1 else s1["all"],
        "stage1_by_group": s1,
    }
    if tables is not None:
        result.update(
            _stage2(options, prepared, queries, lists, past, vectors, relevant, warm, ranker_path)
        )
    result["seconds"] = time.perf_counter() - started
    return Evaluation(summary=result)


def _stage2(
    options: Options,
    prepared: Prepared,
    queries: candidates.Queries,
    lists: candidates.SourceLists,
    past: history.History,
    vectors: dict[str, Embeddings],
    relevant: list[tuple[IntArray, FloatArray]],
    warm: npt.NDArray[np.bool_],
    ranker_path: Path,
) -> dict[str, Any]:
    log, tables = prepared.log, prepared.data.tables
    ranker = artifact.load_ranker(ranker_path, FEATURE_NAMES)
    rng = np.random.default_rng(options.seed)
    names = ("reranker", *SINGLE_RANKERS, "random")
    parts: dict[str, dict[str, list[FloatArray]]] = {n: {} for n in names}
    pending: list[tuple[candidates.QueryRows, FloatArray]] = []

    def flush() -> None:
        """Score and measure the pending queries, then let their candidates go."""
        if not pending:
            return
        blocks = [rows.features for rows, _ in pending]
        scores = ranker.score(np.concatenate(blocks)).astype(np.float64)
        offsets = np.cumsum([0] + [len(b) for b in blocks])
        lists: dict[str, list[FloatArray]] = {n: [] for n in names}
        for i, (rows, labels) in enumerate(pending):
            ids = rows.items  # codes follow stream_id order, so they break ties by id
            single = {
                "reranker": scores[offsets[i] : offsets[i + 1]],
                "lightgcn": vectors["lightgcn"].items[rows.items]
                @ vectors["lightgcn"].users[rows.user],
                "als": vectors["als"].items[rows.items] @ vectors["als"].users[rows.user],
                "popularity": past.popularity[rows.items],
                "hometown": _hometown_scores(rows, tables, rows.user),
                "random": rng.random(len(ids)),
            }
            for name, score in single.items():
                order = metrics.rank(np.asarray(score, dtype=np.float64), ids)
                lists[name].append(labels[order])
        for name, values in stage2_metrics(lists).items():
            for metric, array in values.items():
                parts[name].setdefault(metric, []).append(array)
        pending.clear()

    keep = []
    started = time.perf_counter()
    for rows in candidates.featurise(queries, lists, past, tables, log, vectors["lightgcn"]):
        if rows.q and rows.q % 5000 == 0:
            say(
                f"stage 2 candidates and features: {rows.q:,} / {len(queries.user):,}"
                f" ({time.perf_counter() - started:.0f}s)"
            )
        items, grades_ = relevant[rows.q]
        labels, _ = labels_of(items, grades_, rows.items)
        if not (labels > 0).any():
            continue
        keep.append(rows.q)
        pending.append((rows, labels))
        if len(pending) == SCORED_AT_ONCE:
            flush()
    flush()
    if not keep:
        raise EvaluationError("no test user has a watched stream among the candidates")
    per_user = {
        name: {metric: np.concatenate(arrays) for metric, arrays in values.items()}
        for name, values in parts.items()
    }
    kept_warm = warm[np.array(keep)]
    groups = {"warm": kept_warm, "cold": ~kept_warm}
    headline = "warm" if kept_warm.any() else "cold"
    means = {g: _means(per_user, m) for g, m in groups.items() if m.any()}
    key = f"ndcg@{STAGE2_K}"
    best = max(SINGLE_RANKERS, key=lambda n: means[headline][n][key])
    mask = groups[headline]
    interval = metrics.paired_bootstrap(
        per_user[best][key][mask],
        per_user["reranker"][key][mask],
        n_resamples=options.resamples,
        seed=options.seed,
    )
    return {
        "stage2": means[headline],
        "stage2_by_group": means,
        "stage2_comparison": {
            "metric": key,
            "users": headline,
            "against": best,
            "difference": interval.mean_diff,
            "low": interval.low,
            "high": interval.high,
            "resamples": options.resamples,
        },
    }


def run(options: Options) -> Evaluation:
    """Evaluate, print the markdown, and write the JSON and the plots."""
    from ml.feed import report

    evaluation = evaluate(options)
    print(report.markdown(evaluation.summary))
    written = report.write(evaluation.summary, options.out_dir)
    say("wrote " + ", ".join(str(p) for p in written))
    return evaluation
