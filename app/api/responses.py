"""The error answers each endpoint can give, as the OpenAPI schema documents them.

Every error body has the same shape (`status_code`, `detail`, and for a 400 the
failed fields in `extra`), so clients and the schema fuzzer can rely on it.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec


class ErrorBody(msgspec.Struct, kw_only=True):
    """Any 4xx or 5xx answer: the status again, what went wrong, and details if any."""

    status_code: int
    detail: str
    extra: list[dict[str, Any]] | dict[str, Any] | None = None


def _error(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=description, generate_examples=False)


UNAVAILABLE = {
    503: _error("The database (or what the endpoint needs) is unavailable; see Retry-After")
}
BODY = {
    413: _error("The body is larger than MAX_BODY_BYTES"),
    415: _error("The body is not sent as JSON (Content-Type: application/json)"),
}
LIMITED = {429: _error("This client is over the rate limit; see Retry-After")}
RECOMMEND = {
    404: _error("Unknown user_id"),
    **BODY,
    **LIMITED,
    **UNAVAILABLE,
}
KEYED = {
    401: _error("No X-API-Key header, or not the right key"),
    **BODY,
    **UNAVAILABLE,
}
KEYED_ONE_STREAM = {404: _error("Unknown stream_id"), **KEYED}
