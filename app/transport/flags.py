"""Keys the server protocol sets in a request's ASGI scope for the outermost middleware.

uvicorn hands the application the very scope dict it keeps for the request, so
what the protocol learns after the app started (the client hung up, the body
timed out) is there when `Observability` writes the access line.
"""

from __future__ import annotations

#: The connection was lost before the response was complete.
CLIENT_GONE = "hometown.client_gone"
#: The request body did not arrive within `REQUEST_BODY_TIMEOUT`: the server answered 408.
BODY_TIMED_OUT = "hometown.body_timed_out"
