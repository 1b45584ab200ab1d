"""`python -m app`: serve the API on HOST:PORT."""

from __future__ import annotations

import os

# One thread each for OpenBLAS (numpy's matrix products) and OpenMP (XGBoost), set
# before numpy loads: a server runs many small requests at once, and a pool of
# threads per product only spins against the others and the database for the
# cores. Measured in process on 2 busy cores (load average 5), 180 home-feed
# requests: XGBoost's calls took 17 ms a request with its default threads, 6 ms with
# one. The environment can still say otherwise.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import signal  # noqa: E402
import sys  # noqa: E402
from types import FrameType  # noqa: E402

from app.lean import refuse_offline_imports  # noqa: E402
from app.settings import load_settings  # noqa: E402


def main() -> None:
    """Run uvicorn with the app built from the environment's settings.

    The settings come first: a bad one exits 2 with one line before the server and
    the app are even imported. The app configures logging itself (JSON or text,
    with request ids), so uvicorn gets no logging config of its own and its lines go
    through the same handler. Its access log stays off: the app writes its own
    access line (`ACCESS_LOG`), which carries the request id and the duration.
    With `WORKERS` above 1 the app is built here, then served by that many forked
    processes on one socket (app/workers.py); the exit code is the supervisor's.
    """
    settings = load_settings()
    refuse_offline_imports()  # before the click model loads scikit-learn (app/lean.py)
    import uvicorn

    from app.heap import freeze_startup_heap, tune_collector
    from app.main import create_app
    from app.transport.protocol import Limits, connection_ceiling, protocol_class

    try:
        ceiling = connection_ceiling(settings.max_connections, settings.db_pool_size)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    limits = Limits(
        head_timeout_s=settings.request_head_timeout_s,
        body_timeout_s=settings.request_body_timeout_s,
        max_connections=settings.max_connections,
        ceiling=ceiling,
    )
    app = create_app(settings)
    app.state.transport = limits  # its counts are in /metrics
    tune_collector()  # app/heap.py: for this process alone, not for tests' apps
    app.on_startup.append(freeze_startup_heap)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # uvicorn's httptools protocol plus read deadlines and the connection cap
        # (app/transport/protocol.py).
        http=protocol_class(limits),
        # Client addresses come from TRUSTED_PROXIES alone (app/transport/proxies.py):
        # uvicorn would otherwise believe any X-Forwarded-For sent from 127.0.0.1.
        proxy_headers=False,
        log_level="info",
        # SIGTERM: stop accepting, let in-flight requests finish, cancel what is
        # still running after this many seconds (each query has its own deadline).
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
        log_config=None,
        access_log=False,
    )
    if settings.workers == 1:
        uvicorn.Server(config).run()
        return
    # Several processes on one socket (app/workers.py): bound here, before the fork.
    from app.workers import supervise

    sock = config.bind_socket()
    code = supervise(
        settings.workers,
        sock,
        lambda shared: uvicorn.Server(config).run(sockets=[shared]),
        stop_timeout_s=settings.shutdown_timeout_s,
    )
    raise SystemExit(code)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    """Exit 0 on SIGTERM: a graceful stop is a success.

    uvicorn handles SIGTERM itself while it serves, then restores this handler and
    raises the signal again; without it the process would die of the signal (-15).
    """
    raise SystemExit(0)


if __name__ == "__main__":
    main()
