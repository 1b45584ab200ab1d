"""Response bodies, as typed structures so `/docs` documents them exactly."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DatabaseStatus:
    """Reachability and size of the database."""

    reachable: bool
    postgis_version: str | None = None
    rows: dict[str, int] | None = None
    rows_estimated: bool | None = None
    error: str | None = None


@dataclass
class HealthResponse:
    """`GET /`: overall status ("ok" or "unavailable"), app version, database status."""

    status: str
    version: str
    database: DatabaseStatus
