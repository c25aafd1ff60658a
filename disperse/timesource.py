"""
The one view of time the pure cores accept.

Pure modules never read the system clock; they are handed an object with a
C{seconds()} method. Twisted's reactor and L{twisted.internet.task.Clock}
both qualify, so production code passes the reactor and tests pass a Clock.
"""

from typing import Protocol


class TimeSource(Protocol):
    def seconds(self) -> float:
        """
        The current time in seconds since the epoch.
        """


class OffsetTime:
    """
    Another time source's time, shifted by a fixed number of seconds: the
    wall clock of a host whose clock is off. Nodes on one machine share the
    system clock, so the fault bed gives each its own offset this way.
    """

    def __init__(self, clock: TimeSource, offset: float) -> None:
        self._clock = clock
        self.offset = offset

    def seconds(self) -> float:
        return self._clock.seconds() + self.offset
