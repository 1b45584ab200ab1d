"""Every value limit of the dataset, written once, and the tables' columns.

The table CHECKs (`app.db.models`), the API schemas (`app.api`), the importer
(`seed.validate`) and the scoring (`app.hometown.tiers`) all read these, so a
limit cannot be one thing in the database and another at the door. The module
imports nothing heavy: the service imports it, and pandas or pyarrow would add
about 60 MiB to every server process.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bounds:
    """A numeric range: `low <= x <= high` (`low < x` when `low_open`); None is unbounded.

    `high_from_type` marks an upper bound that the column's type enforces (an int4
    holds at most `INT32_MAX`) rather than a CHECK: the importer and the API still
    refuse larger values, but the table's CHECK names only the lower bound.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_from_type: bool = False

    def check_sql(self, column: str) -> str:
        """The CHECK constraint's expression, as the migrations wrote it."""
        high = None if self.high_from_type else self.high
        if self.low is not None and high is not None and not self.low_open:
            return f"{column} BETWEEN {_sql_number(self.low)} AND {_sql_number(high)}"
        parts = []
        if self.low is not None:
            parts.append(f"{column} {'>' if self.low_open else '>='} {_sql_number(self.low)}")
        if high is not None:
            parts.append(f"{column} <= {_sql_number(high)}")
        return " AND ".join(parts)


def _sql_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


INT32_MAX = 2**31 - 1
#: Largest integer a float64 holds exactly; parsing goes through float64, so larger
#: BIGINT values would be silently rounded. No follower count gets near it.
EXACT_INT_MAX = 2**53
#: Longest id accepted. A btree entry must fit in a third of a page (about 2,700
#: bytes), or PostgreSQL refuses the primary key; 200 characters of UTF-8 always do.
ID_MAX_LENGTH = 200
#: Longest free text (city, title, tag, category, language) the write API takes.
TEXT_MAX_LENGTH = 500
#: Longest stream description the write API takes.
DESCRIPTION_MAX_LENGTH = 10_000
#: Most tags on one channel, and most entries in a request's filter list.
LIST_MAX_LENGTH = 100
#: Longest code (language, category) in a recommendation request.
CODE_MAX_LENGTH = 64
#: Default for streams whose file has no typical_duration_minutes (or an empty cell):
#: two hours, a common length for one broadcast.
DEFAULT_DURATION_MINUTES = 120.0

LATITUDE = Bounds(-90, 90)
LONGITUDE = Bounds(-180, 180)
#: Hours from UTC: from Baker Island (-12) to Kiribati (+14).
TIMEZONE_OFFSET = Bounds(-12, 14)
LOCAL_PREFERENCE = Bounds(0, 1)
WATCH_HOURS = Bounds(0)
QUALITY = Bounds(0, 10)
VIEWERS = Bounds(0, INT32_MAX, high_from_type=True)
FOLLOWERS = Bounds(0, EXACT_INT_MAX, high_from_type=True)
#: Minutes, real-valued (the seed's generator writes 51.19).
DURATION_MINUTES = Bounds(0, low_open=True)
WATCH_MINUTES = Bounds(0)
PAGE_POSITION = Bounds(1, INT32_MAX, high_from_type=True)

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
#: The devices an interaction's `device_type` names, in the order ties are broken
#: (the generator draws them, the feed's features compare them).
DEVICES: tuple[str, ...] = ("mobile", "desktop", "tablet", "tv")
COLUMNS = {"users": USER_COLUMNS, "streams": STREAM_COLUMNS, "interactions": INTERACTION_COLUMNS}
ARRAY_COLUMNS = {"preferred_categories", "tags"}

#: The NOTIFY channel on which the `streams` triggers announce live changes
#: (migration 0008), and the payload a bulk load sends when everything changed.
LIVE_CHANNEL = "hometown_live"
RELOAD = "reload"
