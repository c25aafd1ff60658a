"""
The recent membership events of one node: who joined, was updated, failed
or left, and when, as this node saw it. A bounded ring, so a flapping
member cannot make it grow; pure bookkeeping, with the time given by the
caller.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

# Enough to show what happened around an incident without the node holding
# (or the dashboard polling) a long history; the log keeps the rest.
DEFAULT_CAPACITY = 100


@dataclass(frozen=True, slots=True)
class MembershipEvent:
    """
    One change, as this node's membership reported it.

    @ivar id: increases by one per event on this node, so a reader can ask
        for the events after the last one it saw.
    @ivar time: seconds since the epoch, from the node's clock.
    @ivar change: C{joined}, C{updated}, C{failed} or C{left}.
    @ivar state: the member's state after the change (C{alive}, C{suspect},
        C{dead} or C{left}).
    """

    id: int
    time: float
    member: str
    change: str
    state: str
    incarnation: int

    def asJSON(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time,
            "member": self.member,
            "change": self.change,
            "state": self.state,
            "incarnation": self.incarnation,
        }


class MembershipEvents:
    """
    The last C{capacity} membership events, oldest first.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._events: deque[MembershipEvent] = deque(maxlen=capacity)
        self._nextId = 1

    def record(
        self, time: float, member: str, change: str, state: str, incarnation: int
    ) -> MembershipEvent:
        event = MembershipEvent(self._nextId, time, member, change, state, incarnation)
        self._nextId += 1
        self._events.append(event)
        return event

    def since(self, after: int = 0) -> list[MembershipEvent]:
        """
        The events kept whose id is greater than C{after}, oldest first.
        """
        return [event for event in self._events if event.id > after]

    @property
    def lastId(self) -> int:
        """
        The id of the newest event ever recorded (0 before the first).
        """
        return self._nextId - 1
