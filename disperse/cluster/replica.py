"""
This node as a replica: what it does for the coordinators and the
anti-entropy of other nodes.

A replica merges the records coordinators send it (L{Replica.applyLocal}),
answers their reads (L{Replica.fetchLocal}) and serves anti-entropy
exchanges: a partition's Merkle roots and digests, and the records of some
of its leaves; and the key counts of partitions (L{Replica.countsLocal}).
A partition it has just come to hold is not read from here until it caught
up with the replicas that held it before (L{Replica.holdReads}): its reads
answer L{NotCaughtUp}, and the asker reads another replica.

Time comes from the injected clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from disperse.cluster.peer.server import DamagedRecords, NotCaughtUp
from disperse.logs import logger
from disperse.store import Record, Store
from disperse.store.integrity import reportDamaged
from disperse.store.merkle import Digests
from disperse.store.partition import PARTITION_COUNT, partitionOf
from disperse.store.record import intact

# A partition this node newly holds is not read from here until it caught
# up with the replicas that held it before, or for at most this long: a
# source that never answers must not keep a replica out of reads forever.
MAX_READ_HOLD = 60.0

# A range answer carries at most this many records and about this many
# bytes (the protocol's batch limit, and well under the peer API's body
# limit); the asker sees a partial answer as a difference left for the next
# exchange.
RANGE_MAX_RECORDS = 10_000
RANGE_MAX_BYTES = 16 * 1024 * 1024


@dataclass
class ReplicaCounters:
    # Records merged here that changed this replica.
    applied: int = 0


class Replica:
    """
    The local replica of one node, over its store.

    @ivar store: the store holding this replica's records.
    @ivar held: partitions not read from here yet, with when the hold ends;
        changed in place only, so that a holder of a reference sees it
        current.
    """

    log = logger()

    def __init__(self, *, store: Store, clock: IReactorTime) -> None:
        self.store = store
        self._clock = clock
        self.counters = ReplicaCounters()
        self.held: dict[int, float] = {}
        # Whether this node's data directory is still loading: every
        # partition is held until it ends.
        self.loading = False
        # With --fsync always, what to wait on before a write applied here
        # is acknowledged (disperse.persist.log.Log.whenSynced).
        self.whenSynced: Callable[[], Deferred[None] | None] = _nothing
        # Whether whenSynced ever waits: a write is then acknowledged here
        # only later, never at once.
        self.waitsForSync = False
        # Raises while this node cannot write to its data directory
        # (disperse.persist.log.DiskUnavailable): records are refused.
        self.checkWritable: Callable[[], None] = _nothing

    # Serving coordinators

    def applyLocal(
        self,
        records: Iterable[tuple[str, bytes]],
        evict: bool = True,
        sender: str = "a peer",
    ) -> list[bool]:
        """
        Merge records another node sent, encoded as on the wire
        (L{Record.encode}); whether each changed this replica. Each is
        checked against its content hash first: a damaged one is not
        merged (counted and logged), and once the others are merged the
        call fails, so that the sender does not count it acknowledged and
        sends it again (a coordinator's hint, the next repair).

        @param evict: C{False} for a repair: a key with no entry here is
            taken only if that evicts nothing (L{Store.merge}).
        @param sender: who sent them, for the log: a member's name or its
            address.
        @raise ValueError: for a blob too short to be a record.
        @raise DamagedRecords: if some record was damaged (the others were
            merged).
        """
        self.checkWritable()
        merge = self.store.mergeEncoded
        applied = []
        damaged = 0
        for key, blob in records:
            if intact(blob):
                applied.append(merge(key, blob, evict))
            else:
                reportDamaged(self.store.integrity, "peer", key, "apply", sender)
                damaged += 1
        self.counters.applied += sum(applied)
        if damaged:
            raise DamagedRecords(damaged)
        return applied

    def fetchLocal(self, keys: Iterable[str]) -> list[bytes | None]:
        """
        This replica's records of C{keys}, encoded as on the wire.

        @raise NotCaughtUp: if a key's partition is still being caught up
            on here; the asker reads another replica.
        """
        if self.held:
            keys = list(keys)
            for key in keys:
                if self.holding(partitionOf(key)):
                    raise NotCaughtUp(key)
        # Expired records too: the asker must see that a newer version
        # existed, or an older one elsewhere would read as current.
        encoded = self.store.encoded
        return [encoded(key) for key in keys]

    # Catching up

    def holdReads(self, partitions: Iterable[int]) -> None:
        """
        Serve no reads of C{partitions} from this replica until
        L{releaseReads}, or L{MAX_READ_HOLD} seconds.
        """
        until = self._clock.seconds() + MAX_READ_HOLD
        for partition in partitions:
            self.held.setdefault(partition, until)

    def releaseReads(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            if self.held.get(partition) != math.inf:
                self.held.pop(partition, None)

    def beginLoading(self) -> None:
        """
        Serve no reads from this replica until L{endLoading}: its data
        directory is loading, and what it holds is not all it has.
        """
        self.loading = True
        for partition in range(PARTITION_COUNT):
            self.held[partition] = math.inf

    def endLoading(self) -> None:
        self.loading = False
        for partition, until in list(self.held.items()):
            if until == math.inf:
                del self.held[partition]

    def heldPartitions(self) -> frozenset[int]:
        """
        The partitions this replica is not read for now.
        """
        return frozenset(p for p in list(self.held) if self.holding(p))

    def holding(self, partition: int) -> bool:
        """
        Whether reads of C{partition} are still held here.
        """
        until = self.held.get(partition)
        if until is None:
            return False
        if self._clock.seconds() < until:
            return True
        del self.held[partition]
        self.log.warn(
            "serving reads of partition {partition} before it caught up: no"
            " answer from its other replicas in {seconds} s",
            partition=partition,
            seconds=MAX_READ_HOLD,
        )
        return False

    # Serving anti-entropy

    def rootsLocal(self, partitions: Iterable[int]) -> list[bytes]:
        """
        This replica's Merkle root of each of C{partitions}.

        @raise ValueError: for a partition outside the table.
        """
        roots = []
        for partition in partitions:
            _checkPartition(partition)
            roots.append(self.store.partitionRoot(partition))
        return roots

    def countsLocal(self, partitions: Iterable[int]) -> list[int | None]:
        """
        How many keys this replica holds of each of C{partitions}
        (L{Store.partitionKeys}), or L{None} for one whose reads are held
        here: a copy still catching up would count short, so the asker
        counts another owner's.

        @raise ValueError: for a partition outside the table.
        """
        counts: list[int | None] = []
        for partition in partitions:
            _checkPartition(partition)
            if self.held and self.holding(partition):
                counts.append(None)
            else:
                counts.append(self.store.partitionKeys(partition))
        return counts

    def digestsLocal(self, partition: int, level: int, nodes: Iterable[int]) -> Digests:
        """
        This replica's digests of C{nodes} of C{level} of C{partition}'s
        Merkle tree.

        @raise ValueError: for a partition, level or node outside the tree
            (the request came from the network).
        """
        _checkPartition(partition)
        return self.store.partitionTree(partition).digests(level, nodes)

    def rangeLocal(
        self, partition: int, leaves: Iterable[int]
    ) -> list[tuple[str, Record]]:
        """
        This replica's unexpired records of C{leaves} of C{partition}'s
        tree, up to L{RANGE_MAX_RECORDS} and about L{RANGE_MAX_BYTES}.

        @raise ValueError: for a partition or leaf outside the tree.
        """
        _checkPartition(partition)
        records = self.store.partitionRecords(partition, leaves)
        size = 0
        for count, (key, record) in enumerate(records):
            size += len(key) + len(record.value)
            if count >= RANGE_MAX_RECORDS or size > RANGE_MAX_BYTES:
                return records[: max(count, 1)]
        return records


def _nothing() -> None:
    return None


def _checkPartition(partition: int) -> None:
    if not 0 <= partition < PARTITION_COUNT:
        raise ValueError(f"partition {partition} outside 0..{PARTITION_COUNT - 1}")
