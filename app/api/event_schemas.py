"""Request and response bodies of the event log (`POST /v1/events`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from app.api.live_schemas import EventTime
from app.api.schemas import Id
from app.db.limits import PAGE_POSITION, WATCH_MINUTES

#: The most events one batch may carry: one statement's worth, well inside the body limit.
MAX_EVENTS = 5000


class EventBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One thing a viewer did: `type` of `stream_id` at `at`.

    `request_id` names the recommendation answer the stream was shown in (its
    `request_id`), and `position` its place there (1 = first); `minutes` is a
    watch's length and only a watch has it. `event_id` is the client's: sending
    the same event (same id and `at`) again changes nothing.
    """

    event_id: Id
    type: Literal["impression", "click", "watch", "follow"]
    user_id: Id
    stream_id: Id
    at: EventTime
    request_id: Id | None = None
    position: Annotated[int, Meta(ge=PAGE_POSITION.low, le=PAGE_POSITION.high)] | None = None
    minutes: Annotated[float, Meta(ge=WATCH_MINUTES.low)] | None = None


class EventBatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`POST /v1/events`: up to `MAX_EVENTS` events, each an `EventBody` object.

    Each event is checked on its own: one that is not a valid `EventBody` gets
    `rejected` with the reason, and the others are still stored.
    """

    events: Annotated[list[Any], Meta(min_length=1, max_length=MAX_EVENTS)]


class EventResult(msgspec.Struct, kw_only=True):
    """What became of one event: recorded, duplicate, unknown_user, unknown_stream, rejected."""

    event_id: str | None
    status: str
    detail: str | None = None


class EventsResponse(msgspec.Struct, kw_only=True):
    """Counts per outcome, then every event's result in the order sent."""

    recorded: int
    duplicate: int
    unknown_user: int
    unknown_stream: int
    rejected: int
    results: list[EventResult]
