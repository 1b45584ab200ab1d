"""The HTTP edge (issue 11): HEAD, undecodable paths, client aborts, proxies, timeouts, the cap.

What the app decides is tested through the TestClient; what only the real server
can show (silent connections, stalled bodies, hang-ups, the peer address, the
raw header bytes) against `python -m app` on 127.0.0.1, over raw sockets, so no
client library tidies the bytes on the wire. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar.testing import TestClient

from bench import server as api_server
from tests.integration.conftest import API_KEY, MakeClient
from tools.cluster import free_port

HOMETOWN = "/v1/scenarios/hometown"


# -- the app, through the TestClient ------------------------------------------------


@pytest.fixture
def client(small_world: str, make_client: MakeClient) -> TestClient[Any]:
    return make_client(small_world)


@pytest.mark.parametrize("path", ["/", "/live", "/ready", "/metrics", f"{HOMETOWN}/stats", "/docs"])
def test_head_answers_wherever_get_does(client: TestClient[Any], path: str) -> None:
    got = client.get(path)
    head = client.head(path)
    assert got.status_code == 200
    assert head.status_code == 200, head.text
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert "x-request-id" in head.headers


def test_head_on_a_post_only_route_is_405_not_a_crash(client: TestClient[Any]) -> None:
    assert client.head(HOMETOWN).status_code == 405


def test_a_path_whose_escapes_are_not_utf8_is_refused(client: TestClient[Any]) -> None:
    keyed = {"X-API-Key": API_KEY}
    for raw in ("%FF", "%FE", "%C3", "ab%E9cd"):
        response = client.post(f"/v1/streams/{raw}/live", headers=keyed)
        assert response.status_code == 400, (raw, response.text)
        assert "UTF-8" in response.json()["detail"]
        assert "x-request-id" in response.headers
    # A well-formed escape still reaches the app: an unknown stream, not a bad path.
    assert client.post("/v1/streams/%C3%A9t%C3%A9/live", headers=keyed).status_code == 404


# -- the real server -----------------------------------------------------------------


class Running:
    """A `python -m app` child with its stderr in a file."""

    def __init__(
        self, url: str, env: Mapping[str, str], log: Path, descriptors: int | None = None
    ) -> None:
        self.port = free_port()
        self.log = log
        full = {
            **os.environ,
            "DATABASE_URL": url,
            "HOST": api_server.HOST,
            "PORT": str(self.port),
            "API_KEY": API_KEY,
            "MODEL_PATH": str(log.parent / "no-model.joblib"),
            "ACCESS_LOG": "true",
            "WORKERS": "1",  # the limits under test are one process's
            **env,
        }
        self._err = log.open("wb")

        def limit() -> None:  # in the child, before it runs Python
            if descriptors is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (descriptors, descriptors))

        process = subprocess.Popen(
            [sys.executable, "-m", "app"],
            env=full,
            stdout=subprocess.DEVNULL,
            stderr=self._err,
            preexec_fn=limit,
        )
        self.server = api_server.Server(process=process, port=self.port)
        api_server.wait_healthy(self.server)

    def stop(self) -> None:
        self.server.stop()
        self._err.close()

    def connect(self) -> socket.socket:
        return socket.create_connection((api_server.HOST, self.port), timeout=10)

    def exchange(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send one raw request on a new connection; the answer, read to the close."""
        with self.connect() as sock:
            sock.sendall(request)
            return parse(read_all(sock))

    def access_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{") and '"app.access"' in line:
                lines.append(json.loads(line))
        return lines

    def log_text(self) -> str:
        return self.log.read_text()


@pytest.fixture
def start(small_world: str, tmp_path: Path) -> Iterator[Any]:
    started: list[Running] = []

    def make(descriptors: int | None = None, **env: str) -> Running:
        log = tmp_path / f"server{len(started)}.stderr"
        running = Running(small_world, env, log, descriptors)
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()


def read_all(sock: socket.socket, timeout_s: float = 10.0) -> bytes:
    sock.settimeout(timeout_s)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 "):
        return 0, {}, raw
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def request(method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", "Connection: close"]
    if body or method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def hometown(xff: str | None = None) -> bytes:
    body = json.dumps({"user_id": "user_000000", "max_results": 1}).encode()
    extra = {"X_Forwarded_For": xff} if xff is not None else {}
    return request("POST", HOMETOWN, body, **extra)


def refused(server: Running) -> dict[str, float]:
    """`hometown_http_connections_refused_total` by reason, from `/metrics`."""
    _, _, body = server.exchange(request("GET", "/metrics"))
    pattern = rb'hometown_http_connections_refused_total\{reason="(\w+)"\} ([0-9.e+]+)'
    return {m[1].decode(): float(m[2]) for m in re.finditer(pattern, body)}


def wait_for(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


# -- 1. silent connections, stalled bodies, the connection cap ------------------------

SILENT = 2000


def test_silent_connections_are_closed_and_the_server_keeps_answering(start: Any) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < SILENT + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, SILENT + 500), hard))
    server = start(REQUEST_HEAD_TIMEOUT="2", MAX_CONNECTIONS=str(SILENT + 500))
    silent = []
    try:
        opened = time.monotonic()
        for _ in range(SILENT):
            silent.append(server.connect())
        # While they are all open, a real request is answered.
        status, _, body = server.exchange(request("GET", "/live"))
        assert status == 200, body
        # Then every silent connection is closed by the server within the timeout.
        selector = selectors.DefaultSelector()
        for sock in silent:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        closed = 0
        deadline = opened + 2 + 8  # REQUEST_HEAD_TIMEOUT plus generous slack
        while closed < SILENT and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(1024)
                except ConnectionResetError:
                    data = b""
                assert data == b"", data  # closed without an answer: nothing was asked
                selector.unregister(sock)
                closed += 1
        elapsed = time.monotonic() - opened
        assert closed == SILENT, (
            f"{SILENT - closed} silent connections still open after {elapsed:.1f}s"
        )
        assert elapsed >= 1.5  # not before the timeout
        assert server.exchange(request("GET", "/live"))[0] == 200
    finally:
        for sock in silent:
            sock.close()
    text = server.log_text()
    assert 1 <= text.count("REQUEST_HEAD_TIMEOUT") <= 20, text[-3000:]  # throttled
    assert refused(server)["head_timeout"] >= SILENT


def test_a_half_sent_head_is_cut_off_too(start: Any) -> None:
    server = start(REQUEST_HEAD_TIMEOUT="1")
    with server.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"GET /live HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        assert read_all(sock, timeout_s=6) == b""
        assert time.monotonic() - started < 5


def test_a_head_over_64_kib_is_refused_with_431(start: Any) -> None:
    server = start()
    padding = {f"X_Pad_{i}": "x" * 1000 for i in range(70)}
    status, headers, _ = server.exchange(request("GET", "/live", **padding))
    assert status == 431
    assert headers["connection"] == "close"
    assert refused(server)["head_too_large"] == 1
    assert server.exchange(request("GET", "/live", X_Pad="x" * 30_000))[0] == 200


def test_a_stalled_body_is_answered_408_and_cut_off(start: Any) -> None:
    server = start(REQUEST_BODY_TIMEOUT="1")
    with server.connect() as sock:
        started = time.monotonic()
        sock.sendall(request("POST", HOMETOWN, b"")[:-2].replace(b"Length: 0", b"Length: 100"))
        sock.sendall(b'\r\n{"user_id": ')
        status, headers, body = parse(read_all(sock, timeout_s=6))
        assert time.monotonic() - started < 5
    assert status == 408, body
    assert headers["connection"] == "close"
    assert wait_for(lambda: any(line["status"] == 408 for line in server.access_lines()), 5)
    assert "REQUEST_BODY_TIMEOUT" in server.log_text()
    assert refused(server)["body_timeout"] == 1


def test_past_the_connection_cap_requests_get_503_and_it_is_logged(start: Any) -> None:
    server = start(MAX_CONNECTIONS="20", REQUEST_HEAD_TIMEOUT="3")
    silent = [server.connect() for _ in range(30)]
    try:
        time.sleep(0.3)  # let the server accept them all
        status, headers, _ = server.exchange(request("GET", "/live"))
        assert status == 503
        assert headers["retry-after"] == "1"
    finally:
        for sock in silent:
            sock.close()
    assert wait_for(lambda: server.exchange(request("GET", "/live"))[0] == 200, 5)
    lines = [line for line in server.log_text().splitlines() if "MAX_CONNECTIONS=20" in line]
    assert lines and len(lines) <= 11  # throttled: a few lines, then a count
    assert refused(server)["over_capacity"] >= 11  # the 10 silent ones past 20, and /live


def test_more_silent_connections_than_descriptors_never_break_the_server(start: Any) -> None:
    """300 silent connections to a process allowed 256 descriptors: it resets the excess.

    Before, accept() failed with EMFILE and every request after it, `GET /live`
    included, went unanswered while the silent connections stayed open.
    """
    server = start(descriptors=256, MAX_CONNECTIONS="50", REQUEST_HEAD_TIMEOUT="2")
    silent = [server.connect() for _ in range(300)]
    try:
        # The server frees every descriptor the silent ones took (at once past the
        # ceiling, after 1 s past the cap, after the timeout below it) and then answers,
        # though the test still holds all 300 of its ends open.
        def live() -> bool:
            try:
                return server.exchange(request("GET", "/live"))[0] == 200
            except OSError:
                return False

        time.sleep(0.5)
        assert wait_for(live, 8)
    finally:
        for sock in silent:
            sock.close()
    text = server.log_text()
    assert "the descriptor limit allows" in text
    assert refused(server)["descriptor_ceiling"] > 0
    assert "Too many open files" not in text


def test_a_connection_cap_above_the_descriptor_limit_is_refused_at_start(tmp_path: Path) -> None:
    env = {**os.environ, "MAX_CONNECTIONS": "1000000", "DATABASE_URL": "postgresql://x@h/db"}
    script = "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)); " + (
        "import runpy; runpy.run_module('app', run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "MAX_CONNECTIONS=1000000" in done.stderr and "ulimit -n" in done.stderr
    assert "Traceback" not in done.stderr


def test_keep_alive_requests_still_work_under_the_deadlines(start: Any) -> None:
    """An answer given before the body was read, then more requests on the connection."""
    server = start(REQUEST_HEAD_TIMEOUT="2")
    connection = http.client.HTTPConnection(api_server.HOST, server.port, timeout=10)
    try:
        body = json.dumps({"updates": [], "pad": "x" * 300_000}).encode()
        headers = {"Content-Type": "application/json", "X-API-Key": "wrong-key-0123456789"}
        connection.request("POST", "/v1/streams/live-status", body=body, headers=headers)
        response = connection.getresponse()
        assert response.status == 401
        response.read()
        for _ in range(3):  # the head deadline restarts with each request
            time.sleep(0.8)
            connection.request("GET", "/live")
            response = connection.getresponse()
            assert response.status == 200, response.read()
            response.read()
        connection.request(
            "POST",
            "/v1/streams/stream_000000/offline",
            body=b"{}",
            headers={**headers, "X-API-Key": API_KEY},
        )
        response = connection.getresponse()
        assert response.status == 200, response.read()
    finally:
        connection.close()


def test_a_connection_answered_before_its_body_then_silent_is_closed(start: Any) -> None:
    server = start(REQUEST_HEAD_TIMEOUT="2")
    with server.connect() as sock:
        head = request("POST", "/v1/streams/live-status", b"")[:-4]
        head = head.replace(b"Connection: close", b"Connection: keep-alive")
        sock.sendall(head.replace(b"Length: 0", b"Length: 1000") + b"\r\nX-API-Key: wrong\r\n\r\n")
        sock.sendall(b"x" * 10)
        sock.settimeout(5)
        answer = sock.recv(65536)
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < int(
            parse(answer)[1]["content-length"]
        ):
            answer += sock.recv(65536)
        assert parse(answer)[0] == 401
        time.sleep(0.2)
        sock.sendall(b"x" * 990)  # the rest of the body, then nothing
        started = time.monotonic()
        assert read_all(sock, timeout_s=8) == b""
        assert time.monotonic() - started < 6


# -- 3. a client that hangs up ------------------------------------------------------


def test_a_client_hanging_up_mid_body_is_a_499_not_a_500(start: Any) -> None:
    server = start()
    with server.connect() as sock:
        sock.sendall(request("POST", HOMETOWN, b"")[:-2].replace(b"Length: 0", b"Length: 100"))
        sock.sendall(b'\r\n{"user_id": ')
        time.sleep(0.3)
    assert wait_for(lambda: any(line["path"] == HOMETOWN for line in server.access_lines()), 5)
    [line] = [line for line in server.access_lines() if line["path"] == HOMETOWN]
    assert line["status"] == 499
    _, _, metrics = server.exchange(request("GET", "/metrics"))
    assert re.search(rb'route="/v1/scenarios/hometown",status="499"', metrics), metrics[-2000:]
    assert b'status="5xx"' not in metrics
    assert "Traceback" not in server.log_text()


def test_a_client_hanging_up_while_its_answer_is_computed_is_a_499(
    start: Any, small_world: str
) -> None:
    """The handler waits on a row lock the test holds; the client leaves meanwhile."""
    server = start(DB_STATEMENT_TIMEOUT="10000")  # lock_timeout: 5 s
    locked, release = threading.Event(), threading.Event()

    async def hold() -> None:
        connection = await asyncpg.connect(small_world)
        try:
            async with connection.transaction():
                await connection.execute(
                    "SELECT 1 FROM streams WHERE stream_id = 'stream_000000' FOR UPDATE"
                )
                locked.set()
                while not release.is_set():
                    await asyncio.sleep(0.05)
        finally:
            await connection.close()

    holder = threading.Thread(target=asyncio.run, args=(hold(),))
    holder.start()
    try:
        assert locked.wait(10)
        path = "/v1/streams/stream_000000/offline"
        with server.connect() as sock:
            sock.sendall(request("POST", path, b"{}", X_API_Key=API_KEY))
            time.sleep(0.5)  # the handler is now waiting for the lock
    finally:
        time.sleep(0.3)
        release.set()
        holder.join(10)
    assert wait_for(lambda: any(line["path"] == path for line in server.access_lines()), 5)
    [line] = [line for line in server.access_lines() if line["path"] == path]
    assert line["status"] == 499


# -- 2. X-Forwarded-For ---------------------------------------------------------------

LIMITED = {"RATE_LIMIT_PER_SECOND": "0.001", "RATE_LIMIT_BURST": "1"}


def test_an_untrusted_peer_cannot_pick_its_address(start: Any) -> None:
    server = start(**LIMITED)
    assert server.exchange(hometown("203.0.113.1"))[0] == 200
    assert server.exchange(hometown("203.0.113.2"))[0] == 429  # same peer, same bucket
    clients = {line["client"] for line in server.access_lines() if line["path"] == HOMETOWN}
    assert clients == {"127.0.0.1"}


def test_behind_a_trusted_proxy_each_client_has_its_own_bucket(start: Any) -> None:
    server = start(TRUSTED_PROXIES="127.0.0.1,10.0.0.0/8", **LIMITED)
    assert server.exchange(hometown("203.0.113.1"))[0] == 200
    assert server.exchange(hometown("203.0.113.2"))[0] == 200
    assert server.exchange(hometown("203.0.113.1"))[0] == 429
    # The right-most address that is not a trusted proxy is the client; a client
    # cannot prepend its way out.
    assert server.exchange(hometown("198.51.100.7, 203.0.113.3, 10.1.2.3"))[0] == 200
    assert server.exchange(hometown("198.51.100.8, 203.0.113.3"))[0] == 429
    # Without the header, the proxy itself is the client.
    assert server.exchange(hometown())[0] == 200
    clients = [line["client"] for line in server.access_lines() if line["path"] == HOMETOWN]
    assert clients == [
        "203.0.113.1",
        "203.0.113.2",
        "203.0.113.1",
        "203.0.113.3",
        "203.0.113.3",
        "127.0.0.1",
    ]


def test_a_garbled_forwarded_for_is_ignored(start: Any) -> None:
    server = start(TRUSTED_PROXIES="127.0.0.1", **LIMITED)
    assert server.exchange(hometown("not-an-address"))[0] == 200
    assert server.exchange(hometown("<script>, 203.0.113.9"))[0] == 429  # the peer's bucket
    assert server.exchange(hometown("203.0.113.9:443"))[0] == 429
    clients = {line["client"] for line in server.access_lines() if line["path"] == HOMETOWN}
    assert clients == {"127.0.0.1"}


# -- 6. X-API-Key, byte for byte -------------------------------------------------------


def test_the_api_key_must_match_exactly_on_the_wire(start: Any) -> None:
    server = start()
    path = "/v1/streams/stream_000000/offline"

    def post(line: bytes) -> int:
        raw = request("POST", path, b"{}").replace(b"\r\n\r\n", b"\r\n" + line + b"\r\n\r\n", 1)
        return server.exchange(raw)[0]

    key = API_KEY.encode()
    assert post(b"X-API-Key: " + key) == 200
    assert post(b"x-api-key:" + key) == 200
    for bad in (b"\t" + key, b" \t" + key, b"  " + key, key + b"\t", key + b" ", key[:-1]):
        assert post(b"X-API-Key: " + bad) == 401, bad
    assert post(b"X-API-Key:\t" + key) == 401
