"""SIGHUP reloads every model the server holds, without a restart.

One handler for the signal (asyncio keeps one callback per signal, so two
modules installing their own would leave only the last one): each lifespan
hook that holds something reloadable registers a callback with `on_reload`,
and a SIGHUP runs them all. A callback must not raise; it logs what it could
not load and keeps what it had.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State

log = logging.getLogger("app.reload")

Reloader = Callable[[], None]


def on_reload(state: State, callback: Reloader) -> None:
    """Run `callback` on every SIGHUP (and on `reload_all`) for the app's lifetime."""
    state.reloaders.append(callback)


def reload_all(state: State) -> None:
    """What a SIGHUP does: every registered callback, in registration order."""
    log.info("reloading %d model holders (process %d)", len(state.reloaders), os.getpid())
    for callback in list(state.reloaders):
        callback()


@asynccontextmanager
async def sighup(app: Litestar) -> AsyncIterator[None]:
    """Lifespan hook: install the SIGHUP handler (main thread only) and remove it after."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, reload_all, app.state)
        installed = True
    except (RuntimeError, ValueError):  # not the main thread (e.g. a test client)
        installed = False
    try:
        yield
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGHUP)
