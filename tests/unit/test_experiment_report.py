"""The experiment report's statistics against numbers worked out by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from app.experiments import Experiment
from ml.experiment import markdown, ratio, summarise

EXPERIMENT = Experiment.model_validate(
    {
        "name": "t",
        "scenarios": ["hometown"],
        "variants": [
            {"name": "a", "share": 0.5, "hometown": "basic"},
            {"name": "b", "share": 0.5, "hometown": "ml"},
        ],
    }
)


def _users(rows: list[tuple[str, str, int, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "variant", "impressions", "clicks", "minutes"])


USERS = _users(
    [
        ("u1", "a", 10, 1, 5.0),
        ("u2", "a", 20, 3, 0.0),
        ("u3", "a", 30, 2, 12.0),
        ("u4", "b", 10, 2, 4.0),
        ("u5", "b", 10, 0, 0.0),
    ]
)


def test_the_delta_method_by_hand() -> None:
    """Control: CTR 6/60 = 0.1; residuals y − 0.1x = 0, 1, −1, variance 1 (n − 1 = 2), mean
    impressions 20, so se = sqrt(1 / (3 · 20²)) = 0.028868. Variant b: 2/20 = 0.1, residuals
    1, −1, variance 2, mean 10, se = sqrt(2 / (2 · 10²)) = 0.1."""
    report = summarise(USERS, EXPERIMENT)
    a, b = report.arms
    assert (a.users, a.impressions, a.clicks, a.watch_minutes) == (3, 60, 6, 17.0)
    assert a.ctr.value == pytest.approx(0.1)
    assert a.ctr.se == pytest.approx(math.sqrt(1 / 1200))
    half = 1.959964 * 0.0288675
    assert (a.ctr.low, a.ctr.high) == pytest.approx((0.1 - half, 0.1 + half), rel=1e-5)
    assert b.ctr.value == pytest.approx(0.1) and b.ctr.se == pytest.approx(0.1)
    # Minutes per impression, control: 17/60; residuals 2.1667, −5.6667, 3.5, variance 24.5278.
    assert a.watch_minutes_per_impression.value == pytest.approx(17 / 60)
    assert a.watch_minutes_per_impression.se == pytest.approx(math.sqrt(24.527778 / 1200), rel=1e-6)
    ctr = next(d for d in report.differences if d.metric == "ctr")
    assert ctr.variant == "b" and ctr.value == pytest.approx(0.0)
    half = 1.959964 * math.sqrt(1 / 1200 + 0.01)
    assert (ctr.low, ctr.high) == pytest.approx((-half, half), rel=1e-5)
    assert ctr.relative == pytest.approx(0.0)
    # Users 3 and 2 against 2.5 and 2.5: chi-square 0.2 on 1 degree, p = erfc(sqrt(0.1)).
    assert report.srm_chi2 == pytest.approx(0.2)
    assert report.srm_p == pytest.approx(math.erfc(math.sqrt(0.1)))
    assert not report.srm and report.users_in_several_variants == 0
    text = markdown(report)
    assert "0.1000 [0.0434, 0.1566]" in text and "no sample-ratio mismatch" in text


def test_a_split_that_does_not_follow_the_shares_is_flagged() -> None:
    rows = [(f"a{i}", "a", 5, 1, 0.0) for i in range(1000)]
    rows += [(f"b{i}", "b", 5, 1, 0.0) for i in range(800)]
    report = summarise(_users(rows), EXPERIMENT)
    assert report.srm_chi2 == pytest.approx(2 * 100**2 / 900)
    assert report.srm_p < 1e-5 and report.srm
    assert "sample-ratio mismatch: the split" in markdown(report)


def test_one_user_gives_a_value_but_no_interval() -> None:
    alone = ratio(pd.Series([2]).to_numpy(), pd.Series([8]).to_numpy())
    assert alone.value == 0.25 and math.isnan(alone.se) and math.isnan(alone.low)
    nothing = ratio(pd.Series([], dtype=float).to_numpy(), pd.Series([], dtype=float).to_numpy())
    assert math.isnan(nothing.value)


def test_a_user_seen_in_two_variants_is_counted() -> None:
    report = summarise(_users([*USERS.itertuples(index=False), ("u1", "b", 4, 0, 0.0)]), EXPERIMENT)
    assert report.users_in_several_variants == 1
