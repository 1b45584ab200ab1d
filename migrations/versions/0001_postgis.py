"""Enable PostGIS.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")


def downgrade() -> None:
    # The postgis/postgis image also installs postgis_topology and the tiger geocoder,
    # which depend on postgis: leave the extension alone when anything else needs it.
    op.execute(
        """
        DO $$
        BEGIN
            IF NOT EXISTS (
                SELECT 1 FROM pg_depend d
                JOIN pg_extension dependent ON dependent.oid = d.objid
                JOIN pg_extension base ON base.oid = d.refobjid
                WHERE base.extname = 'postgis' AND d.deptype = 'n'
                  AND d.classid = 'pg_extension'::regclass
            ) THEN
                DROP EXTENSION IF EXISTS postgis;
            END IF;
        END $$;
        """
    )
