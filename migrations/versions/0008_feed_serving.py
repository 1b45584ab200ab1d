"""Home-feed serving: precomputed viewing facts, and live changes announced by NOTIFY.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

`feed_user_features` and `feed_stream_features` hold what the reranker needs
from the interaction log, aggregated once (app/feed/refresh.py) instead of per
request: per user, watch minutes per category, watches per local hour and
minutes and watches per creator; per stream, its distinct viewers, watches per
device and watches per UTC hour. Counts, not shares, so a reader divides and
training and serving share one definition (app/feed/facts.py). No foreign
keys: the seed's loader swaps `users` and `streams` wholesale, and a derived
row about a vanished id is harmless (nothing joins from it).

`streams_live_notify` announces every change to the live set (a stream going
live or offline, or a live stream's viewer count) on the channel
`hometown_live`, so each server process can keep the live streams' embedding
matrix in memory and follow it within milliseconds (app/feed/live.py). It is a
statement-level trigger with transition tables: a live-status batch of 5,000
updates is one statement and fires it once. Each notification's payload is a
JSON array of `[stream_id, is_live, current_viewer_count]` triples, cut into
pieces of at most ~7,000 bytes (PostgreSQL's limit is 8,000; ids are at most
200 characters). NOTIFY is transactional: listeners hear a change only once it
is committed, and never one that was rolled back.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Sends lines (JSON triples) as notifications of at most ~7,000 bytes each.
SEND_FUNCTION = """
CREATE FUNCTION hometown_live_send(lines text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    piece text;
BEGIN
    FOR piece IN
        WITH numbered AS (
            SELECT line, sum(length(line) + 1) OVER (ORDER BY n) AS upto
            FROM unnest(lines) WITH ORDINALITY AS l(line, n)
        )
        SELECT '[' || string_agg(line, ',') || ']'
        FROM numbered GROUP BY (upto - 1) / 7000 ORDER BY (upto - 1) / 7000
    LOOP
        PERFORM pg_notify('hometown_live', piece);
    END LOOP;
END
$$
"""
#: One line per stream whose live state a statement changed: `[id, is_live, viewers]`.
#: A deleted live stream is announced as offline; a viewer count matters only while live.
NOTIFY_FUNCTION = """
CREATE FUNCTION hometown_live_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        PERFORM hometown_live_send(ARRAY(
            SELECT json_build_array(n.stream_id, n.is_live, n.current_viewer_count)::text
            FROM changed_new n JOIN changed_old o USING (stream_id)
            WHERE n.is_live IS DISTINCT FROM o.is_live
               OR (n.is_live AND n.current_viewer_count IS DISTINCT FROM o.current_viewer_count)));
    ELSIF TG_OP = 'INSERT' THEN
        PERFORM hometown_live_send(ARRAY(
            SELECT json_build_array(stream_id, is_live, current_viewer_count)::text
            FROM changed_new WHERE is_live));
    ELSE
        PERFORM hometown_live_send(ARRAY(
            SELECT json_build_array(stream_id, false, 0)::text
            FROM changed_old WHERE is_live));
    END IF;
    RETURN NULL;
END
$$
"""
#: Three triggers, one function: a trigger with transition tables serves one event.
TRIGGERS = (
    "CREATE TRIGGER streams_live_notify_update AFTER UPDATE ON streams"
    " REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new"
    " FOR EACH STATEMENT EXECUTE FUNCTION hometown_live_notify()",
    "CREATE TRIGGER streams_live_notify_insert AFTER INSERT ON streams"
    " REFERENCING NEW TABLE AS changed_new"
    " FOR EACH STATEMENT EXECUTE FUNCTION hometown_live_notify()",
    "CREATE TRIGGER streams_live_notify_delete AFTER DELETE ON streams"
    " REFERENCING OLD TABLE AS changed_old"
    " FOR EACH STATEMENT EXECUTE FUNCTION hometown_live_notify()",
)


def upgrade() -> None:
    op.create_table(
        "feed_user_features",
        sa.Column("user_id", sa.Text, primary_key=True, comment="The viewer."),
        sa.Column(
            "category_ids",
            ARRAY(sa.Text),
            nullable=False,
            comment="Categories the viewer watched, parallel to category_minutes.",
        ),
        sa.Column(
            "category_minutes",
            ARRAY(sa.Float),
            nullable=False,
            comment="Watch minutes per category in category_ids.",
        ),
        sa.Column(
            "hour_watches",
            ARRAY(sa.Float),
            nullable=False,
            comment="Watches per local hour 0..23 (UTC hour shifted by timezone_offset, floored).",
        ),
        sa.Column(
            "creator_ids",
            ARRAY(sa.Text),
            nullable=False,
            comment="Creators the viewer watched, most minutes first (ties by id).",
        ),
        sa.Column(
            "creator_minutes",
            ARRAY(sa.Float),
            nullable=False,
            comment="Watch minutes per creator in creator_ids.",
        ),
        sa.Column(
            "creator_watches",
            ARRAY(sa.Float),
            nullable=False,
            comment="Watched interactions per creator in creator_ids.",
        ),
        sa.Column(
            "computed_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
            comment="When these facts were aggregated from interactions.",
        ),
        comment="The viewing facts of each viewer with history (aggregated interactions).",
    )
    op.create_table(
        "feed_stream_features",
        sa.Column("stream_id", sa.Text, primary_key=True, comment="The stream."),
        sa.Column(
            "viewers",
            sa.Integer,
            nullable=False,
            comment="Distinct viewers who watched the stream (its popularity).",
        ),
        sa.Column(
            "device_watches",
            ARRAY(sa.Integer),
            nullable=False,
            comment="Watches per device, in the order mobile, desktop, tablet, tv.",
        ),
        sa.Column(
            "hour_watches",
            ARRAY(sa.Integer),
            nullable=False,
            comment="Watches per UTC hour 0..23.",
        ),
        sa.Column(
            "computed_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
            comment="When these facts were aggregated from interactions.",
        ),
        comment="The audience facts of each watched stream (aggregated interactions).",
    )
    op.execute(SEND_FUNCTION)
    op.execute(NOTIFY_FUNCTION)
    for statement in TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    for trigger in ("update", "insert", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS streams_live_notify_{trigger} ON streams")
    op.execute("DROP FUNCTION IF EXISTS hometown_live_notify()")
    op.execute("DROP FUNCTION IF EXISTS hometown_live_send(text[])")
    op.drop_table("feed_stream_features")
    op.drop_table("feed_user_features")
