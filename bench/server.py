"""The API under test, as its own process: start, wait for health, read peak RSS, stop.

The server runs as `python -m app` with the benchmark's own interpreter (not through
`uv run`), so the child's pid is the Python server itself and /proc/<pid>/status
reports the server's memory, not a wrapper's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.cpu import process_cpu_s, process_tree
from bench.log import say
from tools.cluster import free_port

HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


@dataclass
class Server:
    """A running `python -m app` child process."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def base_url(self) -> str:
        """Where it answers (loopback only)."""
        return f"http://{HOST}:{self.port}"

    def peak_rss_bytes(self) -> int:
        """VmHWM (peak resident set) of the server process, from /proc."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        cmdline = Path(f"/proc/{self.process.pid}/cmdline").read_bytes().split(b"\0")
        if "python" not in Path(os.fsdecode(cmdline[0])).name:
            raise RuntimeError(f"pid {self.process.pid} is not the Python server: {cmdline!r}")
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                value, unit = line.split()[1:3]
                assert unit == "kB"
                return int(value) * 1024
        raise RuntimeError("VmHWM missing from /proc status")

    def rss_bytes(self) -> int:
        """VmRSS (resident set now) of the server process, from /proc."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("VmRSS missing from /proc status")

    def pids(self) -> list[int]:
        """The server process and every process under it (its `WORKERS`), parent first."""
        return process_tree(self.process.pid)

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server's processes so far."""
        return sum(process_cpu_s(pid) for pid in self.pids())

    def pss_bytes(self) -> int:
        """Proportional set size of all the server's processes together, from /proc.

        With several workers RSS counts the pages they share (the app as built
        before the fork) once per process; PSS splits each shared page among its
        sharers, so the sum is what the server occupies.
        """
        total = 0
        for pid in self.pids():
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        return total

    def stop(self) -> None:
        """SIGTERM, wait; SIGKILL only if it ignores that for too long."""
        if self.process.poll() is not None:
            return
        say("stopping the server")
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            say(f"server ignored SIGTERM for {STOP_TIMEOUT_S:.0f}s: killing it")
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)


def start(
    database_url: str,
    extra_env: Mapping[str, str] | None = None,
    *,
    python_args: Sequence[str] = ("-m", "app"),
) -> Server:
    """Start the API on a free loopback port and wait until `GET /` answers 200.

    `extra_env` adds settings for this server only (e.g. `API_KEY`), so a secret
    need not be put into our own environment or onto a command line. `python_args`
    is what the interpreter runs: `python -m app` unless a benchmark needs a variant.
    """
    port = free_port()
    env = {
        **os.environ,
        "WORKERS": "1",  # one process unless the caller asks for more: per-process figures
        **(extra_env or {}),
        "DATABASE_URL": database_url,
        "HOST": HOST,
        "PORT": str(port),
        "ACCESS_LOG": "false",
    }
    say(f"starting the server: python -m app on {HOST}:{port}")
    # Its log goes to stderr with our progress: stdout is the report.
    process = subprocess.Popen([sys.executable, *python_args], env=env, stdout=sys.stderr)
    server = Server(process=process, port=port)
    try:
        wait_healthy(server)
        wait_live_set(server)
    except BaseException:
        server.stop()
        raise
    return server


def wait_healthy(server: Server) -> None:
    """Poll `GET /` until 200, the process dies, or START_TIMEOUT_S passes."""
    started = time.monotonic()
    deadline = started + START_TIMEOUT_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited with {server.process.returncode} at start-up")
        try:
            with urllib.request.urlopen(server.base_url + "/", timeout=2) as response:
                if response.status == 200:
                    say(f"server healthy after {time.monotonic() - started:.1f}s")
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer 200 on / within {START_TIMEOUT_S:.0f}s: {last}")


def wait_live_set(server: Server) -> None:
    """Poll `GET /` until every server process reports its live set read (`full_syncs`).

    The app answers before its first live-set sync (app/feed/follow.py), which at
    a million live streams takes seconds and the machine's second core: a level
    measured meanwhile would measure the sync. Each answer names its process and
    how many there are (`process.pid`, `process.workers`).
    """
    started = time.monotonic()
    deadline = started + START_TIMEOUT_S
    synced: set[int] = set()
    while True:
        with urllib.request.urlopen(server.base_url + "/", timeout=5) as response:
            report = json.load(response)
        if (report["feed"].get("live_set") or {}).get("full_syncs", 0) >= 1:
            synced.add(report["process"]["pid"])
        if len(synced) >= report["process"]["workers"]:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the live set was not read within {START_TIMEOUT_S:.0f}s")
        time.sleep(0.1)
    say(f"live set read by {len(synced)} process(es) {time.monotonic() - started:.1f}s later")


def probe(server: Server, path: str, body: bytes | None) -> tuple[int, bytes]:
    """One request before the load, so a broken route fails loudly instead of as errors."""
    request = urllib.request.Request(
        server.base_url + path,
        data=body,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
