"""Request and response bodies of the live-availability API (`/v1/streams/...`).

The limits are the importer's and the tables' (all from app/db/limits.py), so a
channel the API accepts is one an import file could have carried, and the
database's CHECKs never have to be the first line of defence.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from app.api.schemas import _LONG_TEXT, _TEXT, Id, Latitude, Longitude
from app.db.limits import (
    DEFAULT_DURATION_MINUTES,
    DESCRIPTION_MAX_LENGTH,
    DURATION_MINUTES,
    FOLLOWERS,
    LIST_MAX_LENGTH,
    QUALITY,
    TEXT_MAX_LENGTH,
    VIEWERS,
)

#: The most updates one batch may carry: a few thousand, one statement's worth.
MAX_BATCH = 5000

Text = Annotated[str, Meta(min_length=1, max_length=TEXT_MAX_LENGTH, pattern=_TEXT)]
LongText = Annotated[str, Meta(max_length=DESCRIPTION_MAX_LENGTH, pattern=_LONG_TEXT)]
#: RFC 3339 with an offset: an event time without a zone could be any of 26 instants.
EventTime = Annotated[datetime, Meta(tz=True)]
Viewers = Annotated[int, Meta(ge=VIEWERS.low, le=VIEWERS.high)]


class StatusUpdateBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One event of the platform: `stream_id` is (or is no longer) live since `at`."""

    stream_id: Id
    is_live: bool
    at: EventTime
    current_viewer_count: Viewers | None = None


class LiveStatusBatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`POST /v1/streams/live-status`: up to `MAX_BATCH` updates, applied together."""

    updates: Annotated[list[StatusUpdateBody], Meta(min_length=1, max_length=MAX_BATCH)]


class GoLiveBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`POST /v1/streams/{id}/live` (the body is optional): viewers now, and when."""

    current_viewer_count: Viewers | None = None
    at: EventTime | None = None


class GoOfflineBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`POST /v1/streams/{id}/offline` (the body is optional): when it ended."""

    at: EventTime | None = None


class StatusResult(msgspec.Struct, kw_only=True):
    """What became of one update: applied, stale, unknown, superseded or rejected."""

    stream_id: str
    status: str
    detail: str | None = None


class LiveStatusResponse(msgspec.Struct, kw_only=True):
    """Counts per outcome, then every update's result in the order sent."""

    applied: int
    stale: int
    unknown: int
    superseded: int
    rejected: int
    results: list[StatusResult]


class StreamStatusResponse(msgspec.Struct, kw_only=True):
    """A single-stream update: `applied`, or `stale` when a newer state is in place."""

    stream_id: str
    status: str


class StreamProfile(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`PUT /v1/streams/{id}`: a channel's profile; its live state is left alone."""

    creator_id: Id
    city: Text
    latitude: Latitude
    longitude: Longitude
    language: Text
    category_id: Text
    title: Text
    description: LongText = ""
    tags: Annotated[list[Text], Meta(max_length=LIST_MAX_LENGTH)] = msgspec.field(
        default_factory=list
    )
    avg_viewer_count: Viewers
    creator_followers: Annotated[int, Meta(ge=FOLLOWERS.low, le=FOLLOWERS.high)]
    stream_quality_score: Annotated[float, Meta(ge=QUALITY.low, le=QUALITY.high)]
    #: Minutes, real-valued as in import files (the seed writes 51.19).
    typical_duration_minutes: Annotated[float, Meta(gt=DURATION_MINUTES.low)] = (
        DEFAULT_DURATION_MINUTES
    )
    is_partnered: bool
    mature_content: bool


class StreamProfileResponse(msgspec.Struct, kw_only=True):
    """Whether the PUT created the channel (201) or replaced its profile (200)."""

    stream_id: str
    created: bool
