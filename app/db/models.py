"""The tables, as SQLAlchemy sees them (Alembic's target metadata).

Alembic owns the schema: the app never calls `create_all`. The migrations in
`migrations/versions/` are the history; this module is the current shape, used by
queries and by `alembic revision --autogenerate` to spot drift.

Coordinates are stored as `latitude`/`longitude` with CHECK constraints, and
`location` is a generated `geography(Point,4326)` column built from them. PostGIS
silently wraps out-of-range coordinates when it parses a geography (lat 100 turns
into lat 80), so a check on `location` could never refuse them; a check on the
plain numbers can, and the indexed geography is still always there and in step.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from geoalchemy2 import Geography
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.db import limits
from app.hometown.tiers import STATIC_SCORE_SQL, TIERS

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: The SQL that derives `location` from the two coordinate columns.
LOCATION_SQL = "(st_setsrid(st_makepoint(longitude, latitude), 4326))::geography"


class Base(DeclarativeBase):
    """Declarative base with deterministic constraint names (migrations refer to them)."""

    metadata = MetaData(naming_convention=NAMING)


def _location() -> Mapped[object]:
    return mapped_column(
        Geography("POINT", srid=4326, spatial_index=False),
        Computed(LOCATION_SQL, persisted=True),
        nullable=False,
        comment="Generated from latitude/longitude: the point the geo search indexes.",
    )


def _check(column: str, bounds: limits.Bounds, name: str) -> CheckConstraint:
    """The CHECK for a column's range, from the one place the range is written."""
    return CheckConstraint(bounds.check_sql(column), name=name)


def _coordinate_checks() -> tuple[CheckConstraint, CheckConstraint]:
    return (
        _check("latitude", limits.LATITUDE, "latitude_range"),
        _check("longitude", limits.LONGITUDE, "longitude_range"),
    )


class User(Base):
    """A viewer: where they are and what they like."""

    __tablename__ = "users"
    __table_args__ = (
        *_coordinate_checks(),
        _check("local_preference_strength", limits.LOCAL_PREFERENCE, "local_preference_range"),
        _check("total_watch_hours", limits.WATCH_HOURS, "watch_hours_nonnegative"),
        _check("timezone_offset", limits.TIMEZONE_OFFSET, "timezone_offset_range"),
        CheckConstraint("user_id <> ''", name="user_id_nonempty"),
        {"comment": "Viewers: home location, language and tastes (one row per user)."},
    )

    user_id: Mapped[str] = mapped_column(Text, primary_key=True, comment="Id, e.g. user_000042.")
    city: Mapped[str] = mapped_column(Text, comment="Home city name, e.g. Paris.")
    latitude: Mapped[float] = mapped_column(Float, comment="WGS84 latitude, -90..90.")
    longitude: Mapped[float] = mapped_column(Float, comment="WGS84 longitude, -180..180.")
    location: Mapped[object] = _location()
    language: Mapped[str] = mapped_column(Text, comment="Preferred language, ISO 639-1 (fr).")
    timezone_offset: Mapped[float] = mapped_column(
        Float, comment="Hours from UTC, -12..14 (5.5 for India)."
    )
    preferred_categories: Mapped[list[str]] = mapped_column(
        ARRAY(Text), server_default="{}", comment="Category ids the user likes (2-5)."
    )
    local_preference_strength: Mapped[float] = mapped_column(
        Float, comment="How much the user favours nearby streams, 0..1."
    )
    total_watch_hours: Mapped[float] = mapped_column(Float, comment="Lifetime hours watched, >= 0.")
    registration_date: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True, comment="When the account was created."
    )


class Stream(Base):
    """A channel: where its creator streams from, what it is, and whether it is live."""

    __tablename__ = "streams"
    __table_args__ = (
        *_coordinate_checks(),
        _check("stream_quality_score", limits.QUALITY, "quality_range"),
        _check("avg_viewer_count", limits.VIEWERS, "avg_viewers_nonnegative"),
        _check("creator_followers", limits.FOLLOWERS, "followers_nonnegative"),
        _check("current_viewer_count", limits.VIEWERS, "current_viewers_nonnegative"),
        _check("typical_duration_minutes", limits.DURATION_MINUTES, "duration_positive"),
        CheckConstraint("is_live OR live_since IS NULL", name="live_since_only_when_live"),
        CheckConstraint("stream_id <> ''", name="stream_id_nonempty"),
        Index("ix_streams_location", "location", postgresql_using="gist"),
        Index(
            "ix_streams_live_location",
            "location",
            postgresql_using="gist",
            postgresql_where=text("is_live"),
        ),
        Index("ix_streams_live_language", "language", postgresql_where=text("is_live")),
        Index("ix_streams_live_category_id", "category_id", postgresql_where=text("is_live")),
        *(
            Index(
                tier.index,
                "location",
                postgresql_using="gist",
                postgresql_where=text(tier.predicate),
            )
            for tier in TIERS
            if tier.index
        ),
        {
            "comment": "Channels with their static profile and live state (one row each).",
            "postgresql_with": {"fillfactor": 85},
        },
    )

    stream_id: Mapped[str] = mapped_column(
        Text, primary_key=True, comment="Id, e.g. stream_000042."
    )
    creator_id: Mapped[str] = mapped_column(Text, comment="Owner, e.g. creator_000042.")
    city: Mapped[str] = mapped_column(Text, comment="City the creator streams from.")
    latitude: Mapped[float] = mapped_column(Float, comment="WGS84 latitude, -90..90.")
    longitude: Mapped[float] = mapped_column(Float, comment="WGS84 longitude, -180..180.")
    location: Mapped[object] = _location()
    language: Mapped[str] = mapped_column(Text, comment="Stream language, ISO 639-1.")
    category_id: Mapped[str] = mapped_column(Text, comment="Category id, e.g. gaming.")
    title: Mapped[str] = mapped_column(Text, comment="Channel title.")
    description: Mapped[str] = mapped_column(Text, comment="Channel description.")
    tags: Mapped[list[str]] = mapped_column(
        ARRAY(Text), server_default="{}", comment="Free-form tags."
    )
    avg_viewer_count: Mapped[int] = mapped_column(
        Integer, comment="Average concurrent viewers over past streams, >= 0."
    )
    creator_followers: Mapped[int] = mapped_column(
        BigInteger, comment="Followers of the creator, >= 0."
    )
    stream_quality_score: Mapped[float] = mapped_column(
        Float, comment="Editorial/technical quality, 0..10."
    )
    typical_duration_minutes: Mapped[float] = mapped_column(
        Float, comment="Usual length of one broadcast in minutes, > 0 (real-valued)."
    )
    is_partnered: Mapped[bool] = mapped_column(Boolean, comment="Partner programme member.")
    mature_content: Mapped[bool] = mapped_column(Boolean, comment="Flagged for adults only.")
    is_live: Mapped[bool] = mapped_column(
        Boolean, server_default="false", comment="Broadcasting right now."
    )
    current_viewer_count: Mapped[int] = mapped_column(
        Integer, server_default="0", comment="Viewers right now (0 when offline), >= 0."
    )
    live_since: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True, comment="Start of the current broadcast."
    )
    status_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True),
        nullable=True,
        comment="event time of the last applied live-status update (older ones are ignored)",
    )
    static_score: Mapped[float] = mapped_column(
        Float,
        Computed(STATIC_SCORE_SQL, persisted=True),
        comment=(
            "Generated: stream_quality_score + min(avg_viewer_count / 1000, 2), the"
            " user-independent part of the score; orders the exact search's tiers."
        ),
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True),
        server_default=func.now(),
        comment="Time of the last change to the live state.",
    )


class Interaction(Base):
    """One impression of a stream on a user's front page, clicked or not."""

    __tablename__ = "interactions"
    __table_args__ = (
        _check("watch_time_minutes", limits.WATCH_MINUTES, "watch_time_nonnegative"),
        CheckConstraint("clicked OR watch_time_minutes = 0", name="watch_time_only_when_clicked"),
        _check("page_position", limits.PAGE_POSITION, "page_position_positive"),
        Index("ix_interactions_user_id_impression_at", "user_id", "impression_at"),
        Index("ix_interactions_stream_id", "stream_id"),
        {"comment": "Impression log: one row per stream shown to a user (training data)."},
    )

    interaction_id: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=True, comment="Surrogate key."
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.user_id", ondelete="CASCADE"), comment="Who saw it."
    )
    stream_id: Mapped[str] = mapped_column(
        ForeignKey("streams.stream_id", ondelete="CASCADE"), comment="What was shown."
    )
    impression_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), comment="When it was shown."
    )
    clicked: Mapped[bool] = mapped_column(Boolean, comment="Whether the user clicked it.")
    watch_time_minutes: Mapped[float] = mapped_column(
        Float, server_default="0", comment="Minutes watched after the click (0 if no click)."
    )
    device_type: Mapped[str] = mapped_column(Text, comment="mobile, desktop, tablet or tv.")
    page_position: Mapped[int] = mapped_column(Integer, comment="Slot on the page, 1 = top.")
    session_id: Mapped[str] = mapped_column(Text, comment="Browsing session id.")


class FeedModel(Base):
    """A home-feed candidate model (LightGCN or ALS); at most one is active (migration 0007)."""

    __tablename__ = "feed_models"
    __table_args__ = (
        CheckConstraint("kind IN ('lightgcn', 'als')", name="kind"),
        CheckConstraint("dim BETWEEN 1 AND 1024", name="dim_range"),
        CheckConstraint("version <> ''", name="version_nonempty"),
        Index("uq_feed_models_active", "active", unique=True, postgresql_where=text("active")),
        {"comment": "Home-feed candidate models (LightGCN or ALS), one row per trained version."},
    )

    version: Mapped[str] = mapped_column(
        Text,
        primary_key=True,
        comment="Model version, e.g. lightgcn-20261201T2300Z-1a2b3c4d (kind, time, data hash).",
    )
    kind: Mapped[str] = mapped_column(Text, comment="Model family: lightgcn or als.")
    dim: Mapped[int] = mapped_column(Integer, comment="Embedding dimensions, 1..1024.")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), comment="When the model was stored."
    )
    # `metadata` is the declarative base's own attribute, so the column maps to `meta`.
    meta: Mapped[dict[str, Any]] = mapped_column(
        "metadata",
        JSONB,
        server_default=text("'{}'::jsonb"),
        comment="Training data hash, metrics, library versions and configuration.",
    )
    active: Mapped[bool] = mapped_column(
        Boolean,
        server_default="false",
        comment="The candidate model the server loads; at most one row is active.",
    )


class FeedEmbedding(Base):
    """One user's or stream's vector in one feed model (no foreign key to users or streams)."""

    __tablename__ = "feed_embeddings"
    __table_args__ = (
        CheckConstraint("entity IN ('user', 'stream')", name="entity_kind"),
        CheckConstraint("entity_id <> ''", name="entity_id_nonempty"),
        CheckConstraint("octet_length(vector) > 0", name="vector_nonempty"),
        {"comment": "User and stream vectors of the feed candidate models (one row per entity)."},
    )

    model_version: Mapped[str] = mapped_column(
        ForeignKey("feed_models.version", ondelete="CASCADE"),
        primary_key=True,
        comment="The model these vectors belong to.",
    )
    entity: Mapped[str] = mapped_column(
        Text, primary_key=True, comment="What the vector describes: user or stream."
    )
    entity_id: Mapped[str] = mapped_column(
        Text, primary_key=True, comment="The user_id or stream_id (not a foreign key)."
    )
    vector: Mapped[bytes] = mapped_column(
        BYTEA, comment="Little-endian float32 values, 4 x dim bytes."
    )


class FeedUserFeatures(Base):
    """A viewer's viewing facts, aggregated from interactions (migration 0008)."""

    __tablename__ = "feed_user_features"
    __table_args__ = (
        {"comment": "The viewing facts of each viewer with history (aggregated interactions)."},
    )

    user_id: Mapped[str] = mapped_column(Text, primary_key=True, comment="The viewer.")
    category_ids: Mapped[list[str]] = mapped_column(
        ARRAY(Text), comment="Categories the viewer watched, parallel to category_minutes."
    )
    category_minutes: Mapped[list[float]] = mapped_column(
        ARRAY(Float), comment="Watch minutes per category in category_ids."
    )
    hour_watches: Mapped[list[float]] = mapped_column(
        ARRAY(Float),
        comment="Watches per local hour 0..23 (UTC hour shifted by timezone_offset, floored).",
    )
    creator_ids: Mapped[list[str]] = mapped_column(
        ARRAY(Text), comment="Creators the viewer watched, most minutes first (ties by id)."
    )
    creator_minutes: Mapped[list[float]] = mapped_column(
        ARRAY(Float), comment="Watch minutes per creator in creator_ids."
    )
    creator_watches: Mapped[list[float]] = mapped_column(
        ARRAY(Float), comment="Watched interactions per creator in creator_ids."
    )
    computed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True),
        server_default=func.now(),
        comment="When these facts were aggregated from interactions.",
    )


class FeedStreamFeatures(Base):
    """A stream's audience facts, aggregated from interactions (migration 0008)."""

    __tablename__ = "feed_stream_features"
    __table_args__ = (
        {"comment": "The audience facts of each watched stream (aggregated interactions)."},
    )

    stream_id: Mapped[str] = mapped_column(Text, primary_key=True, comment="The stream.")
    viewers: Mapped[int] = mapped_column(
        Integer, comment="Distinct viewers who watched the stream (its popularity)."
    )
    device_watches: Mapped[list[int]] = mapped_column(
        ARRAY(Integer), comment="Watches per device, in the order mobile, desktop, tablet, tv."
    )
    hour_watches: Mapped[list[int]] = mapped_column(
        ARRAY(Integer), comment="Watches per UTC hour 0..23."
    )
    computed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True),
        server_default=func.now(),
        comment="When these facts were aggregated from interactions.",
    )


class Event(Base):
    """One thing a viewer did with a stream the service showed (migration 0010).

    Partitioned by month of `at`; the partitions are created by app/events/log.py
    as events arrive, so the model describes the parent table only.
    """

    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint("type IN ('impression', 'click', 'watch', 'follow')", name="type_known"),
        CheckConstraint("event_id <> ''", name="event_id_nonempty"),
        CheckConstraint("position >= 1", name="position_positive"),
        CheckConstraint("(type = 'watch') = (minutes IS NOT NULL)", name="minutes_only_for_watch"),
        CheckConstraint("minutes >= 0", name="minutes_nonnegative"),
        Index("ix_events_user_id_at", "user_id", "at"),
        Index("ix_events_request_id", "request_id"),
        {
            "comment": "What viewers did with the lists the service answered"
            " (impressions, clicks, watches, follows), partitioned by month of at.",
            "postgresql_partition_by": "RANGE (at)",
        },
    )

    event_id: Mapped[str] = mapped_column(
        Text,
        primary_key=True,
        comment="The client's id of the event; with `at`, a replay is recognised.",
    )
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True),
        primary_key=True,
        comment="When the viewer did it (the partition key: one partition a month).",
    )
    type: Mapped[str] = mapped_column(Text, comment="impression, click, watch or follow.")
    user_id: Mapped[str] = mapped_column(
        Text, comment="Who did it (checked against users when stored; not a foreign key)."
    )
    stream_id: Mapped[str] = mapped_column(
        Text, comment="Which stream (checked against streams when stored; not a foreign key)."
    )
    request_id: Mapped[str | None] = mapped_column(
        Text,
        nullable=True,
        comment="The recommendation answer whose list the stream was in, if any.",
    )
    position: Mapped[int | None] = mapped_column(
        Integer, nullable=True, comment="The stream's place in that list, 1 = first."
    )
    minutes: Mapped[float | None] = mapped_column(
        Float, nullable=True, comment="How long a watch lasted (watch events only)."
    )
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), comment="When the service stored it."
    )


class Exposure(Base):
    """One recommendation answer: the streams shown, in order (migration 0011).

    Partitioned by month of `at`, like `events`; app/events/exposures.py writes it.
    """

    __tablename__ = "exposures"
    __table_args__ = (
        CheckConstraint("cardinality(stream_ids) >= 1", name="shown_something"),
        {
            "comment": "Every recommendation answer: the streams shown in order, to whom,"
            " under which scenario, model and variant; partitioned by month of at.",
            "postgresql_partition_by": "RANGE (at)",
        },
    )

    request_id: Mapped[str] = mapped_column(
        Text,
        primary_key=True,
        comment="The answer's request_id (the X-Request-ID of the response).",
    )
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True),
        primary_key=True,
        comment="When the answer was given (the partition key: one partition a month).",
    )
    scenario: Mapped[str] = mapped_column(
        Text, comment="hometown, hometown-ml, home_feed or category_feed."
    )
    user_id: Mapped[str | None] = mapped_column(
        Text,
        nullable=True,
        comment="Who asked (none for a signed-out HOMETOWN viewer); not a foreign key.",
    )
    stream_ids: Mapped[list[str]] = mapped_column(
        ARRAY(Text),
        comment="The streams shown, best first (position = place in the array, from 1).",
    )
    model: Mapped[str | None] = mapped_column(
        Text,
        nullable=True,
        comment="What ordered the list: formula, the click model, the reranker or fallback.",
    )
    experiment: Mapped[str | None] = mapped_column(
        Text, nullable=True, comment="The experiment the user was in for this scenario, if any."
    )
    variant: Mapped[str | None] = mapped_column(
        Text, nullable=True, comment="Their variant in that experiment."
    )
