"""
What the parts of a node ask of the node-to-node client: writing and
reading the replicas of a key (L{PeerClient}: coordinators, hand-off) and
comparing and repairing partitions (L{RepairClient}: anti-entropy).

The client used in production speaks signed HTTP
(L{disperse.cluster.peer.client}); tests use an in-memory network
(L{disperse.testing.peers}). Every call fails (rather than hangs) once its
deadline has passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from disperse.store import Record
from disperse.store.merkle import Digests


class PeerClient(Protocol):
    """
    How a coordinator reaches the other replicas.
    """

    def apply(
        self, member: str, records: Sequence[tuple[str, Record]]
    ) -> Deferred[Any]:
        """
        Have C{member} merge C{records}; fires once it has.
        """

    def fetch(self, member: str, keys: Sequence[str]) -> Deferred[list[Record | None]]:
        """
        C{member}'s current record of each key (tombstones included).
        """


class RepairClient(PeerClient, Protocol):
    """
    A L{PeerClient} that also carries anti-entropy exchanges.
    """

    def roots(self, member: str, partitions: Sequence[int]) -> Deferred[list[bytes]]:
        """
        C{member}'s Merkle root of each of C{partitions}.
        """

    def digests(
        self, member: str, partition: int, level: int, nodes: Sequence[int]
    ) -> Deferred[Digests]:
        """
        C{member}'s Merkle digests of C{nodes} of C{level} of C{partition}'s
        tree (level 0 is the root).
        """

    def range(
        self, member: str, partition: int, leaves: Sequence[int]
    ) -> Deferred[list[tuple[str, Record]]]:
        """
        C{member}'s unexpired records (tombstones included) of C{leaves} of
        C{partition}'s tree.
        """

    def repair(
        self, member: str, records: Sequence[tuple[str, Record]]
    ) -> Deferred[Any]:
        """
        Have C{member} merge C{records} as a repair: like L{apply}, but a
        key it has no entry for is taken only if that evicts nothing.
        """
