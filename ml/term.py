"""Choose how P(click) enters the HOMETOWN score, on validation users' impressions.

`/hometown-ml` ranks by `score + weight · min(P(click), cap)` (app/hometown/ml_term.py).
The seed's `0.5 · P(click)` barely moves a score of 1 to 15, so training tries
other pairs and keeps the one whose order puts validation users' clicks highest:

- **Who.** The validation users of ml/split.py: neither the test users (they judge
  the result in `ml evaluate`) nor the users the click model was fitted on.
- **What.** Exactly what `ml evaluate` measures: each user's candidates are the
  distinct streams of their impressions, a candidate is relevant when one of its
  impressions was clicked, the order is `scoring.score` plus the term with ties by
  stream id, and the objective is the mean nDCG@10 over users.
- **Which pairs.** Caps at quantiles of the validation users' P(click), and no
  cap; weights on a log grid; every pair whose maximum `weight · cap` is within
  the budget `room` (the exact search adds that maximum to the bound of every
  stream it has not read, so a larger maximum reads more rows). The seed's own
  term is one of the pairs, so when nothing beats it the formula is kept.
- **Ties** go to the smaller maximum, then the seed's term: the search stays as
  cheap as it can for the same quality.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.features.artifact import ClickModel
from app.hometown.ml_term import MLTerm
from app.hometown.scoring import score, top_k
from app.hometown.weights import Weights
from ml import evaluate
from ml.metrics import per_user_metrics
from ml.split import is_validation_user

#: The largest `weight · cap` training may choose, in score points (a HOMETOWN score
#: is 1 to about 16). Measured in BENCHMARKS.md: what the search reads grows with it.
DEFAULT_ROOM = 8.0
#: Caps tried: these quantiles of the validation users' P(click), and 1 (no cap).
CAP_QUANTILES = (0.5, 0.75, 0.9, 0.95, 0.99)
#: Maxima (`weight · cap`) tried, as shares of the room.
ROOM_SHARES = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
#: Mean nDCG@10 values closer than this count as equal.
TIE = 1e-9
OBJECTIVE = "ndcg@10"


@dataclass
class Choice:
    """The term chosen and the table it was chosen from."""

    term: MLTerm
    summary: dict[str, Any]


def candidates(ml_weight: float, probabilities: np.ndarray, room: float) -> list[MLTerm]:
    """The pairs tried: the seed's term first, then caps × maxima within `room`."""
    tried = [MLTerm.formula(ml_weight)]
    if room <= 0 or len(probabilities) == 0:
        return tried
    caps = sorted({float(np.quantile(probabilities, q)) for q in CAP_QUANTILES} | {1.0})
    for cap in caps:
        if cap <= 0:
            continue
        for share in ROOM_SHARES:
            tried.append(MLTerm(room * share / cap, cap, "fitted"))
    return tried


def mean_ndcg(
    users: list[evaluate.UserCandidates],
    probabilities: list[np.ndarray],
    weights: Weights,
    term: MLTerm,
) -> float:
    """Mean nDCG@10 over users of the order `score + term(P)`, ties by stream id."""
    lists = []
    for user, probability in zip(users, probabilities, strict=True):
        c = user.rows.candidates
        total = score(user.viewer, c, weights, ml=term(probability)).score
        lists.append(user.clicked.astype(np.float64)[top_k(total, c.stream_id, len(c))])
    return float(per_user_metrics(lists, (10,))[OBJECTIVE].mean())


def choose(
    model: ClickModel,
    database_url: str,
    *,
    test_share: float,
    validation_share: float,
    weights: Weights,
    room: float = DEFAULT_ROOM,
) -> Choice:
    """The best term on the validation users; the seed's term if they carry no signal."""
    formula = MLTerm.formula(weights.ml_weight)
    _, read = asyncio.run(
        evaluate.read_users(
            database_url,
            lambda ids: is_validation_user(ids, test_share, validation_share),
            f"validation users (share {validation_share:g})",
        )
    )
    users = evaluate.informative(read)
    if not users:
        return Choice(formula, {"users": 0, "reason": "no validation user has a click"})
    probabilities = evaluate.click_probabilities(model, users)
    every = np.concatenate(probabilities)
    basic = mean_ndcg(users, probabilities, weights, MLTerm(0.0))
    table = []
    best, best_value = formula, -np.inf
    for term in candidates(weights.ml_weight, every, room):
        value = mean_ndcg(users, probabilities, weights, term)
        table.append({**term.to_metadata(), "source": term.source, OBJECTIVE: value})
        better = value > best_value + TIE
        tie_cheaper = abs(value - best_value) <= TIE and term.maximum < best.maximum
        if better or tie_cheaper:
            best, best_value = term, value
    formula_value = table[0][OBJECTIVE]
    summary = {
        "users": len(users),
        "room": room,
        "objective": f"mean {OBJECTIVE} over validation users",
        "basic": basic,
        "formula": formula_value,
        "chosen": {**best.to_metadata(), "source": best.source, OBJECTIVE: best_value},
        "tried": table,
    }
    return Choice(best, summary)
