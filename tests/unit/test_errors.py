"""Failure logging that says what happened once, then only how often."""

from __future__ import annotations

import pytest

from app.errors import ThrottledLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_are_logged_once_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    throttled = ThrottledLog(every_s=5.0, burst=3, clock=clock)
    with caplog.at_level("ERROR", logger="app"):
        for _ in range(1000):
            throttled.error("db", "POST /x failed: down")
        throttled.error("other", "GET /y failed: timeout")
        clock.now += 5.0
        throttled.error("db", "POST /x failed: down")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "POST /x failed: down",
        "POST /x failed: down",
        "POST /x failed: down",
        "GET /y failed: timeout",
        "POST /x failed: down (997 more like it held back)",
    ]


def test_warnings_are_throttled_the_same_way(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    throttled = ThrottledLog(every_s=5.0, burst=2, clock=clock)
    with caplog.at_level("WARNING", logger="app"):
        for _ in range(50):
            throttled.warning("cap", "connection cap reached")
        clock.now += 5.0
        throttled.warning("cap", "connection cap reached")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "connection cap reached"),
        ("WARNING", "connection cap reached"),
        ("WARNING", "connection cap reached (48 more like it held back)"),
    ]
