"""Static score and the live-stream indexes of the exact HOMETOWN search.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

`static_score` is the user-independent part of the seed score (quality plus
capped popularity). The partial GiST indexes cover live streams only (most
channels are offline at any moment) and, for the tiers, only the live streams
whose static score lies in one band: see app/hometown/tiers.py, whose TIERS
must stay equal to the predicates here (a test checks it).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATIC_SCORE_SQL = "stream_quality_score + LEAST(avg_viewer_count::double precision / 1000.0, 2.0)"
TIERS = (
    (11.5, 13.0),
    (11.0, 11.5),
    (10.5, 11.0),
    (10.0, 10.5),
    (9.5, 10.0),
    (9.0, 9.5),
    (8.0, 9.0),
    (7.0, 8.0),
    (6.0, 7.0),
    (5.0, 6.0),
    (4.0, 5.0),
)


def upgrade() -> None:
    op.add_column(
        "streams",
        sa.Column(
            "static_score",
            sa.Float,
            sa.Computed(STATIC_SCORE_SQL, persisted=True),
            nullable=False,
            comment=(
                "Generated: stream_quality_score + min(avg_viewer_count / 1000, 2), the"
                " user-independent part of the score; orders the exact search's tiers."
            ),
        ),
    )
    op.create_index(
        "ix_streams_live_location",
        "streams",
        ["location"],
        postgresql_using="gist",
        postgresql_where=sa.text("is_live"),
    )
    for n, (low, high) in enumerate(TIERS, 1):
        op.create_index(
            f"ix_streams_live_tier_{n}",
            "streams",
            ["location"],
            postgresql_using="gist",
            postgresql_where=sa.text(
                f"is_live AND static_score >= {low!r} AND static_score < {high!r}"
            ),
        )


def downgrade() -> None:
    for n in range(len(TIERS), 0, -1):
        op.drop_index(f"ix_streams_live_tier_{n}", table_name="streams")
    op.drop_index("ix_streams_live_location", table_name="streams")
    op.drop_column("streams", "static_score")
