"""HTTP for live availability: status updates and channel profiles (writes, keyed)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec
from litestar import Controller, Response, post, put
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Body, JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from app.api import responses
from app.api.auth import require_api_key
from app.api.body import strict_json
from app.api.live_schemas import (
    GoLiveBody,
    GoOfflineBody,
    LiveStatusBatch,
    LiveStatusResponse,
    StatusResult,
    StreamProfile,
    StreamProfileResponse,
    StreamStatusResponse,
)
from app.api.schemas import _TEXT
from app.db.limits import ID_MAX_LENGTH
from app.db.pool import connection
from app.errors import RecoError, StreamNotFound
from app.live import profiles, status
from app.live.status import Outcome, StatusUpdate
from app.observability.context import note_status_updates

StreamId = Annotated[str, Parameter(min_length=1, max_length=ID_MAX_LENGTH, pattern=_TEXT)]


class RejectedUpdate(RecoError):
    """A single-stream update whose `at` is too far in the future, or outside years 1-9999 UTC."""

    status_code = 400


class StreamsController(Controller):
    """`/v1/streams`: what the platform tells us about its channels. Needs `X-API-Key`."""

    path = "/v1/streams"
    tags = ("live",)
    guards = (require_api_key,)
    security = ({"ApiKey": []},)

    @post(
        "/live-status",
        status_code=HTTP_200_OK,
        summary="Apply a batch of live-status updates",
        before_request=strict_json(LiveStatusBatch),
        responses=responses.KEYED,
    )
    async def live_status(
        self, state: State, data: JSONBody[LiveStatusBatch]
    ) -> LiveStatusResponse:
        """Apply up to 5,000 updates; each gets a result, in the order sent.

        An update applies only when its `at` is newer than the stream's last applied
        one (`stale` otherwise), so late and repeated updates change nothing. Unknown
        streams are reported per update (`unknown`) and the rest still apply; an older
        update for a stream that the same batch updates again is `superseded`.
        """
        updates = [
            StatusUpdate(u.stream_id, u.is_live, u.at, u.current_viewer_count) for u in data.updates
        ]
        results = await _apply(state, updates)
        counts = {outcome: 0 for outcome in Outcome}
        for result in results:
            counts[result.outcome] += 1
        return LiveStatusResponse(
            applied=counts[Outcome.APPLIED],
            stale=counts[Outcome.STALE],
            unknown=counts[Outcome.UNKNOWN],
            superseded=counts[Outcome.SUPERSEDED],
            rejected=counts[Outcome.REJECTED],
            results=[
                StatusResult(stream_id=r.stream_id, status=r.outcome, detail=r.detail)
                for r in results
            ],
        )

    @post(
        "/{stream_id:str}/live",
        status_code=HTTP_200_OK,
        summary="A stream went live (or its viewer count changed)",
        before_request=strict_json(GoLiveBody, optional=True),
        responses=responses.KEYED_ONE_STREAM,
    )
    async def go_live(
        self,
        state: State,
        stream_id: StreamId,
        data: Annotated[GoLiveBody | None, Body()] = None,
    ) -> StreamStatusResponse:
        """Mark the stream live since `at` (default: now); 404 for an unknown stream."""
        body = data or GoLiveBody()
        update = StatusUpdate(stream_id, True, body.at or _now(), body.current_viewer_count)
        return await _apply_one(state, update)

    @post(
        "/{stream_id:str}/offline",
        status_code=HTTP_200_OK,
        summary="A stream went offline",
        before_request=strict_json(GoOfflineBody, optional=True),
        responses=responses.KEYED_ONE_STREAM,
    )
    async def go_offline(
        self,
        state: State,
        stream_id: StreamId,
        data: Annotated[GoOfflineBody | None, Body()] = None,
    ) -> StreamStatusResponse:
        """Mark the stream offline as of `at` (default: now); 404 for an unknown stream."""
        body = data or GoOfflineBody()
        return await _apply_one(state, StatusUpdate(stream_id, False, body.at or _now()))

    @put(
        "/{stream_id:str}",
        summary="Create a channel or replace its profile",
        before_request=strict_json(StreamProfile),
        responses={
            201: ResponseSpec(
                data_container=StreamProfileResponse,
                description="The channel was created (it starts offline)",
                generate_examples=False,
            ),
            **responses.KEYED,
        },
    )
    async def put_profile(
        self, state: State, stream_id: StreamId, data: JSONBody[StreamProfile]
    ) -> Response[StreamProfileResponse]:
        """Create the channel (201, offline) or replace its profile (200).

        The live state (`is_live`, viewers now, last status time) is never touched here.
        """
        settings = state.settings
        async with connection(state.pool, settings.db_connect_timeout_s) as conn:
            saved = await profiles.upsert(conn, stream_id, msgspec.structs.asdict(data))
        features = state.get("features")  # the cached profile is stale now (app/feed/store.py)
        if features is not None:
            await features.invalidate_streams([stream_id])
        return Response(
            StreamProfileResponse(stream_id=stream_id, created=saved.created),
            status_code=HTTP_201_CREATED if saved.created else HTTP_200_OK,
        )


async def _apply(state: State, updates: list[StatusUpdate]) -> list[status.Result]:
    settings = state.settings
    async with connection(state.pool, settings.db_connect_timeout_s) as conn:
        results = await status.apply(conn, updates)
    note_status_updates(result.outcome.value for result in results)
    return results


async def _apply_one(state: State, update: StatusUpdate) -> StreamStatusResponse:
    (result,) = await _apply(state, [update])
    if result.outcome is Outcome.UNKNOWN:
        raise StreamNotFound(update.stream_id)
    if result.outcome is Outcome.REJECTED:
        raise RejectedUpdate(result.detail or "`at` lies too far in the future")
    return StreamStatusResponse(stream_id=update.stream_id, status=result.outcome)


def _now() -> datetime:
    return datetime.now(UTC)
