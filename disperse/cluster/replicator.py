"""
Coordinating reads and writes across the replicas of a key.

Any node accepts any request and coordinates it: a write is stamped here
(hybrid logical clock, this node's id, absolute expiry) and sent to every
replica the partition table names; it succeeds once the consistency level's
number of replicas acknowledged. A read asks as many replicas as the level
needs (more if some fail), returns the newest record, and repairs replicas
that answered with something older. Replicas that miss a write get it later
through hinted handoff, and whatever both miss is found by anti-entropy
(L{disperse.cluster.antientropy}), which this module serves: a partition's
Merkle digests (L{Replicator.digestsLocal}) and the records of some of its
leaves (L{Replicator.rangeLocal}).

Talking to other nodes goes through a L{PeerClient}; the one used in
production speaks signed HTTP (L{disperse.cluster.peers}), tests use an
in-memory network. Time comes from the injected clock.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from disperse.cluster.hints import HintStore
from disperse.cluster.merkle import Digests
from disperse.cluster.placement import (
    PARTITION_COUNT,
    MemberSpec,
    PartitionTable,
    Replicas,
    partitionOf,
)
from disperse.logs import logger
from disperse.store import Record, Store

# How often hints are offered to replicas that are back, and how many at once.
HINT_INTERVAL = 1.0
HINT_BATCH = 500

# A range answer carries at most this many records and about this many
# bytes (the protocol's batch limit, and well under the peer API's body
# limit); the asker sees a partial answer as a difference left for the next
# exchange.
RANGE_MAX_RECORDS = 10_000
RANGE_MAX_BYTES = 16 * 1024 * 1024

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

# A partition this node newly holds is not read from here until it caught
# up with the replicas that held it before, or for at most this long: a
# source that never answers must not keep a replica out of reads forever.
MAX_READ_HOLD = 60.0

# A member that vanished from the membership without leaving (declared
# dead, or cut off from here) still counts towards the size of the cluster
# for this long by default (--forget-departed): a node on the minority side
# of a partition must not take its handful of reachable members for the
# whole cluster. After this long a member that never came back is taken for
# gone for good.
FORGET_DEPARTED = 600.0

# A read asks as few replicas as its level needs. One that has not answered
# after this long (a paused or hung process, a link dropping packets: none
# of which fails a call before the timeout) costs the read one more replica
# asked, rather than the whole timeout and a 503; and reads from this node
# ask it last for a while (SLOW_FOR). Well above a loaded replica's answer
# time, so that load alone rarely adds calls.
READ_RETRY_AFTER = 0.1
SLOW_FOR = 1.0
# Retries are budgeted: each read earns a tenth of one, up to a burst of a
# hundred (every read in flight to a replica that hangs needs one). When
# every replica is slow (an overloaded cluster), asking more of
# them would only add load: at most a tenth more calls.
RETRY_BUDGET = 0.1
RETRY_BURST = 100.0


class NotCaughtUp(Exception):
    """
    This replica is still catching up on the partition of a key asked for;
    the asker should read another replica.
    """


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


class Consistency(enum.Enum):
    """
    How many replicas must answer: one, a majority, or all of them.
    """

    one = "one"
    quorum = "quorum"
    all = "all"

    def required(self, replicas: int) -> int:
        if self is Consistency.one:
            return min(1, replicas)
        if self is Consistency.quorum:
            return replicas // 2 + 1
        return replicas


class PeerClient(Protocol):
    """
    How a coordinator reaches the other replicas. Every call fails (rather
    than hangs) once its deadline has passed.
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


@dataclass(frozen=True)
class WriteOutcome:
    """
    How a write went: C{acks} replicas of C{replicas} hold it.
    """

    acks: int
    required: int
    replicas: int

    @property
    def ok(self) -> bool:
        return self.acks >= self.required


@dataclass(frozen=True)
class ReadOutcome:
    """
    How a read went: the newest of the records C{answered} replicas gave.
    """

    record: Record | None
    answered: int
    required: int
    replicas: int

    @property
    def ok(self) -> bool:
        return self.answered >= self.required

    @property
    def value(self) -> Record | None:
        """
        The live value read, if any (a tombstone reads as nothing).
        """
        record = self.record
        return None if record is None or record.tombstone else record


@dataclass
class ReplicationCounters:
    writes: int = 0
    writesUnderReplicated: int = 0
    reads: int = 0
    readsUnderReplicated: int = 0
    readRepairs: int = 0
    applied: int = 0
    remoteFailures: int = 0
    # Write acknowledgements from other replicas.
    acks: int = 0
    # Quorum and all requests refused for want of a majority of the cluster.
    noMajority: int = 0
    # Reads that asked one more replica because one was slow to answer, and
    # those that would have but for the budget.
    readRetries: int = 0
    readRetriesSkipped: int = 0


class _WriteRun:
    """
    One write waiting for acknowledgements.
    """

    def __init__(
        self, replicator: Replicator, outcome: WriteOutcome, remote: int
    ) -> None:
        self.replicator = replicator
        self.acks = outcome.acks
        self.required = outcome.required
        self.replicas = outcome.replicas
        self.pending = remote
        self.waitAll = False
        self.done: Deferred[WriteOutcome] = Deferred()

    def answered(self, acked: bool) -> None:
        self.pending -= 1
        self.acks += int(acked)
        self.replicator.counters.acks += int(acked)
        if (self.acks >= self.required and not self.waitAll) or not self.pending:
            self.finish()

    def heard(self, _: object = None) -> None:
        """
        A replica of an earlier table (not of this node's) answered, or
        failed: waited for, but no acknowledgement of the level.
        """
        self.pending -= 1
        if not self.pending:
            self.finish()

    def finish(self) -> None:
        if self.done.called:
            return
        outcome = WriteOutcome(self.acks, self.required, self.replicas)
        if not outcome.ok:
            self.replicator.counters.writesUnderReplicated += 1
        self.done.callback(outcome)


class _ReadRun:
    """
    One read gathering answers, asking further replicas when one fails.
    """

    def __init__(
        self,
        replicator: Replicator,
        key: str,
        required: int,
        replicas: int,
        candidates: list[str],
        extras: Sequence[str] = (),
    ) -> None:
        self.replicator = replicator
        self.key = key
        self.required = required
        self.replicas = replicas
        self.candidates = candidates
        # Replicas of earlier tables only: their records count towards the
        # newest, not towards the level.
        self.extras = extras
        self.answers: dict[str, Record | None] = {}
        # Members asked that have not answered, nor failed, yet.
        self.waiting: list[str] = []
        self.waitAll = False
        self.done: Deferred[ReadOutcome] = Deferred()

    def ask(self, count: int) -> None:
        # A fetch that fails at once asks again from inside this loop, so
        # the candidates left are checked on every turn.
        for _ in range(count):
            if not self.candidates or self.done.called:
                return
            member = self.candidates.pop(0)
            self.waiting.append(member)
            self.replicator.peers.fetch(member, [self.key]).addCallbacks(
                self.answered,
                self.failed,
                callbackArgs=(member,),
                errbackArgs=(member,),
            )

    def answered(self, records: list[Record | None], member: str) -> None:
        self.waiting.remove(member)
        slow = self.replicator._slow
        if slow:
            # It answers again: reads may ask it first again.
            slow.pop(member, None)
        self.answers[member] = records[0] if records else None
        if (len(self.answers) >= self.required and not self.waitAll) or not (
            self.waiting or self.candidates
        ):
            self.finish()

    def failed(self, failure: Failure, member: str) -> None:
        self.waiting.remove(member)
        self.replicator._remoteFailed("fetch", member, failure)
        if not self.done.called:
            self.ask(1)
            if not self.waiting:
                self.finish()

    def finish(self) -> None:
        if self.done.called:
            return
        self.done.callback(self.replicator._settleRead(self))


_Run = TypeVar("_Run", bound="_WriteRun | _ReadRun")


class _Deadlines(Generic[_Run]):
    """
    Runs that each wait the same C{delay}, kept in the order they started,
    with one timer for all of them rather than one each (which cost a
    twentieth of a quorum read): C{due(run)} is called for each run still
    going when its delay has passed.
    """

    def __init__(
        self, clock: IReactorTime, delay: float, due: Callable[[_Run], object]
    ) -> None:
        self._clock = clock
        self._delay = delay
        self._due = due
        self._runs: deque[tuple[float, _Run]] = deque()
        self._timer: IDelayedCall | None = None

    def add(self, run: _Run) -> None:
        self._runs.append((self._clock.seconds() + self._delay, run))
        if self._timer is None:
            self._timer = self._clock.callLater(self._delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._clock.seconds()
        runs = self._runs
        while runs:
            when, run = runs[0]
            if run.done.called:
                runs.popleft()
            elif when <= now:
                runs.popleft()
                self._due(run)
            else:
                # (A run handled above may have started another, and its
                # timer, which is later than this one.)
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = self._clock.callLater(when - now, self._fire)
                return


class Replicator:
    """
    The replication layer of one node.

    @ivar table: the current partition table.
    """

    log = logger()

    def __init__(
        self,
        *,
        nodeName: str,
        store: Store,
        clock: IReactorTime,
        peers: PeerClient,
        replicas: Replicas = 3,
        timeout: float = 1.0,
        hints: HintStore | None = None,
        forgetDeparted: float = FORGET_DEPARTED,
        readRetryAfter: float = READ_RETRY_AFTER,
    ) -> None:
        """
        @param timeout: how long a read or write waits for replicas.
        @param readRetryAfter: how long a read waits for a replica before it
            asks one more (see L{READ_RETRY_AFTER}); at least the timeout
            turns that off.
        """
        self.nodeName = nodeName
        self._store = store
        self._clock = clock
        self.peers = peers
        self._replicas: Replicas = replicas
        self._timeout = timeout
        self._forgetDeparted = forgetDeparted
        self.hints = hints if hints is not None else HintStore(64 * 1024 * 1024)
        self.counters = ReplicationCounters()
        self._members: frozenset[MemberSpec] = frozenset({MemberSpec(nodeName)})
        self.table = PartitionTable.build(self._members, replicas)
        self._hintLoop = LoopingCall(self._deliverHints)
        self._hintLoop.clock = clock
        self._tableListeners: list[
            Callable[[PartitionTable, PartitionTable], object]
        ] = []
        self._settledAt = 0.0
        # The tables this node used before its current one, replaced less
        # than SETTLE_WINDOW before the last change, with when: views other
        # members may still hold.
        self._earlier: list[tuple[float, PartitionTable]] = []
        # Partitions not read from here yet, with when the hold ends.
        self._held: dict[int, float] = {}
        # Member names in ring order, and each partition's other owners in
        # the order reads ask them (filled as partitions are read).
        self._ringOrder = [nodeName]
        self._names = frozenset((nodeName,))
        self._readOrder: dict[int, tuple[str, ...]] = {}
        # Members that dropped out of the table without leaving, with when
        # they did; and members known to have left on purpose.
        self._departed: dict[str, float] = {}
        self._left: set[str] = set()
        # Reads and writes waiting for replicas, finished with whatever
        # answered once the timeout has passed; reads that may ask one more
        # replica; and members that were slow to answer a read, with until
        # when reads ask them last.
        self._expiring: _Deadlines[_WriteRun | _ReadRun] = _Deadlines(
            clock, timeout, lambda run: run.finish()
        )
        self._readRetryAfter = readRetryAfter
        self._retrying: _Deadlines[_ReadRun] = _Deadlines(
            clock, readRetryAfter, self._retryRead
        )
        self._slow: dict[str, float] = {}
        self._retryTokens = RETRY_BURST

    # Life cycle and membership

    def start(self) -> None:
        self._hintLoop.start(HINT_INTERVAL, now=False).addErrback(
            lambda f: self.log.failure("hint delivery stopped", f)
        )

    def stop(self) -> None:
        if self._hintLoop.running:
            self._hintLoop.stop()

    def updateMembers(
        self, members: Iterable[MemberSpec], joined: bool = False
    ) -> None:
        """
        The members that hold data changed: rebuild the partition table.
        This node is always a member of its own view.

        @param joined: this node has just joined a cluster through its
            seeds, and C{members} are those it found there.
        """
        specs = {m for m in members if m.name != self.nodeName}
        mine = next(
            (m for m in members if m.name == self.nodeName), MemberSpec(self.nodeName)
        )
        specs.add(mine)
        frozen = frozenset(specs)
        if frozen == self._members:
            return
        now = self._clock.seconds()
        names = {m.name for m in frozen}
        for gone in {m.name for m in self._members} - names:
            if gone not in self._left:
                self._departed[gone] = now
        for name in names:
            self._departed.pop(name, None)
            self._left.discard(name)
        self._members = frozen
        old = self.table
        self.table = PartitionTable.build(frozen, self._replicas)
        self._earlier = [(t, e) for t, e in self._earlier if t + SETTLE_WINDOW > now]
        if len(old.members) > 1:
            self._earlier.append((now, old))
        elif joined and len(frozen) > 1:
            # This node just joined: the others place keys over the members
            # they knew before it until they hear of it.
            self._earlier.append(
                (now, PartitionTable.build(frozen - {mine}, self._replicas))
            )
        self._ringOrder = sorted(names)
        self._names = frozenset(names)
        self._readOrder = {}
        # A member gone from the table is never read from again, nor asked
        # to prove it answers.
        self._slow = {m: t for m, t in self._slow.items() if m in names}
        self._settledAt = now + SETTLE_WINDOW
        self.log.info(
            "partition table rebuilt for {count} members ({digest})",
            count=len(frozen),
            digest=self.table.digest(),
        )
        for listener in list(self._tableListeners):
            try:
                listener(old, self.table)
            except Exception:
                self.log.failure("partition table listener failed")

    def memberLeft(self, name: str) -> None:
        """
        C{name} left the cluster on purpose: the cluster shrank, so it no
        longer counts towards its size.
        """
        self._departed.pop(name, None)
        if name != self.nodeName:
            self._left.add(name)

    def knownMembers(self) -> int:
        """
        How many members the cluster has as far as this node can tell: those
        of its table and those that vanished without leaving, less than
        the C{forgetDeparted} horizon ago.
        """
        if self._departed:
            horizon = self._clock.seconds() - self._forgetDeparted
            for name, when in list(self._departed.items()):
                if when <= horizon:
                    del self._departed[name]
        return len(self._members) + len(self._departed)

    def _checkMajority(self, level: Consistency) -> None:
        # Quorum and all promise that a read sees an acknowledged write. A
        # node that reaches only a minority of the cluster builds its table
        # from that minority, so its "majority of the replicas" may share
        # no replica with the rest of the cluster's: it must refuse rather
        # than acknowledge. "one" promises nothing of the kind.
        if level is Consistency.one or not self._departed:
            return
        known = self.knownMembers()
        if len(self._members) * 2 <= known:
            self.counters.noMajority += 1
            raise NoMajority(len(self._members), known)

    def addTableListener(
        self, listener: Callable[[PartitionTable, PartitionTable], object]
    ) -> None:
        """
        Call C{listener(old, new)} after every rebuild of the partition
        table.
        """
        self._tableListeners.append(listener)

    def removeTableListener(
        self, listener: Callable[[PartitionTable, PartitionTable], object]
    ) -> None:
        self._tableListeners.remove(listener)

    def owners(self, key: str) -> tuple[str, ...]:
        return self.table.ownersOf(key) or (self.nodeName,)

    # Writes

    def write(
        self, key: str, record: Record, level: Consistency
    ) -> WriteOutcome | Deferred[WriteOutcome]:
        """
        Send C{record} to every replica of C{key}.

        @return: the outcome, at once when the local replica alone meets the
            level, else a L{Deferred} that fires when enough replicas
            answered, all answered, or the timeout passed.
        @raise NoMajority: at quorum or all, when this node reaches no
            majority of the cluster.
        """
        self._checkMajority(level)
        self.counters.writes += 1
        owners = self.owners(key)
        required = level.required(len(owners))
        acks = 0
        remote = []
        for owner in owners:
            if owner == self.nodeName:
                # A replica that already holds something newer has the
                # write's effect too: that counts as an acknowledgement.
                self._store.merge(key, record)
                acks += 1
            else:
                remote.append(owner)
        outcome = WriteOutcome(acks, required, len(owners))
        settling = self._settling()
        extras = self._earlierOwners(partitionOf(key), owners) if settling else []
        if self.nodeName in extras:
            extras.remove(self.nodeName)
            self._store.merge(key, record)
        if not remote and not extras:
            if not outcome.ok:
                self.counters.writesUnderReplicated += 1
            return outcome
        run = _WriteRun(self, outcome, len(remote) + len(extras))
        run.waitAll = settling
        for owner in remote:
            self.peers.apply(owner, [(key, record)]).addCallbacks(
                lambda _: run.answered(True),
                self._applyFailed,
                errbackArgs=(owner, key, record, run),
            )
        for member in extras:
            # No hint for one of these: once it has this node's table, the
            # replicas above are the ones it reads.
            self.peers.apply(member, [(key, record)]).addCallbacks(
                run.heard, self._earlierApplyFailed, errbackArgs=(member, run)
            )
        if outcome.ok and not run.waitAll:
            return outcome
        if not run.done.called:
            self._expiring.add(run)
        return run.done

    def _earlierApplyFailed(
        self, failure: Failure, member: str, run: _WriteRun
    ) -> None:
        self._remoteFailed("apply", member, failure)
        run.heard()

    def _applyFailed(
        self, failure: Failure, member: str, key: str, record: Record, run: _WriteRun
    ) -> None:
        self._remoteFailed("apply", member, failure)
        self.hints.add(member, key, record)
        run.answered(False)

    # Reads

    def read(self, key: str, level: Consistency) -> ReadOutcome | Deferred[ReadOutcome]:
        """
        The newest record of C{key} among as many replicas as C{level} needs.

        @return: the outcome, at once when the local replica alone meets the
            level, else a L{Deferred}.
        @raise NoMajority: at quorum or all, when this node reaches no
            majority of the cluster.
        """
        self._checkMajority(level)
        self.counters.reads += 1
        partition = partitionOf(key)
        owners = self.table.owners(partition) or (self.nodeName,)
        required = level.required(len(owners))
        order = self._readOrder.get(partition)
        if order is None:
            order = self._readOrder[partition] = self._preferred(owners)
        others = list(order)
        if self._slow:
            others = self._slowLast(others)
        local = len(others) < len(owners)
        if local and self._held and self._holding(partition):
            # Not a replica to read from until it caught up: the others
            # answer for it (and a write it missed is not read as absent).
            local = False
        settling = self._settling()
        if local and required <= 1 and not settling:
            return ReadOutcome(
                self._store.record(key, touch=True), 1, required, len(owners)
            )
        extras = self._earlierOwners(partition, owners) if settling else []
        run = _ReadRun(self, key, required, len(owners), others + extras, extras)
        run.waitAll = settling
        if local:
            run.answers[self.nodeName] = self._store.record(
                key, touch=True, expired=True
            )
        if self.nodeName in extras:
            run.candidates.remove(self.nodeName)
            run.answers[self.nodeName] = self._store.record(key, expired=True)
        run.ask(len(run.candidates) if settling else required - len(run.answers))
        if not run.waiting:
            run.finish()
        elif not run.done.called:
            self._expiring.add(run)
            if run.candidates and self._readRetryAfter < self._timeout:
                self._retrying.add(run)
        if self._retryTokens < RETRY_BURST:
            self._retryTokens += RETRY_BUDGET
        return run.done

    def _retryRead(self, run: _ReadRun) -> None:
        """
        Ask one more replica for C{run}, whose replicas have not all
        answered in time, and remember the slow ones.
        """
        if not run.waiting or not run.candidates:
            return
        if self._retryTokens < 1:
            self.counters.readRetriesSkipped += 1
            return
        self._retryTokens -= 1
        until = self._clock.seconds() + SLOW_FOR
        for member in run.waiting:
            if member not in self._slow:
                self.log.info(
                    "{member} did not answer a read within {seconds} s:"
                    " asking another replica, and it last for a while",
                    member=member,
                    seconds=self._readRetryAfter,
                )
            self._slow[member] = until
        self.counters.readRetries += 1
        run.ask(1)

    def _slowLast(self, others: list[str]) -> list[str]:
        """
        C{others} with the members that were slow to answer lately moved to
        the end, in their order. A member whose time as slow is up is asked
        in its place by this read only: the others still ask it last until
        it has answered one (L{_ReadRun.answered}), or for another while if
        it has not. A member still hung costs one read one retry a while,
        not a whole burst of them.
        """
        now = self._clock.seconds()
        probe = None
        for member, until in self._slow.items():
            if until <= now and probe is None and member in others:
                probe = member
                self._slow[member] = now + SLOW_FOR
        return [m for m in others if m not in self._slow or m == probe] + [
            m for m in others if m in self._slow and m != probe
        ]

    def _preferred(self, owners: Sequence[str]) -> tuple[str, ...]:
        # The other owners in the order reads ask them: by distance after
        # this node on the ring of member names. In a 3-node cluster each
        # node then reads from the same other node for every key (and is
        # read from by the third), so its fetches gather into one queue and
        # each call carries twice the keys; over larger clusters each
        # coordinator still spreads over every member.
        names = self._ringOrder
        me = names.index(self.nodeName)
        count = len(names)
        return tuple(
            sorted(
                (owner for owner in owners if owner != self.nodeName),
                key=lambda owner: (
                    (names.index(owner) - me) % count if owner in names else count
                ),
            )
        )

    def _settling(self) -> bool:
        return self._clock.seconds() < self._settledAt

    def _earlierOwners(self, partition: int, owners: Sequence[str]) -> list[str]:
        """
        The members that own C{partition} in a table this node used lately
        and are still members, but are not among C{owners}.
        """
        extras: list[str] = []
        names = self._names
        for _, table in self._earlier:
            for member in table.owners(partition):
                if member not in owners and member not in extras and member in names:
                    extras.append(member)
        return extras

    def _settleRead(self, run: _ReadRun) -> ReadOutcome:
        newest: Record | None = None
        for record in run.answers.values():
            if record is not None and (
                newest is None or record.precedence > newest.precedence
            ):
                newest = record
        if newest is not None:
            self._store.hlc.observe(newest.timestamp)
            expired = bool(
                newest.expiresAtMs and newest.expiresAtMs <= self._store.nowMs()
            )
            for member, record in run.answers.items():
                if record is None:
                    # An expired version need not reach a replica that
                    # holds nothing older.
                    if not expired:
                        self._repair(member, run.key, newest)
                elif record.precedence < newest.precedence:
                    self._repair(member, run.key, newest)
            if expired:
                newest = None
        answered = len(run.answers)
        if run.extras:
            answered -= sum(1 for member in run.extras if member in run.answers)
        outcome = ReadOutcome(newest, answered, run.required, run.replicas)
        if not outcome.ok:
            self.counters.readsUnderReplicated += 1
        return outcome

    def _repair(self, member: str, key: str, record: Record) -> None:
        self.counters.readRepairs += 1
        if member == self.nodeName:
            self._store.merge(key, record)
            return
        self.peers.apply(member, [(key, record)]).addErrback(
            lambda f: self._remoteFailed("read repair", member, f)
        )

    # Serving other coordinators

    def applyLocal(
        self, records: Iterable[tuple[str, bytes]], evict: bool = True
    ) -> list[bool]:
        """
        Merge records another node sent, encoded as on the wire
        (L{Record.encode}); whether each changed this replica.

        @param evict: C{False} for a repair: a key with no entry here is
            taken only if that evicts nothing (L{Store.merge}).
        @raise ValueError: for a blob too short to be a record.
        """
        merge = self._store.mergeEncoded
        applied = [merge(key, blob, evict) for key, blob in records]
        self.counters.applied += sum(applied)
        return applied

    def fetchLocal(self, keys: Iterable[str]) -> list[bytes | None]:
        """
        This replica's records of C{keys}, encoded as on the wire.

        @raise NotCaughtUp: if a key's partition is still being caught up
            on here; the asker reads another replica.
        """
        if self._held:
            keys = list(keys)
            for key in keys:
                if self._holding(partitionOf(key)):
                    raise NotCaughtUp(key)
        # Expired records too: the asker must see that a newer version
        # existed, or an older one elsewhere would read as current.
        encoded = self._store.encoded
        return [encoded(key) for key in keys]

    # Catching up

    def holdReads(self, partitions: Iterable[int]) -> None:
        """
        Serve no reads of C{partitions} from this replica until
        L{releaseReads}, or L{MAX_READ_HOLD} seconds.
        """
        until = self._clock.seconds() + MAX_READ_HOLD
        for partition in partitions:
            self._held.setdefault(partition, until)

    def releaseReads(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._held.pop(partition, None)

    def heldPartitions(self) -> frozenset[int]:
        """
        The partitions this replica is not read for now.
        """
        return frozenset(p for p in list(self._held) if self._holding(p))

    def _holding(self, partition: int) -> bool:
        until = self._held.get(partition)
        if until is None:
            return False
        if self._clock.seconds() < until:
            return True
        del self._held[partition]
        self.log.warn(
            "serving reads of partition {partition} before it caught up: no"
            " answer from its other replicas in {seconds} s",
            partition=partition,
            seconds=MAX_READ_HOLD,
        )
        return False

    def rootsLocal(self, partitions: Iterable[int]) -> list[bytes]:
        """
        This replica's Merkle root of each of C{partitions}.

        @raise ValueError: for a partition outside the table.
        """
        roots = []
        for partition in partitions:
            _checkPartition(partition)
            roots.append(self._store.partitionRoot(partition))
        return roots

    def digestsLocal(self, partition: int, level: int, nodes: Iterable[int]) -> Digests:
        """
        This replica's digests of C{nodes} of C{level} of C{partition}'s
        Merkle tree.

        @raise ValueError: for a partition, level or node outside the tree
            (the request came from the network).
        """
        _checkPartition(partition)
        tree = self._store.partitionTree(partition)
        out: dict[int, bytes] = {}
        for node in nodes:
            out[node] = tree.digest(level, node)
        return Digests(level, out)

    def rangeLocal(
        self, partition: int, leaves: Iterable[int]
    ) -> list[tuple[str, Record]]:
        """
        This replica's unexpired records of C{leaves} of C{partition}'s
        tree, up to L{RANGE_MAX_RECORDS} and about L{RANGE_MAX_BYTES}.

        @raise ValueError: for a partition or leaf outside the tree.
        """
        _checkPartition(partition)
        records = self._store.partitionRecords(partition, leaves)
        size = 0
        for count, (key, record) in enumerate(records):
            size += len(key) + len(record.value)
            if count >= RANGE_MAX_RECORDS or size > RANGE_MAX_BYTES:
                return records[: max(count, 1)]
        return records

    # Hinted handoff

    def _deliverHints(self) -> None:
        # Offer each reachable member a batch of what it missed; a failure
        # puts the batch back for the next round.
        names = {m.name for m in self._members}
        for member in self.hints.members():
            if member not in names:
                continue
            batch = self.hints.take(member, HINT_BATCH)
            if not batch:
                continue
            self.peers.apply(member, batch).addCallbacks(
                self._hintsDelivered,
                self._hintsFailed,
                callbackArgs=(member, len(batch)),
                errbackArgs=(member, batch),
            )

    def _hintsDelivered(self, result: object, member: str, count: int) -> None:
        self.hints.delivered(count)
        self.log.info("delivered {count} hints to {member}", count=count, member=member)

    def _hintsFailed(
        self, failure: Failure, member: str, batch: list[tuple[str, Record]]
    ) -> None:
        self._remoteFailed("hint delivery", member, failure)
        self.hints.restore(member, batch)

    def _remoteFailed(self, what: str, member: str, failure: Failure) -> None:
        self.counters.remoteFailures += 1
        self.log.debug(
            "{what} to {member} failed: {error}",
            what=what,
            member=member,
            error=failure.getErrorMessage(),
        )


def _checkPartition(partition: int) -> None:
    if not 0 <= partition < PARTITION_COUNT:
        raise ValueError(f"partition {partition} outside 0..{PARTITION_COUNT - 1}")
