"""
Token-bucket rate limits, per client and in total, on an injected clock.

A bucket holds up to C{burst} tokens and refills at C{rate} tokens a
second; each request takes one. A client is whatever the caller keys it
by (a token's digest, an IP address).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Final

from disperse.timesource import TimeSource

# Buckets remembered at once. Beyond it, full buckets (clients idle long
# enough to have refilled) are forgotten first, which changes nothing for
# them; then the oldest half, which only makes those clients start afresh.
DEFAULT_MAX_CLIENTS: Final = 65536


class RateLimiter:
    """
    One token bucket per client.
    """

    __slots__ = ("_buckets", "_burst", "_clock", "_maxClients", "_rate", "rate")

    def __init__(
        self,
        clock: TimeSource,
        rate: float,
        burst: float | None = None,
        maxClients: int = DEFAULT_MAX_CLIENTS,
    ) -> None:
        """
        @param rate: tokens a second.
        @param burst: the bucket size; twice the rate by default, and at
            least one.
        """
        if not rate > 0:
            raise ValueError(f"rate must be positive, not {rate}")
        self._clock = clock
        self.rate = rate
        self._rate = float(rate)
        self._burst = max(1.0, float(2 * rate if burst is None else burst))
        self._maxClients = maxClients
        # client -> [tokens, when last counted]; a list, mutated in place,
        # is the cheapest record to update on every request.
        self._buckets: dict[Hashable, list[float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: Hashable = None) -> float:
        """
        Take one token for C{client}: 0.0 if it had one, else how many
        seconds until it will have.
        """
        now = self._clock.seconds()
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self._maxClients:
                self._forget(now)
            self._buckets[client] = [self._burst - 1.0, now]
            return 0.0
        tokens = bucket[0] + (now - bucket[1]) * self._rate
        tokens = min(tokens, self._burst)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self._rate

    def _forget(self, now: float) -> None:
        burst, rate = self._burst, self._rate
        full = [
            client
            for client, (tokens, when) in self._buckets.items()
            if tokens + (now - when) * rate >= burst
        ]
        for client in full:
            del self._buckets[client]
        if len(self._buckets) >= self._maxClients:
            oldest = list(self._buckets)[: max(1, len(self._buckets) // 2)]
            for client in oldest:
                del self._buckets[client]
