"""Live status updates: when the last one applied, and room for cheap updates.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

`status_at` is the event time (`at`) of the last live-status update applied to a
stream. An update applies only when its `at` is newer, so updates that arrive
late or twice never overwrite a newer state (app/live/). A fill factor of 85
leaves room on each heap page, so an update that only moves the viewer count
stays on its page and touches no index (a HOT update); going live or offline
changes `is_live`, which the partial indexes depend on, and always costs index
entries.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILL_FACTOR = 85


def upgrade() -> None:
    op.add_column(
        "streams",
        sa.Column(
            "status_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="event time of the last applied live-status update (older ones are ignored)",
        ),
    )
    op.execute(f"ALTER TABLE streams SET (fillfactor = {FILL_FACTOR})")


def downgrade() -> None:
    op.execute("ALTER TABLE streams RESET (fillfactor)")
    op.drop_column("streams", "status_at")
