"""
Anti-entropy: replicas of a partition compare Merkle trees in the
background and repair whatever writes, hints and read repairs all missed,
and a node that joins or restarts catches up on the partitions it now owns.

This module owns the schedule and the exchange. Every C{interval} seconds
(each round starting a random fraction of C{jitter} intervals late, so that
the nodes of a cluster do not all compare at the same moment) a round
takes the next C{peersPerRound} of the members this node shares partitions
with, in turn, and sends each one request with the partitions they share
(not yet covered by another peer this round); their roots come back, and
only partitions whose roots differ are exchanged. Every pair of replicas
meets within (co-owners / C{peersPerRound}) rounds, and an idle round costs
a node a few requests however large the cluster. An exchange:

  1. asks the peer for its root digest of the partition and compares it
     with the local tree;
  2. descends the tree level by level, asking for the peer's digests of
     the children of the nodes that differ, down to the differing leaves
     (the walk is L{disperse.store.merkle.MerkleWalk}; this module carries
     its questions and answers);
  3. fetches the peer's records of those leaves (a few leaves a request),
     merges locally the ones that are newer (last writer wins, as
     everywhere; copies of a counter merge, L{disperse.store.counter}),
     and pushes back the local records the peer lacks or holds older (or,
     for a counter, without some of the increments held here).

Expired records count as absent on both sides. A repair never evicts to
take a key the receiver has no entry for (L{disperse.store.Store.merge}):
a full replica is missing keys because it evicted them.

No more than C{maxInFlight} exchanges run at once, so that a round (or a
newcomer catching up on hundreds of partitions) costs peers a few requests
at a time and client traffic is not starved. When the partition table
changes (L{ClusterView.addTableListener}), each partition this node newly
holds is exchanged with its previous owners ahead of the periodic rounds;
a node that starts sees itself as the only member, so when the cluster
appears every partition it holds with others is new to it. The partitions
it held already and that gained owners are compared with those owners once
the change has had L{SETTLE_WINDOW} seconds to reach every view: nodes that
had not heard of it meanwhile wrote to the old owners only.

A partition this node no longer owns (a newcomer took it over, or a heal
gave it back to its owners) is released once it has not been owned for
L{RELEASE_AFTER} seconds: exchanged with each of its owners, pushing only
(what they lack or hold older, such as writes acknowledged here while this
side of a partition owned it), then dropped here. The memory goes back to
the partitions this node owns, and a copy left behind cannot come back
months later, when ownership returns, with values whose deletion the owners
have long forgotten. A partition whose owners do not take it within
L{RELEASE_LIMIT} seconds is kept, as a copy nothing reads, rather than
pushed once tombstones may have gone.

Time comes from the injected clock and randomness from the injected
C{random.Random}, so tests run whole clusters deterministically.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from disperse.cluster.clients import RepairClient
from disperse.cluster.placement import PartitionTable
from disperse.cluster.replica import Replica
from disperse.cluster.view import SETTLE_WINDOW, ClusterView
from disperse.logs import logger
from disperse.store import Record
from disperse.store.counter import supersedes
from disperse.store.integrity import reportDamaged
from disperse.store.merkle import MerkleWalk
from disperse.store.partition import PARTITION_COUNT

DEFAULT_INTERVAL = 30.0
# Each round starts up to this fraction of the interval late.
DEFAULT_JITTER = 0.1
# Exchanges running at once, on this node's initiative.
DEFAULT_MAX_IN_FLIGHT = 4
# Co-owners compared with per round: what an idle round costs a node, in
# requests, whatever the size of the cluster.
DEFAULT_PEERS_PER_ROUND = 3
# Leaves asked for in one range request: at a few keys a leaf, a few hundred
# records an answer.
LEAVES_PER_RANGE = 32
# Records pushed to a peer in one repair request.
PUSH_BATCH = 500
# A partition not owned here for this long is released: by then views have
# agreed (a table settles within seconds) and its new owners caught up.
RELEASE_AFTER = 30.0
# Not released by this long after it stopped being owned here, it is kept:
# pushed any later, a copy could bring back what the owners deleted since,
# once their tombstones are purged. Never more than half the store's
# shortest tombstone life.
RELEASE_LIMIT = 300.0


@dataclass
class AntiEntropyCounters:
    """
    @ivar rounds: periodic rounds started.
    @ivar roundsOverrun: rounds skipped because the previous one had not
        finished its partitions yet.
    @ivar rootsCompared: partition roots compared with a co-owner's (one
        request per co-owner and round carries them all).
    @ivar compared: exchanges run to the end (partitions compared).
    @ivar differing: exchanges whose partitions differed at the root.
    @ivar keysPulled: records merged here from peers.
    @ivar keysPushed: records peers merged from here.
    @ivar catchUps: exchanges queued because the table changed.
    @ivar failures: exchanges that failed (peer down, timeout, bad answer).
    @ivar partitionsReleased: partitions no longer owned here, pushed to
        their owners and dropped.
    @ivar keysReleased: entries dropped with them.
    @ivar partitionsKept: partitions no longer owned here whose owners did
        not take them in time, kept.
    @ivar releasesDeferred: releases put off to the next round because the
        partition changed while its owners were being compared with it.
    """

    rounds: int = 0
    roundsOverrun: int = 0
    rootsCompared: int = 0
    compared: int = 0
    differing: int = 0
    keysPulled: int = 0
    keysPushed: int = 0
    catchUps: int = 0
    failures: int = 0
    partitionsReleased: int = 0
    keysReleased: int = 0
    partitionsKept: int = 0
    releasesDeferred: int = 0


class AntiEntropy:
    """
    The anti-entropy process of one node.

    @ivar peers: how exchanges reach other nodes.
    @ivar inFlight: exchanges running now.
    @ivar maxInFlightSeen: the most that ever ran at once.
    """

    log = logger()

    def __init__(
        self,
        *,
        view: ClusterView,
        replica: Replica,
        peers: RepairClient,
        clock: IReactorTime,
        random: random.Random,
        interval: float = DEFAULT_INTERVAL,
        jitter: float = DEFAULT_JITTER,
        maxInFlight: int = DEFAULT_MAX_IN_FLIGHT,
        peersPerRound: int = DEFAULT_PEERS_PER_ROUND,
    ) -> None:
        if interval <= 0 or not 0 <= jitter < 1:
            raise ValueError("interval must be positive and jitter in [0, 1)")
        if maxInFlight < 1 or peersPerRound < 1:
            raise ValueError("maxInFlight and peersPerRound must be >= 1")
        self._view = view
        self._replica = replica
        self._store = replica.store
        self.peers = peers
        self._clock = clock
        self._random = random
        self.interval = interval
        self.jitter = jitter
        self.maxInFlight = maxInFlight
        self.peersPerRound = peersPerRound
        self.counters = AntiEntropyCounters()
        self.inFlight = 0
        self._pumping = False
        self.maxInFlightSeen = 0
        self._running = False
        self._round = 0
        self._cursor = 0
        # Catch-ups first, then the current round's partitions.
        self._urgent: deque[tuple[int, str]] = deque()
        self._urgentPending: set[tuple[int, str]] = set()
        self._queue: deque[tuple[int, str]] = deque()
        self._delayedRound: IDelayedCall | None = None
        # Catch-up exchanges running, and the keys pulled when the current
        # catch-up began, to report it once it is over.
        self._urgentInFlight = 0
        self._catchUpFrom: int | None = None
        self._rootsPending = 0
        # Catch-up partitions by source member, waiting for a roots request.
        self._catchUpJobs: dict[str, list[int]] = {}
        # Partitions not read from here until caught up, and the sources
        # still to catch up with for each.
        self._holdJobs: dict[int, set[str]] = {}
        self._catchUpRootsPending = 0
        # Partitions with entries that this node does not own, since when;
        # those given up on; whether a release is running.
        self._unownedSince: dict[int, float] = {}
        self._kept: set[int] = set()
        self._releasing = False
        # Partitions held here before and after a table change that gained
        # owners, by new owner, with when to compare them; the call that
        # compares the earliest.
        self._newOwners: dict[str, dict[int, float]] = {}
        self._delayedNewOwners: IDelayedCall | None = None
        self._loop = LoopingCall(self._tick)
        self._loop.clock = clock
        view.addTableListener(self.tableChanged)

    # Life cycle

    def start(self) -> None:
        """
        Start the periodic rounds (the first one interval from now), and
        any catch-up queued already.
        """
        self._running = True
        self._loop.start(self.interval, now=False).addErrback(
            lambda f: self.log.failure("anti-entropy stopped", f)
        )
        self._requestCatchUpRoots()
        self._scheduleNewOwners()
        self._pump()

    def stop(self) -> None:
        """
        Stop scheduling exchanges; those running finish on their own.
        """
        self._running = False
        if self._loop.running:
            self._loop.stop()
        if self._delayedRound is not None and self._delayedRound.active():
            self._delayedRound.cancel()
        self._delayedRound = None
        if self._delayedNewOwners is not None and self._delayedNewOwners.active():
            self._delayedNewOwners.cancel()
        self._delayedNewOwners = None
        self._newOwners.clear()
        self._queue.clear()
        self._urgent.clear()
        self._urgentPending.clear()
        self._catchUpJobs.clear()
        self._replica.releaseReads(list(self._holdJobs))
        self._holdJobs.clear()

    # Scheduling

    def _tick(self) -> None:
        delay = self._random.uniform(0, self.jitter * self.interval)
        self._delayedRound = self._clock.callLater(delay, self.runRound)
        self._noteUnowned()
        self._startRelease()

    # Releasing partitions owned elsewhere

    def _noteUnowned(self) -> None:
        now = self._clock.seconds()
        mine = self._view.table.partitionsOf(self._view.nodeName)
        entries = self._store.partitionEntries
        since = self._unownedSince
        for partition in range(PARTITION_COUNT):
            if partition in mine or not entries(partition):
                if partition in since:
                    del since[partition]
                    self._kept.discard(partition)
            elif partition not in since:
                since[partition] = now

    def _startRelease(self) -> None:
        if self._releasing or not self._running:
            return
        # A catch-up may be pulling from these very partitions' copies here.
        if self._urgent or self._urgentInFlight or self._catchUpJobs:
            return
        now = self._clock.seconds()
        limit = min(RELEASE_LIMIT, self._store.shortestTombstoneTtl / 2)
        due = []
        kept = 0
        for partition, since in sorted(self._unownedSince.items()):
            if partition in self._kept:
                continue
            if now - since >= limit:
                self._kept.add(partition)
                kept += 1
            elif now - since >= RELEASE_AFTER:
                due.append(partition)
        if kept:
            self.counters.partitionsKept += kept
            self.log.warn(
                "keeping {count} partitions this node no longer owns: their"
                " owners did not take them within {limit:g} s",
                count=kept,
                limit=limit,
            )
        if due:
            self._releasing = True
            Deferred.fromCoroutine(self._releaseUnowned(due)).addErrback(
                lambda f: self.log.failure("releasing partitions failed", f)
            ).addBoth(self._released)

    def _released(self, _: object) -> None:
        self._releasing = False

    async def _releaseUnowned(self, partitions: list[int]) -> None:
        """
        Hand each of C{partitions} to its owners and drop it here once they
        all hold everything in it: one roots request per owner, and an
        exchange that only pushes for each partition whose root differs,
        one at a time.
        """
        me = self._view.nodeName
        table = self._view.table
        byOwner: dict[str, list[int]] = {}
        chosen = []
        for partition in partitions:
            owners = table.owners(partition)
            if me in owners or not owners:
                continue
            chosen.append(partition)
            for owner in owners:
                byOwner.setdefault(owner, []).append(partition)
        # What each partition held when its owners were first asked: one
        # that changes meanwhile (a write from a coordinator whose view lags,
        # a hint delivered late) may hold a record some owner was compared
        # before, so it is kept for the next round rather than dropped.
        before = {p: self._store.partitionRoot(p) for p in chosen}
        failed: set[int] = set()
        for owner, wanted in sorted(byOwner.items()):
            if not self._running:
                return
            try:
                roots = await self.peers.roots(owner, wanted)
                if len(roots) != len(wanted):
                    raise ValueError("a peer answered the wrong number of roots")
            except Exception as e:
                self._releaseFailed(wanted, owner, e, failed)
                continue
            for partition, root in zip(wanted, roots, strict=True):
                self.counters.rootsCompared += 1
                if partition in failed or root == self._store.partitionRoot(partition):
                    continue
                try:
                    await self.exchange(partition, owner, pull=False)
                except Exception as e:
                    self._releaseFailed([partition], owner, e, failed)
        if self._view.table is not table:
            # The owners changed meanwhile: the next round looks again.
            return
        released = dropped = 0
        for partition in chosen:
            if partition in failed:
                continue
            if self._store.partitionRoot(partition) != before[partition]:
                self.counters.releasesDeferred += 1
                continue
            dropped += self._store.dropPartition(partition)
            self._unownedSince.pop(partition, None)
            released += 1
        self.counters.partitionsReleased += released
        self.counters.keysReleased += dropped
        if released:
            self.log.info(
                "released {partitions} partitions ({keys} entries) this node no"
                " longer owns, once their owners held everything in them",
                partitions=released,
                keys=dropped,
            )

    def _releaseFailed(
        self, partitions: list[int], owner: str, error: Exception, failed: set[int]
    ) -> None:
        failed.update(partitions)
        self.counters.failures += 1
        self.log.debug(
            "handing {count} partitions to {owner} failed: {error}",
            count=len(partitions),
            owner=owner,
            error=str(error) or type(error).__name__,
        )

    def runRound(self) -> None:
        """
        Compare roots with this round's co-owners, one request each, and
        queue an exchange of the partitions that differ.
        """
        self._delayedRound = None
        if self._queue or self._rootsPending:
            # The last round is still going: its partitions are due first.
            self.counters.roundsOverrun += 1
            return
        table = self._view.table
        me = self._view.nodeName
        held = sorted(table.partitionsOf(me))
        coOwners = sorted({o for p in held for o in table.owners(p) if o != me})
        self.counters.rounds += 1
        self._round += 1
        if not coOwners:
            return
        count = min(self.peersPerRound, len(coOwners))
        start = self._cursor % len(coOwners)
        self._cursor = start + count
        chosen = set((coOwners + coOwners)[start : start + count])
        # Each partition goes to one of the chosen co-owners holding it,
        # alternating from round to round.
        byPeer: dict[str, list[int]] = {}
        for partition in held:
            candidates = [o for o in table.owners(partition) if o in chosen]
            if candidates:
                peer = candidates[(self._round + partition) % len(candidates)]
                byPeer.setdefault(peer, []).append(partition)
        for peer, partitions in byPeer.items():
            self._compareRoots(peer, partitions)

    def _compareRoots(self, peer: str, partitions: list[int]) -> None:
        """
        Ask C{peer} for the roots of C{partitions}, and queue an exchange of
        each that differs here.
        """
        self._rootsPending += 1
        self.peers.roots(peer, partitions).addCallbacks(
            self._rootsArrived,
            self._rootsFailed,
            callbackArgs=(peer, partitions),
            errbackArgs=(peer,),
        ).addBoth(self._rootsDone)

    def _rootsArrived(
        self, roots: list[bytes], peer: str, partitions: list[int]
    ) -> None:
        if len(roots) != len(partitions):
            raise ValueError("a peer answered the wrong number of roots")
        for partition, root in zip(partitions, roots, strict=True):
            self.counters.rootsCompared += 1
            if root != self._store.partitionRoot(partition):
                self._queue.append((partition, peer))

    def _rootsFailed(self, failure: Failure, peer: str) -> None:
        self.counters.failures += 1
        self.log.debug(
            "comparing roots with {peer} failed: {error}",
            peer=peer,
            error=failure.getErrorMessage(),
        )

    def _rootsDone(self, result: object) -> None:
        self._rootsPending -= 1
        self._pump()

    def tableChanged(self, old: PartitionTable, new: PartitionTable) -> None:
        """
        Catch up each partition this node newly holds with each of its
        previous owners still in the table (with its new co-owners when none
        is): how a joining or restarted node catches up. Roots are compared
        first, one request per source, so only partitions that differ are
        exchanged (a cluster booting empty exchanges nothing).
        """
        me = self._view.nodeName
        live = {member.name for member in new.members}
        mine = new.partitionsOf(me)
        # Partitions given away are nobody's business here any more.
        self._release([p for p in self._holdJobs if p not in mine])
        due = self._clock.seconds() + SETTLE_WINDOW
        # A node that starts sees itself alone first: its partitions gaining
        # owners then is the cluster appearing, and an empty store has
        # nothing for them.
        started = [member.name for member in old.members] == [me]
        for partition in sorted(mine):
            others = [o for o in new.owners(partition) if o != me]
            if not others:
                continue
            before = old.owners(partition)
            if me in before and not (
                started and not self._store.partitionEntries(partition)
            ):
                for owner in others:
                    if owner not in before:
                        self._newOwners.setdefault(owner, {})[partition] = due
            previous = [o for o in before if o != me]
            if me in before and previous:
                # Held it already alongside others: the rounds keep it, and
                # a new owner is compared with soon (_compareNewOwners).
                continue
            sources = [o for o in previous if o in live] or others
            self._holdJobs.setdefault(partition, set()).update(sources)
            for source in sources:
                wanted = self._catchUpJobs.setdefault(source, [])
                if partition not in wanted:
                    wanted.append(partition)
        # Until it caught up, this replica may lack acknowledged writes:
        # reads go to the others meanwhile.
        self._replica.holdReads(list(self._holdJobs))
        self._requestCatchUpRoots()
        self._scheduleNewOwners()

    def _scheduleNewOwners(self) -> None:
        if not self._newOwners or not self._running:
            return
        if self._delayedNewOwners is not None and self._delayedNewOwners.active():
            return
        first = min(min(due.values()) for due in self._newOwners.values())
        delay = max(0.0, first - self._clock.seconds())
        self._delayedNewOwners = self._clock.callLater(delay, self._compareNewOwners)

    def _compareNewOwners(self) -> None:
        """
        Compare roots with the members that became owners of partitions
        this node held already, once the change had time to reach every
        view, and exchange those that differ. A new owner caught up with
        this node when it took the partitions; meanwhile nodes that had not
        heard of it yet kept writing to the old owners only, this one
        included, and those writes would otherwise wait for a periodic
        round to reach it.
        """
        self._delayedNewOwners = None
        now = self._clock.seconds()
        table = self._view.table
        me = self._view.nodeName
        for owner, partitions in sorted(self._newOwners.items()):
            ready = sorted(p for p, due in partitions.items() if due <= now)
            for partition in ready:
                del partitions[partition]
            if not partitions:
                del self._newOwners[owner]
            # Still shared with that owner in the table of now.
            shared = [p for p in ready if {me, owner} <= set(table.owners(p))]
            if not shared:
                continue
            self.log.debug(
                "comparing {count} partitions with {owner}, their new owner",
                count=len(shared),
                owner=owner,
            )
            self._compareRoots(owner, shared)
        self._scheduleNewOwners()

    def _caughtUp(self, partition: int, source: str) -> None:
        sources = self._holdJobs.get(partition)
        if sources is None:
            return
        sources.discard(source)
        if not sources:
            self._release([partition])

    def _release(self, partitions: list[int]) -> None:
        for partition in partitions:
            del self._holdJobs[partition]
        self._replica.releaseReads(partitions)

    def _requestCatchUpRoots(self) -> None:
        if not self._running or not self._catchUpJobs:
            return
        jobs, self._catchUpJobs = self._catchUpJobs, {}
        if self._catchUpFrom is None:
            self._catchUpFrom = self.counters.keysPulled
            self.log.info(
                "catching up {count} partitions from {sources} members after a"
                " table change",
                count=len({p for partitions in jobs.values() for p in partitions}),
                sources=len(jobs),
            )
        for source, partitions in jobs.items():
            self._catchUpRootsPending += 1
            self.peers.roots(source, partitions).addCallbacks(
                self._catchUpRootsArrived,
                self._catchUpRootsFailed,
                callbackArgs=(source, partitions),
                errbackArgs=(source, partitions),
            ).addBoth(self._catchUpRootsDone)

    def _catchUpRootsArrived(
        self, roots: list[bytes], source: str, partitions: list[int]
    ) -> None:
        if len(roots) != len(partitions):
            raise ValueError("a peer answered the wrong number of roots")
        for partition, root in zip(partitions, roots, strict=True):
            self.counters.rootsCompared += 1
            if root != self._store.partitionRoot(partition):
                self._queueUrgent(partition, source)
            else:
                self._caughtUp(partition, source)

    def _catchUpRootsFailed(
        self, failure: Failure, source: str, partitions: list[int]
    ) -> None:
        # Without roots, exchange every partition: each fails or repairs
        # on its own.
        self._rootsFailed(failure, source)
        for partition in partitions:
            self._queueUrgent(partition, source)

    def _catchUpRootsDone(self, result: object) -> None:
        self._catchUpRootsPending -= 1
        self._pump()
        self._reportCatchUp()

    def _queueUrgent(self, partition: int, source: str) -> None:
        job = (partition, source)
        if job not in self._urgentPending:
            self._urgentPending.add(job)
            self._urgent.append(job)
            self.counters.catchUps += 1

    def _pump(self) -> None:
        # Start queued exchanges up to the in-flight bound; each one that
        # ends calls this again. An exchange can end inside the loop (a peer
        # with no address fails at once): the running loop then takes the
        # freed slot, rather than a nested pump per queued job, which would
        # recurse once per partition.
        if self._pumping:
            return
        self._pumping = True
        try:
            self._pumpLoop()
        finally:
            self._pumping = False

    def _pumpLoop(self) -> None:
        while self._running and self.inFlight < self.maxInFlight:
            urgent = bool(self._urgent)
            if urgent:
                job = self._urgent.popleft()
                self._urgentPending.discard(job)
                partition, peer = job
                self._urgentInFlight += 1
            elif self._queue:
                partition, peer = self._queue.popleft()
            else:
                return
            self.inFlight += 1
            self.maxInFlightSeen = max(self.maxInFlightSeen, self.inFlight)
            Deferred.fromCoroutine(self.exchange(partition, peer)).addErrback(
                self._failed, partition, peer
            ).addBoth(self._finished, urgent, partition, peer)

    def _failed(self, failure: Failure, partition: int, peer: str) -> None:
        self.counters.failures += 1
        self.log.debug(
            "anti-entropy of partition {partition} with {peer} failed: {error}",
            partition=partition,
            peer=peer,
            error=failure.getErrorMessage(),
        )

    def _finished(
        self, result: object, urgent: bool, partition: int, peer: str
    ) -> None:
        self.inFlight -= 1
        if urgent:
            self._urgentInFlight -= 1
            # Done with this source, repaired or not: a source that fails
            # must not keep the partition out of reads (its other replicas
            # and later rounds cover it).
            self._caughtUp(partition, peer)
        self._pump()
        self._reportCatchUp()

    def _reportCatchUp(self) -> None:
        if (
            self._catchUpFrom is not None
            and not self._urgent
            and not self._urgentInFlight
            and not self._catchUpRootsPending
            and not self._catchUpJobs
        ):
            self.log.info(
                "caught up: {pulled} keys pulled from other replicas",
                pulled=self.counters.keysPulled - self._catchUpFrom,
            )
            self._catchUpFrom = None

    # The exchange

    async def exchange(self, partition: int, peer: str, pull: bool = True) -> None:
        """
        Compare C{partition} with C{peer} and repair both sides, or only
        C{peer}'s when not C{pull}.
        """
        walk = MerkleWalk(self._store.partitionTree(partition))
        while (asked := walk.question) is not None:
            theirs = await self.peers.digests(peer, partition, asked.level, asked.nodes)
            if walk.answer(theirs) and asked.level == 0:
                self.counters.differing += 1
        for leaves in walk.leafBatches(LEAVES_PER_RANGE):
            remote = await self.peers.range(peer, partition, leaves)
            await self._repair(partition, peer, leaves, remote, pull)
        self.counters.compared += 1

    async def _repair(
        self,
        partition: int,
        peer: str,
        leaves: Sequence[int],
        remote: Sequence[tuple[str, Record]],
        pull: bool = True,
    ) -> None:
        store = self._store
        now = store.nowMs()
        ours = dict(store.partitionRecords(partition, leaves))
        theirs: dict[str, Record] = {}
        moved = False
        # Our copies go out or are compared from here: one gone bad in
        # memory before the scrub reached it is dropped now, and the
        # peer's, if any, taken in its place below.
        damaged = [key for key, record in ours.items() if not record.intact()]
        if damaged:
            for key in store.dropDamaged(partition, damaged):
                reportDamaged(store.integrity, "scrub", key, "exchange")
                del ours[key]
                moved = True
        for key, record in remote:
            if record.expiresAtMs and record.expiresAtMs <= now:
                continue
            if not record.intact():
                # Not taken, and as if the peer lacked it: ours is pushed
                # in its place.
                reportDamaged(store.integrity, "peer", key, "range", peer)
                continue
            theirs[key] = record
            mine = ours.get(key)
            newer = mine is None or supersedes(record, mine)
            if pull and newer and store.merge(key, record, evict=False):
                self.counters.keysPulled += 1
                moved = True
        push = []
        for key, record in ours.items():
            held = theirs.get(key)
            # (Two copies of a counter may each lack increments the other
            # has: each side then takes the other's and merges.)
            if held is None or supersedes(record, held):
                push.append((key, record))
        if not push and not moved:
            # The leaves differed, yet no record did: a tree that does not
            # sum its entries (an entry damaged in memory and then
            # overwritten or dropped, whose first digest could not be
            # subtracted), or expired entries not swept yet. Ours is summed
            # again; the peer does the same with its own when it compares.
            store.integrity.leavesResummed += store.resumLeaves(partition, leaves)
        for start in range(0, len(push), PUSH_BATCH):
            applied = await self.peers.repair(peer, push[start : start + PUSH_BATCH])
            self.counters.keysPushed += sum(1 for done in applied if done)

    # Reporting

    def stats(self) -> dict[str, int]:
        """
        The counters, and the exchanges running and waiting now.
        """
        return {
            **asdict(self.counters),
            "inFlight": self.inFlight,
            "queued": len(self._queue) + len(self._urgent),
        }

    def partitionInfo(self) -> list[dict[str, Any]]:
        """
        Every partition: its owners, whether this node holds it, and this
        node's entries (values, tombstones, expired not swept yet) and
        Merkle root (hex) of it.
        """
        table = self._view.table
        me = self._view.nodeName
        store = self._store
        return [
            {
                "partition": partition,
                "owners": list(table.owners(partition)),
                "held": me in table.owners(partition),
                "entries": store.partitionEntries(partition),
                "root": store.partitionRoot(partition).hex(),
            }
            for partition in range(PARTITION_COUNT)
        ]
