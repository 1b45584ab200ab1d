"""Offline ranking evaluation: does the click model order held-out impressions better?

`python -m ml evaluate` re-ranks what held-out users were actually shown and
asks which ranker puts the streams they clicked nearer the top.

**Who.** The users `ml.split.is_test_user` holds out, with the test share the
model's metadata records (0.2 if it records none), so no user the model was
fitted on is scored. A user's *candidates* are the distinct streams of their
impressions; a candidate's label is 1 when any impression of it was clicked.
Users with no click, or with fewer than two candidates, are left out: neither
carries information about order (every ranker scores them the same), and
ml/metrics.py would count a click-less user as 0 for every ranker.

**What is ranked.** Always the same candidate list for every ranker, so the
numbers compare orders, not retrieval. The candidates include streams that are
not live now (the impressions are historical); the API itself only recommends
live streams within a radius, widening when it must. This measures the scoring
formula, which is the part the click model changes.

**The rankers.**

- `basic`: `app.hometown.scoring.score` without the ML term, ordered by `top_k`
  (descending score, ties by ascending stream_id): the `/hometown` order.
- `ml`: the same plus the model's ML term (app/hometown/ml_term.py: the one
  training fitted, else the seed's `ml_weight · P(click)`): the `/hometown-ml` order.
- `ml_formula`: the same plus the seed's `ml_weight · P(click)`, whatever the
  model's term (`ML_TERM=formula`): what the fitted term is measured against.
- `click_model_only`: P(click) alone, descending, ties by stream_id. No endpoint
  ranks this way; it is a diagnostic that shows how much the model knows, apart
  from how little `0.5 · P(click)` can move a HOMETOWN score of 1 to 15.
- `most_viewers`: `avg_viewer_count` descending, ties by stream_id.
- `random_in_radius`: the candidates within `radius_km` (250 by default, the
  API's default radius; distance on the sphere, `<=` as `ST_DWithin`) first, in a
  seeded random order, then the others in a seeded random order. This is what a
  ranker that knows only "is it near" would do; it keeps every user's full list,
  so it stays comparable with the other rankers.
- `random`: a seeded random permutation of all candidates.

**Same code as the API.** Rows are built by `app.hometown.candidates.to_rows`
from records in the service's column order, with the distance computed by the
service's expression (`ST_Distance(stream, user, false)`: the sphere, stream
first, since PostGIS's spherical distance is not bit-for-bit symmetric). The
viewer carries the fields `service.resolve_viewer` reads. P(click) is built the
way `app.hometown.click_model.probability_of` builds it (`Pairs.for_viewer` with the
same arguments, then `feature_matrix`, then one model call per user); only its
one query per user for the creator columns is folded into the candidate query.
The integration test checks that the probabilities equal `probability_of`'s,
bit for bit. (One model call for all users would be faster but is not
identical: see `click_probabilities`.)

**Metrics** (ml/metrics.py): nDCG, precision, recall and hit rate at 5 and 10,
MAP and MRR, each the mean over users. For ML − basic a paired bootstrap over
users gives the mean difference and a 95% percentile interval (nDCG@10, nDCG@5,
MAP and MRR). Nothing here is tuned: the weights are the settings' weights and
the model and its term are the saved ones (the term was chosen on validation
users, who are neither test users nor in the click model's training rows).

Outputs: a markdown table on stdout, progress on stderr, `evaluation.json` and
`evaluation.png` (bar charts; error bars are the paired intervals) in the output
directory.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import numpy as np
import numpy.typing as npt

from app.features import artifact
from app.features.artifact import ClickModel
from app.features.clicks import FloatArray, Pairs, feature_matrix
from app.hometown import click_model
from app.hometown.candidates import Rows, to_rows
from app.hometown.ml_term import MLTerm
from app.hometown.scoring import Viewer, score, top_k
from app.hometown.service import viewer_from_row
from app.hometown.weights import Weights
from ml.metrics import paired_bootstrap, per_user_metrics, rank
from ml.split import is_test_user

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BoolArray = npt.NDArray[np.bool_]

#: The test share when the model's metadata does not record one (train's default).
DEFAULT_TEST_SHARE = 0.2
#: The API's default radius (`HometownRequest.radius_km`).
DEFAULT_RADIUS_KM = 250.0
KS = (5, 10)
RANKERS = (
    "basic",
    "ml",
    "ml_formula",
    "click_model_only",
    "most_viewers",
    "random_in_radius",
    "random",
)
METRICS = tuple(
    [f"{m}@{k}" for m in ("ndcg", "precision", "recall", "hit_rate") for k in KS] + ["map", "mrr"]
)
#: Metrics whose ML − basic difference gets a bootstrap interval.
COMPARED = ("ndcg@10", "ndcg@5", "map", "mrr")
CONFIDENCE = 0.95

#: Same columns, same order as the service's candidate query (to_rows reads the
#: first nine), then what the evaluation and the click model need besides.
CANDIDATES_SQL = """
WITH shown AS (
    SELECT user_id, stream_id, bool_or(clicked) AS clicked, count(*) AS impressions
    FROM interactions
    WHERE user_id = ANY($1::text[])
    GROUP BY user_id, stream_id
)
SELECT s.stream_id, s.city, s.title, s.language, s.category_id, s.stream_quality_score,
       s.avg_viewer_count, s.current_viewer_count,
       ST_Distance(s.location, u.location, false) AS distance_m,
       c.user_id, c.clicked, c.impressions,
       s.creator_followers, s.is_partnered, s.mature_content
FROM shown c
JOIN users u USING (user_id)
JOIN streams s USING (stream_id)
ORDER BY c.user_id, s.stream_id
"""

#: The columns of `candidates.USER_SQL`, for every held-out user at once.
USERS_SQL = """
SELECT user_id, latitude, longitude, language, preferred_categories, local_preference_strength,
       city, total_watch_hours
FROM users WHERE user_id = ANY($1::text[])
"""


class EvaluationError(Exception):
    """The evaluation cannot run; the message says why and what to do."""


def say(message: str) -> None:
    """Progress on stderr, one line per step."""
    print(f"[evaluate] {message}", file=sys.stderr, flush=True)


@dataclass
class Options:
    """What `python -m ml evaluate` was asked to do."""

    database_url: str
    model_path: Path
    out_dir: Path = Path("reports")
    weights: Weights = field(default_factory=Weights)
    seed: int = 42
    resamples: int = 2000
    radius_km: float = DEFAULT_RADIUS_KM


@dataclass
class UserCandidates:
    """One held-out user's candidates, as the service would hold them."""

    viewer: Viewer
    rows: Rows
    clicked: BoolArray
    impressions: int
    creator_followers: FloatArray
    is_partnered: BoolArray
    mature_content: BoolArray

    @property
    def user_id(self) -> str:
        """The user's id (always set for a stored user)."""
        assert self.viewer.user_id is not None
        return self.viewer.user_id


@dataclass
class Evaluation:
    """Everything measured: the JSON summary and the per-user values behind it."""

    summary: dict[str, Any]
    user_ids: list[str]
    #: ranker -> metric -> one value per user, in `user_ids` order.
    per_user: dict[str, dict[str, FloatArray]]
    #: ranker -> one array of labels in rank order per user.
    lists: dict[str, list[FloatArray]]


# --- reading ----------------------------------------------------------------------


def viewer_from(record: asyncpg.Record) -> Viewer:
    """The Viewer `service.resolve_viewer` builds from a `USER_SQL` row (its own function)."""
    return viewer_from_row(record)


#: Which users to read: a mask over an array of user ids (ml/split.py's functions).
Pick = Callable[[npt.NDArray[np.object_]], BoolArray]


async def picked_user_ids(conn: asyncpg.Connection, pick: Pick) -> list[str]:
    """Every user `pick` selects, sorted."""
    ids = [r["user_id"] for r in await conn.fetch("SELECT user_id FROM users ORDER BY user_id")]
    if not ids:
        return []
    chosen = pick(np.array(ids, dtype=object))
    return [u for u, out in zip(ids, chosen, strict=True) if out]


async def fetch_candidates(
    conn: asyncpg.Connection, user_ids: Sequence[str]
) -> list[UserCandidates]:
    """Every user's candidates: two queries in all, grouped by user in Python."""
    viewers = {r["user_id"]: viewer_from(r) for r in await conn.fetch(USERS_SQL, list(user_ids))}
    records = await conn.fetch(CANDIDATES_SQL, list(user_ids))
    out = []
    for user_id, group in itertools.groupby(records, key=lambda r: r["user_id"]):
        mine = list(group)
        out.append(
            UserCandidates(
                viewer=viewers[user_id],
                rows=to_rows(mine),
                clicked=np.array([r["clicked"] for r in mine], dtype=bool),
                impressions=sum(r["impressions"] for r in mine),
                creator_followers=np.array([r["creator_followers"] for r in mine], np.float64),
                is_partnered=np.array([r["is_partnered"] for r in mine], dtype=bool),
                mature_content=np.array([r["mature_content"] for r in mine], dtype=bool),
            )
        )
    return out


# --- the click model ------------------------------------------------------------------


def pairs_for(user: UserCandidates) -> Pairs:
    """The Pairs `probability_of` builds for this viewer and these rows (its own function)."""
    return click_model.pairs_for(
        user.viewer,
        user.rows,
        creator_followers=user.creator_followers,
        is_partnered=user.is_partnered,
        mature_content=user.mature_content,
    )


def click_probabilities(model: ClickModel, users: Sequence[UserCandidates]) -> list[FloatArray]:
    """P(click) for every user's candidates: one model call per user, as the endpoint makes.

    Not one call for all users: sklearn's matrix products take other BLAS paths
    for other row counts, and a logistic model's probabilities then differ in the
    last bits from the endpoint's. Per user, the call sees the very matrix the
    endpoint builds, so the probabilities are identical (the integration test
    checks it); the per-user cost is a fraction of a millisecond.
    """
    return [model.probability(feature_matrix(pairs_for(u))) for u in users]


# --- ranking ---------------------------------------------------------------------------


def orders(
    user: UserCandidates,
    probability: FloatArray,
    weights: Weights,
    term: MLTerm,
    *,
    radius_km: float,
    rng: np.random.Generator,
) -> dict[str, npt.NDArray[np.intp]]:
    """Each ranker's order of the user's candidates: positions, best first."""
    candidates = user.rows.candidates
    ids, n = candidates.stream_id, len(candidates)
    basic = score(user.viewer, candidates, weights).score
    with_ml = score(user.viewer, candidates, weights, ml=term(probability)).score
    formula = MLTerm.formula(weights.ml_weight)
    with_formula = score(user.viewer, candidates, weights, ml=formula(probability)).score
    shuffled = rng.permutation(n)
    within = candidates.distance_m <= radius_km * 1000.0
    # Within the radius first; inside each part, the order of a second permutation.
    second = rng.permutation(n)
    in_radius = second[np.argsort(~within[second], kind="stable")]
    return {
        "basic": top_k(basic, ids, n),
        "ml": top_k(with_ml, ids, n),
        "ml_formula": top_k(with_formula, ids, n),
        "click_model_only": rank(probability, ids),
        "most_viewers": rank(candidates.avg_viewers, ids),
        "random_in_radius": in_radius,
        "random": shuffled,
    }


# --- the whole run --------------------------------------------------------------------


def test_share_of(model: ClickModel) -> float:
    """The held-out share the model was trained with (the default if not recorded)."""
    share = (model.metadata.get("data") or {}).get("test_share")
    return float(share) if share is not None else DEFAULT_TEST_SHARE


async def read_users(url: str, pick: Pick, what: str) -> tuple[int, list[UserCandidates]]:
    """How many users `pick` selects, and the candidates of those with impressions."""
    conn = await asyncpg.connect(url)
    try:
        user_ids = await picked_user_ids(conn, pick)
        say(f"{len(user_ids):,} {what}")
        return len(user_ids), await fetch_candidates(conn, user_ids)
    finally:
        await conn.close()


def informative(users: Sequence[UserCandidates]) -> list[UserCandidates]:
    """The users whose order can be measured: a click among at least two candidates."""
    return [u for u in users if u.clicked.any() and len(u.clicked) >= 2]


def evaluate(options: Options, model: ClickModel) -> Evaluation:
    """Read the held-out users, rank with every ranker, measure, compare ML with basic."""
    started = time.perf_counter()
    test_share = test_share_of(model)
    held_out, read = asyncio.run(
        read_users(
            options.database_url,
            lambda ids: is_test_user(ids, test_share),
            f"held-out users (test share {test_share:g})",
        )
    )
    say(f"{sum(len(u.clicked) for u in read):,} candidates read in {_since(started)}")
    no_click = [u for u in read if not u.clicked.any()]
    single = [u for u in read if u.clicked.any() and len(u.clicked) < 2]
    users = informative(read)
    if not users:
        raise EvaluationError(
            f"no held-out user (test share {test_share:g}) has a click among at least two"
            f" shown streams ({len(read)} held-out users have impressions); generate data with"
            " `uv run python -m seed generate`"
        )
    step = time.perf_counter()
    probabilities = click_probabilities(model, users)
    say(f"P(click) for {len(users):,} users in {_since(step)}")

    term = MLTerm.of_model(model.metadata, options.weights.ml_weight)
    step = time.perf_counter()
    rng = np.random.default_rng(options.seed)
    lists: dict[str, list[FloatArray]] = {name: [] for name in RANKERS}
    for user, probability in zip(users, probabilities, strict=True):
        labels = user.clicked.astype(np.float64)
        ranked = orders(
            user, probability, options.weights, term, radius_km=options.radius_km, rng=rng
        )
        for name in RANKERS:
            lists[name].append(labels[ranked[name]])
    per_user = {name: per_user_metrics(lists[name], KS) for name in RANKERS}
    differences = {
        metric: paired_bootstrap(
            per_user["basic"][metric],
            per_user["ml"][metric],
            n_resamples=options.resamples,
            confidence=CONFIDENCE,
            seed=options.seed,
        )._asdict()
        for metric in COMPARED
    }
    say(f"ranked and measured in {_since(step)}")

    sizes = np.array([len(u.clicked) for u in users])
    clicks = np.array([int(u.clicked.sum()) for u in users])
    within = np.array(
        [(u.rows.candidates.distance_m <= options.radius_km * 1000.0).sum() for u in users]
    )
    meta = model.metadata
    summary: dict[str, Any] = {
        "rankers": {
            name: {
                "description": DESCRIPTIONS[name].format(
                    radius_km=options.radius_km, term=f"{term.describe()} ({term.source})"
                ),
                "metrics": {m: float(per_user[name][m].mean()) for m in METRICS},
            }
            for name in RANKERS
        },
        "ml_minus_basic": {
            metric: {**values, "confidence": CONFIDENCE} for metric, values in differences.items()
        },
        "counts": {
            "held_out_users": held_out,
            "held_out_users_with_impressions": len(read),
            "users_evaluated": len(users),
            "users_without_click": len(no_click),
            "users_with_one_candidate": len(single),
            "candidates": int(sizes.sum()),
            "clicked_candidates": int(clicks.sum()),
            "impressions": sum(u.impressions for u in users),
            "candidates_per_user_median": float(np.median(sizes)),
            "candidates_within_radius_share": float(within.sum() / sizes.sum()),
        },
        "model": {
            "path": str(options.model_path),
            "kind": meta.get("model_kind"),
            "sha256": meta.get("sha256"),
            "created_at": meta.get("created_at"),
            "training_rows": meta.get("training_rows"),
            "test_share": test_share,
            "ml_term": {**term.to_metadata(), "source": term.source},
        },
        "settings": {
            "ks": list(KS),
            "seed": options.seed,
            "resamples": options.resamples,
            "radius_km": options.radius_km,
            "weights": options.weights.model_dump(),
        },
        "definitions": DEFINITIONS,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return Evaluation(summary, [u.user_id for u in users], per_user, lists)


DESCRIPTIONS = {
    "basic": "HOMETOWN score without the ML term (scoring.score + top_k): /hometown's order",
    "ml": "HOMETOWN score + the model's term, {term} (scoring.score + top_k): /hometown-ml's order",
    "ml_formula": "HOMETOWN score + the seed's ml_weight·P(click), whatever the model's term",
    "click_model_only": "P(click) alone, descending, ties by stream_id (a diagnostic: no"
    " endpoint ranks this way)",
    "most_viewers": "avg_viewer_count descending, ties by stream_id",
    "random_in_radius": "candidates within {radius_km:g} km (sphere, <=) first in seeded random"
    " order, then the rest in seeded random order",
    "random": "a seeded random permutation of all candidates",
}
DEFINITIONS = {
    "users": "held out by ml.split.is_test_user with the model's test share; kept when they"
    " have at least one clicked candidate and at least two candidates",
    "candidates": "the distinct streams of the user's impressions (live now or not)",
    "label": "1 if any impression of the stream was clicked, else 0",
    "metrics": "ml/metrics.py, mean over users; nDCG with linear gain; precision@k divides by k",
    "ml_minus_basic": "paired bootstrap over users (percentile interval) of mean(ml) − mean(basic)",
}


def _since(started: float) -> str:
    return f"{time.perf_counter() - started:.1f}s"


# --- output ----------------------------------------------------------------------------


def markdown(summary: dict[str, Any]) -> str:
    """The summary as markdown: rankers × metrics, ML − basic with intervals, counts, model."""
    lines = [
        "| ranker | " + " | ".join(METRICS) + " |",
        "| --- |" + " ---: |" * len(METRICS),
    ]
    for name, ranker in summary["rankers"].items():
        values = " | ".join(f"{ranker['metrics'][m]:.4f}" for m in METRICS)
        lines.append(f"| {name} | {values} |")
    confidence = f"{CONFIDENCE:.0%}"
    lines += [
        "",
        f"| ML − basic | mean difference | {confidence} CI low | {confidence} CI high |",
        "| --- | ---: | ---: | ---: |",
    ]
    for metric, d in summary["ml_minus_basic"].items():
        lines.append(f"| {metric} | {d['mean_diff']:+.4f} | {d['low']:+.4f} | {d['high']:+.4f} |")
    c, model, s = summary["counts"], summary["model"], summary["settings"]
    lines += [
        "",
        f"Users: {c['users_evaluated']:,} evaluated of {c['held_out_users']:,} held out"
        f" ({c['held_out_users_with_impressions']:,} with impressions;"
        f" left out: {c['users_without_click']:,} without a click,"
        f" {c['users_with_one_candidate']:,} with one candidate)."
        f" Candidates: {c['candidates']:,} ({c['clicked_candidates']:,} clicked,"
        f" median {c['candidates_per_user_median']:g} per user,"
        f" {c['candidates_within_radius_share']:.0%} within {s['radius_km']:g} km)"
        f" from {c['impressions']:,} impressions.",
        f"Model: {model['kind']}, sha256 {model['sha256']}, test share {model['test_share']:g}."
        f" Bootstrap: {s['resamples']:,} resamples, seed {s['seed']}.",
        "",
        *(f"- `{name}`: {r['description']}" for name, r in summary["rankers"].items()),
    ]
    return "\n".join(lines)


def plot(summary: dict[str, Any]) -> Figure:
    """Left: every ranker's metric means. Right: ML − basic with its paired intervals."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, width_ratios=(3, 1))
    rankers = summary["rankers"]
    x = np.arange(len(METRICS))
    width = 0.8 / len(rankers)
    for i, (name, ranker) in enumerate(rankers.items()):
        left.bar(
            x + (i - (len(rankers) - 1) / 2) * width,
            [ranker["metrics"][m] for m in METRICS],
            width,
            label=name,
        )
    left.set_xticks(x, METRICS, rotation=30, ha="right")
    left.set_ylim(0, 1)
    left.set_ylabel("mean over users")
    left.legend(fontsize=8, ncols=len(rankers), loc="upper left")
    counts = summary["counts"]
    left.set_title(
        f"Held-out impressions: {counts['users_evaluated']:,} users,"
        f" {counts['candidates']:,} candidates"
    )
    diffs = summary["ml_minus_basic"]
    names = list(diffs)
    mean = np.array([diffs[m]["mean_diff"] for m in names])
    low = np.array([diffs[m]["low"] for m in names])
    high = np.array([diffs[m]["high"] for m in names])
    right.bar(
        names,
        mean,
        yerr=np.vstack([mean - low, high - mean]),
        capsize=5,
        color=[
            "tab:green" if lo > 0 else "tab:red" if hi < 0 else "tab:gray"
            for lo, hi in zip(low, high, strict=True)
        ],
    )
    right.axhline(0, color="black", linewidth=0.8)
    right.set_title(f"ML − basic, {CONFIDENCE:.0%} paired bootstrap CI")
    right.tick_params(axis="x", rotation=30)
    return fig


def write(evaluation: Evaluation, out_dir: Path) -> tuple[Path, Path]:
    """Write `evaluation.json` and `evaluation.png` into `out_dir` (created if needed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / "evaluation.json", out_dir / "evaluation.png"
    json_path.write_text(json.dumps(evaluation.summary, indent=2, ensure_ascii=False) + "\n")
    plot(evaluation.summary).savefig(png_path)
    return json_path, png_path


def run(options: Options) -> Evaluation:
    """Load the model, evaluate, write the files, print the table; what the CLI calls.

    Raises:
        ModelError: no usable model at `options.model_path` (the message says how to train).
        EvaluationError: no held-out user with a click.
    """
    model = artifact.load(options.model_path)
    say(f"model {options.model_path}: {model.metadata.get('model_kind')}")
    evaluation = evaluate(options, model)
    json_path, png_path = write(evaluation, options.out_dir)
    say(f"wrote {json_path} and {png_path}")
    print(markdown(evaluation.summary), flush=True)
    return evaluation
