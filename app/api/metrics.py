"""`GET /metrics`: the Prometheus text exposition (open, like every read; not in the schema)."""

from __future__ import annotations

from litestar import Response, get
from litestar.datastructures import State
from prometheus_client import CONTENT_TYPE_LATEST


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics(state: State) -> Response[bytes]:
    """Every metric family of this app instance (see app/observability/metrics.py)."""
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
