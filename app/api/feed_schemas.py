"""The feed endpoints' request and response bodies (`/docs` documents them from here)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from app.api.schemas import Code, ExperimentArm, Id

#: Latest moment accepted: the end of year 9999, as Unix seconds.
MAX_TIMESTAMP = 253_402_300_799
#: A request's device, as clients name it, and the data's device it counts as.
DEVICE_ALIASES: dict[str, str | None] = {
    "ios": "mobile",
    "android": "mobile",
    "mobile": "mobile",
    "ipad": "tablet",
    "tablet": "tablet",
    "desktop": "desktop",
    "web": "desktop",
    "tv": "tv",
    "unknown": None,
}
Device = Literal["ios", "android", "mobile", "ipad", "tablet", "desktop", "web", "tv", "unknown"]
Locale = Annotated[
    str,
    Meta(
        min_length=2,
        max_length=35,
        pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{1,8})*$",
        description="A locale such as `en_US` or `pt-BR`; its language part (`en`) is"
        " compared with the streams' language. Default: the viewer's own language.",
        examples=["en_US"],
    ),
]
Timestamp = Annotated[
    int,
    Meta(
        ge=0,
        le=MAX_TIMESTAMP,
        description="The moment of the request, Unix seconds (UTC). Default: now.",
        examples=[1718803200],
    ),
]
DeviceField = Annotated[
    Device,
    Meta(
        description="The viewer's device: ios and android count as mobile, ipad as"
        " tablet, web as desktop. Default: unknown."
    ),
]
MaxResults = Annotated[int, Meta(ge=1, le=100, description="How many streams, 1..100.")]


class HomeFeedRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A signed-in viewer's home feed; every `ctx_*` field is optional."""

    user_id: Id
    ctx_timestamp: Timestamp | None = None
    ctx_device: DeviceField | None = None
    ctx_locale: Locale | None = None
    max_results: MaxResults = 30
    explain: Annotated[
        bool, Meta(description="Add each stream's feature contributions to the reranker score.")
    ] = False


class CategoryFeedRequest(HomeFeedRequest, forbid_unknown_fields=True, kw_only=True):
    """The same, restricted to one category: every source proposes only its streams."""

    category_id: Code


Source = Literal["cf", "near", "trending", "trending_language", "own", "popular"]


class FeedStream(msgspec.Struct, omit_defaults=True):
    """One live stream of the feed, best first (by score, then by stream_id)."""

    stream_id: str
    score: Annotated[
        float,
        Meta(
            description="The reranker's score (higher is better), or the fallback's"
            " reciprocal-rank fusion when no reranker is loaded."
        ),
    ]
    reason: Annotated[str, Meta(description="Why this stream, in words.")]
    reason_kind: Annotated[
        Literal["watched", "popular", "near", "watching", "language"],
        Meta(description="Which kind of reason `reason` is."),
    ]
    title: str
    city: str
    category_id: str
    language: str
    current_viewer_count: int
    sources: Annotated[
        list[Source], Meta(description="The candidate sources that proposed the stream.")
    ]
    contributions: Annotated[
        dict[str, float] | None,
        Meta(description="With `explain`: each feature's approximate contribution, and `bias`."),
    ] = None


class FeedModels(msgspec.Struct):
    """Which models served: the candidate model's version, the reranker's, and the order."""

    candidate_model: str | None
    reranker: str | None
    order: Annotated[
        Literal["reranker", "fallback"],
        Meta(
            description="`fallback`: no reranker is loaded, and the streams are ordered by"
            " reciprocal-rank fusion of the sources (sum of 1 / (60 + rank))."
        ),
    ]


class FeedResponse(msgspec.Struct, omit_defaults=True):
    """The feed: live streams only, best first, each with its reason."""

    request_id: str
    streams: list[FeedStream]
    models: FeedModels
    candidates: Annotated[
        int, Meta(description="Candidates stage 2 ranked (the streams shown were checked live).")
    ]
    sources: Annotated[dict[str, int], Meta(description="How many streams each source proposed.")]
    category_id: str | None = None
    live_in_category: Annotated[
        int | None, Meta(description="`category_feed`: live streams in the category now.")
    ] = None
    note: Annotated[
        str | None,
        Meta(description="`category_feed`: set when the category has fewer than asked."),
    ] = None
    experiment: Annotated[
        ExperimentArm | None,
        Meta(description="The experiment the user is in for this scenario, and their variant."),
    ] = None
