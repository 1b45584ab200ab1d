"""Reasons: the strongest positive feature group picks the sentence; each one can be forced."""

from __future__ import annotations

import numpy as np
import pytest

from app.feed import reasons
from app.feed.features import FEATURE_NAMES

SUBJECT = reasons.Subject(
    creator_id="creator_7",
    category_id="valorant",
    city="Lyon",
    viewers=1234,
    channels=("creator_3", "creator_7"),
)


def contributions(**by_feature: float) -> np.ndarray:
    """One row of XGBoost-shaped contributions (features, then bias) with the given values."""
    row = np.zeros(len(FEATURE_NAMES) + 1, dtype=np.float32)
    row[-1] = 5.0  # the bias belongs to no group, however large
    for name, value in by_feature.items():
        row[FEATURE_NAMES.index(name)] = value
    return row[None, :]


def reason_for(row: np.ndarray, subject: reasons.Subject = SUBJECT, sources=("cf",)):
    strengths = reasons.group_strengths(row)[0]
    return reasons.from_model(strengths, subject, list(sources))


@pytest.mark.parametrize(
    ("features", "kind", "text"),
    [
        ({"log_creator_minutes": 0.4}, "watched", "Because you watched creator_7"),
        ({"cf_score": 0.3, "cf_rank": 0.2}, "watched", "Because you watched creator_7"),
        ({"log_popularity": 0.3}, "popular", "Popular in valorant right now"),
        ({"near_rank": 0.2, "log_distance_km": 0.2}, "near", "Live near you in Lyon"),
        ({"trending_rank": 0.5}, "watching", "1,234 people watching now"),
        ({"same_language": 0.3, "locale_match": 0.1}, "language", "In your language"),
    ],
)
def test_each_reason_is_forced_by_its_group(features, kind, text) -> None:
    found = reason_for(contributions(**features, device_match=0.05))
    assert (found.kind, found.text) == (kind, text)


def test_groups_sum_their_features_and_the_largest_sum_wins() -> None:
    # near_rank alone is the largest single value, but the language group's sum is larger.
    row = contributions(near_rank=0.5, same_language=0.3, locale_match=0.3)
    assert reason_for(row).kind == "language"


def test_features_outside_every_group_never_make_a_reason() -> None:
    row = contributions(device_match=3.0, hour_share=2.0, n_sources=1.0, trending_rank=0.01)
    assert reason_for(row).kind == "watching"


def test_no_positive_group_falls_back_to_the_best_source() -> None:
    row = contributions(near_rank=-0.2, log_popularity=-0.1)
    assert reason_for(row, sources=("near", "cf")).text == "Live near you in Lyon"
    assert reason_for(row, sources=()).kind == "popular"


def test_a_channel_the_viewer_never_watched_is_named_after_their_favourite() -> None:
    stranger = reasons.Subject("creator_99", "chess", "Oslo", 1, channels=("creator_3",))
    assert reason_for(contributions(cf_score=1.0), stranger).text == (
        "Because you watched creator_3"
    )


def test_a_viewer_without_channels_gets_the_next_strongest_reason() -> None:
    cold = reasons.Subject("creator_99", "chess", "Oslo", 1, channels=())
    row = contributions(cf_score=1.0, near_rank=0.1)
    assert reason_for(row, cold).text == "Live near you in Oslo"
    assert reasons.say("watching", cold).text == "1 person watching now"


def test_source_reasons_cover_every_source() -> None:
    for source in ("own", "cf", "near", "trending", "trending_language", "popular"):
        assert reasons.from_sources(SUBJECT, [source]).kind == reasons.SOURCE_REASONS[source]
