#!/usr/bin/env bash
# The `db-replica` container: a hot standby of `db` (PostgreSQL streaming replication).
# On first start, copy the primary with `pg_basebackup -R` (which writes
# primary_conninfo and standby.signal); then run the image's own entrypoint, which
# finds the data directory initialised and starts the server read-only.
set -euo pipefail
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -h db -U "$POSTGRES_USER" -q; do sleep 1; done
  mkdir -p "$PGDATA"
  chown postgres:postgres "$PGDATA"
  chmod 700 "$PGDATA"
  gosu postgres env PGPASSWORD="$POSTGRES_PASSWORD" \
    pg_basebackup -h db -U "$POSTGRES_USER" -D "$PGDATA" -R -X stream -c fast
fi
exec docker-entrypoint.sh postgres -c hot_standby=on
