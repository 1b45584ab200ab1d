"""Stream durations in real-valued minutes, as the seed's generator writes them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

The seed project writes `typical_duration_minutes` as a float (51.19); an integer
column made every such file fail to import. The value is stored as it is, so an
import loses nothing. Downgrading rounds to whole minutes (at least 1, which the
`duration_positive` CHECK needs).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMMENT = "Usual length of one broadcast in minutes, > 0 (real-valued)."


def upgrade() -> None:
    op.execute("ALTER TABLE streams ALTER COLUMN typical_duration_minutes TYPE double precision")
    op.execute(f"COMMENT ON COLUMN streams.typical_duration_minutes IS '{COMMENT}'")


def downgrade() -> None:
    op.execute(
        "ALTER TABLE streams ALTER COLUMN typical_duration_minutes TYPE integer"
        " USING greatest(1, round(typical_duration_minutes))::integer"
    )
    op.execute(
        "COMMENT ON COLUMN streams.typical_duration_minutes"
        " IS 'Usual length of one broadcast, > 0.'"
    )
