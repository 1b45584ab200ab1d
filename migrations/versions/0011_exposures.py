"""The exposure log: which list each recommendation answer showed, to whom.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

`exposures` holds one row per answer the recommendation endpoints gave: its
`request_id`, the streams shown in order (`stream_ids`: a stream's position is
its place in the array, from 1), when, under which scenario, model and
experiment variant, for which user (none for a signed-out HOMETOWN viewer). One
row an answer rather than one a stream: a row a stream cost PostgreSQL about
0.2 ms of CPU per feed request (30 rows and two index entries each) on the
benchmark. The service writes them in the background, in batches
(app/events/exposures.py). Partitioned by month of `at` like `events` (migration
0010), each month made as its first rows arrive. The primary key (request_id,
at) makes a retried batch harmless. No secondary index: the readers (the
experiment report, training) scan a period.
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
    "at": "When the answer was given (the partition key: one partition a month).",
    "scenario": "hometown, hometown-ml, home_feed or category_feed.",
    "user_id": "Who asked (none for a signed-out HOMETOWN viewer); not a foreign key.",
    "stream_ids": "The streams shown, best first (position = place in the array, from 1).",
    "model": "What ordered the list: formula, the click model, the reranker or fallback.",
    "experiment": "The experiment the user was in for this scenario, if any.",
    "variant": "Their variant in that experiment.",
}


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE exposures (
            request_id text NOT NULL,
            at timestamptz NOT NULL,
            scenario text NOT NULL,
            user_id text,
            stream_ids text[] NOT NULL,
            model text,
            experiment text,
            variant text,
            CONSTRAINT pk_exposures PRIMARY KEY (request_id, at),
            CONSTRAINT ck_exposures_shown_something CHECK (cardinality(stream_ids) >= 1)
        ) PARTITION BY RANGE (at)
        """
    )
    op.execute(
        "COMMENT ON TABLE exposures IS 'Every recommendation answer: the streams shown in order,"
        " to whom, under which scenario, model and variant; partitioned by month of at.'"
    )
    for column, text in COMMENTS.items():
        quoted = text.replace("'", "''")
        op.execute(f"COMMENT ON COLUMN exposures.{column} IS '{quoted}'")


def downgrade() -> None:
    op.execute("DROP TABLE exposures")
