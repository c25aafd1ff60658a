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
