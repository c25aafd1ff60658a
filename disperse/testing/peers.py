"""
An in-memory network between replicas, on one clock: node-to-node calls
take a configurable latency and fail when a node is down or cut off, as the
HTTP peer client does, so whole clusters can be tested deterministically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IReactorTime

from disperse.cluster.replica import Replica
from disperse.store import Record
from disperse.store.merkle import Digests
from disperse.testing.damage import flipped

T = TypeVar("T")


class MemoryPeerNetwork:
    """
    Replicas by name, and which of them can reach which.

    @ivar down: names of nodes that refuse every call (a crashed process).
    @ivar silent: names of nodes that never answer (a paused process); calls
        to them fail after C{timeout}.
    @ivar cut: C{(source, target)} pairs that cannot talk (a partition).
    @ivar damaging: C{(sender, receiver)} pairs over which every record
        arrives damaged, a byte of its value flipped
        (L{disperse.testing.damage.flipped}): records a node sends in a
        write or repair, or answers a read or range with.
    @ivar calls: how many calls each C{(source, target)} made.
    """

    def __init__(
        self, clock: IReactorTime, latency: float = 0.001, timeout: float = 1.0
    ) -> None:
        self.clock = clock
        self.latency = latency
        self.timeout = timeout
        self.nodes: dict[str, Replica] = {}
        self.down: set[str] = set()
        self.silent: set[str] = set()
        self.cut: set[tuple[str, str]] = set()
        self.damaging: set[tuple[str, str]] = set()
        self.calls: dict[tuple[str, str], int] = {}

    def client(self, source: str) -> MemoryPeerClient:
        return MemoryPeerClient(self, source)

    def partition(self, side: set[str], other: set[str]) -> None:
        for a in side:
            for b in other:
                self.cut.update({(a, b), (b, a)})

    def heal(self) -> None:
        self.cut.clear()

    def carry(self, sender: str, receiver: str, blob: bytes) -> bytes:
        """
        Encoded record C{blob} as C{receiver} gets it from C{sender}.
        """
        return flipped(blob) if (sender, receiver) in self.damaging else blob

    def call(
        self, source: str, target: str, work: Callable[[Replica], T]
    ) -> Deferred[T]:
        self.calls[source, target] = self.calls.get((source, target), 0) + 1
        result: Deferred[T] = Deferred()

        def arrive() -> None:
            node = self.nodes.get(target)
            if node is None or target in self.down or (source, target) in self.cut:
                result.errback(ConnectionRefusedError(target))
            elif target in self.silent:
                self.clock.callLater(
                    self.timeout - self.latency,
                    result.errback,
                    TimeoutError(f"{target} did not answer"),
                )
            else:
                # An error the target answers with (as the HTTP API answers
                # a refused call with an error status) fails the call.
                try:
                    answer = work(node)
                except Exception as e:
                    self.clock.callLater(self.latency, result.errback, e)
                else:
                    self.clock.callLater(self.latency, result.callback, answer)

        self.clock.callLater(self.latency, arrive)
        return result


class MemoryPeerClient:
    """
    One node's view of the network: a
    L{disperse.cluster.clients.RepairClient}. Records are encoded and
    decoded on the way, as on the wire.
    """

    def __init__(self, network: MemoryPeerNetwork, source: str) -> None:
        self._network = network
        self._source = source

    def apply(
        self, member: str, records: Sequence[tuple[str, Record]]
    ) -> Deferred[Any]:
        copies = self._copies(member, records)
        return self._network.call(
            self._source,
            member,
            lambda node: node.applyLocal(copies, sender=self._source),
        )

    def _copies(
        self, member: str, records: Sequence[tuple[str, Record]]
    ) -> list[tuple[str, bytes]]:
        carry = self._network.carry
        return [
            (key, carry(self._source, member, record.encode()))
            for key, record in records
        ]

    def _decode(self, member: str, blob: bytes) -> Record:
        return Record.decode(self._network.carry(member, self._source, blob))

    def fetch(self, member: str, keys: Sequence[str]) -> Deferred[list[Record | None]]:
        wanted = list(keys)
        return self._network.call(
            self._source,
            member,
            lambda node: [
                None if blob is None else self._decode(member, blob)
                for blob in node.fetchLocal(wanted)
            ],
        )

    def roots(self, member: str, partitions: Sequence[int]) -> Deferred[list[bytes]]:
        wanted = list(partitions)
        return self._network.call(
            self._source, member, lambda node: node.rootsLocal(wanted)
        )

    def counts(
        self, member: str, partitions: Sequence[int]
    ) -> Deferred[list[int | None]]:
        wanted = list(partitions)
        return self._network.call(
            self._source, member, lambda node: node.countsLocal(wanted)
        )

    def digests(
        self, member: str, partition: int, level: int, nodes: Sequence[int]
    ) -> Deferred[Digests]:
        wanted = list(nodes)
        return self._network.call(
            self._source,
            member,
            lambda node: node.digestsLocal(partition, level, wanted),
        )

    def range(
        self, member: str, partition: int, leaves: Sequence[int]
    ) -> Deferred[list[tuple[str, Record]]]:
        wanted = list(leaves)
        return self._network.call(
            self._source,
            member,
            lambda node: [
                (key, self._decode(member, record.encode()))
                for key, record in node.rangeLocal(partition, wanted)
            ],
        )

    def repair(
        self, member: str, records: Sequence[tuple[str, Record]]
    ) -> Deferred[Any]:
        copies = self._copies(member, records)
        return self._network.call(
            self._source,
            member,
            lambda node: node.applyLocal(copies, evict=False, sender=self._source),
        )


class RefusingPeers:
    """
    A L{disperse.cluster.clients.RepairClient} that reaches no one: every
    call fails as a connection refused (a node with no other members).
    """

    def apply(
        self, member: str, records: Sequence[tuple[str, Record]]
    ) -> Deferred[Any]:
        return fail(ConnectionRefusedError(member))

    def fetch(self, member: str, keys: Sequence[str]) -> Deferred[list[Record | None]]:
        return fail(ConnectionRefusedError(member))

    def roots(self, member: str, partitions: Sequence[int]) -> Deferred[list[bytes]]:
        return fail(ConnectionRefusedError(member))

    def counts(
        self, member: str, partitions: Sequence[int]
    ) -> Deferred[list[int | None]]:
        return fail(ConnectionRefusedError(member))

    def digests(
        self, member: str, partition: int, level: int, nodes: Sequence[int]
    ) -> Deferred[Digests]:
        return fail(ConnectionRefusedError(member))

    def range(
        self, member: str, partition: int, leaves: Sequence[int]
    ) -> Deferred[list[tuple[str, Record]]]:
        return fail(ConnectionRefusedError(member))

    def repair(
        self, member: str, records: Sequence[tuple[str, Record]]
    ) -> Deferred[Any]:
        return fail(ConnectionRefusedError(member))
