"""Finer static-score tiers below 4: eleven more partial indexes for the exact search.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

Most live streams have a low static score (in the generated world, 93% below
4.0), and until now they all sat in the open bottom tier. Whenever the top k of
a ring was still contested down there, the search read every live stream of
the ring through the plain live-stream index: at k = 50 in a 250 km ring, 720
rows examined a request, half of PostgreSQL's time in a home-feed request.
Quarter-point tiers from 4.0 down to 1.25 let the search stop at the first
floor that proves the answer (190 rows examined for the same answers; see
BENCHMARKS.md). The tiers of app/hometown/tiers.py must stay equal to these
predicates; a test checks them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (number, low, high): numbered on from migration 0003's eleven tiers.
TIERS = tuple(
    (n, low, high)
    for n, (high, low) in enumerate(
        zip(
            (4.0, 3.75, 3.5, 3.25, 3.0, 2.75, 2.5, 2.25, 2.0, 1.75, 1.5),
            (3.75, 3.5, 3.25, 3.0, 2.75, 2.5, 2.25, 2.0, 1.75, 1.5, 1.25),
            strict=True,
        ),
        12,
    )
)


def upgrade() -> None:
    for n, low, high in TIERS:
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
    for n, _, _ in reversed(TIERS):
        op.drop_index(f"ix_streams_live_tier_{n}", table_name="streams")
