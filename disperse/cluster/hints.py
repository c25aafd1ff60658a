"""
Hinted handoff: writes a replica could not take, kept by the coordinator to
deliver when the replica is back. Pure: no I/O.

Hints are bounded in bytes. When full, the oldest hints go first: a replica
that missed that much is better repaired by anti-entropy than by replaying
an unbounded backlog, and the coordinator must not run out of memory
because a peer is down.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

from disperse.store import Record

# What one hint costs beyond its key and value, roughly: the tuple, the
# record and the deque slot.
HINT_OVERHEAD = 200


@dataclass
class HintCounters:
    queued: int = 0
    delivered: int = 0
    dropped: int = 0


class HintStore:
    """
    Per member, in arrival order, the records it should have received.
    """

    def __init__(self, maxBytes: int) -> None:
        self.maxBytes = maxBytes
        self.bytes = 0
        self.counters = HintCounters()
        self._byMember: OrderedDict[str, deque[tuple[str, Record]]] = OrderedDict()

    @staticmethod
    def _size(key: str, record: Record) -> int:
        return len(key) + len(record.value) + HINT_OVERHEAD

    def add(self, member: str, key: str, record: Record) -> None:
        size = self._size(key, record)
        if size > self.maxBytes:
            self.counters.dropped += 1
            return
        self._byMember.setdefault(member, deque()).append((key, record))
        self.bytes += size
        self.counters.queued += 1
        while self.bytes > self.maxBytes:
            self._dropOldest()

    def _dropOldest(self) -> None:
        # The member whose queue was created first loses its oldest hint.
        member, queue = next(iter(self._byMember.items()))
        key, record = queue.popleft()
        self.bytes -= self._size(key, record)
        self.counters.dropped += 1
        if not queue:
            del self._byMember[member]

    def members(self) -> list[str]:
        """
        Members with hints waiting.
        """
        return list(self._byMember)

    def pending(self, member: str) -> int:
        return len(self._byMember.get(member, ()))

    def take(self, member: str, limit: int) -> list[tuple[str, Record]]:
        """
        Remove and return up to C{limit} of C{member}'s oldest hints; give
        back what could not be delivered with L{restore}.
        """
        queue = self._byMember.get(member)
        if not queue:
            return []
        taken = [queue.popleft() for _ in range(min(limit, len(queue)))]
        for key, record in taken:
            self.bytes -= self._size(key, record)
        if not queue:
            del self._byMember[member]
        return taken

    def delivered(self, count: int) -> None:
        self.counters.delivered += count

    def restore(self, member: str, hints: list[tuple[str, Record]]) -> None:
        """
        Put undelivered hints back in front, oldest first.
        """
        if not hints:
            return
        queue = self._byMember.setdefault(member, deque())
        queue.extendleft(reversed(hints))
        for key, record in hints:
            self.bytes += self._size(key, record)
        while self.bytes > self.maxBytes:
            self._dropOldest()

    def forget(self, member: str) -> None:
        """
        Drop every hint for C{member} (it left for good).
        """
        for key, record in self._byMember.pop(member, ()):
            self.bytes -= self._size(key, record)
            self.counters.dropped += 1
