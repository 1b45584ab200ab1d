"""The ML term (app/hometown/ml_term.py), the validation split and the terms training tries."""

from __future__ import annotations

import numpy as np
import pytest

from app.hometown.ml_term import METADATA_KEY, MLTerm
from ml.split import is_test_user, is_validation_user
from ml.term import ROOM_SHARES, candidates
from seed.behaviour import CLICK_MODEL, click_model_with


def test_the_term_caps_probabilities_and_reports_its_maximum() -> None:
    term = MLTerm(20.0, 0.25, "fitted")
    p = np.array([0.0, 0.1, 0.25, 0.9, 1.0])
    assert np.array_equal(term(p), [0.0, 2.0, 5.0, 5.0, 5.0])
    assert term.maximum == 5.0 == term(p).max()
    assert term.describe() == "20·min(P(click), 0.25)"
    formula = MLTerm.formula(0.5)
    assert np.array_equal(formula(p), 0.5 * p) and formula.maximum == 0.5


def test_a_model_without_a_fitted_term_gets_the_formula() -> None:
    assert MLTerm.of_model({}, 0.7) == MLTerm.formula(0.7)
    fitted = MLTerm.of_model({METADATA_KEY: {"weight": 12.0, "cap": 0.3}}, 0.7)
    assert fitted == MLTerm(12.0, 0.3, "fitted")
    assert MLTerm.of_model({METADATA_KEY: fitted.to_metadata()}, 0.5) == fitted


@pytest.mark.parametrize(
    ("weight", "cap"), [(-1.0, 0.5), (float("nan"), 0.5), (1.0, 0.0), (1.0, 1.5)]
)
def test_a_term_that_could_break_the_bound_is_refused(weight: float, cap: float) -> None:
    with pytest.raises(ValueError, match="ML term"):
        MLTerm(weight, cap)


def test_validation_users_are_neither_test_users_nor_shared() -> None:
    ids = np.array([f"user_{i:06d}" for i in range(20_000)], dtype=object)
    test = is_test_user(ids, 0.2)
    validation = is_validation_user(ids, 0.2, 0.2)
    assert not (test & validation).any()
    assert abs(validation.mean() - 0.2) < 0.015 and abs(test.mean() - 0.2) < 0.015
    # The same user always lands on the same side, repeated or not.
    assert np.array_equal(
        is_validation_user(np.repeat(ids[:50], 3), 0.2, 0.2), np.repeat(validation[:50], 3)
    )
    assert not is_validation_user(ids, 0.2, 0.0).any()
    with pytest.raises(ValueError, match="validation_share"):
        is_validation_user(ids, 0.5, 0.6)


def test_the_terms_tried_stay_within_the_room_and_start_with_the_formula() -> None:
    p = np.random.default_rng(1).beta(1, 8, size=5_000)
    tried = candidates(0.5, p, room=8.0)
    assert tried[0] == MLTerm.formula(0.5)
    assert all(t.source == "fitted" and t.maximum <= 8.0 + 1e-12 for t in tried[1:])
    assert {round(t.maximum, 9) for t in tried[1:]} == {round(8.0 * s, 9) for s in ROOM_SHARES}
    assert any(t.cap == 1.0 for t in tried) and any(t.cap < 0.5 for t in tried)
    assert candidates(0.5, p, room=0.0) == [MLTerm.formula(0.5)]


def test_behaviour_coefficients_can_be_changed_by_name() -> None:
    model = click_model_with({"distance_scale_km": "60", "quality": "1.6"})
    assert (model.distance_scale_km, model.quality) == (60.0, 1.6)
    assert model.same_language == CLICK_MODEL.same_language
    for bad, message in (
        ({"nope": "1"}, "unknown"),
        ({"quality": "x"}, "number"),
        ({"distance_scale_km": "0"}, "> 0"),
        ({"quality": "inf"}, "finite"),
    ):
        with pytest.raises(ValueError, match=message):
            click_model_with(bad)
