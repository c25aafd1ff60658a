"""
Tests for L{disperse.security.ratelimit}: token buckets on a Clock.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from disperse.security.ratelimit import RateLimiter


def test_burstThenRate() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, rate=10)
    # A burst of twice the rate, then nothing until a token refills.
    assert [limiter.take("a") for _ in range(20)] == [0.0] * 20
    wait = limiter.take("a")
    assert wait == pytest.approx(0.1)
    clock.advance(0.05)
    assert limiter.take("a") == pytest.approx(0.05)
    clock.advance(0.05)
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0


def test_clientsAreSeparate() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, rate=1, burst=1)
    assert limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(1.0)
    assert limiter.take("b") == 0.0


def test_refillIsCapped() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, rate=5)
    limiter.take("a")
    clock.advance(3600)
    taken = 0
    while limiter.take("a") == 0.0:
        taken += 1
    assert taken == 10


def test_sustainedRate() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, rate=100)
    allowed = 0
    for _ in range(10_000):  # 10 s at 1000 requests a second
        clock.advance(0.001)
        allowed += limiter.take("a") == 0.0
    assert 1000 <= allowed <= 1000 + 200


def test_boundedClients() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, rate=1, maxClients=100)
    for client in range(1000):
        limiter.take(client)
    assert len(limiter) <= 100
    # Idle clients refill and are forgotten first.
    clock.advance(10)
    limiter.take("new")
    assert len(limiter) <= 100


def test_badRate() -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        RateLimiter(Clock(), rate=0)
