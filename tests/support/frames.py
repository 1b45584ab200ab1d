"""Tiny hand-checked datasets for loader and API tests."""

from __future__ import annotations

import pandas as pd

from app.db.limits import INTERACTION_COLUMNS, STREAM_COLUMNS, USER_COLUMNS
from seed.loader import Dataset

T0 = pd.Timestamp("2026-11-01T00:00:00Z")


def users(n: int, prefix: str = "user") -> pd.DataFrame:
    """`n` users in Paris, ids `{prefix}_000000`..."""
    return pd.DataFrame(
        {
            "user_id": [f"{prefix}_{i:06d}" for i in range(n)],
            "city": "Paris",
            "latitude": [48.85 + i * 1e-4 for i in range(n)],
            "longitude": 2.35,
            "language": "fr",
            "timezone_offset": 1.0,
            "preferred_categories": [["gaming", "music"]] * n,
            "local_preference_strength": 0.5,
            "total_watch_hours": 10.0,
            "registration_date": T0,
        },
        columns=list(USER_COLUMNS),
    )


def streams(n: int, prefix: str = "stream") -> pd.DataFrame:
    """`n` live streams around Paris, ids `{prefix}_000000`..."""
    return pd.DataFrame(
        {
            "stream_id": [f"{prefix}_{i:06d}" for i in range(n)],
            "creator_id": [f"creator_{i:06d}" for i in range(n)],
            "city": "Paris",
            "latitude": 48.9,
            "longitude": [2.3 + i * 1e-4 for i in range(n)],
            "language": "fr",
            "category_id": "gaming",
            "title": "t",
            "description": "d",
            "tags": [["a", "b"]] * n,
            "avg_viewer_count": 10,
            "creator_followers": 100,
            "stream_quality_score": 5.0,
            "typical_duration_minutes": 90,
            "is_partnered": False,
            "mature_content": False,
            "is_live": True,
            "current_viewer_count": 3,
            "live_since": T0,
            "updated_at": T0,
        },
        columns=list(STREAM_COLUMNS),
    )


def interactions(user_ids: list[str], stream_ids: list[str]) -> pd.DataFrame:
    """One unclicked impression per (user, stream) pair given."""
    return pd.DataFrame(
        {
            "user_id": user_ids,
            "stream_id": stream_ids,
            "impression_at": T0,
            "clicked": False,
            "watch_time_minutes": 0.0,
            "device_type": "mobile",
            "page_position": 1,
            "session_id": "s",
        },
        columns=list(INTERACTION_COLUMNS),
    )


def dataset(n_users: int, n_streams: int, prefix: str = "") -> Dataset:
    """Users, streams and one impression per user (of stream 0)."""
    u = users(n_users, f"{prefix}user")
    s = streams(n_streams, f"{prefix}stream")
    i = interactions(list(u["user_id"]), [s["stream_id"].iloc[0]] * n_users)
    return Dataset(u, s, i)


#: A channel profile the write API accepts (`PUT /v1/streams/{stream_id}`).
PROFILE = {
    "creator_id": "creator_new",
    "city": "Reykjavik",
    "latitude": 64.1466,
    "longitude": -21.9426,
    "language": "is",
    "category_id": "music",
    "title": "Northern lights, live",
    "avg_viewer_count": 1500,
    "creator_followers": 20000,
    "stream_quality_score": 9.5,
    "is_partnered": True,
    "mature_content": False,
}
