"""The read router's choice and the WAL arithmetic behind replica lag (app/db/replicas.py)."""

from __future__ import annotations

from app.db import replicas
from app.db.replicas import Reads, Replica, record_end

PAGE, SEGMENT = 8192, 16 * 1024 * 1024


def _replica(name: str, state: str = "up") -> Replica:
    return Replica(name, "postgresql://h/db", None, state=state)  # type: ignore[arg-type]


def test_a_replica_is_only_chosen_while_its_covered_moment_is_recent() -> None:
    now = [100.0]
    fresh, stale = _replica("replica1"), _replica("replica2")
    reads = Reads(None, [fresh, stale], max_lag_s=0.5, clock=lambda: now[0])  # type: ignore[arg-type]
    fresh.covered_through, stale.covered_through = 99.8, 99.0
    assert {reads.choose().name for _ in range(4)} == {"replica1"}  # type: ignore[union-attr]
    # The monitor stops updating (hung check): the read itself ages it out.
    now[0] = 100.31
    assert reads.choose() is None
    stale.covered_through = 100.3
    fresh.state = "down"
    assert [reads.choose().name for _ in range(2)] == ["replica2"] * 2  # type: ignore[union-attr]
    # Unknown: never checked yet, never chosen.
    reads.replicas = [_replica("replica3", state="unknown")]
    assert reads.choose() is None


def test_status_reports_lag_at_the_moment_asked_and_hides_the_password() -> None:
    replica = Replica("replica1", "postgresql://u:secret@h:5/db", None, state="up")  # type: ignore[arg-type]
    replica.covered_through = 10.0
    reads = Reads(None, [replica], max_lag_s=0.5)  # type: ignore[arg-type]
    (shown,) = replicas.status(reads, 10.25)
    assert shown["lag_s"] == 0.25 and shown["url"] == "postgresql://u:***@h:5/db"
    assert shown["state"] == "up"
    # Not checked again since: past the bound it shows as the router treats it.
    (later,) = replicas.status(reads, 10.75)
    assert later["state"] == "lagging" and later["lag_s"] == 0.75


def test_a_position_past_a_page_header_counts_as_the_boundary_before_it() -> None:
    # The last record ended at a page boundary: the insert position is past the
    # short header (24 bytes), or the long one (40) at a segment's first page.
    assert record_end(3 * PAGE + 24, PAGE, SEGMENT) == 3 * PAGE
    assert record_end(2 * SEGMENT + 40, PAGE, SEGMENT) == 2 * SEGMENT
    # Anywhere else the position is the end of the last record, as it is.
    for position in (3 * PAGE + 40, 3 * PAGE + 23, 3 * PAGE + 4000, 2 * SEGMENT + 8, 0):
        assert record_end(position, PAGE, SEGMENT) == position
