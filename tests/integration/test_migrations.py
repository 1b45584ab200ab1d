"""The Alembic history runs both ways, and the schema refuses bad rows."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.models import Base
from app.hometown.tiers import TIERS
from tests.support.db import alembic_config, fetch, run_sql

USER = (
    "INSERT INTO users (user_id, city, latitude, longitude, language, timezone_offset,"
    " preferred_categories, local_preference_strength, total_watch_hours)"
    " VALUES ({user_id}, 'Paris', {lat}, {lon}, 'fr', {tz}, '{{gaming}}', {pref}, {hours})"
)
USER_OK = {"user_id": "'u1'", "lat": 48.85, "lon": 2.35, "tz": 1, "pref": 0.5, "hours": 3}
STREAM = (
    "INSERT INTO streams (stream_id, creator_id, city, latitude, longitude, language,"
    " category_id, title, description, avg_viewer_count, creator_followers,"
    " stream_quality_score, typical_duration_minutes, is_partnered, mature_content,"
    " is_live, current_viewer_count, live_since)"
    " VALUES ({stream_id}, 'c1', 'Paris', {lat}, {lon}, 'fr', 'gaming', 't', 'd', {avg},"
    " {followers}, {quality}, {duration}, false, false, {live}, {current}, {since})"
)
STREAM_OK = {
    "stream_id": "'s1'",
    "lat": 48.85,
    "lon": 2.35,
    "avg": 10,
    "followers": 5,
    "quality": 5,
    "duration": 60,
    "live": "true",
    "current": 3,
    "since": "now()",
}
INTERACTION = (
    "INSERT INTO interactions (user_id, stream_id, impression_at, clicked,"
    " watch_time_minutes, device_type, page_position, session_id)"
    " VALUES ({user_id}, {stream_id}, now(), {clicked}, {watch}, 'mobile', {position}, 'x')"
)
INTERACTION_OK = {
    "user_id": "'u1'",
    "stream_id": "'s1'",
    "clicked": "true",
    "watch": 2,
    "position": 1,
}


def test_migrations_run_down_and_up_again(migrated_url: str) -> None:
    config = alembic_config(migrated_url)
    command.downgrade(config, "base")
    tables = fetch(migrated_url, "SELECT to_regclass('public.streams') AS t")
    assert tables[0]["t"] is None
    command.upgrade(config, "head")
    indexes = fetch(
        migrated_url, "SELECT indexname FROM pg_indexes WHERE tablename = 'streams' ORDER BY 1"
    )
    assert [row["indexname"] for row in indexes] == [
        "ix_streams_live_category_id",
        "ix_streams_live_language",
        "ix_streams_live_location",
        *sorted(f"ix_streams_live_tier_{n}" for n in range(1, 23)),
        "ix_streams_location",
        "pk_streams",
    ]
    kinds = fetch(
        migrated_url,
        "SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute"
        " WHERE attrelid = 'streams'::regclass AND attname = 'location'",
    )
    assert kinds[0]["t"] == "geography(Point,4326)"
    assert _feed_tables(migrated_url) == FEED_TABLES
    assert _stream_triggers(migrated_url) == STREAM_TRIGGERS


FEED_TABLES = ["feed_embeddings", "feed_models", "feed_stream_features", "feed_user_features"]
STREAM_TRIGGERS = [f"streams_live_notify_{op}" for op in ("delete", "insert", "update")]


def _stream_triggers(url: str) -> list[str]:
    rows = fetch(
        url,
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.streams'::regclass"
        " AND NOT tgisinternal ORDER BY 1",
    )
    return [row["tgname"] for row in rows]


def _feed_tables(url: str) -> list[str]:
    rows = fetch(
        url,
        "SELECT relname FROM pg_class WHERE relname LIKE 'feed\\_%' AND relkind = 'r'"
        " AND relnamespace = 'public'::regnamespace ORDER BY 1",
    )
    return [row["relname"] for row in rows]


def test_feed_models_migration_runs_down_and_up_again(migrated_url: str) -> None:
    """0007 alone: its downgrade drops both feed tables and leaves 0006's schema whole."""
    config = alembic_config(migrated_url)
    command.downgrade(config, "0006")
    try:
        assert _feed_tables(migrated_url) == []
        assert fetch(migrated_url, "SELECT to_regclass('public.streams') AS t")[0]["t"]
        assert fetch(migrated_url, "SELECT version_num FROM alembic_version")[0][0] == "0006"
    finally:
        command.upgrade(config, "head")
    assert _feed_tables(migrated_url) == FEED_TABLES
    indexes = fetch(
        migrated_url,
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'feed_models' ORDER BY 1",
    )
    assert [row["indexname"] for row in indexes] == ["pk_feed_models", "uq_feed_models_active"]
    assert "UNIQUE" in indexes[1]["indexdef"] and "WHERE active" in indexes[1]["indexdef"]


def test_feed_serving_migration_runs_down_and_up_again(migrated_url: str) -> None:
    """0008 alone: its downgrade drops the feature tables, the triggers and their functions."""
    config = alembic_config(migrated_url)
    command.downgrade(config, "0007")
    try:
        assert _feed_tables(migrated_url) == ["feed_embeddings", "feed_models"]
        assert _stream_triggers(migrated_url) == []
        functions = fetch(
            migrated_url, "SELECT proname FROM pg_proc WHERE proname LIKE 'hometown\\_live%'"
        )
        assert functions == []
    finally:
        command.upgrade(config, "head")
    assert _feed_tables(migrated_url) == FEED_TABLES
    assert _stream_triggers(migrated_url) == STREAM_TRIGGERS


def test_the_models_match_the_migrated_schema(migrated_url: str) -> None:
    """app/db/models.py and the migrations describe the same feed tables (no autogenerate diff)."""

    async def diff() -> list[object]:
        engine = create_async_engine(migrated_url.replace("postgresql://", "postgresql+asyncpg://"))
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: compare_metadata(
                        MigrationContext.configure(sync, opts={"compare_type": True}),
                        Base.metadata,
                    )
                )
        finally:
            await engine.dispose()

    feed = [d for d in asyncio.run(diff()) if "feed_" in repr(d)]
    assert feed == []


def test_every_table_and_column_has_a_comment(migrated_url: str) -> None:
    missing = fetch(
        migrated_url,
        """
        SELECT c.relname, a.attname FROM pg_class c
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE c.relname IN ('users', 'streams', 'interactions', 'feed_models', 'feed_embeddings',
                            'events')
          AND c.relnamespace = 'public'::regnamespace
          AND col_description(c.oid, a.attnum) IS NULL
        """,
    )
    assert missing == []
    for table in ("users", "streams", "interactions", "feed_models", "feed_embeddings", "events"):
        comment = fetch(migrated_url, "SELECT obj_description($1::regclass) AS c", table)
        assert comment[0]["c"]


def test_location_is_generated_from_the_coordinates(db_url: str) -> None:
    run_sql(db_url, USER.format(**USER_OK))
    row = fetch(
        db_url, "SELECT ST_X(location::geometry) AS x, ST_Y(location::geometry) AS y FROM users"
    )[0]
    assert (row["x"], row["y"]) == (2.35, 48.85)


@pytest.mark.parametrize(
    ("template", "good", "bad", "constraint"),
    [
        (USER, USER_OK, {"lat": 90.5}, "ck_users_latitude_range"),
        (USER, USER_OK, {"lat": -91}, "ck_users_latitude_range"),
        (USER, USER_OK, {"lon": 180.01}, "ck_users_longitude_range"),
        (USER, USER_OK, {"lon": -200}, "ck_users_longitude_range"),
        (USER, USER_OK, {"pref": 1.2}, "ck_users_local_preference_range"),
        (USER, USER_OK, {"pref": -0.1}, "ck_users_local_preference_range"),
        (USER, USER_OK, {"hours": -1}, "ck_users_watch_hours_nonnegative"),
        (USER, USER_OK, {"tz": 15}, "ck_users_timezone_offset_range"),
        (USER, USER_OK, {"user_id": "''"}, "ck_users_user_id_nonempty"),
        (STREAM, STREAM_OK, {"lat": 95}, "ck_streams_latitude_range"),
        (STREAM, STREAM_OK, {"lon": 181}, "ck_streams_longitude_range"),
        (STREAM, STREAM_OK, {"quality": 10.5}, "ck_streams_quality_range"),
        (STREAM, STREAM_OK, {"quality": -1}, "ck_streams_quality_range"),
        (STREAM, STREAM_OK, {"avg": -1}, "ck_streams_avg_viewers_nonnegative"),
        (STREAM, STREAM_OK, {"followers": -5}, "ck_streams_followers_nonnegative"),
        (STREAM, STREAM_OK, {"current": -1}, "ck_streams_current_viewers_nonnegative"),
        (STREAM, STREAM_OK, {"duration": 0}, "ck_streams_duration_positive"),
        (STREAM, STREAM_OK, {"live": "false"}, "ck_streams_live_since_only_when_live"),
        (STREAM, STREAM_OK, {"stream_id": "''"}, "ck_streams_stream_id_nonempty"),
        (INTERACTION, INTERACTION_OK, {"watch": -1}, "ck_interactions_watch_time_nonnegative"),
        (
            INTERACTION,
            INTERACTION_OK,
            {"clicked": "false"},
            "ck_interactions_watch_time_only_when_clicked",
        ),
        (INTERACTION, INTERACTION_OK, {"position": 0}, "ck_interactions_page_position_positive"),
        (INTERACTION, INTERACTION_OK, {"user_id": "'nobody'"}, "fk_interactions_user_id_users"),
        (
            INTERACTION,
            INTERACTION_OK,
            {"stream_id": "'nothing'"},
            "fk_interactions_stream_id_streams",
        ),
    ],
)
def test_constraints_refuse_bad_rows(
    db_url: str, template: str, good: dict[str, object], bad: dict[str, object], constraint: str
) -> None:
    """One valid row of each table goes in; the same row with one bad field is refused."""
    run_sql(db_url, USER.format(**USER_OK))
    run_sql(db_url, STREAM.format(**STREAM_OK))
    run_sql(db_url, INTERACTION.format(**INTERACTION_OK))
    row = {**good, **bad}
    # Parent rows take a fresh id so that only the bad field can make the insert fail.
    if template is USER and "user_id" not in bad:
        row["user_id"] = "'u2'"
    if template is STREAM and "stream_id" not in bad:
        row["stream_id"] = "'s2'"
    with pytest.raises(asyncpg.IntegrityConstraintViolationError) as info:
        run_sql(db_url, template.format(**row))
    assert info.value.constraint_name == constraint


def test_tier_indexes_match_the_search_tiers(migrated_url: str) -> None:
    """The partial indexes of migration 0003 are the ones app/hometown/tiers.py queries."""
    rows = fetch(
        migrated_url,
        "SELECT c.relname AS indexname, pg_get_expr(i.indpred, i.indrelid) AS predicate"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = 'streams'::regclass AND c.relname LIKE 'ix_streams_live_tier_%'",
    )
    found = {row["indexname"]: row["predicate"] for row in rows}
    for tier in TIERS:
        if tier.index is None:
            continue
        assert f">= ({tier.low!r})" in found[tier.index]
        assert f"< ({tier.high!r})" in found[tier.index]
    assert len(found) == sum(1 for tier in TIERS if tier.index)


def test_static_score_is_generated(db_url: str) -> None:
    run_sql(db_url, USER.format(**USER_OK))
    run_sql(db_url, STREAM.format(**{**STREAM_OK, "quality": 7.25, "avg": 1500}))
    run_sql(db_url, STREAM.format(**{**STREAM_OK, "stream_id": "'s9'", "avg": 9000}))
    rows = fetch(db_url, "SELECT stream_id, static_score FROM streams ORDER BY stream_id")
    assert [(r["stream_id"], r["static_score"]) for r in rows] == [("s1", 8.75), ("s9", 7.0)]
