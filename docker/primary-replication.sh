#!/usr/bin/env bash
# Runs once, when the `db` container initialises its data directory
# (/docker-entrypoint-initdb.d): let the `db-replica` container stream from it.
# wal_level = replica and max_wal_senders = 10 are PostgreSQL's defaults already.
set -euo pipefail
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
