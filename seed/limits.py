"""The dataset's columns and value limits, without pandas: the service imports these too.

The importer checks files against them, the loader writes these columns, and the
live API validates channel profiles with the same limits. Keeping them in a module
that imports nothing heavy keeps the service's memory to what it needs (pandas and
pyarrow would add about 60 MiB to every server process).
"""

from __future__ import annotations

INT32_MAX = 2**31 - 1
#: Largest integer a float64 holds exactly; parsing goes through float64, so larger
#: BIGINT values would be silently rounded. No follower count gets near it.
EXACT_INT_MAX = 2**53
#: Longest id accepted. A btree entry must fit in a third of a page (about 2,700
#: bytes), or PostgreSQL refuses the primary key; 200 characters of UTF-8 always do.
ID_MAX_LENGTH = 200
#: Default for streams whose file has no typical_duration_minutes (or an empty cell):
#: two hours, a common length for one broadcast.
DEFAULT_DURATION_MINUTES = 120

USER_COLUMNS = (
    "user_id",
    "city",
    "latitude",
    "longitude",
    "language",
    "timezone_offset",
    "preferred_categories",
    "local_preference_strength",
    "total_watch_hours",
    "registration_date",
)
STREAM_COLUMNS = (
    "stream_id",
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
    "is_live",
    "current_viewer_count",
    "live_since",
    "updated_at",
)
INTERACTION_COLUMNS = (
    "user_id",
    "stream_id",
    "impression_at",
    "clicked",
    "watch_time_minutes",
    "device_type",
    "page_position",
    "session_id",
)
COLUMNS = {"users": USER_COLUMNS, "streams": STREAM_COLUMNS, "interactions": INTERACTION_COLUMNS}
ARRAY_COLUMNS = {"preferred_categories", "tags"}
