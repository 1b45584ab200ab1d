"""The per-client token bucket: bursts, refill, Retry-After, bounded memory."""

from __future__ import annotations

import pytest

from app.api import rate_limit
from app.api.rate_limit import RateLimiter, TooManyRequests


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate_then_a_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(per_second=2.0, burst=3, clock=clock)
    for _ in range(3):
        limiter.check("a")
    with pytest.raises(TooManyRequests) as refused:
        limiter.check("a")
    assert refused.value.status_code == 429
    assert refused.value.retry_after_s == 1
    limiter.check("b")  # another client has its own bucket
    clock.now += 0.5  # one token back at 2 per second
    limiter.check("a")
    with pytest.raises(TooManyRequests):
        limiter.check("a")
    clock.now += 60  # refills up to the burst, not beyond
    for _ in range(3):
        limiter.check("a")
    with pytest.raises(TooManyRequests):
        limiter.check("a")


def test_a_slow_rate_asks_for_a_longer_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(per_second=0.1, burst=1, clock=clock)
    limiter.check("a")
    with pytest.raises(TooManyRequests) as refused:
        limiter.check("a")
    assert refused.value.retry_after_s == 10


def test_the_table_forgets_the_longest_idle_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rate_limit, "MAX_CLIENTS", 3)
    limiter = RateLimiter(per_second=1.0, burst=1, clock=Clock())
    for client in ("a", "b", "c", "d"):
        limiter.check(client)
    assert list(limiter.buckets) == ["b", "c", "d"]
    limiter.check("a")  # forgotten, so it starts with a full bucket again
