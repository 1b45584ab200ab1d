"""Users, streams and interactions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geography
from sqlalchemy.dialects.postgresql import ARRAY

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOCATION_SQL = "(st_setsrid(st_makepoint(longitude, latitude), 4326))::geography"


def _coordinates() -> list[sa.Column]:
    return [
        sa.Column("latitude", sa.Float, nullable=False, comment="WGS84 latitude, -90..90."),
        sa.Column("longitude", sa.Float, nullable=False, comment="WGS84 longitude, -180..180."),
        sa.Column(
            "location",
            Geography("POINT", srid=4326, spatial_index=False),
            sa.Computed(LOCATION_SQL, persisted=True),
            nullable=False,
            comment="Generated from latitude/longitude: the point the geo search indexes.",
        ),
    ]


def _coordinate_checks(table: str) -> list[sa.CheckConstraint]:
    return [
        sa.CheckConstraint("latitude BETWEEN -90 AND 90", name=op.f(f"ck_{table}_latitude_range")),
        sa.CheckConstraint(
            "longitude BETWEEN -180 AND 180", name=op.f(f"ck_{table}_longitude_range")
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("user_id", sa.Text, primary_key=True, comment="Id, e.g. user_000042."),
        sa.Column("city", sa.Text, nullable=False, comment="Home city name, e.g. Paris."),
        *_coordinates(),
        sa.Column(
            "language", sa.Text, nullable=False, comment="Preferred language, ISO 639-1 (fr)."
        ),
        sa.Column(
            "timezone_offset",
            sa.Float,
            nullable=False,
            comment="Hours from UTC, -12..14 (5.5 for India).",
        ),
        sa.Column(
            "preferred_categories",
            ARRAY(sa.Text),
            nullable=False,
            server_default="{}",
            comment="Category ids the user likes (2-5).",
        ),
        sa.Column(
            "local_preference_strength",
            sa.Float,
            nullable=False,
            comment="How much the user favours nearby streams, 0..1.",
        ),
        sa.Column(
            "total_watch_hours", sa.Float, nullable=False, comment="Lifetime hours watched, >= 0."
        ),
        sa.Column(
            "registration_date",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="When the account was created.",
        ),
        *_coordinate_checks("users"),
        sa.CheckConstraint(
            "local_preference_strength BETWEEN 0 AND 1",
            name=op.f("ck_users_local_preference_range"),
        ),
        sa.CheckConstraint("total_watch_hours >= 0", name=op.f("ck_users_watch_hours_nonnegative")),
        sa.CheckConstraint(
            "timezone_offset BETWEEN -12 AND 14", name=op.f("ck_users_timezone_offset_range")
        ),
        sa.CheckConstraint("user_id <> ''", name=op.f("ck_users_user_id_nonempty")),
        sa.PrimaryKeyConstraint("user_id", name="pk_users"),
        comment="Viewers: home location, language and tastes (one row per user).",
    )

    op.create_table(
        "streams",
        sa.Column("stream_id", sa.Text, comment="Id, e.g. stream_000042."),
        sa.Column("creator_id", sa.Text, nullable=False, comment="Owner, e.g. creator_000042."),
        sa.Column("city", sa.Text, nullable=False, comment="City the creator streams from."),
        *_coordinates(),
        sa.Column("language", sa.Text, nullable=False, comment="Stream language, ISO 639-1."),
        sa.Column("category_id", sa.Text, nullable=False, comment="Category id, e.g. gaming."),
        sa.Column("title", sa.Text, nullable=False, comment="Channel title."),
        sa.Column("description", sa.Text, nullable=False, comment="Channel description."),
        sa.Column(
            "tags", ARRAY(sa.Text), nullable=False, server_default="{}", comment="Free-form tags."
        ),
        sa.Column(
            "avg_viewer_count",
            sa.Integer,
            nullable=False,
            comment="Average concurrent viewers over past streams, >= 0.",
        ),
        sa.Column(
            "creator_followers",
            sa.BigInteger,
            nullable=False,
            comment="Followers of the creator, >= 0.",
        ),
        sa.Column(
            "stream_quality_score",
            sa.Float,
            nullable=False,
            comment="Editorial/technical quality, 0..10.",
        ),
        sa.Column(
            "typical_duration_minutes",
            sa.Integer,
            nullable=False,
            comment="Usual length of one broadcast, > 0.",
        ),
        sa.Column("is_partnered", sa.Boolean, nullable=False, comment="Partner programme member."),
        sa.Column("mature_content", sa.Boolean, nullable=False, comment="Flagged for adults only."),
        sa.Column(
            "is_live",
            sa.Boolean,
            nullable=False,
            server_default="false",
            comment="Broadcasting right now.",
        ),
        sa.Column(
            "current_viewer_count",
            sa.Integer,
            nullable=False,
            server_default="0",
            comment="Viewers right now (0 when offline), >= 0.",
        ),
        sa.Column(
            "live_since",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="Start of the current broadcast.",
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
            comment="Time of the last change to the live state.",
        ),
        *_coordinate_checks("streams"),
        sa.CheckConstraint(
            "stream_quality_score BETWEEN 0 AND 10", name=op.f("ck_streams_quality_range")
        ),
        sa.CheckConstraint(
            "avg_viewer_count >= 0", name=op.f("ck_streams_avg_viewers_nonnegative")
        ),
        sa.CheckConstraint("creator_followers >= 0", name=op.f("ck_streams_followers_nonnegative")),
        sa.CheckConstraint(
            "current_viewer_count >= 0", name=op.f("ck_streams_current_viewers_nonnegative")
        ),
        sa.CheckConstraint(
            "typical_duration_minutes > 0", name=op.f("ck_streams_duration_positive")
        ),
        sa.CheckConstraint(
            "is_live OR live_since IS NULL", name=op.f("ck_streams_live_since_only_when_live")
        ),
        sa.CheckConstraint("stream_id <> ''", name=op.f("ck_streams_stream_id_nonempty")),
        sa.PrimaryKeyConstraint("stream_id", name="pk_streams"),
        comment="Channels with their static profile and live state (one row each).",
    )
    op.create_index("ix_streams_location", "streams", ["location"], postgresql_using="gist")

    op.create_table(
        "interactions",
        sa.Column(
            "interaction_id",
            sa.BigInteger,
            sa.Identity(always=False),
            comment="Surrogate key.",
        ),
        sa.Column("user_id", sa.Text, nullable=False, comment="Who saw it."),
        sa.Column("stream_id", sa.Text, nullable=False, comment="What was shown."),
        sa.Column(
            "impression_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="When it was shown.",
        ),
        sa.Column("clicked", sa.Boolean, nullable=False, comment="Whether the user clicked it."),
        sa.Column(
            "watch_time_minutes",
            sa.Float,
            nullable=False,
            server_default="0",
            comment="Minutes watched after the click (0 if no click).",
        ),
        sa.Column("device_type", sa.Text, nullable=False, comment="mobile, desktop, tablet or tv."),
        sa.Column(
            "page_position", sa.Integer, nullable=False, comment="Slot on the page, 1 = top."
        ),
        sa.Column("session_id", sa.Text, nullable=False, comment="Browsing session id."),
        sa.CheckConstraint(
            "watch_time_minutes >= 0", name=op.f("ck_interactions_watch_time_nonnegative")
        ),
        sa.CheckConstraint(
            "clicked OR watch_time_minutes = 0",
            name=op.f("ck_interactions_watch_time_only_when_clicked"),
        ),
        sa.CheckConstraint(
            "page_position >= 1", name=op.f("ck_interactions_page_position_positive")
        ),
        sa.PrimaryKeyConstraint("interaction_id", name="pk_interactions"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.user_id"], name="fk_interactions_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["stream_id"],
            ["streams.stream_id"],
            name="fk_interactions_stream_id_streams",
            ondelete="CASCADE",
        ),
        comment="Impression log: one row per stream shown to a user (training data).",
    )
    op.create_index(
        "ix_interactions_user_id_impression_at", "interactions", ["user_id", "impression_at"]
    )
    op.create_index("ix_interactions_stream_id", "interactions", ["stream_id"])


def downgrade() -> None:
    op.drop_table("interactions")
    op.drop_table("streams")
    op.drop_table("users")
