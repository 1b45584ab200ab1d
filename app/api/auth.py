"""The API key that write endpoints require (`X-API-Key`, the `API_KEY` setting).

Both sides are hashed before the constant-time comparison, so neither the
timing nor the length of a wrong key tells anything about the right one. The
key itself is a SecretStr: it appears in no repr, log line or error body.

The header's value is compared as sent: no stripping here, and under
`python -m app` the server protocol restores the whitespace the HTTP parser drops
before a value (app/transport/protocol.py), so `X-API-Key:<TAB>KEY` is a wrong key.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from app.errors import Unauthorized, WritesDisabled

HEADER = "x-api-key"


def require_api_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Litestar guard: 401 without the right key; 503 when the server has none set."""
    expected = connection.app.state.settings.api_key
    if expected is None:
        raise WritesDisabled("write endpoints are disabled: the server has no API_KEY configured")
    given = connection.headers.get(HEADER)
    if given is None:
        raise Unauthorized("send the API key in the X-API-Key header")
    if not hmac.compare_digest(_digest(given), _digest(expected.get_secret_value())):
        raise Unauthorized("the X-API-Key header does not hold the right API key")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
