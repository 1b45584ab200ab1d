"""`python -m app`: serve the API on HOST:PORT."""

from __future__ import annotations

import signal
from types import FrameType

from app.lean import refuse_offline_imports
from app.settings import load_settings


def main() -> None:
    """Run uvicorn with the app built from the environment's settings.

    The settings come first: a bad one exits 2 with one line before the server and
    the app are even imported. The app configures logging itself (JSON or text,
    with request ids), so uvicorn gets no logging config of its own and its lines go
    through the same handler. Its access log stays off: the app writes its own
    access line (`ACCESS_LOG`), which carries the request id and the duration.
    """
    settings = load_settings()
    refuse_offline_imports()  # before the click model loads scikit-learn (app/lean.py)
    import uvicorn

    from app.main import create_app

    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        # SIGTERM: stop accepting, let in-flight requests finish, cancel what is
        # still running after this many seconds (each query has its own deadline).
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
        log_config=None,
        access_log=False,
    )


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    """Exit 0 on SIGTERM: a graceful stop is a success.

    uvicorn handles SIGTERM itself while it serves, then restores this handler and
    raises the signal again; without it the process would die of the signal (-15).
    """
    raise SystemExit(0)


if __name__ == "__main__":
    main()
