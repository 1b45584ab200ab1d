"""Create or replace a channel's profile without a re-seed (`PUT /v1/streams/{id}`).

Only the profile changes: whether the stream is live, its viewers now and the
time of its last status update stay as they are, so a profile edit racing a
status update cannot undo it. A new channel starts offline.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

PROFILE_COLUMNS = (
    "creator_id",
    "city",
    "latitude",
    "longitude",
    "language",
    "category_id",
    "title",
    "description",
    "tags",
    "avg_viewer_count",
    "creator_followers",
    "stream_quality_score",
    "typical_duration_minutes",
    "is_partnered",
    "mature_content",
)

UPSERT_SQL = f"""
INSERT INTO streams (stream_id, {", ".join(PROFILE_COLUMNS)})
VALUES ({", ".join(f"${i}" for i in range(1, len(PROFILE_COLUMNS) + 2))})
ON CONFLICT (stream_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in PROFILE_COLUMNS)}
RETURNING (xmax = 0) AS created
"""


@dataclass(frozen=True)
class Saved:
    """The outcome of an upsert."""

    created: bool


async def upsert(conn: asyncpg.Connection, stream_id: str, profile: dict[str, object]) -> Saved:
    """Insert the channel, or replace the profile of the one with this id."""
    values = [profile[column] for column in PROFILE_COLUMNS]
    created = await conn.fetchval(UPSERT_SQL, stream_id, *values)
    return Saved(created=bool(created))
