"""
Lifeguard's suspicion timer: how long a suspected member has to refute before
we declare it dead, shrinking as other members independently confirm the
suspicion.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from disperse.gossip.clock import DelayedCall, SchedulingClock


def remainingSuspicionTime(
    confirmations: int, wanted: int, elapsed: float, minimum: float, maximum: float
) -> float:
    """
    Time left on a suspicion timer, given what has already elapsed.

    The total timeout falls from C{maximum} towards C{minimum} with the
    logarithm of the number of confirmations, reaching C{minimum} at
    C{wanted} confirmations.  The result may be negative: the timer is
    already overdue.
    """
    if wanted < 1:
        total = minimum
    else:
        fraction = math.log(confirmations + 1.0) / math.log(wanted + 1.0)
        raw = maximum - fraction * (maximum - minimum)
        # Whole milliseconds, like memberlist, so both sides agree.
        total = max(minimum, math.floor(1000.0 * raw) / 1000.0)
    return total - elapsed


class Suspicion:
    """
    The timer running while one member is suspect.

    @ivar confirmations: how many independent confirmations were counted.
    """

    def __init__(
        self,
        clock: SchedulingClock,
        *,
        fromNode: str,
        wanted: int,
        minimum: float,
        maximum: float,
        onTimeout: Callable[[int], None],
    ) -> None:
        """
        @param fromNode: who raised the suspicion; our own suspicion coming
            back through gossip must not count as a confirmation.
        @param wanted: confirmations that drive the timeout to C{minimum};
            below one, C{minimum} applies from the start.
        @param onTimeout: called with the number of confirmations when the
            timer expires.
        """
        self._clock = clock
        self._wanted = wanted
        self._minimum = minimum
        self._maximum = maximum
        self._onTimeout = onTimeout
        self._seen = {fromNode}
        self.confirmations = 0
        self._start = clock.seconds()
        timeout = maximum if wanted >= 1 else minimum
        self._call: DelayedCall = clock.callLater(timeout, self._fire)

    def _fire(self) -> None:
        self._onTimeout(self.confirmations)

    def remaining(self) -> float:
        """
        Seconds left before the timer fires.
        """
        return remainingSuspicionTime(
            self.confirmations,
            self._wanted,
            self._clock.seconds() - self._start,
            self._minimum,
            self._maximum,
        )

    def confirm(self, fromNode: str) -> bool:
        """
        Count C{fromNode}'s suspicion if it is new, and bring the deadline
        forward accordingly.

        @return: whether this was new information worth gossiping on.
        """
        if self.confirmations >= self._wanted or fromNode in self._seen:
            return False
        self._seen.add(fromNode)
        self.confirmations += 1
        if self._call.active():
            self._call.cancel()
            # Overdue fires on the next turn rather than re-entering the
            # caller, which is in the middle of handling a message.
            self._call = self._clock.callLater(max(0.0, self.remaining()), self._fire)
        return True

    def cancel(self) -> None:
        if self._call.active():
            self._call.cancel()
