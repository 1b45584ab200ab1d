"""The private cluster behind `make db`: idempotent start, stop, restart with data kept."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.db import fetch, run_sql
from tools.cluster import ClusterError, LocalCluster, free_port, pg_bindir


def _have_postgres() -> bool:
    try:
        pg_bindir()
    except ClusterError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not _have_postgres(), reason="no PostgreSQL server binaries on this machine"
)


def test_start_is_idempotent_and_a_restart_keeps_the_data(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    cluster = LocalCluster(tmp_path / ".pgdata", port=free_port(), fsync=False)
    try:
        url = cluster.start()
        assert cluster.start() == url  # running already: nothing happens
        run_sql(url, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)")
        postgis = fetch(
            url, "SELECT count(*) AS n FROM pg_available_extensions WHERE name = 'postgis'"
        )
        assert postgis[0]["n"] == 1
        cluster.stop()
        assert not cluster.running()
        assert cluster.start() == url
        assert fetch(url, "SELECT x FROM kept")[0]["x"] == 7
    finally:
        cluster.stop()
        shutil.rmtree(tmp_path / ".pgdata", ignore_errors=True)
