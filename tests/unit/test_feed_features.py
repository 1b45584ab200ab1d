"""The reranker's features for hand-made pairs: values, unknowns as NaN, the column order."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.feed.features import (
    FEATURE_NAMES,
    Candidates,
    Context,
    Viewer,
    local_hour,
    pair_features,
)
from app.geo import haversine_km

NAN = float("nan")


def candidates(n: int = 3) -> Candidates:
    hours = np.zeros((n, 24))
    hours[0, 19] = 1.0  # the first stream's audience watches at 19:00 UTC
    hours[1, 3] = 1.0
    return Candidates(
        stream_id=np.array([f"stream_{i}" for i in range(n)], dtype=object),
        latitude=np.array([48.8566, 51.5074, NAN][:n]),
        longitude=np.array([2.3522, -0.1278, NAN][:n]),
        language=np.array(["fr", "en", None][:n], dtype=object),
        category_id=np.array(["music", "valorant", None][:n], dtype=object),
        quality=np.array([8.0, 3.0, NAN][:n]),
        avg_viewers=np.array([99.0, 0.0, NAN][:n]),
        followers=np.array([999.0, 9.0, NAN][:n]),
        partnered=np.array([1.0, 0.0, NAN][:n]),
        mature=np.array([0.0, 1.0, NAN][:n]),
        dominant_device=np.array(["mobile", "desktop", None][:n], dtype=object),
        hour_profile=hours,
        popularity=np.array([9.0, 0.0, 0.0][:n]),
        creator_minutes=np.array([120.0, 0.0, 0.0][:n]),
        creator_sessions=np.array([4.0, 0.0, 0.0][:n]),
        cf_score=np.array([0.5, -0.1, NAN][:n]),
        cf_rank=np.array([1.0, NAN, NAN][:n]),
        near_rank=np.array([2.0, 1.0, NAN][:n]),
        trending_rank=np.array([NAN, 3.0, NAN][:n]),
        trending_language_rank=np.array([NAN, NAN, NAN][:n]),
        own_rank=np.array([1.0, NAN, 2.0][:n]),
    )


def column(matrix: np.ndarray, name: str) -> list[float]:
    return matrix[:, FEATURE_NAMES.index(name)].astype(float).tolist()


def test_features_for_hand_made_pairs() -> None:
    hours = np.zeros(24)
    hours[[20, 21, 5]] = [0.5, 0.25, 0.25]  # the viewer watches around 20-21 local time
    viewer = Viewer(
        latitude=48.8566,
        longitude=2.3522,
        language="fr",
        utc_offset_hours=1.0,
        preferred_categories=frozenset({"music"}),
        category_share={"music": 0.75, "valorant": 0.25},
        hour_share=hours,
    )
    x = pair_features(
        viewer, candidates(), Context(hour_utc=19.5, device="mobile", locale_language="en")
    )
    assert x.shape == (3, len(FEATURE_NAMES)) and x.dtype == np.float32
    assert column(x, "n_sources") == [3.0, 2.0, 1.0]
    paris_london = haversine_km(48.8566, 2.3522, np.array([51.5074]), np.array([-0.1278]))[0]
    assert 340 < paris_london < 345
    assert column(x, "log_distance_km")[:2] == pytest.approx([0.0, math.log1p(paris_london)])
    assert math.isnan(column(x, "log_distance_km")[2])
    assert column(x, "same_language")[:2] == [1.0, 0.0]
    assert column(x, "locale_match")[:2] == [0.0, 1.0]
    assert column(x, "category_preferred")[:2] == [1.0, 0.0]
    assert column(x, "category_share")[:2] == [0.75, 0.25]
    assert column(x, "log_creator_minutes")[0] == pytest.approx(math.log1p(120.0))
    assert column(x, "device_match")[:2] == [1.0, 0.0]
    # 19:30 UTC is 20:30 in UTC+1: the viewer's hours 19..21 hold 0.75 of their watching.
    assert column(x, "hour_share") == pytest.approx([0.75] * 3)
    assert column(x, "audience_hour_share") == [1.0, 0.0, 0.0]
    # What nobody knows stays unknown: the third stream has no attributes at all.
    for name in ("same_language", "locale_match", "category_preferred", "quality", "device_match"):
        assert math.isnan(column(x, name)[2]), name


def test_a_viewer_without_profile_gives_nan_not_zero() -> None:
    x = pair_features(Viewer(), candidates(2), Context(hour_utc=3.0))
    for name in ("log_distance_km", "same_language", "locale_match", "device_match"):
        assert all(math.isnan(v) for v in column(x, name)), name
    assert column(x, "category_preferred") == [0.0, 0.0]


@pytest.mark.parametrize(
    ("hour_utc", "offset", "expected"),
    [(23.5, 1.0, 0), (0.2, -5.0, 19), (12.0, 5.5, 17), (3.0, 14.0, 17)],
)
def test_local_hour_wraps_around_midnight(hour_utc: float, offset: float, expected: int) -> None:
    assert local_hour(hour_utc, offset) == expected
