"""
The small typing protocols through which the membership state machine sees
time.  Twisted's reactor and C{twisted.internet.task.Clock} satisfy them, as
does the per-node clock of L{disperse.gossip.simulation}; nothing here imports
the reactor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class DelayedCall(Protocol):
    """
    A scheduled call that can still be cancelled or moved.
    """

    def cancel(self) -> None: ...

    def active(self) -> bool: ...

    def reset(self, secondsFromNow: float) -> None: ...


class SchedulingClock(Protocol):
    """
    A monotonic-enough source of time that can schedule calls.
    """

    def seconds(self) -> float: ...

    def callLater(
        self, delay: float, callable: Callable[..., object], *args: Any, **kw: Any
    ) -> DelayedCall: ...
