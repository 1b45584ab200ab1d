"""Health: `GET /` answers 200 when the database answers, 503 (with why) when not."""

from __future__ import annotations

import asyncpg
from litestar import Response, get
from litestar.datastructures import State

from app import __version__
from app.api.schemas import DatabaseStatus, HealthResponse
from app.db.pool import CONNECTION_ERRORS
from app.health import check_database


@get("/", summary="Health", tags=["health"])
async def health(state: State) -> Response[HealthResponse]:
    """Report the app version, whether PostGIS answers, and row counts.

    Returns 503 with the reason in `database.error` when the database is down or
    not migrated, so a load balancer and a person both see what is wrong.
    """
    try:
        db = await check_database(state.pool, state.settings.db_connect_timeout_s)
    except (*CONNECTION_ERRORS, asyncpg.PostgresError, LookupError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        body = HealthResponse(
            status="unavailable",
            version=__version__,
            database=DatabaseStatus(reachable=False, error=reason[:300]),
        )
        return Response(body, status_code=503, headers={"Retry-After": "5"})
    status = DatabaseStatus(
        reachable=True,
        postgis_version=db.postgis_version,
        rows=db.rows,
        rows_estimated=db.rows_estimated,
    )
    return Response(HealthResponse(status="ok", version=__version__, database=status))
