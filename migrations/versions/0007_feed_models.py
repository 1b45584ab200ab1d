"""Home-feed candidate models and their embeddings.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

`feed_models` has one row per trained candidate model (LightGCN or ALS), named
by its version; `feed_embeddings` holds each model's user and stream vectors as
little-endian float32 `bytea` (4 × dim bytes), read in one query and decoded
with `np.frombuffer` (app/feed/embeddings.py). The serving side loads the
*active* model, so at most one row of `feed_models` is active: a partial unique
index over `active WHERE active` (every indexed value is `true`, so a second
active row collides). One active model overall rather than one per kind,
because the candidate model is a single choice (LightGCN, or ALS when no
LightGCN model exists): training decides and activates it, and the server never
has to arbitrate between two active rows. There is no foreign key to `users` or
`streams`: a model trained from an interactions file names ids those tables do
not hold.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import BYTEA, JSONB

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feed_models",
        sa.Column(
            "version",
            sa.Text,
            comment="Model version, e.g. lightgcn-20261201T2300Z-1a2b3c4d (kind, time, data hash).",
        ),
        sa.Column("kind", sa.Text, nullable=False, comment="Model family: lightgcn or als."),
        sa.Column("dim", sa.Integer, nullable=False, comment="Embedding dimensions, 1..1024."),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
            comment="When the model was stored.",
        ),
        sa.Column(
            "metadata",
            JSONB,
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
            comment="Training data hash, metrics, library versions and configuration.",
        ),
        sa.Column(
            "active",
            sa.Boolean,
            nullable=False,
            server_default=sa.false(),
            comment="The candidate model the server loads; at most one row is active.",
        ),
        sa.CheckConstraint("kind IN ('lightgcn', 'als')", name=op.f("ck_feed_models_kind")),
        sa.CheckConstraint("dim BETWEEN 1 AND 1024", name=op.f("ck_feed_models_dim_range")),
        sa.CheckConstraint("version <> ''", name=op.f("ck_feed_models_version_nonempty")),
        sa.PrimaryKeyConstraint("version", name="pk_feed_models"),
        comment="Home-feed candidate models (LightGCN or ALS), one row per trained version.",
    )
    op.create_index(
        "uq_feed_models_active",
        "feed_models",
        ["active"],
        unique=True,
        postgresql_where=sa.text("active"),
    )
    op.create_table(
        "feed_embeddings",
        sa.Column(
            "model_version",
            sa.Text,
            sa.ForeignKey(
                "feed_models.version",
                name="fk_feed_embeddings_model_version_feed_models",
                ondelete="CASCADE",
            ),
            comment="The model these vectors belong to.",
        ),
        sa.Column("entity", sa.Text, comment="What the vector describes: user or stream."),
        sa.Column("entity_id", sa.Text, comment="The user_id or stream_id (not a foreign key)."),
        sa.Column(
            "vector",
            BYTEA,
            nullable=False,
            comment="Little-endian float32 values, 4 x dim bytes.",
        ),
        sa.CheckConstraint(
            "entity IN ('user', 'stream')", name=op.f("ck_feed_embeddings_entity_kind")
        ),
        sa.CheckConstraint("entity_id <> ''", name=op.f("ck_feed_embeddings_entity_id_nonempty")),
        sa.CheckConstraint(
            "octet_length(vector) > 0", name=op.f("ck_feed_embeddings_vector_nonempty")
        ),
        sa.PrimaryKeyConstraint("model_version", "entity", "entity_id", name="pk_feed_embeddings"),
        comment="User and stream vectors of the feed candidate models (one row per entity).",
    )


def downgrade() -> None:
    op.drop_table("feed_embeddings")
    op.drop_index("uq_feed_models_active", table_name="feed_models")
    op.drop_table("feed_models")
