"""`WORKERS` server processes on one listening socket: a small pre-fork supervisor.

One Python process serves on one core: its event loop, the request path and the
GIL are single-threaded, so a busy server tops out at one core however many the
host has. `WORKERS` processes share one listening socket, and the kernel hands
each new connection to whichever of them accepts it.

Why pre-fork, and why our own: uvicorn's `--workers` starts fresh interpreters,
which import everything again and share nothing, and it does not pass SIGHUP on;
gunicorn would be a dependency for the hundred lines here. The parent binds the
socket and builds the app (imports, settings, routes, schemas), freezes that
heap (`gc.freeze`, so the workers' collections never write to the shared pages)
and forks. Each worker then runs the app's lifespan on its own: its own event
loop, database pool, live set, feature cache and models. Nothing the workers
hold is shared between them except through PostgreSQL (and Redis, when
`REDIS_URL` is set); without Redis each keeps its own rate-limit buckets and
caches.

Signals to the parent:

- SIGHUP is sent on to every worker: each reloads its models (app/reload.py).
- SIGTERM or SIGINT stop every worker gracefully: each stops accepting, lets its
  in-flight requests finish within `GRACEFUL_SHUTDOWN_TIMEOUT` and exits; the
  parent exits 0 once all have. A worker still alive `STOP_GRACE_S` after that
  timeout is killed.

A worker that dies is replaced. One that dies within `CRASH_WINDOW_S` of its
start `MAX_QUICK_DEATHS` times in a row stops the whole server with exit 1: a
crash loop is a configuration or start-up problem, and restarting again would
only hide it. A worker whose parent dies (killed outright) gets SIGTERM from the
kernel, so no orphan keeps the port.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import NoReturn

log = logging.getLogger("app.workers")

#: What the parent waits for, blocked and taken with `sigtimedwait` (no handler races).
SIGNALS = frozenset({signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD})
#: A worker that exits sooner than this after its start counts as a quick death.
CRASH_WINDOW_S = 10.0
#: Quick deaths in a row after which the server gives up (exit 1).
MAX_QUICK_DEATHS = 5
#: Seconds past the graceful-shutdown timeout before a stopping worker is killed.
STOP_GRACE_S = 5.0
#: Linux's prctl(PR_SET_PDEATHSIG): the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1


def default_workers() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def supervise(
    count: int,
    sock: socket.socket,
    serve: Callable[[socket.socket], None],
    *,
    stop_timeout_s: float,
) -> int:
    """Run `count` workers, each calling `serve(sock)`, until a stop signal; the exit code.

    `serve` runs in a forked child and returns when that worker's server has
    stopped; whatever it raises is logged and makes the worker exit 1.
    """
    parent = os.getpid()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        return _supervise(parent, count, sock, serve, stop_timeout_s)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _supervise(
    parent: int,
    count: int,
    sock: socket.socket,
    serve: Callable[[socket.socket], None],
    stop_timeout_s: float,
) -> int:
    gc.collect()
    gc.freeze()  # the app as built so far: shared with every worker, never collected
    workers: dict[int, float] = {}

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:
            _run_worker(parent, sock, serve)
        workers[pid] = time.monotonic()

    for _ in range(count):
        spawn()
    log.info("started %d workers: %s", count, ", ".join(map(str, workers)))
    quick = 0
    while True:
        info = signal.sigtimedwait(SIGNALS, 1.0)
        number = info.si_signo if info is not None else None
        if number == signal.SIGHUP:
            log.info("SIGHUP: asking %d workers to reload their models", len(workers))
            _send(workers, signal.SIGHUP)
        elif number in (signal.SIGTERM, signal.SIGINT):
            log.info("stopping %d workers", len(workers))
            return 0 if _stop(workers, stop_timeout_s + STOP_GRACE_S) else 1
        for pid, status in _reaped(workers):
            lived = time.monotonic() - workers.pop(pid)
            quick = quick + 1 if lived < CRASH_WINDOW_S else 0
            log.error(
                "worker %d %s after %.1f s; %s",
                pid,
                _describe(status),
                lived,
                "giving up" if quick >= MAX_QUICK_DEATHS else "starting another",
            )
            if quick >= MAX_QUICK_DEATHS:
                _stop(workers, stop_timeout_s + STOP_GRACE_S)
                return 1
            spawn()


def _run_worker(
    parent: int, sock: socket.socket, serve: Callable[[socket.socket], None]
) -> NoReturn:
    """The child's whole life: serve, then leave without running the parent's exit code."""
    code = 0
    try:
        _die_with(parent)
        # Until the app's lifespan installs its own SIGHUP handler, a reload has
        # nothing to reload yet; the default action would kill the worker.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
        serve(sock)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        log.exception("worker %d failed", os.getpid())
        code = 1
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _die_with(parent: int) -> None:
    """Ask the kernel for SIGTERM when the parent dies (Linux); leave if it already has."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: orphans are possible there
        return
    if os.getppid() != parent:  # it died before the request took effect
        raise SystemExit(0)


def _send(workers: dict[int, float], number: int) -> None:
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):  # gone: reaped on the next round
            os.kill(pid, number)


def _reaped(workers: dict[int, float]) -> list[tuple[int, int]]:
    """The workers that have exited since the last call, with their wait statuses."""
    done = []
    while workers:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        if pid in workers:
            done.append((pid, status))
    return done


def _stop(workers: dict[int, float], deadline_s: float) -> bool:
    """SIGTERM every worker and wait; kill what is left after `deadline_s`. All clean?"""
    _send(workers, signal.SIGTERM)
    clean = True
    until = time.monotonic() + deadline_s
    while workers and time.monotonic() < until:
        for pid, status in _reaped(workers):
            workers.pop(pid)
            clean = clean and os.waitstatus_to_exitcode(status) == 0
        if workers:
            signal.sigtimedwait(SIGNALS, 0.1)
    if workers:
        log.error("killing %d workers still running after %.0f s", len(workers), deadline_s)
        _send(workers, signal.SIGKILL)
        for pid in list(workers):
            os.waitpid(pid, 0)
        workers.clear()
        clean = False
    return clean


def _describe(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"was killed by signal {-code}" if code < 0 else f"exited with {code}"
