"""The event log: what viewers did with the lists the service answered.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

`events` holds one row per impression, click, watch or follow a client reports
(`POST /v1/events`, app/events/log.py). It is partitioned by month of `at`, the
event's own time, so retention drops a month whole and a read of one period
touches only its months. The partitions (`events_YYYY_MM`) are created by the
service the first time an event of their month arrives; this migration creates
none. The primary key is (event_id, at): a partitioned table's unique keys must
hold the partition key, and a replayed event carries both unchanged. No foreign
keys: the seed's loader swaps `users` and `streams` wholesale, and the service
checks both ids when it stores an event.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE events (
            event_id text NOT NULL,
            at timestamptz NOT NULL,
            type text NOT NULL,
            user_id text NOT NULL,
            stream_id text NOT NULL,
            request_id text,
            position integer,
            minutes double precision,
            received_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_events PRIMARY KEY (event_id, at),
            CONSTRAINT ck_events_type_known
                CHECK (type IN ('impression', 'click', 'watch', 'follow')),
            CONSTRAINT ck_events_event_id_nonempty CHECK (event_id <> ''),
            CONSTRAINT ck_events_position_positive CHECK (position >= 1),
            CONSTRAINT ck_events_minutes_only_for_watch
                CHECK ((type = 'watch') = (minutes IS NOT NULL)),
            CONSTRAINT ck_events_minutes_nonnegative CHECK (minutes >= 0)
        ) PARTITION BY RANGE (at)
        """
    )
    op.execute("CREATE INDEX ix_events_user_id_at ON events (user_id, at)")
    op.execute("CREATE INDEX ix_events_request_id ON events (request_id)")
    comments = {
        "event_id": "The client's id of the event; with `at`, a replay is recognised.",
        "at": "When the viewer did it (the partition key: one partition a month).",
        "type": "impression, click, watch or follow.",
        "user_id": "Who did it (checked against users when stored; not a foreign key).",
        "stream_id": "Which stream (checked against streams when stored; not a foreign key).",
        "request_id": "The recommendation answer whose list the stream was in, if any.",
        "position": "The stream's place in that list, 1 = first.",
        "minutes": "How long a watch lasted (watch events only).",
        "received_at": "When the service stored it.",
    }
    op.execute(
        "COMMENT ON TABLE events IS 'What viewers did with the lists the service answered"
        " (impressions, clicks, watches, follows), partitioned by month of at.'"
    )
    for column, text in comments.items():
        quoted = text.replace("'", "''")
        op.execute(f"COMMENT ON COLUMN events.{column} IS '{quoted}'")


def downgrade() -> None:
    op.execute("DROP TABLE events")
