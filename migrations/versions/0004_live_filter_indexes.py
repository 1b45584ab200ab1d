"""Indexes for the request filters on live streams (languages, category_ids).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

A filter that few live streams pass would make the nearest-first walk step over
almost every live stream of the world to find its few matches. With these, the
search counts the qualifying streams first and, when they are few, scores them
all (app/hometown/service.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_streams_live_language",
        "streams",
        ["language"],
        postgresql_where=sa.text("is_live"),
    )
    op.create_index(
        "ix_streams_live_category_id",
        "streams",
        ["category_id"],
        postgresql_where=sa.text("is_live"),
    )


def downgrade() -> None:
    op.drop_index("ix_streams_live_category_id", table_name="streams")
    op.drop_index("ix_streams_live_language", table_name="streams")
