"""`WORKERS=2`: two server processes on one port, reloaded, replaced and stopped together.

The real `python -m app`, as a user starts it, against the small world. The
workers' own log lines say who they are (uvicorn's "Started server process
[pid]", app/reload.py's "(process pid)"), so each check names the process it
expects instead of hoping the kernel spreads requests over both.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import server as api_server
from tools.cluster import free_port

STARTED = re.compile(r"Started server process \[(\d+)\]")
FINISHED = re.compile(r"Finished server process \[(\d+)\]")
RELOADED = re.compile(r"reloading \d+ model holders \(process (\d+)\)")
WAIT_S = 30.0


class Running:
    """A `python -m app` with WORKERS=2 and its stderr in a file."""

    def __init__(self, url: str, log: Path) -> None:
        self.log = log
        self.port = free_port()
        env = {
            **{name: value for name, value in os.environ.items() if name != "REDIS_URL"},
            "DATABASE_URL": url,
            "HOST": api_server.HOST,
            "PORT": str(self.port),
            "MODEL_PATH": str(log.parent / "no-model.joblib"),
            "ACCESS_LOG": "false",
            "LOG_FORMAT": "text",
            "WORKERS": "2",
            "GRACEFUL_SHUTDOWN_TIMEOUT": "5",
        }
        self._err = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app"], env=env, stdout=subprocess.DEVNULL, stderr=self._err
        )
        self.server = api_server.Server(process=self.process, port=self.port)

    def pids(self, pattern: re.Pattern[str]) -> list[int]:
        """The pids `pattern` has named in the log so far, in order."""
        return [int(m.group(1)) for m in pattern.finditer(self.log.read_text())]

    def until(self, pattern: re.Pattern[str], wanted: set[int] | int) -> list[int]:
        """Wait until the log names every pid of `wanted` (or that many pids); all named."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            found = self.pids(pattern)
            enough = len(set(found)) >= wanted if isinstance(wanted, int) else wanted <= set(found)
            if enough:
                return found
            time.sleep(0.1)
        raise AssertionError(f"{pattern.pattern} never named {wanted}:\n{self.log.read_text()}")

    def children(self) -> set[int]:
        text = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        return {int(pid) for pid in text.split()}

    def health(self) -> dict[str, object]:
        with urllib.request.urlopen(f"{self.server.base_url}/", timeout=10) as response:
            body: dict[str, object] = json.loads(response.read())
            return body


@pytest.fixture
def running(small_world: str, tmp_path: Path) -> Iterator[Running]:
    server = Running(small_world, tmp_path / "server.stderr")
    try:
        yield server
    finally:
        server.server.stop()
        server._err.close()


def test_two_workers_serve_reload_get_replaced_and_stop_together(running: Running) -> None:
    first = set(running.until(STARTED, 2))
    assert first == running.children(), "the workers are the supervisor's children"
    api_server.wait_healthy(running.server)
    health = running.health()
    assert health["process"] == {"pid": health["process"]["pid"], "workers": 2}  # type: ignore[index]
    assert health["process"]["pid"] in first  # type: ignore[index]

    # SIGHUP to the supervisor reaches every worker (once each has started serving).
    _wait_startup(running, 2)
    os.kill(running.process.pid, signal.SIGHUP)
    running.until(RELOADED, first)

    # A worker that dies is replaced, and the port keeps answering meanwhile.
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    found = running.until(STARTED, 3)
    replacement = set(found) - first
    assert len(replacement) == 1 and replacement <= running.children()
    assert running.health()["status"] == "ok"

    # SIGTERM: every live worker finishes, then the supervisor exits 0.
    alive = (first - {victim}) | replacement
    _wait_startup(running, 3)
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(timeout=WAIT_S) == 0
    assert alive <= set(running.pids(FINISHED)), running.log.read_text()


def _wait_startup(running: Running, count: int) -> None:
    """Until `count` workers have said their start-up is complete."""
    deadline = time.monotonic() + WAIT_S
    while running.log.read_text().count("Application startup complete") < count:
        assert time.monotonic() < deadline, running.log.read_text()
        time.sleep(0.1)


def test_a_crash_loop_stops_the_supervisor_with_exit_1(tmp_path: Path) -> None:
    """Workers that die right after their start are restarted a few times, then given up."""
    script = textwrap.dedent(
        """
        import logging, socket, sys
        from app import workers
        logging.basicConfig(level=logging.INFO)
        def serve(sock):
            raise RuntimeError("cannot start")
        sock = socket.create_server(("127.0.0.1", 0))
        sys.exit(workers.supervise(2, sock, serve, stop_timeout_s=1))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 1, done.stderr
    deaths = re.findall(r"worker \d+ exited with 1 after", done.stderr)
    assert len(deaths) == 5, done.stderr  # MAX_QUICK_DEATHS in a row, then no more
    assert "giving up" in done.stderr
    assert done.stderr.count("RuntimeError: cannot start") >= 5
