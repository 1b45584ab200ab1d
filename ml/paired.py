"""Which HOMETOWN variant the behaviour model favours: every variant's list for the same visits.

An A/B test compares different users: with a few thousand of them, which users
fell in which variant moves the CTRs as much as the variants do. The simulator
knows more than the test. For a sample of its sessions it asks the service code
in-process (`app.hometown.service.recommend`, as `/v1/scenarios/hometown` and
`/hometown-ml` do, with the model file and ML term the server uses) for the list
*each* variant would have shown that viewer, and scores every list with the
behaviour model's click probabilities under the same draw of the visit and the
same per-position noise. Summed over the sample, that is a paired comparison of
the variants on identical viewers: the variant the behaviour model favours, with
an interval from a bootstrap over users (a user's sessions are correlated).

It also checks the server: for each sampled session, the list the server
actually served must be the one computed here for the user's variant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import asyncpg
import numpy as np

from app.experiments import Experiment
from app.features.artifact import ClickModel as ClickModelArtifact
from app.hometown import service
from app.hometown.click_model import probability_of
from app.hometown.ml_term import MLTerm
from app.settings import Settings

#: Bootstrap resamples of the users for the paired intervals.
RESAMPLES = 2000
Z_LOW, Z_HIGH = 2.5, 97.5

#: stream indices (best first) -> P(click) of each, for one session (see ml.closed_loop).
Scorer = Callable[[int, Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class Paired:
    """Expected CTR of every variant's lists over the same sampled sessions."""

    sessions: int
    users: int
    expected_ctr: dict[str, float]
    #: Per non-control variant: (difference to control, low, high), absolute.
    differences: dict[str, tuple[float, float, float]]
    control: str
    #: Sampled sessions whose served list differs from the one computed for its variant.
    mismatches: int

    @property
    def favoured(self) -> str:
        """The variant with the highest expected CTR (ties to the first name)."""
        return max(sorted(self.expected_ctr), key=lambda v: self.expected_ctr[v])


async def variant_lists(
    conn: asyncpg.Connection,
    experiment: Experiment,
    user_ids: Sequence[str],
    settings: Settings,
    model: ClickModelArtifact | None,
    page: int,
) -> dict[str, dict[str, list[str]]]:
    """Per variant, per user, the stream ids the server computes for them on HOMETOWN."""
    weights = settings.weights
    term = (
        MLTerm.in_force(model.metadata, settings.ml_term, weights.ml_weight)
        if model is not None
        else None
    )
    lists: dict[str, dict[str, list[str]]] = {v.name: {} for v in experiment.variants}
    for user_id in user_ids:
        query = service.Query(user_id=user_id, max_results=page)
        by_kind: dict[str, list[str]] = {}
        for variant in experiment.variants:
            kind = variant.hometown if model is not None else "basic"
            assert kind is not None  # checked when the experiment was declared
            if kind not in by_kind:
                found = await service.recommend(
                    conn,
                    query,
                    weights,
                    default_local_preference=settings.default_local_preference,
                    probability=probability_of(model) if kind == "ml" and model else None,
                    term=term if kind == "ml" else None,
                )
                by_kind[kind] = [s.stream_id for s in found.streams]
            lists[variant.name][user_id] = by_kind[kind]
    return lists


def compare(
    sessions: Sequence[tuple[int, str, str, list[str]]],
    lists: Mapping[str, Mapping[str, list[str]]],
    score: Scorer,
    control: str,
    seed: int = 0,
) -> Paired:
    """Score each variant's list for every sampled session and compare them, paired.

    Args:
        sessions: (session number, user id, served variant, served stream ids).
        lists: `variant_lists`' answer.
        score: P(click) of a list for a session (the same visit and noise each call).
        control: the variant the others are compared with.
        seed: the bootstrap's.
    """
    variants = sorted(lists)
    users = sorted({user for _, user, _, _ in sessions})
    row = {user: i for i, user in enumerate(users)}
    clicks = np.zeros((len(users), len(variants)))
    shown = np.zeros((len(users), len(variants)))
    mismatches = 0
    for number, user, served, served_ids in sessions:
        if lists[served][user] != served_ids:
            mismatches += 1
        for j, variant in enumerate(variants):
            ids = lists[variant][user]
            clicks[row[user], j] += float(score(number, ids).sum())
            shown[row[user], j] += len(ids)
    totals_c, totals_n = clicks.sum(axis=0), shown.sum(axis=0)
    ctr = {
        v: float(totals_c[j] / totals_n[j]) if totals_n[j] else np.nan
        for j, v in enumerate(variants)
    }
    rng = np.random.default_rng(seed)
    counts = np.stack(
        [
            np.bincount(rng.integers(0, len(users), len(users)), minlength=len(users))
            for _ in range(RESAMPLES)
        ]
    ).astype(np.float64)  # resamples x users
    boot = (counts @ clicks) / np.maximum(counts @ shown, 1e-12)  # resamples x variants
    c = variants.index(control)
    differences = {}
    for j, variant in enumerate(variants):
        if j == c:
            continue
        spread = boot[:, j] - boot[:, c]
        differences[variant] = (
            ctr[variant] - ctr[control],
            float(np.percentile(spread, Z_LOW)),
            float(np.percentile(spread, Z_HIGH)),
        )
    return Paired(len(sessions), len(users), ctr, differences, control, mismatches)
