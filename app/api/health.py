"""Health: `GET /` (the detailed report), `GET /live` (liveness), `GET /ready` (readiness).

`/` answers 200 when the database answers, 503 (with why) when not. `/live` never
touches the database: it says the process serves requests, so an orchestrator
restarts it only when it does not. `/ready` says whether it should get traffic:
the database answers and its schema is at the newest migration.

`/` also lists the endpoints the app serves, read from its own route table, so the
list cannot drift from the routes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import asyncpg
from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.routes import HTTPRoute

from app import __version__
from app.api.schemas import (
    DatabaseStatus,
    FeedStatus,
    HealthResponse,
    ModelStatus,
    ProcessStatus,
    RankerStatus,
    ReplicaStatus,
)
from app.db import replicas
from app.db.pool import CONNECTION_ERRORS
from app.feed.ranker import RankerSlot
from app.health import check_database
from app.hometown.click_model import ModelSlot
from app.observability.readiness import NotReady, check_ready, schema_head


@get(
    "/",
    summary="Health",
    tags=["health"],
    responses={
        503: ResponseSpec(
            data_container=HealthResponse,
            description="The database is down or not migrated (see Retry-After)",
            generate_examples=False,
        )
    },
)
async def health(state: State, request: Request[Any, Any, Any]) -> Response[HealthResponse]:
    """Report the app version, whether PostGIS answers, row counts, and the endpoints.

    Returns 503 with the reason in `database.error` when the database is down or
    not migrated, so a load balancer and a person both see what is wrong.
    """
    served = endpoints(request.app)
    try:
        db = await check_database(state.pool, state.settings.db_connect_timeout_s)
    except (*CONNECTION_ERRORS, asyncpg.PostgresError, LookupError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        body = HealthResponse(
            status="unavailable",
            version=__version__,
            database=DatabaseStatus(reachable=False, error=reason[:300], **_reads(state)),
            model=_model_status(state.model),
            feed=await feed_status(state),
            endpoints=served,
            process=_process(state),
            exposures=_exposures(state),
        )
        return Response(body, status_code=503, headers={"Retry-After": "5"})
    status = DatabaseStatus(
        reachable=True,
        postgis_version=db.postgis_version,
        rows=db.rows,
        rows_estimated=db.rows_estimated,
        **_reads(state),
    )
    return Response(
        HealthResponse(
            status="ok",
            version=__version__,
            database=status,
            model=_model_status(state.model),
            feed=await feed_status(state),
            endpoints=served,
            process=_process(state),
            exposures=_exposures(state),
        )
    )


def _reads(state: State) -> dict[str, Any]:
    """Where this process's recommendation reads went, and each replica's state."""
    reads = state.get("reads")
    if reads is None:
        return {}
    found = replicas.status(reads, reads.clock())
    return {
        "primary_reads": reads.primary_reads,
        "replicas": [ReplicaStatus(**replica) for replica in found],
    }


def _exposures(state: State) -> dict[str, Any] | None:
    log = state.get("exposures")
    return None if log is None else log.describe()


def _process(state: State) -> ProcessStatus:
    return ProcessStatus(pid=os.getpid(), workers=state.settings.workers)


#: Methods Litestar answers on every route by itself (CORS pre-flight; HEAD for GET).
_IMPLICIT_METHODS = frozenset({"OPTIONS", "HEAD"})


def endpoints(app: Litestar) -> list[str]:
    """`"METHOD /path"` for each HTTP endpoint in the app's route table, in its order.

    Under the docs path the pages and the schema stay (`/docs`, `/docs/scalar`,
    `/docs/openapi.json`); the renderers' internals go: the catch-all route with a
    path parameter and helper pages such as Swagger's `oauth2-redirect.html`.
    """
    docs = (app.openapi_config.path or "").rstrip("/") if app.openapi_config else ""
    found: list[str] = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        internal = route.path_parameters or route.path.endswith(".html")
        if docs and route.path.startswith(f"{docs}/") and internal:
            continue
        found.extend(
            f"{method} {route.path_format}" for method in sorted(route.methods - _IMPLICIT_METHODS)
        )
    return found


@dataclass
class Liveness:
    """`GET /live`: the process serves requests."""

    status: str


@dataclass
class Readiness:
    """`GET /ready`: "ready", or "unavailable" with the reason."""

    status: str
    error: str | None = None


@get("/live", summary="Liveness", tags=["health"], sync_to_thread=False)
def live() -> Liveness:
    """200 while the process serves requests; no database call."""
    return Liveness(status="alive")


@get(
    "/ready",
    summary="Readiness",
    tags=["health"],
    responses={
        503: ResponseSpec(
            data_container=Readiness,
            description="Not ready: the database is unreachable or not migrated",
            generate_examples=False,
        )
    },
)
async def ready(state: State) -> Response[Readiness]:
    """200 when the database answers with the schema at the newest migration.

    Otherwise 503 with `Retry-After` and the reason in `error`.
    """
    try:
        await check_ready(state.pool, state.settings.db_connect_timeout_s, schema_head())
    except (*CONNECTION_ERRORS, asyncpg.PostgresError, NotReady) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Response(
            Readiness(status="unavailable", error=reason[:300]),
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return Response(Readiness(status="ready"))


async def feed_status(state: State) -> FeedStatus:
    """The reranker, the live set and the feature store, as the feed endpoints see them."""
    live = getattr(state, "live", None)
    store = getattr(state, "features", None)
    variants: dict[str, RankerSlot] = getattr(state, "variant_rankers", {})
    return FeedStatus(
        reranker=_ranker_status(state.ranker),
        live_set=live.describe() if live is not None else None,
        feature_store=await store.describe() if store is not None else None,
        variant_rerankers={name: _ranker_status(slot) for name, slot in variants.items()} or None,
    )


def _ranker_status(slot: RankerSlot) -> RankerStatus:
    ranker = slot.ranker
    meta = ranker.metadata if ranker is not None else {}
    return RankerStatus(
        loaded=ranker is not None,
        path=str(slot.path),
        version=slot.version,
        trained_at=meta.get("trained_at"),
        candidate_models=meta.get("candidate_models"),
        loaded_at=slot.loaded_at.isoformat() if slot.loaded_at else None,
        error=slot.error,
    )


def _model_status(slot: ModelSlot) -> ModelStatus:
    if slot.model is None:
        return ModelStatus(loaded=False, path=str(slot.path), error=slot.error)
    meta = slot.model.metadata
    rows = meta.get("training_rows")
    return ModelStatus(
        loaded=True,
        path=str(slot.path),
        kind=meta.get("model_kind"),
        created_at=meta.get("created_at"),
        training_rows=int(rows) if rows is not None else None,
        sha256=meta.get("sha256"),
        loaded_at=slot.loaded_at.isoformat() if slot.loaded_at else None,
        error=slot.error,  # a failed reload while an older model serves
    )
