"""`python -m app`: serve the API on HOST:PORT."""

from __future__ import annotations

import uvicorn

from app.main import create_app
from app.settings import get_settings


def main() -> None:
    """Run uvicorn with the app built from the environment's settings."""
    settings = get_settings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=settings.access_log,
    )


if __name__ == "__main__":
    main()
