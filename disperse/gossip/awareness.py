"""
Lifeguard's local health awareness: a score of how badly this node itself
keeps up, used to stretch its own probe timing when it is the likely culprit.
"""

from __future__ import annotations


class Awareness:
    """
    A bounded health score: zero is healthy, C{maxMultiplier - 1} is the
    worst.  Missed acks and nacks and having to refute raise it, successful
    probes lower it.
    """

    def __init__(self, maxMultiplier: int) -> None:
        self._max = max(1, maxMultiplier)
        self._score = 0

    @property
    def score(self) -> int:
        return self._score

    def applyDelta(self, delta: int) -> None:
        """
        Move the score by C{delta}, clamped to M{[0, max - 1]}.
        """
        self._score = min(self._max - 1, max(0, self._score + delta))

    def scaleTimeout(self, timeout: float) -> float:
        """
        Stretch C{timeout} by the current multiplier, M{score + 1}.
        """
        return timeout * (self._score + 1)
