"""HTTP for the event log: a client reports what viewers did (writes, keyed)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, post
from litestar.datastructures import State
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK

from app.api import responses
from app.api.auth import require_api_key
from app.api.body import strict_json, whole_numbers
from app.api.event_schemas import EventBatch, EventBody, EventResult, EventsResponse
from app.db.pool import connection
from app.events.log import Event, Outcome, Result


class EventsController(Controller):
    """`/v1/events`: impressions, clicks, watches and follows. Needs `X-API-Key`."""

    path = "/v1/events"
    tags = ("events",)
    guards = (require_api_key,)
    security = ({"ApiKey": []},)

    @post(
        "/",
        status_code=HTTP_200_OK,
        summary="Record a batch of viewer events",
        before_request=strict_json(EventBatch),
        responses=responses.KEYED,
    )
    async def record(self, state: State, data: JSONBody[EventBatch]) -> EventsResponse:
        """Store up to 5,000 events; each gets a result, in the order sent.

        Every event is an object with `event_id`, `type` (impression, click,
        watch, follow), `user_id`, `stream_id` and `at` (RFC 3339 with an offset),
        and optionally `request_id` and `position` (the list it was shown in and
        where) and, for a watch only, `minutes`. A replay (same `event_id` and
        `at`) is `duplicate` and changes nothing; events of unknown users or
        streams are not stored; an event that is not valid is `rejected` with the
        reason; the others of the batch are stored all the same.
        """
        items = [_parse(item) for item in data.events]
        settings = state.settings
        async with connection(state.pool, settings.db_connect_timeout_s) as conn:
            results = await state.events.record(conn, items)
        counts = {outcome: 0 for outcome in Outcome}
        for result in results:
            counts[result.outcome] += 1
        return EventsResponse(
            recorded=counts[Outcome.RECORDED],
            duplicate=counts[Outcome.DUPLICATE],
            unknown_user=counts[Outcome.UNKNOWN_USER],
            unknown_stream=counts[Outcome.UNKNOWN_STREAM],
            rejected=counts[Outcome.REJECTED],
            results=[
                EventResult(event_id=r.event_id, status=r.outcome, detail=r.detail) for r in results
            ],
        )


def _parse(item: Any) -> Event | Result:
    """One event of the batch, or its refusal naming the field (the batch goes on)."""
    event_id = item.get("event_id") if isinstance(item, dict) else None
    named = event_id if isinstance(event_id, str) else None
    if not isinstance(item, dict):
        return Result(None, Outcome.REJECTED, "an event is a JSON object")
    try:
        body = msgspec.convert(whole_numbers(item), EventBody, strict=True)
    except msgspec.ValidationError as exc:
        return Result(named, Outcome.REJECTED, str(exc))
    return Event(
        event_id=body.event_id,
        type=body.type,
        user_id=body.user_id,
        stream_id=body.stream_id,
        at=body.at,
        request_id=body.request_id,
        position=body.position,
        minutes=body.minutes,
    )
