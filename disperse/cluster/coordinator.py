"""
Coordinating reads and writes across the replicas of a key.

Any node accepts any request and coordinates it: a write is stamped here
(hybrid logical clock, this node's id, absolute expiry) and sent to every
replica the partition table names; it succeeds once the consistency level's
number of replicas acknowledged. A read asks as many replicas as the level
needs (more if some fail or are slow), returns the newest record, and
repairs replicas that answered with something older. Replicas that miss a
write get it later through hinted handoff, and whatever both miss is found
by anti-entropy (L{disperse.cluster.antientropy}). Copies of a counter are
merged rather than ranked (L{disperse.store.counter}): a read returns their
merge and repairs every replica whose copy differs from it.

The coordinator reads the partition table from the view
(L{disperse.cluster.view}), applies and reads this node's own share in the
local replica's store (L{disperse.cluster.replica}), and reaches the other
replicas through a L{PeerClient}. Time comes from the injected clock.
"""

from __future__ import annotations

import enum
from binascii import crc_hqx
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from disperse.cluster.clients import PeerClient
from disperse.cluster.hints import HintStore
from disperse.cluster.placement import PartitionTable
from disperse.cluster.replica import Replica
from disperse.cluster.view import ClusterView, NoMajority
from disperse.logs import logger
from disperse.store import Record
from disperse.store.counter import decodeState, joinRecords
from disperse.store.integrity import reportDamaged
from disperse.store.partition import (
    PARTITION_COUNT,
    SLOTS_PER_PARTITION,
    partitionOf,
)

# How often hints are offered to replicas that are back, and how many at once.
HINT_INTERVAL = 1.0
HINT_BATCH = 500

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

# partitionOf inlined where every request of a batch asks (as the store
# does): a key without a brace is bits 4 to 13 of its CRC16.
_crc = crc_hqx
_PARTITION_SHIFT = SLOTS_PER_PARTITION.bit_length() - 1
_PARTITION_MASK = PARTITION_COUNT - 1


class Consistency(enum.Enum):
    """
    How many replicas must answer: one, a majority, or all of them.
    """

    one = "one"
    quorum = "quorum"
    all = "all"

    def required(self, replicas: int) -> int:
        # The members through module names: on CPython 3.11 each
        # Consistency.one costs a descriptor call, a quarter of a
        # microsecond, and this runs on every read and write.
        if self is _ONE:
            return min(1, replicas)
        if self is _QUORUM:
            return replicas // 2 + 1
        return replicas


_ONE = Consistency.one
_QUORUM = Consistency.quorum


class Elsewhere(enum.Enum):
    """
    What L{Coordinator.readHere} and its kin (and the node's) answer for a
    request this node's replica alone does not answer at once.
    """

    elsewhere = "elsewhere"


ELSEWHERE: Final = Elsewhere.elsewhere


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
        self, coordinator: Coordinator, outcome: WriteOutcome, remote: int
    ) -> None:
        self.coordinator = coordinator
        self.acks = outcome.acks
        self.required = outcome.required
        self.replicas = outcome.replicas
        self.pending = remote
        self.waitAll = False
        self.done: Deferred[WriteOutcome] = Deferred()

    def answered(self, acked: bool) -> None:
        self.pending -= 1
        self.acks += int(acked)
        self.coordinator.counters.acks += int(acked)
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
            self.coordinator.counters.writesUnderReplicated += 1
        self.done.callback(outcome)


class _ReadRun:
    """
    One read gathering answers, asking further replicas when one fails.
    """

    def __init__(
        self,
        coordinator: Coordinator,
        key: str,
        required: int,
        replicas: int,
        candidates: list[str],
        extras: Sequence[str] = (),
    ) -> None:
        self.coordinator = coordinator
        self.key = key
        self.required = required
        self.replicas = replicas
        self.candidates = candidates
        # Replicas of earlier tables only: their records count towards the
        # newest, not towards the level.
        self.extras = extras
        self.answers: dict[str, Record | None] = {}
        # Members that answered with a damaged copy: not an answer, but a
        # replica to repair once the read knows the newest record.
        self.damaged: list[str] = []
        # Members asked that have not answered, nor failed, yet.
        self.waiting: list[str] = []
        self.waitAll = False
        # Whether the outcome keeps an expired newest record.
        self.keepExpired = False
        self.done: Deferred[ReadOutcome] = Deferred()

    def ask(self, count: int) -> None:
        # A fetch that fails at once asks again from inside this loop, so
        # the candidates left are checked on every turn.
        for _ in range(count):
            if not self.candidates or self.done.called:
                return
            member = self.candidates.pop(0)
            self.waiting.append(member)
            self.coordinator.peers.fetch(member, [self.key]).addCallbacks(
                self.answered,
                self.failed,
                callbackArgs=(member,),
                errbackArgs=(member,),
            )

    def answered(self, records: list[Record | None], member: str) -> None:
        self.waiting.remove(member)
        slow = self.coordinator._slow
        if slow:
            # It answers again: reads may ask it first again.
            slow.pop(member, None)
        record = records[0] if records else None
        if record is not None and not record.intact():
            # Not an answer: another replica is asked in its place, and
            # this one is repaired with what the read finds.
            reportDamaged(self.coordinator.integrity, "peer", self.key, "read", member)
            self.damaged.append(member)
            if not self.done.called:
                self.ask(1)
                if not self.waiting:
                    self.finish()
            return
        self.answers[member] = record
        if (len(self.answers) >= self.required and not self.waitAll) or not (
            self.waiting or self.candidates
        ):
            self.finish()

    def failed(self, failure: Failure, member: str) -> None:
        self.waiting.remove(member)
        self.coordinator._remoteFailed("fetch", member, failure)
        if not self.done.called:
            self.ask(1)
            if not self.waiting:
                self.finish()

    def finish(self) -> None:
        if self.done.called:
            return
        self.done.callback(self.coordinator._settleRead(self))


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


class Coordinator:
    """
    The coordinator of one node: reads and writes at a consistency level,
    and the hints that replicas missed.
    """

    log = logger()

    def __init__(
        self,
        *,
        view: ClusterView,
        replica: Replica,
        clock: IReactorTime,
        peers: PeerClient,
        timeout: float = 1.0,
        hints: HintStore | None = None,
        readRetryAfter: float = READ_RETRY_AFTER,
    ) -> None:
        """
        @param timeout: how long a read or write waits for replicas.
        @param readRetryAfter: how long a read waits for a replica before it
            asks one more (see L{READ_RETRY_AFTER}); at least the timeout
            turns that off.
        """
        self.nodeName = view.nodeName
        self._view = view
        self._clock = clock
        self.peers = peers
        self._timeout = timeout
        self.hints = hints if hints is not None else HintStore(64 * 1024 * 1024)
        self.counters = ReplicationCounters()
        # Read on every request, so held here rather than looked up through
        # the view and the replica each time: each partition's owners in the
        # view's current table and its settle window (kept current by
        # _tableChanged), the members it counts as departed and the
        # replica's read holds (both changed in place by their owners), and
        # the replica's store.
        self._owners = self._ownersByPartition(view.table)
        self._settledAt = view.settledAt
        self._departed = view.departed
        self._store = replica.store
        self.integrity = replica.store.integrity
        self._held = replica.held
        self._holding = replica.holding
        self._replica = replica
        # Hint delivery runs while hints wait, and sleeps otherwise.
        self._hintCall: IDelayedCall | None = None
        self._running = False
        # Each partition's other owners in the order reads ask them (filled
        # as partitions are read).
        self._readOrder: dict[int, tuple[str, ...]] = {}
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
        self._writeOutcomes: dict[tuple[int, int, int], WriteOutcome] = {}
        self._retryTokens = RETRY_BURST
        view.addTableListener(self._tableChanged)

    # Life cycle

    def start(self) -> None:
        self._running = True
        self._wakeHints()

    def stop(self) -> None:
        self._running = False
        if self._hintCall is not None and self._hintCall.active():
            self._hintCall.cancel()
        self._hintCall = None

    def _tableChanged(self, old: PartitionTable, new: PartitionTable) -> None:
        self._owners = self._ownersByPartition(new)
        self._settledAt = self._view.settledAt
        self._readOrder = {}
        # A member gone from the table is never read from again, nor asked
        # to prove it answers.
        names = self._view.names
        self._slow = {m: t for m, t in self._slow.items() if m in names}

    def _checkMajority(self, level: Consistency) -> None:
        # "one" promises nothing of the kind the majority rule protects
        # (L{ClusterView.checkMajority}).
        if level is _ONE or not self._departed:
            return
        try:
            self._view.checkMajority()
        except NoMajority:
            self.counters.noMajority += 1
            raise

    def _ownersByPartition(self, table: PartitionTable) -> list[tuple[str, ...]]:
        """
        The owners of each partition as reads and writes use them, this
        node alone where the table has none (no members yet): listed once
        a table, rather than looked up through it on every request.
        """
        return [
            table.owners(partition) or (self.nodeName,)
            for partition in range(PARTITION_COUNT)
        ]

    def owners(self, key: str) -> tuple[str, ...]:
        return self._owners[partitionOf(key)]

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
        if self._departed:
            self._checkMajority(level)
        self.counters.writes += 1
        # Computed once, for the owners and for the local store.
        partition = partitionOf(key)
        owners = self._owners[partition]
        replicas = len(owners)
        required = level.required(replicas)
        acks = 0
        remote = []
        for owner in owners:
            if owner == self.nodeName:
                # A replica that already holds something newer has the
                # write's effect too: that counts as an acknowledgement.
                self._store.merge(key, record, partition=partition)
                acks += 1
            else:
                remote.append(owner)
        # With --fsync always the local copy counts once it is on disk.
        synced = self._replica.whenSynced() if acks else None
        if synced is not None:
            acks -= 1
        # Outcomes are immutable and take few values: each is made once.
        shape = (acks, required, replicas)
        outcome = self._writeOutcomes.get(shape)
        if outcome is None:
            outcome = self._writeOutcomes[shape] = WriteOutcome(*shape)
        # _settling inlined, as in read.
        settling = self._clock.seconds() < self._settledAt
        if not remote and not settling and synced is None:
            # Answered by this node alone, the common case of a single node
            # or a local replica at level one: no list of earlier owners.
            if acks < required:
                self.counters.writesUnderReplicated += 1
            return outcome
        extras = self._view.earlierOwners(partition, owners) if settling else []
        if self.nodeName in extras:
            extras.remove(self.nodeName)
            self._store.merge(key, record, partition=partition)
        if not remote and not extras and synced is None:
            if acks < required:
                self.counters.writesUnderReplicated += 1
            return outcome
        run = _WriteRun(self, outcome, len(remote) + len(extras) + (synced is not None))
        run.waitAll = settling
        if synced is not None:
            synced.addCallbacks(
                lambda _: run.answered(True), lambda _: run.answered(False)
            )
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

    # The local replica alone: for callers that serve a batch of requests
    # in one pass (a pipeline of the Redis front end), one key at a time,
    # with none of the outcomes and Deferreds above.

    def localPartition(self, key: str, level: Consistency, writing: bool) -> int:
        """
        The partition of C{key} if this node's own replica alone answers a
        read of it at C{level} now (C{writing} false), or alone holds every
        copy a write of it makes and acknowledges it at once (C{writing}
        true): what L{read} or L{write} would do without asking, or telling,
        any other member. Otherwise -1, and the caller goes through L{read}
        or L{write}. Changes nothing.
        """
        if self._departed:
            # The majority check is read's and write's.
            return -1
        # partitionOf inlined, as in the store.
        partition = (
            _crc(key.encode(), 0) >> _PARTITION_SHIFT & _PARTITION_MASK
            if "{" not in key
            else partitionOf(key)
        )
        owners = self._owners[partition]
        if writing:
            if (
                len(owners) != 1
                or owners[0] != self.nodeName
                or self._replica.waitsForSync
            ):
                return -1
        elif (
            # Level.required(len(owners)) > 1, without the call.
            (level is not _ONE and len(owners) > 1)
            or self.nodeName not in owners
            or (self._held and self._holding(partition))
        ):
            return -1
        if self._clock.seconds() < self._settledAt:
            return -1
        return partition

    def readHere(self, key: str, level: Consistency) -> Record | Elsewhere | None:
        """
        What L{read} at C{level} finds for C{key} (tombstones included,
        expired records not) when this node's replica alone answers it at
        once, counted as a read; else L{ELSEWHERE}, nothing done.
        """
        partition = self.localPartition(key, level, False)
        if partition < 0:
            return ELSEWHERE
        self.counters.reads += 1
        return self._store.record(key, True, False, partition)

    def readAllHere(
        self, keys: list[str], level: Consistency
    ) -> list[Record | None] | Elsewhere:
        """
        L{readHere} of each of C{keys} when this node's replica alone
        answers every one of them, else L{ELSEWHERE}, none read.
        """
        where = self.localPartition
        partitions = [where(key, level, False) for key in keys]
        if -1 in partitions:
            return ELSEWHERE
        self.counters.reads += len(keys)
        record = self._store.record
        return [
            record(key, True, False, partition)
            for key, partition in zip(keys, partitions, strict=True)
        ]

    def writeHere(
        self, key: str, value: bytes, expiresAtMs: int, binary: bool, level: Consistency
    ) -> bool:
        """
        Write C{value} under C{key} as a new version, expiring at
        C{expiresAtMs} (0 for never), when this node's replica is its only
        one and acknowledges at once: what L{write} does with a new record
        then, counted as a write. Whether it did; nothing is done when not.
        """
        partition = self.localPartition(key, level, True)
        if partition < 0:
            return False
        self.counters.writes += 1
        self._store.writeNew(key, value, expiresAtMs, binary, partition)
        return True

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
        self._wakeHints()
        run.answered(False)

    # Reads

    def read(
        self, key: str, level: Consistency, expired: bool = False
    ) -> ReadOutcome | Deferred[ReadOutcome]:
        """
        The newest record of C{key} among as many replicas as C{level} needs
        (the merge of their copies, for a counter).

        @param expired: give the record read even if it expired (not
            dropped yet), rather than none: what a read-modify-write must
            supersede. The outcome's L{ReadOutcome.value} is then not
            necessarily live.
        @return: the outcome, at once when the local replica alone meets the
            level, else a L{Deferred}.
        @raise NoMajority: at quorum or all, when this node reaches no
            majority of the cluster.
        """
        if self._departed:
            self._checkMajority(level)
        self.counters.reads += 1
        partition = partitionOf(key)
        owners = self._owners[partition]
        required = level.required(len(owners))
        order = self._readOrder.get(partition)
        if order is None:
            order = self._readOrder[partition] = self._preferred(owners)
        # Copied into a list only for a read that asks other replicas.
        others: Sequence[str] = order
        if self._slow:
            others = self._slowLast(list(order))
        local = len(others) < len(owners)
        if local and self._held and self._holding(partition):
            # Not a replica to read from until it caught up: the others
            # answer for it (and a write it missed is not read as absent).
            local = False
        # _settling inlined: a method call is a tenth of a local read.
        settling = self._clock.seconds() < self._settledAt
        if local and required <= 1 and not settling:
            return ReadOutcome(
                self._store.record(key, True, expired, partition),
                1,
                required,
                len(owners),
            )
        extras = self._view.earlierOwners(partition, owners) if settling else []
        run = _ReadRun(self, key, required, len(owners), [*others, *extras], extras)
        run.waitAll = settling
        run.keepExpired = expired
        if local:
            run.answers[self.nodeName] = self._store.record(
                key, touch=True, expired=True, partition=partition
            )
        if self.nodeName in extras:
            run.candidates.remove(self.nodeName)
            run.answers[self.nodeName] = self._store.record(
                key, expired=True, partition=partition
            )
        mine = run.answers.get(self.nodeName)
        if mine is not None and not mine.intact():
            # Gone bad in this node's memory before the scrub reached it:
            # no answer either, and repaired with what the others give.
            reportDamaged(self.integrity, "scrub", key, "read")
            del run.answers[self.nodeName]
            run.damaged.append(self.nodeName)
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
        names = self._view.ringOrder
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

    def _settleRead(self, run: _ReadRun) -> ReadOutcome:
        newest: Record | None = None
        counters = False
        for record in run.answers.values():
            if record is not None:
                counters = counters or record.counter
                if newest is None or record.precedence > newest.precedence:
                    newest = record
        if counters:
            newest = self._joinAnswers(run)
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
                elif record != newest:
                    # Older (newest is the largest), or for a counter a
                    # copy that lacks some of the others' increments.
                    self._repair(member, run.key, newest)
            for member in run.damaged:
                # Its copy takes an intact one in its place, whatever their
                # versions (Store.merge).
                self._repair(member, run.key, newest)
            if expired and not run.keepExpired:
                newest = None
        answered = len(run.answers)
        if run.extras:
            answered -= sum(1 for member in run.extras if member in run.answers)
        outcome = ReadOutcome(newest, answered, run.required, run.replicas)
        if not outcome.ok:
            self.counters.readsUnderReplicated += 1
        return outcome

    def _joinAnswers(self, run: _ReadRun) -> Record | None:
        """
        The merge of every record C{run} was answered with, one of them a
        counter: what the key holds once their copies have met.
        """
        joined: Record | None = None
        for member, record in run.answers.items():
            if record is None:
                continue
            if record.counter:
                try:
                    decodeState(record.value)
                except ValueError:
                    # Stores check counters before they take them: only a
                    # replica at fault answers one that does not decode.
                    self.log.warn(
                        "{member} answered a malformed counter for a read",
                        member=member,
                    )
                    run.answers[member] = None
                    continue
            joined = record if joined is None else joinRecords(joined, record)
        return joined

    def _repair(self, member: str, key: str, record: Record) -> None:
        self.counters.readRepairs += 1
        if member == self.nodeName:
            self._store.merge(key, record)
            return
        self.peers.apply(member, [(key, record)]).addErrback(
            lambda f: self._remoteFailed("read repair", member, f)
        )

    # Hinted handoff

    def _wakeHints(self) -> None:
        if self._running and self._hintCall is None and self.hints.members():
            self._hintCall = self._clock.callLater(HINT_INTERVAL, self._hintTick)

    def _hintTick(self) -> None:
        self._hintCall = None
        # Delivery must go on whatever one round ran into.
        try:
            self._deliverHints()
        except Exception:
            self.log.failure("hint delivery failed")
        self._wakeHints()

    def _deliverHints(self) -> None:
        # Offer each reachable member a batch of what it missed; a failure
        # puts the batch back for the next round.
        names = self._view.names
        for member in self.hints.members():
            if member not in names:
                continue
            batch = self._intactHints(self.hints.take(member, HINT_BATCH))
            if not batch:
                continue
            self.peers.apply(member, batch).addCallbacks(
                self._hintsDelivered,
                self._hintsFailed,
                callbackArgs=(member, len(batch)),
                errbackArgs=(member, batch),
            )

    def _intactHints(self, batch: list[tuple[str, Record]]) -> list[tuple[str, Record]]:
        """
        C{batch} without the hints gone bad in this node's memory: the
        replica would refuse the whole batch for one of them, every round.
        Those are dropped (anti-entropy covers what they carried).
        """
        intact = [(key, record) for key, record in batch if record.intact()]
        if len(intact) < len(batch):
            for key, record in batch:
                if not record.intact():
                    reportDamaged(self.integrity, "scrub", key, "hint")
            self.hints.counters.dropped += len(batch) - len(intact)
        return intact

    def _hintsDelivered(self, result: object, member: str, count: int) -> None:
        self.hints.delivered(count)
        self.log.info("delivered {count} hints to {member}", count=count, member=member)

    def _hintsFailed(
        self, failure: Failure, member: str, batch: list[tuple[str, Record]]
    ) -> None:
        self._remoteFailed("hint delivery", member, failure)
        self.hints.restore(member, batch)
        self._wakeHints()

    def _remoteFailed(self, what: str, member: str, failure: Failure) -> None:
        self.counters.remoteFailures += 1
        self.log.debug(
            "{what} to {member} failed: {error}",
            what=what,
            member=member,
            error=failure.getErrorMessage(),
        )
