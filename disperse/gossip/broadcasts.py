"""
The queue of membership changes waiting to be piggybacked on outgoing
packets, each sent a limited number of times, least-sent first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from disperse.gossip.config import retransmitLimit
from disperse.gossip.messages import PacketMessage


@dataclass(slots=True)
class _Queued:
    node: str
    message: PacketMessage
    size: int
    ident: int
    transmits: int = 0
    onFinished: Callable[[], None] | None = field(default=None)
    boost: int = 1

    def sortKey(self) -> tuple[int, int, int]:
        # Fewest transmits first; then the largest (so big messages are not
        # starved by small ones); then the newest.
        return (self.transmits, -self.size, -self.ident)


class BroadcastQueue:
    """
    Transmit-limited broadcasts, at most one per member: a newer message
    about a node replaces whatever was queued about it.
    """

    def __init__(self, retransmitMult: int, numNodes: Callable[[], int]) -> None:
        self._retransmitMult = retransmitMult
        self._numNodes = numNodes
        self._byNode: dict[str, _Queued] = {}
        self._ident = 0

    def __len__(self) -> int:
        return len(self._byNode)

    def queue(
        self,
        node: str,
        message: PacketMessage,
        size: int,
        onFinished: Callable[[], None] | None = None,
        boost: int = 1,
    ) -> None:
        """
        Queue C{message} about C{node}, invalidating older news about it.

        @param size: the encoded size of C{message} in bytes.
        @param boost: send it this many times as often as usual.
        @param onFinished: called once the message was sent as many times as
            it ever will be, or was replaced.
        """
        old = self._byNode.pop(node, None)
        if old is not None:
            _finish(old)
        self._ident += 1
        self._byNode[node] = _Queued(
            node, message, size, self._ident, 0, onFinished, boost
        )

    def pending(self, node: str) -> PacketMessage | None:
        """
        The message queued about C{node}, if any.
        """
        item = self._byNode.get(node)
        return None if item is None else item.message

    def transmits(self, node: str) -> int | None:
        """
        How many times the message about C{node} was handed out so far.
        """
        item = self._byNode.get(node)
        return None if item is None else item.transmits

    def take(self, overhead: int, limit: int) -> list[PacketMessage]:
        """
        Hand out the most-needed messages that fit in C{limit} bytes, each
        costing C{overhead} bytes on top of its size, and count the transmit.
        """
        if not self._byNode:
            return []
        transmitLimit = retransmitLimit(self._retransmitMult, self._numNodes())
        used = 0
        chosen: list[PacketMessage] = []
        for item in sorted(self._byNode.values(), key=_Queued.sortKey):
            free = limit - used - overhead
            if free <= 0:
                break
            if item.size > free:
                continue
            used += overhead + item.size
            chosen.append(item.message)
            item.transmits += 1
            if item.transmits >= transmitLimit * item.boost:
                del self._byNode[item.node]
                _finish(item)
        return chosen

    def reset(self) -> None:
        """
        Forget every queued message.
        """
        items = list(self._byNode.values())
        self._byNode.clear()
        for item in items:
            _finish(item)


def _finish(item: _Queued) -> None:
    callback, item.onFinished = item.onFinished, None
    if callback is not None:
        callback()
