"""Raw ASGI answers for the few refusals made outside Litestar (bad path bytes, over capacity).

They happen before routing, or instead of the app, so Litestar's exception handlers
cannot shape them; they carry the same JSON error body (`status_code`, `detail`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


async def send_json(
    send: Any, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Send `body` (ready-made JSON) with `status` and any extra headers, in one response."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
