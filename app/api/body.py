"""Strict JSON bodies: the type a field declares is the type it must have.

Litestar converts request bodies leniently (`"48.8"` passes as a float, `1` as
a bool) and lets a few malformed bodies through to a 500 (invalid UTF-8, nesting
deep enough to exhaust the decoder's recursion). A `before_request` hook decodes
the raw body strictly first and turns every failure into a 400 that names the
field, or a 415 for a body that does not say it is JSON. A body that passes is
one Litestar's own conversion reads the same way. A number with nothing after the
point counts as a whole number (`"max_results": 64.0`), as JSON Schema says.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ClientException, ValidationException
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def strict_json(
    model: type[Any], *, optional: bool = False
) -> Callable[[Request[Any, Any, Any]], Awaitable[None]]:
    """A `before_request` hook that refuses any body `model` would not decode strictly.

    With `optional`, an empty body and a JSON `null` pass (the handler then uses its
    defaults), as the schema documents.
    """
    decoder = msgspec.json.Decoder(model | None if optional else model, strict=True)

    async def check(request: Request[Any, Any, Any]) -> None:
        if optional and not await request.body():
            return
        if not _is_json(request.headers.get("content-type", "")):
            raise ClientException(
                "send the body as JSON with `Content-Type: application/json`",
                status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            )
        body = await request.body()
        try:
            decoder.decode(body)
        except msgspec.ValidationError as exc:
            if _passes_with_whole_numbers(body, model, optional=optional):
                return
            raise ValidationException(
                f"Validation failed for {request.method} {request.url.path}",
                extra=[{"message": str(exc), "key": "data", "source": "body"}],
            ) from exc
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise ValidationException(
                f"the request body is not valid JSON: {reason}",
                extra=[{"message": reason, "key": "data", "source": "body"}],
            ) from exc

    return check


#: Beyond this, a float no longer spells one integer exactly.
_EXACT = 2**53


def whole_numbers(value: Any) -> Any:
    """`value` with every float that has nothing after the point as an int (64.0 -> 64)."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT:
        return int(value)
    if isinstance(value, list):
        return [whole_numbers(item) for item in value]
    if isinstance(value, dict):
        return {key: whole_numbers(item) for key, item in value.items()}
    return value


def _passes_with_whole_numbers(body: bytes, model: type[Any], *, optional: bool) -> bool:
    """Whether the body decodes strictly once `64.0` counts as the integer 64.

    JSON Schema calls 64.0 an integer, so the schema's `integer` fields admit it;
    Litestar's own conversion then reads it as 64. Anything else the strict decode
    refused ("64", 64.5, true) stays refused.
    """
    try:
        value = whole_numbers(msgspec.json.decode(body))
        msgspec.convert(value, model | None if optional else model, strict=True)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return False
    return True
