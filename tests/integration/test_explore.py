"""`seed.explore` reads a real PostGIS and writes readable PNG plots, even when empty."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.db.limits import INTERACTION_COLUMNS, STREAM_COLUMNS, USER_COLUMNS
from seed.explore import DISTANCE_EDGES_KM, FILES, explore, gather
from seed.loader import Dataset, load

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NOW = datetime(2025, 1, 1, 20, 0, tzinfo=UTC)

# (id, city, latitude, longitude, language)
USERS = [
    ("u_paris_1", "Paris", 48.8566, 2.3522, "fr"),
    ("u_paris_2", "Paris", 48.8600, 2.3600, "fr"),
    ("u_lyon", "Lyon", 45.7640, 4.8357, "fr"),
    ("u_tokyo", "Tokyo", 35.6762, 139.6503, "ja"),
]
# (id, city, latitude, longitude, language, category, quality, live)
STREAMS = [
    ("s_paris_1", "Paris", 48.8566, 2.3522, "fr", "gaming", 0.4, True),  # on u_paris_1
    ("s_paris_2", "Paris", 48.8800, 2.3522, "fr", "music", 1.5, False),  # 2.6 km north
    ("s_lyon", "Lyon", 45.7640, 4.8357, "fr", "gaming", 0.9, True),  # 392 km from Paris
    ("s_tokyo", "Tokyo", 35.6762, 139.6503, "ja", "irl", 7.5, False),  # 9,700 km from Paris
]
# (user, stream, impressions, clicks)
IMPRESSIONS = [
    ("u_paris_1", "s_paris_1", 4, 2),
    ("u_paris_1", "s_paris_2", 2, 1),
    ("u_paris_1", "s_lyon", 3, 0),
    ("u_paris_1", "s_tokyo", 1, 0),
    ("u_tokyo", "s_tokyo", 1, 1),
]


def band(km: float) -> int:
    """Index of the distance band holding `km`."""
    return int(np.searchsorted(DISTANCE_EDGES_KM, km, side="right")) - 1


def users_frame() -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "user_id": [u[0] for u in USERS],
            "city": [u[1] for u in USERS],
            "latitude": [u[2] for u in USERS],
            "longitude": [u[3] for u in USERS],
            "language": [u[4] for u in USERS],
            "timezone_offset": [1.0, 1.0, 1.0, 9.0],
            "preferred_categories": [["gaming", "music"]] * len(USERS),
            "local_preference_strength": 0.5,
            "total_watch_hours": 12.0,
            "registration_date": NOW,
        }
    )
    return frame.loc[:, list(USER_COLUMNS)]


def streams_frame() -> pd.DataFrame:
    live = [s[7] for s in STREAMS]
    frame = pd.DataFrame(
        {
            "stream_id": [s[0] for s in STREAMS],
            "creator_id": [f"creator_{s[0]}" for s in STREAMS],
            "city": [s[1] for s in STREAMS],
            "latitude": [s[2] for s in STREAMS],
            "longitude": [s[3] for s in STREAMS],
            "language": [s[4] for s in STREAMS],
            "category_id": [s[5] for s in STREAMS],
            "title": "a title",
            "description": "a description",
            "tags": [["local"]] * len(STREAMS),
            "avg_viewer_count": 10,
            "creator_followers": 100,
            "stream_quality_score": [s[6] for s in STREAMS],
            "typical_duration_minutes": 90,
            "is_partnered": False,
            "mature_content": False,
            "is_live": live,
            "current_viewer_count": [5 if on else 0 for on in live],
            "live_since": [NOW if on else None for on in live],
            "updated_at": NOW,
        }
    )
    return frame.loc[:, list(STREAM_COLUMNS)]


def interactions_frame() -> pd.DataFrame:
    rows = []
    for user, stream, shown, clicks in IMPRESSIONS:
        for i in range(shown):
            clicked = i < clicks
            rows.append(
                {
                    "user_id": user,
                    "stream_id": stream,
                    "impression_at": NOW,
                    "clicked": clicked,
                    "watch_time_minutes": 12.0 if clicked else 0.0,
                    "device_type": "mobile",
                    "page_position": i + 1,
                    "session_id": f"{user}-session",
                }
            )
    return pd.DataFrame(rows, columns=list(INTERACTION_COLUMNS))


def assert_pngs(paths: list[Path], out: Path) -> None:
    assert [p.name for p in paths] == list(FILES)
    for path in paths:
        assert path.parent == out
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE), path
        assert 10_000 < len(data) < 5_000_000, (path, len(data))
        width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
        assert width >= 800 and height >= 400, (path, width, height)


def test_gather_bins_clicks_by_distance_in_sql(db_url: str) -> None:
    load(db_url, Dataset(users_frame(), streams_frame(), interactions_frame()))

    snap = gather(db_url)

    assert (snap.users, snap.streams, snap.live, snap.interactions) == (4, 4, 2, 11)
    expected_shown = np.zeros(len(DISTANCE_EDGES_KM) - 1)
    expected_clicks = np.zeros(len(DISTANCE_EDGES_KM) - 1)
    for km, shown, clicks in [(0, 4, 2), (2.6, 2, 1), (392, 3, 0), (9_700, 1, 0), (0, 1, 1)]:
        expected_shown[band(km)] += shown
        expected_clicks[band(km)] += clicks
    assert snap.distance.sample_percent == 100
    np.testing.assert_array_equal(snap.distance.impressions, expected_shown)
    np.testing.assert_array_equal(snap.distance.clicks, expected_clicks)

    assert len(snap.user_points) == 4 and len(snap.stream_points) == 4
    assert snap.stream_live.sum() == 2
    assert [(c.name, c.streams, c.live) for c in snap.cities] == [
        ("Paris", 2, 1),
        ("Lyon", 1, 1),
        ("Tokyo", 1, 0),
    ]
    assert snap.quality_counts.sum() == 4
    assert snap.quality_counts[int(7.5 * 100)] == 1  # 0.01-wide bins
    assert snap.categories[0] == ("gaming", 2, 2)
    assert snap.languages[0] == ("fr", 3, 3)


def test_explore_writes_the_plots(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load(db_url, Dataset(users_frame(), streams_frame(), interactions_frame()))
    out = tmp_path / "plots" / "nested"  # created on demand

    paths = explore(db_url, out)

    assert_pngs(paths, out)
    err = capsys.readouterr().err
    assert "[explore] 4 users, 4 streams (2 live), 11 impressions" in err
    assert "[explore] 4 plots in" in err


def test_explore_without_impressions_still_plots(db_url: str, tmp_path: Path) -> None:
    load(db_url, Dataset(users_frame(), streams_frame()))

    assert_pngs(explore(db_url, tmp_path), tmp_path)


def test_explore_on_an_empty_database_writes_no_data_plots(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = explore(db_url, tmp_path)

    assert_pngs(paths, tmp_path)
    assert "the database is empty" in capsys.readouterr().err
