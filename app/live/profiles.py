"""Create or replace a channel's profile without a re-seed (`PUT /v1/streams/{id}`).

Only the profile changes: whether the stream is live, its viewers now and the
time of its last status update stay as they are, so a profile edit racing a
status update cannot undo it. A new channel starts offline.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from app.db.limits import STREAM_COLUMNS

#: The columns a profile sets: the loader's stream columns without the id and the
#: live state, which only status updates change.
LIVE_STATE = ("is_live", "current_viewer_count", "live_since", "updated_at")
PROFILE_COLUMNS = tuple(c for c in STREAM_COLUMNS if c != "stream_id" and c not in LIVE_STATE)

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
