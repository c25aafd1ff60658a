"""
What the parts of a node ask of the node-to-node client: writing and
reading the replicas of a key (L{PeerClient}: coordinators, hand-off), and
comparing, repairing, listing and counting partitions (L{RepairClient}:
anti-entropy, and the operations over the whole keyspace).

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
    A L{PeerClient} that also carries anti-entropy exchanges, and the calls
    of the operations over the whole keyspace (L{roots} and L{range} list
    partitions, L{counts} counts their keys).
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

    def counts(
        self, member: str, partitions: Sequence[int]
    ) -> Deferred[list[int | None]]:
        """
        How many keys C{member}'s replica holds of each of C{partitions}
        (expired ones not dropped yet included, as a store counts them), or
        L{None} for one it is still catching up on. Fails on a member too
        old to know the call.
        """

    def repair(
        self, member: str, records: Sequence[tuple[str, Record]]
    ) -> Deferred[Any]:
        """
        Have C{member} merge C{records} as a repair: like L{apply}, but a
        key it has no entry for is taken only if that evicts nothing.
        """
