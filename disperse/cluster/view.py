"""
This node's view of the cluster: which members hold data, and the
partition table built over them.

The view owns the table and everything about how it changes: the members
that hold data (asked of the member directory, L{disperse.cluster.members},
once a burst of membership changes is over), the tables used before the
current one and the settle window after a change, the members that
vanished without leaving and the majority rule they feed, and the
listeners told of every new table. Coordinating requests
(L{disperse.cluster.coordinator}), serving them
(L{disperse.cluster.replica}) and repairing replicas
(L{disperse.cluster.antientropy}) read the table from here.

Time comes from the injected clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from disperse.cluster.members import MemberChange, MemberWatcher
from disperse.cluster.placement import MemberSpec, PartitionTable, Replicas
from disperse.gossip.swim import Member
from disperse.logs import logger

# For this long after its partition table changes, a node coordinating a
# read or a write, at any level, sends it to every replica of its table and
# to the members that were replicas in the tables it used before (those
# still members), and waits for all of them (up to the timeout) instead of
# the first that meet the level. Views of the membership differ for a
# moment after a heal, a death or a join, and a node that has not heard of
# the change yet still reads and writes by the old table: "one" there is a
# replica this node would otherwise skip. Reaching every replica of both
# tables, this node's operations share a replica with any operation made
# by either table, whatever the levels.
SETTLE_WINDOW = 5.0

# A member that vanished from the membership without leaving (declared
# dead, or cut off from here) still counts towards the size of the cluster
# for this long by default (--forget-departed): a node on the minority side
# of a partition must not take its handful of reachable members for the
# whole cluster. After this long a member that never came back is taken for
# gone for good.
FORGET_DEPARTED = 600.0

# How long placement waits after a membership change for others to follow.
PLACEMENT_DELAY = 0.5

TableListener = Callable[[PartitionTable, PartitionTable], object]


class NoMajority(Exception):
    """
    This node reaches too few of the members it knows of to coordinate at
    quorum or all: it may be on the minority side of a partition, where its
    own partition table names replicas the rest of the cluster does not.

    @ivar reachable: the members this node's table holds, itself included.
    @ivar known: those plus the members that vanished without leaving.
    """

    def __init__(self, reachable: int, known: int) -> None:
        super().__init__(f"reaches {reachable} of {known} known members")
        self.reachable = reachable
        self.known = known


class MemberSource(Protocol):
    """
    Where the view learns of membership changes, and which live members
    hold data.
    """

    def watch(self, watcher: MemberWatcher) -> None:
        """
        Tell C{watcher} of every membership change from now on.
        """

    def dataHolders(self) -> Iterable[MemberSpec]:
        """
        The live members that hold data (those that run Disperse: plain
        memberlist peers in the cluster hold none).
        """


class ClusterView:
    """
    The partition table of one node and how it follows the membership.

    @ivar table: the current partition table.
    @ivar tableVersion: how many tables this node has built since it
        started, the first included: 1 + the changes it has seen (the
        Redis front end reports it as the cluster's epoch).
    @ivar members: the members it was built over (this node always among
        them).
    @ivar names: their names.
    @ivar ringOrder: their names, sorted: the ring reads follow.
    @ivar settledAt: when the settle window after the last change ends.
    @ivar departed: members that dropped out of the table without leaving,
        with when they did; changed in place only, so that a holder of a
        reference sees it current.
    """

    log = logger()

    def __init__(
        self,
        *,
        nodeName: str,
        clock: IReactorTime,
        source: MemberSource,
        replicas: Replicas = 3,
        forgetDeparted: float = FORGET_DEPARTED,
        placementDelay: float = PLACEMENT_DELAY,
    ) -> None:
        self.nodeName = nodeName
        self._clock = clock
        self._source = source
        self._replicas: Replicas = replicas
        self._forgetDeparted = forgetDeparted
        self._placementDelay = placementDelay
        self.members: frozenset[MemberSpec] = frozenset({MemberSpec(nodeName)})
        self.table = PartitionTable.build(self.members, replicas)
        self.tableVersion = 1
        self.names = frozenset((nodeName,))
        self.ringOrder = [nodeName]
        self.settledAt = 0.0
        # The tables this node used before its current one, replaced less
        # than SETTLE_WINDOW before the last change, with when: views other
        # members may still hold.
        self._earlier: list[tuple[float, PartitionTable]] = []
        self.departed: dict[str, float] = {}
        # Members known to have left on purpose.
        self._left: set[str] = set()
        self._listeners: list[TableListener] = []
        self._placementCall: IDelayedCall | None = None
        source.watch(self)

    # Following the membership

    def memberChanged(self, change: MemberChange, member: Member) -> None:
        if change == "left":
            # Gone on purpose: the cluster is smaller now, not cut in two.
            # It handed its partitions off and stopped serving: every
            # request routed to it from now on fails, so its successors
            # take over at once. Leaves are deliberate and one at a time;
            # no burst to wait for.
            self.memberLeft(member.name)
            self.placeNow()
        else:
            self.placeSoon()

    def clusterJoined(self) -> None:
        """
        Membership joined the cluster (or found it is the first member):
        place partitions over the members known now.
        """
        self.placeNow(joined=True)

    def placeSoon(self) -> None:
        """
        A member joined, changed or failed: rebuild the table once the
        burst of changes it belongs to is over.
        """
        # Membership changes come in bursts (a cluster booting, a partition
        # healing); building the partition table takes tens of milliseconds
        # at a few dozen members, so one build follows each burst.
        if self._placementCall is None:
            self._placementCall = self._clock.callLater(
                self._placementDelay, self._place
            )

    def placeNow(self, joined: bool = False) -> None:
        """
        Rebuild the table over the members that hold data now.

        @param joined: this node has just joined a cluster through its
            seeds (see L{updateMembers}).
        """
        self.stop()
        self._place(joined)

    def stop(self) -> None:
        """
        Drop a rebuild waiting for its burst to end.
        """
        if self._placementCall is not None and self._placementCall.active():
            self._placementCall.cancel()
        self._placementCall = None

    def _place(self, joined: bool = False) -> None:
        self._placementCall = None
        self.updateMembers(self._source.dataHolders(), joined)

    def updateMembers(
        self, members: Iterable[MemberSpec], joined: bool = False
    ) -> None:
        """
        The members that hold data changed: rebuild the partition table.
        This node is always a member of its own view.

        @param joined: this node has just joined a cluster through its
            seeds, and C{members} are those it found there.
        """
        members = list(members)
        specs = {m for m in members if m.name != self.nodeName}
        mine = next(
            (m for m in members if m.name == self.nodeName), MemberSpec(self.nodeName)
        )
        specs.add(mine)
        frozen = frozenset(specs)
        if frozen == self.members:
            return
        now = self._clock.seconds()
        names = {m.name for m in frozen}
        for gone in self.names - names:
            if gone not in self._left:
                self.departed[gone] = now
        for name in names:
            self.departed.pop(name, None)
            self._left.discard(name)
        self.members = frozen
        old = self.table
        self.table = PartitionTable.build(frozen, self._replicas)
        self.tableVersion += 1
        self._earlier = [(t, e) for t, e in self._earlier if t + SETTLE_WINDOW > now]
        if len(old.members) > 1:
            self._earlier.append((now, old))
        elif joined and len(frozen) > 1:
            # This node just joined: the others place keys over the members
            # they knew before it until they hear of it.
            self._earlier.append(
                (now, PartitionTable.build(frozen - {mine}, self._replicas))
            )
        self.ringOrder = sorted(names)
        self.names = frozenset(names)
        self.settledAt = now + SETTLE_WINDOW
        self.log.info(
            "partition table rebuilt for {count} members ({digest})",
            count=len(frozen),
            digest=self.table.digest(),
        )
        for listener in list(self._listeners):
            try:
                listener(old, self.table)
            except Exception:
                self.log.failure("partition table listener failed")

    def memberLeft(self, name: str) -> None:
        """
        C{name} left the cluster on purpose: the cluster shrank, so it no
        longer counts towards its size.
        """
        self.departed.pop(name, None)
        if name != self.nodeName:
            self._left.add(name)

    # Reading the view

    def owners(self, key: str) -> tuple[str, ...]:
        return self.table.ownersOf(key) or (self.nodeName,)

    def settling(self) -> bool:
        """
        Whether the table changed less than L{SETTLE_WINDOW} ago.
        """
        return self._clock.seconds() < self.settledAt

    def earlierOwners(self, partition: int, owners: Sequence[str]) -> list[str]:
        """
        The members that own C{partition} in a table this node used lately
        and are still members, but are not among C{owners}.
        """
        extras: list[str] = []
        names = self.names
        for _, table in self._earlier:
            for member in table.owners(partition):
                if member not in owners and member not in extras and member in names:
                    extras.append(member)
        return extras

    # The majority rule

    def knownMembers(self) -> int:
        """
        How many members the cluster has as far as this node can tell: those
        of its table and those that vanished without leaving, less than
        the C{forgetDeparted} horizon ago.
        """
        if self.departed:
            horizon = self._clock.seconds() - self._forgetDeparted
            for name, when in list(self.departed.items()):
                if when <= horizon:
                    del self.departed[name]
        return len(self.members) + len(self.departed)

    def checkMajority(self) -> None:
        """
        @raise NoMajority: when the members of this node's table are no
            majority of those it knows of.
        """
        # Quorum and all promise that a read sees an acknowledged write. A
        # node that reaches only a minority of the cluster builds its table
        # from that minority, so its "majority of the replicas" may share
        # no replica with the rest of the cluster's: it must refuse rather
        # than acknowledge.
        if not self.departed:
            return
        known = self.knownMembers()
        if len(self.members) * 2 <= known:
            raise NoMajority(len(self.members), known)

    # Listeners

    def addTableListener(self, listener: TableListener) -> None:
        """
        Call C{listener(old, new)} after every rebuild of the partition
        table.
        """
        self._listeners.append(listener)

    def removeTableListener(self, listener: TableListener) -> None:
        self._listeners.remove(listener)
