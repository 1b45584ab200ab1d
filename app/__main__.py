"""`python -m app`: serve the API on HOST:PORT."""

from __future__ import annotations

import uvicorn

from app.main import create_app
from app.settings import get_settings


def main() -> None:
    """Run uvicorn with the app built from the environment's settings.

    The app configures logging itself (JSON or text, with request ids), so uvicorn
    gets no logging config of its own and its lines go through the same handler.
    Its access log stays off: the app writes its own access line (`ACCESS_LOG`),
    which carries the request id and the duration.
    """
    settings = get_settings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
