"""Follow feature refreshes: LISTEN on `hometown_features`, move the store to each generation.

A refresh (app/feed/refresh.py) runs in another process, the training or the
seed command, and ends with `NOTIFY hometown_features, '<generation>'` in its
transaction. This task holds one dedicated connection listening to that
channel; each notification sets the store's generation, so the next request
reads keys no older process wrote. On (re)connecting it reads the generation
from the tables themselves, which covers refreshes made while it was away.

While the connection is lost the store is told it is not following
(`store.following = False`): it then bypasses the cache rather than risk
facts from before a refresh it did not hear of. The task reconnects with a
growing pause (0.5 s to 10 s), and checks its connection every 15 s, so a
database that vanished without closing the socket is noticed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from app.feed.refresh import CHANNEL, generation
from app.feed.store import FeatureStore

log = logging.getLogger("app.features")

#: Seconds between checks that the listening connection still answers.
HEARTBEAT_S = 15.0
#: The first start waits at most this long for the connection (a down database does not block).
START_WAIT_S = 1.0


class Follower:
    """The background task that keeps `store.generation` current."""

    def __init__(self, store: FeatureStore, database_url: str, connect_timeout_s: float) -> None:
        self.store = store
        self.database_url = database_url
        self.connect_timeout_s = connect_timeout_s
        self.task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        """Start following; wait briefly for the first connection (never fails)."""
        self.store.following = False
        self.task = asyncio.create_task(self._run(), name="feature-follower")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), START_WAIT_S)

    async def stop(self) -> None:
        """Stop the task and close its connection."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self) -> None:
        pause = 0.5
        while True:
            try:
                await self._follow()
                pause = 0.5
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("feature refreshes not followed (%s); retrying", type(exc).__name__)
            except Exception:  # never let the task die: the store would bypass its cache for good
                log.exception("feature refresh follower failed; retrying")
            finally:
                self.store.following = False
                self.connected.clear()
            await asyncio.sleep(pause)
            pause = min(pause * 2, 10.0)

    async def _follow(self) -> None:
        conn = await asyncpg.connect(
            self.database_url,
            timeout=self.connect_timeout_s,
            server_settings={"application_name": "hometown-features"},
        )
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(CHANNEL, self._heard)
            self.store.set_generation(await generation(conn))
            self.store.following = True
            self.connected.set()
            while not lost.is_set():
                # asyncio.timeout, not wait_for: on Python 3.11, wait_for returns
                # instead of raising when a cancel meets the connection's loss, and
                # the task would reconnect and outlive the app's shutdown.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(HEARTBEAT_S):
                        await lost.wait()
                if not lost.is_set():
                    await conn.fetchval("SELECT 1", timeout=self.connect_timeout_s)
        finally:
            if not conn.is_closed():
                conn.terminate()

    def _heard(self, _conn: asyncpg.Connection, _pid: int, _channel: str, payload: str) -> None:
        try:
            value = int(payload)
        except ValueError:
            return
        self.store.set_generation(value)
