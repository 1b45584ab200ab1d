"""Static-score tiers: the second sorted access of the exact search, as partial indexes.

Each live stream has a user-independent `static_score` (quality plus capped
popularity, the seed formula's own defaults). The exact top-k search reads live
streams nearest-first, and alongside it, tier by tier from the best, the streams
of a ring whose static score falls in the tier. Once a tier is read, every
unseen stream of the ring has a static score below its floor, which bounds its
score. Each tier has its own small partial GiST index (migrations 0003, 0009), so
reading a tier inside a ring touches only that tier's streams there, in a dense
city as in an empty ocean.

The SQL text of a tier repeats its index predicate literally: PostgreSQL uses a
partial index only when it can prove the query implies the predicate, and it
cannot do that through bind parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.db.limits import QUALITY

#: Expression of the generated column (migration 0003); mirrored in app/db/models.py.
STATIC_SCORE_SQL = "stream_quality_score + LEAST(avg_viewer_count::double precision / 1000.0, 2.0)"
#: Quality and popularity the stored static score weighs them with.
STATIC_POPULARITY_DIVISOR = 1000.0
STATIC_POPULARITY_CAP = 2.0
#: The highest static score a stream can have: the top quality plus the popularity cap.
STATIC_MAX = float(QUALITY.high or 0) + STATIC_POPULARITY_CAP


@dataclass(frozen=True)
class Tier:
    """Streams with `low <= static_score < high`; `index` is None for the open bottom tier."""

    low: float
    high: float
    index: str | None

    @property
    def predicate(self) -> str:
        """The SQL condition, identical to the partial index's WHERE clause."""
        if self.index is None:
            return f"is_live AND static_score < {self.high!r}"
        return f"is_live AND static_score >= {self.low!r} AND static_score < {self.high!r}"


#: Fine near the top, where a dense city's best streams crowd, coarser in the middle,
#: and quarter points below 4.0 (migration 0009), where most live streams are: a
#: ring whose top k is contested down there stops at the first floor that proves it
#: instead of reading the whole open bottom tier (at k = 50 in a 250 km ring, 190
#: rows examined a request instead of 720).
_BOUNDS = (
    *(11.5, 11.0, 10.5, 10.0, 9.5, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0),  # migration 0003
    *(3.75, 3.5, 3.25, 3.0, 2.75, 2.5, 2.25, 2.0, 1.75, 1.5, 1.25),  # migration 0009
)
TIERS: tuple[Tier, ...] = (
    *(
        Tier(low, high, f"ix_streams_live_tier_{n}")
        for n, (low, high) in enumerate(zip(_BOUNDS, (STATIC_MAX + 1, *_BOUNDS), strict=False), 1)
    ),
    Tier(0.0, _BOUNDS[-1], None),
)
