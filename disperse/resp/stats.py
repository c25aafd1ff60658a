"""
What the Redis front end counts: connections, and calls, failures and
latency per command. The server records into one L{RespStats}; C{/metrics},
C{/stats}, C{INFO} and the dashboard read it.

Commands are served on the reactor thread alone, so plain integers do, as
for the HTTP API's L{disperse.metrics.RequestStats}.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

# Latency bucket bounds in seconds: from well under a local GET to a
# replica timeout.
COMMAND_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


@dataclass(slots=True)
class CommandSeries:
    """
    Calls of one command: how many, how many failed (answered with an
    error), their total time, and how many fell in each latency bucket (the
    last is beyond every bound).
    """

    buckets: list[int]
    calls: int = 0
    failed: int = 0
    seconds: float = 0.0


@dataclass
class RespStats:
    """
    Counters of one node's Redis front end.

    @ivar connections: open now.
    @ivar accepted: connections accepted since start.
    @ivar rejected: connections refused at the connection limit.
    @ivar protocolErrors: connections closed after a malformed frame.
    @ivar idleClosed: connections closed for being idle too long.
    @ivar rateLimited: commands refused by a rate limit.
    """

    bounds: tuple[float, ...] = COMMAND_BUCKETS
    connections: int = 0
    accepted: int = 0
    rejected: int = 0
    protocolErrors: int = 0
    idleClosed: int = 0
    rateLimited: int = 0
    commands: dict[str, CommandSeries] = field(default_factory=dict)

    def record(self, name: str, seconds: float, failed: bool = False) -> None:
        """
        Count one call of command C{name} (lower case, a subcommand as
        C{container|sub}) that took C{seconds}.
        """
        series = self.commands.get(name)
        if series is None:
            series = self.commands[name] = CommandSeries([0] * (len(self.bounds) + 1))
        series.calls += 1
        if failed:
            series.failed += 1
        series.seconds += seconds
        series.buckets[bisect_left(self.bounds, seconds)] += 1

    def recordMany(self, name: str, calls: int, seconds: float) -> None:
        """
        Count C{calls} calls of command C{name} that took C{seconds} each:
        a run of them served together, timed together.
        """
        series = self.commands.get(name)
        if series is None:
            series = self.commands[name] = CommandSeries([0] * (len(self.bounds) + 1))
        series.calls += calls
        series.seconds += seconds * calls
        series.buckets[bisect_left(self.bounds, seconds)] += calls

    @property
    def calls(self) -> int:
        """
        Commands run since start, of every kind.
        """
        return sum(series.calls for series in self.commands.values())

    def summary(self) -> dict[str, Any]:
        """
        The counters as the C{redis} section of C{/stats}: connections, and
        per command its calls, failures and mean latency in milliseconds.
        """
        return {
            "connections": self.connections,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "protocolErrors": self.protocolErrors,
            "idleClosed": self.idleClosed,
            "rateLimited": self.rateLimited,
            "commands": self.calls,
            "failed": sum(series.failed for series in self.commands.values()),
            "perCommand": {
                name: {
                    "calls": series.calls,
                    "failed": series.failed,
                    "meanMs": round(1000 * series.seconds / series.calls, 3)
                    if series.calls
                    else 0.0,
                }
                for name, series in sorted(self.commands.items())
            },
        }
