"""The exposure log: which list each recommendation answer showed, to whom.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

`exposures` holds one row per stream of every answer the recommendation
endpoints gave: the answer's `request_id`, the stream's `position` in it, when,
under which scenario, model and experiment variant, for which user (none for a
signed-out HOMETOWN viewer). The service writes them in the background, in
batches (app/events/exposures.py). Partitioned by month of `at` like `events`
(migration 0010), each month made as its first rows arrive. The primary key
(request_id, position, at) makes a retried batch harmless.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMMENTS = {
    "request_id": "The answer's request_id (the X-Request-ID of the response).",
    "position": "The stream's place in the answer, 1 = first.",
    "at": "When the answer was given (the partition key: one partition a month).",
    "scenario": "hometown, hometown-ml, home_feed or category_feed.",
    "user_id": "Who asked (none for a signed-out HOMETOWN viewer); not a foreign key.",
    "stream_id": "The stream shown there; not a foreign key.",
    "model": "What ordered the list: formula, the click model, the reranker or fallback.",
    "experiment": "The experiment the user was in for this scenario, if any.",
    "variant": "Their variant in that experiment.",
}


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE exposures (
            request_id text NOT NULL,
            position integer NOT NULL,
            at timestamptz NOT NULL,
            scenario text NOT NULL,
            user_id text,
            stream_id text NOT NULL,
            model text,
            experiment text,
            variant text,
            CONSTRAINT pk_exposures PRIMARY KEY (request_id, position, at),
            CONSTRAINT ck_exposures_position_positive CHECK (position >= 1)
        ) PARTITION BY RANGE (at)
        """
    )
    op.execute("CREATE INDEX ix_exposures_user_id_at ON exposures (user_id, at)")
    op.execute(
        "COMMENT ON TABLE exposures IS 'Every stream of every recommendation answer, with its"
        " position, scenario, model and variant; partitioned by month of at.'"
    )
    for column, text in COMMENTS.items():
        quoted = text.replace("'", "''")
        op.execute(f"COMMENT ON COLUMN exposures.{column} IS '{quoted}'")


def downgrade() -> None:
    op.execute("DROP TABLE exposures")
