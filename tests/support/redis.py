"""A throwaway redis-server for the session: a unix socket in a temporary directory.

Persistence is off (no RDB, no AOF), so nothing is written but the socket. When
redis-server is not installed the tests that need it are skipped, unless
CI=true, where a missing server is a broken machine and fails loudly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class RedisServer:
    """A running (or stopped) redis-server on a unix socket."""

    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        """The socket path."""
        return self.directory / "r.sock"

    @property
    def url(self) -> str:
        """What REDIS_URL would say."""
        return f"unix://{self.socket}"

    def start(self) -> None:
        """Start the server and wait until it answers PING (about 10 ms)."""
        binary = shutil.which("redis-server")
        assert binary is not None
        self.socket.unlink(missing_ok=True)
        options = {
            "--port": "0",
            "--unixsocket": str(self.socket),
            "--unixsocketperm": "700",
            "--save": "",
            "--appendonly": "no",
            "--dir": str(self.directory),
        }
        self.process = subprocess.Popen(
            [binary, *(part for pair in options.items() for part in pair)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if self.socket.exists() and self._ping():
                return
            time.sleep(0.005)
        raise RuntimeError("redis-server did not answer within 10 s")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def flush(self) -> None:
        """Empty every database."""
        import redis

        with redis.Redis(unix_socket_path=str(self.socket)) as client:
            client.flushall()

    def _ping(self) -> bool:
        import redis

        try:
            with redis.Redis(unix_socket_path=str(self.socket), socket_timeout=0.5) as client:
                return bool(client.ping())
        except (redis.RedisError, OSError):
            return False


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server for the whole session (see the module docstring)."""
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must have it (.ci/run installs it)")
        pytest.skip(message)
    server = RedisServer(Path(tempfile.mkdtemp(prefix="hometown-redis-")))
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The session's Redis, running and empty, for one test."""
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()  # a test stopped it
    redis_server.flush()
    yield redis_server.url
