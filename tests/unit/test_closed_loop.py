"""The closed-loop simulator's own arithmetic: events, the paired comparison, the verdict."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from ml import closed_loop, paired
from ml.experiment import Difference, Report


def _report(*differences: tuple[str, float, float]) -> Report:
    return Report(
        experiment="x",
        control="basic",
        arms=[],
        differences=[
            Difference(variant, "ctr", (low + high) / 2, low, high, None)
            for variant, low, high in differences
        ]
        + [Difference("ml", "watch_minutes_per_impression", 1.0, 0.5, 1.5, None)],
        srm_chi2=0.0,
        srm_p=1.0,
        srm=False,
        users_in_several_variants=0,
    )


def _outcome(**expected: float) -> closed_loop.Outcome:
    outcome = closed_loop.Outcome("x", "hometown", datetime.now(UTC))
    for name, ctr in expected.items():
        outcome.tallies[name] = closed_loop.Tally(
            sessions=10, impressions=1000, expected_clicks=ctr * 1000
        )
    return outcome


def test_the_verdict_names_the_winner_only_when_its_interval_excludes_zero() -> None:
    outcome = _outcome(basic=0.03, ml=0.04)
    assert outcome.favoured() == "ml"
    agree = closed_loop.verdict(outcome, _report(("ml", 0.001, 0.01)))
    assert (agree.winner, agree.agrees) == ("ml", True)
    unsure = closed_loop.verdict(outcome, _report(("ml", -0.001, 0.01)))
    assert (unsure.winner, unsure.agrees) == (None, False)
    assert unsure.text.startswith("inconclusive")
    control = closed_loop.verdict(outcome, _report(("ml", -0.01, -0.001)))
    assert (control.winner, control.agrees) == ("basic", False)
    assert control.text.startswith("DISAGREES")


def test_the_verdict_prefers_the_paired_comparison() -> None:
    """The unpaired expected CTRs favour basic here (its users click more), the paired ml."""
    outcome = _outcome(basic=0.05, ml=0.04)
    pair = paired.Paired(
        10, 5, {"basic": 0.03, "ml": 0.035}, {"ml": (0.005, 0.002, 0.008)}, "basic", 0
    )
    assert closed_loop.verdict(outcome, _report(("ml", 0.001, 0.01)), pair).agrees
    assert not closed_loop.verdict(outcome, _report(("ml", 0.001, 0.01))).agrees


def test_ties_in_expected_ctr_go_to_the_first_name() -> None:
    assert _outcome(b=0.03, a=0.03).favoured() == "a"
    assert math.isnan(closed_loop.Tally().expected_ctr)  # nothing shown: no CTR


def test_a_list_becomes_an_impression_per_stream_and_a_click_and_watch_per_click() -> None:
    reaction = closed_loop.Reaction(
        probability=np.array([0.1, 0.5, 0.2]),
        clicked=np.array([False, True, False]),
        minutes=np.array([0.0, 12.5, 0.0]),
    )
    at = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)
    events = closed_loop.events_of("p", "u1", "r1", ["s1", "s2", "s3"], reaction, at)
    assert [(e["type"], e["stream_id"], e["position"]) for e in events] == [
        ("impression", "s1", 1),
        ("impression", "s2", 2),
        ("click", "s2", 2),
        ("watch", "s2", 2),
        ("impression", "s3", 3),
    ]
    assert len({e["event_id"] for e in events}) == len(events)
    assert [e.get("minutes") for e in events] == [None, None, None, 12.5, None]
    assert {e["request_id"] for e in events} == {"r1"} and {e["user_id"] for e in events} == {"u1"}
    assert {e["at"] for e in events} == {"2026-12-04T18:00:00+00:00"}


def test_the_paired_comparison_on_hand_checked_numbers() -> None:
    """Two users; u1 has two sessions. P(click) per position: 0.1, 0.2, 0.3, ...

    basic shows u1 two streams and u2 one: clicks 2 * (0.1 + 0.2) + 0.1 = 0.7 of 5.
    ml shows u1 three streams and u2 two: 2 * 0.6 + 0.3 = 1.5 of 8.
    """
    lists = {
        "basic": {"u1": ["a", "b"], "u2": ["c"]},
        "ml": {"u1": ["b", "a", "d"], "u2": ["c", "a"]},
    }
    sessions = [
        (0, "u1", "basic", ["a", "b"]),
        (1, "u1", "basic", ["a", "b"]),
        (2, "u2", "ml", ["c"]),  # not what ml computes for u2: a mismatch
    ]

    def score(number: int, ids: list[str]) -> np.ndarray:
        return np.arange(1, len(ids) + 1) / 10

    result = paired.compare(sessions, lists, score, "basic", seed=1)
    assert (result.sessions, result.users, result.mismatches) == (3, 2, 1)
    assert result.expected_ctr["basic"] == pytest.approx(0.7 / 5)
    assert result.expected_ctr["ml"] == pytest.approx(1.5 / 8)
    difference, low, high = result.differences["ml"]
    assert difference == pytest.approx(1.5 / 8 - 0.7 / 5)
    # A resample of two users holds u1 twice, u2 twice (either: ml - basic = 0.05) or one
    # of each (the whole sample's 0.0475): the percentiles can only be those two values.
    assert difference == pytest.approx(0.0475)
    assert 0.0475 - 1e-12 <= low <= high <= 0.05 + 1e-12
    assert result.favoured == "ml"
