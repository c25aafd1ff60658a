"""
Hybrid logical clocks: versions that follow wall-clock time but never run
backwards and always move past every version this node has seen.

A timestamp is one integer: milliseconds since the epoch in the high 48 bits
and a logical counter in the low 16. Comparing two timestamps as integers
orders them causally, and the physical part stays readable for operators.
"""

from disperse.timesource import TimeSource

LOGICAL_BITS = 16
_LOGICAL_MASK = (1 << LOGICAL_BITS) - 1


def physicalMs(timestamp: int) -> int:
    """
    The wall-clock milliseconds inside C{timestamp}.
    """
    return timestamp >> LOGICAL_BITS


def fromMs(milliseconds: int) -> int:
    """
    The smallest timestamp at C{milliseconds}.
    """
    return milliseconds << LOGICAL_BITS


class HybridLogicalClock:
    """
    Issues strictly increasing timestamps for local events.

    @ivar last: the most recent timestamp issued or observed.
    """

    def __init__(self, clock: TimeSource) -> None:
        self._clock = clock
        self.last = 0

    def now(self) -> int:
        """
        A new timestamp, greater than any issued or observed before.
        """
        # fromMs inlined: this runs on every write.
        physical = int(self._clock.seconds() * 1000) << LOGICAL_BITS
        # When the wall clock has not moved past the last timestamp (same
        # millisecond, or the clock stepped back), the logical part counts on.
        self.last = physical if physical > self.last else self.last + 1
        return self.last

    def observe(self, remote: int) -> None:
        """
        Account for a timestamp made elsewhere, so that every later local
        timestamp orders after it.
        """
        self.last = max(self.last, remote)

    def setClock(self, clock: TimeSource) -> None:
        """
        Read wall time from C{clock} from now on; timestamps still never
        run backwards.
        """
        self._clock = clock
