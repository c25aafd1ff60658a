"""
What authentication and rate limiting cost a request on the /cache/<key>
fast path, in process: the guard's check alone, and whole GETs through the
in-memory HTTP front (channel, site, API) with no guard, with a rate limit,
and with tokens and a rate limit. Pipelined requests on one connection, so
that the figures are the server's work only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import timeit
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from disperse.security.ratelimit import RateLimiter
from disperse.security.tokens import parseTokens
from disperse.testing.site import READER, TOKENS, inMemorySite
from disperse.web.auth import RequestGuard


def _checkCost(guard: RequestGuard, count: int) -> float:
    request: Any = DummyRequest([b"cache", b"k"])
    request.client = IPv4Address("TCP", "10.0.0.1", 5555)
    request.requestHeaders.setRawHeaders(
        b"authorization", [b"Bearer " + READER.encode()]
    )
    path = [b"cache", b"k"]
    started = time.perf_counter()
    for _ in range(count):
        guard.check(request, path)
    return (time.perf_counter() - started) / count


def _requestCost(withGuard: bool, tokens: bool, count: int) -> float:
    site = inMemorySite(withGuard=withGuard, withTokens=tokens)
    one = (
        b"GET /cache/k HTTP/1.1\r\nAuthorization: Bearer "
        + READER.encode()
        + b"\r\n\r\n"
    )
    # Ten requests a connection: Twisted re-buffers what follows each
    # pipelined request, so long pipelines measure that instead.
    data = one * 10
    started = time.perf_counter()
    for _ in range(count // 10):
        answer = site.exchange(data)
    elapsed = time.perf_counter() - started
    assert answer.count(b"HTTP/1.1 404 ") == 10, answer[-300:]
    return elapsed / (count // 10 * 10)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    clock = Clock()
    # Limits far above the request count, so every request is admitted.
    guards = {
        "check: tokens + per-client + global limit": RequestGuard(
            tokens=parseTokens(TOKENS),
            perClient=RateLimiter(clock, 10**9),
            overall=RateLimiter(clock, 10**9),
        ),
        "check: per-client limit only": RequestGuard(
            perClient=RateLimiter(clock, 10**9)
        ),
    }
    results: dict[str, float] = {
        # How fast this machine runs Python, to read the rest against.
        "an empty Python call": min(
            timeit.repeat(lambda: None, number=args.count, repeat=args.repeat)
        )
        / args.count,
    }
    for name, guard in guards.items():
        results[name] = min(_checkCost(guard, args.count) for _ in range(args.repeat))
    for name, withGuard, tokens in (
        ("GET, no guard", False, False),
        ("GET, rate limits", True, False),
        ("GET, tokens + rate limits", True, True),
    ):
        runs = [
            _requestCost(withGuard, tokens, args.count // 4) for _ in range(args.repeat)
        ]
        results[name] = statistics.median(runs)
    for name, seconds in results.items():
        print(f"{name:45s} {seconds * 1e6:8.2f} us")
    print(json.dumps({k: round(v * 1e6, 3) for k, v in results.items()}))
    return 0
