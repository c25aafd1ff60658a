"""
Operations over the whole keyspace rather than one key: walking the keys
of the cluster partition by partition (what a cursor scan is made of),
counting the keys of the whole cluster, picking a key at random, and
flushing every key.

A partition's keys are listed a few leaves of its Merkle tree at a time
(L{disperse.store.store.LEAF_COUNT} leaves a partition), so that a walk
can stop anywhere and resume at the next leaf: a key always falls in the
same partition and leaf, so a walk over every (partition, leaf) in order
lists every key that existed throughout it. The owners are read as a key
is: as many as the consistency level needs, this node's own replica first
when it holds the partition (and has caught up on it), then the other
owners through the peer client's C{range} call, another one when one
fails; while the partition table settles, the owners of earlier tables
are asked as well. The newest record of each key among the answers
decides whether it is live, so a key deleted on a majority is not listed
at quorum because a lagging replica still has it.

Reading several owners of every partition would cost a range call per
owner and partition. Before a walk lists a window of partitions whose
level needs other owners, it asks those owners for their Merkle roots of
the window, one call per owner: where the roots equal this node's, its
replica alone is listed; where they all agree, one copy is; where they
are empty, nothing is. Only partitions whose copies differ are read from
each owner.

A count adds up, for each partition, the key count of one owner
(L{disperse.store.store.Store.partitionKeys}, kept by the store as it
changes): this node's own for the partitions it holds, the others' asked in
one call per member for all the partitions it is to count. Owners' copies
may differ for a moment (a write on its way, a key one missed until a
repair), so the count is one copy's, as Redis's is one node's.

A flush is a sweep of tombstones: for every partition, every owner's
records are read, and every live key gets a tombstone written to its
owners at the consistency level asked, versioned after the newest record
read (the hybrid logical clock observes them first), so a value written
before the flush cannot come back through a repair. Replicas that miss a
tombstone get it through hints, as for any write.

Time comes from the store's clock; randomness from the injected
C{random.Random}.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from twisted.internet.defer import Deferred, gatherResults
from twisted.python.failure import Failure

from disperse.cluster.clients import RepairClient
from disperse.cluster.coordinator import Consistency, Coordinator, WriteOutcome
from disperse.cluster.peer.messages import MAX_BLOB_SIZE, MAX_KEY_SIZE
from disperse.cluster.replica import RANGE_MAX_BYTES, RANGE_MAX_RECORDS, Replica
from disperse.cluster.view import ClusterView
from disperse.logs import logger
from disperse.store import Record
from disperse.store.partition import PARTITION_COUNT
from disperse.store.store import EMPTY_ROOT, LEAF_COUNT

# Partitions a flush sweeps at once: enough to overlap round trips, few
# enough that the records read and the writes in flight stay small.
FLUSH_PARALLEL = 16

# An C{atLeast} that lists a partition whole.
WHOLE = 2**62

# Partitions whose roots a walk asks of their owners in one call.
ROOTS_WINDOW = 64

# A range answer this large may have been cut short by the answering
# replica (L{Replica.rangeLocal}): one more record could have taken it
# over the byte limit.
_RANGE_FULL_BYTES = RANGE_MAX_BYTES - MAX_BLOB_SIZE - MAX_KEY_SIZE


@dataclass(frozen=True)
class PartitionScan:
    """
    The live keys of some leaves of a partition.

    @ivar keys: the keys whose newest record among the answers is a live
        value.
    @ivar nextLeaf: the first leaf not listed; L{LEAF_COUNT} when the
        partition is done.
    @ivar answered: how many owners answered (this node included).
    @ivar required: how many the consistency level needs.
    @ivar remote: whether other members were asked.
    @ivar listed: 1 if records were listed, 0 if the partition was known
        to be empty.
    """

    keys: list[str]
    nextLeaf: int
    answered: int
    required: int
    remote: bool
    listed: int = 1

    @property
    def ok(self) -> bool:
        return self.answered >= self.required


@dataclass(frozen=True)
class KeyWalk:
    """
    The keys a walk over the keyspace found, and where it stopped.

    @ivar partition: the partition to go on with; L{PARTITION_COUNT} when
        the walk reached the end of the keyspace.
    @ivar leaf: the leaf of it to go on with.
    """

    keys: list[str]
    partition: int
    leaf: int


class ShortCount(Exception):
    """
    No owner of some partitions answered for their key counts.

    @ivar partitions: how many partitions were not counted.
    """

    def __init__(self, partitions: int) -> None:
        super().__init__(f"no owner of {partitions} partitions answered")
        self.partitions = partitions


class ShortRead(Exception):
    """
    Fewer owners of a partition answered than the consistency level needs.
    """

    def __init__(self, answered: int, required: int) -> None:
        super().__init__(f"{answered} of {required} required owners answered")
        self.answered = answered
        self.required = required


def _listed(scanned: PartitionScan) -> PartitionScan:
    if not scanned.ok:
        raise ShortRead(scanned.answered, scanned.required)
    return scanned


@dataclass(frozen=True)
class _Agreed:
    """
    Owners of a partition whose Merkle roots agree: one copy read stands
    for them all.

    @ivar source: the member to read the copy from; L{None} for this
        node's replica.
    @ivar answered: how many owners it stands for.
    """

    source: str | None
    root: bytes
    answered: int


@dataclass
class FlushOutcome:
    """
    How a flush went.

    @ivar deleted: live keys found and tombstoned.
    @ivar partitionsShort: partitions fewer owners than the level needs
        answered for (keys only they held may remain).
    @ivar writesShort: tombstones fewer replicas than the level needs
        acknowledged (hints carry them to the others).
    """

    deleted: int = 0
    partitionsShort: int = 0
    writesShort: int = 0

    @property
    def ok(self) -> bool:
        return not self.partitionsShort and not self.writesShort


def _newest(answers: Iterable[Sequence[tuple[str, Record]]]) -> dict[str, Record]:
    newest: dict[str, Record] = {}
    for records in answers:
        for key, record in records:
            held = newest.get(key)
            if held is None or held.precedence < record.precedence:
                newest[key] = record
    return newest


def _live(record: Record, nowMs: int) -> bool:
    return not record.tombstone and not (
        record.expiresAtMs and record.expiresAtMs <= nowMs
    )


class Keyspace:
    """
    Whole-keyspace operations of one node, over its view, replica,
    coordinator and peers.
    """

    log = logger()

    def __init__(
        self,
        *,
        view: ClusterView,
        replica: Replica,
        coordinator: Coordinator,
        peers: RepairClient,
        random: random.Random,
    ) -> None:
        self._view = view
        self._replica = replica
        self._store = replica.store
        self._coordinator = coordinator
        self._peers = peers
        self._random = random
        # The keys of the partition scanned last, by leaf, and the Merkle
        # root they were listed at: successive calls of one scan walk the
        # same partition, and listing it costs a hash per entry.
        self._listed: tuple[int, bytes, list[list[str]]] | None = None

    # Counting

    async def keyCount(self) -> int:
        """
        The keys of the whole cluster, each partition counted on one owner
        (L{Store.partitionKeys}: expired keys not dropped yet included):
        this node's replica where it may answer for the partition (it is
        an owner, not catching up on it), else the first other owner, in
        table order, then the owners of earlier tables while the table
        settles. The other owners are asked in rounds, one C{counts} call
        per member each; an owner that fails passes all its partitions to
        their next owners, one catching up on a partition (which answers
        nil) passes that partition.

        @raise ShortCount: when no owner of some partition answered; the
            count would be short.
        """
        store = self._store
        total = 0
        # The partitions to count elsewhere, with the members left to ask.
        left: dict[int, list[str]] = {}
        for partition in range(PARTITION_COUNT):
            _, local, others = self._sources(partition)
            if local:
                total += store.partitionKeys(partition)
            else:
                left[partition] = others
        failed: set[str] = set()
        short = 0
        while left:
            asks: dict[str, list[int]] = {}
            for partition, members in list(left.items()):
                while members and members[0] in failed:
                    del members[0]
                if not members:
                    short += 1
                    del left[partition]
                    continue
                asks.setdefault(members.pop(0), []).append(partition)
            answers = await gatherResults(
                [self._tryCounts(member, asked) for member, asked in asks.items()]
            )
            for (member, asked), counts in zip(asks.items(), answers, strict=True):
                if counts is None or len(counts) != len(asked):
                    failed.add(member)
                    continue
                for partition, count in zip(asked, counts, strict=True):
                    if count is not None:
                        total += count
                        del left[partition]
        if short:
            raise ShortCount(short)
        return total

    def _tryCounts(
        self, member: str, partitions: Sequence[int]
    ) -> Deferred[list[int | None] | None]:
        def failed(failure: Failure) -> None:
            self.log.debug(
                "key counts from {member} failed: {error}",
                member=member,
                error=failure.getErrorMessage(),
            )

        asked: Deferred[list[int | None] | None] = self._peers.counts(
            member, list(partitions)
        ).addCallback(lambda counts: counts)
        return asked.addErrback(failed)

    # Listing

    def _sources(self, partition: int) -> tuple[tuple[str, ...], bool, list[str]]:
        """
        The owners of C{partition}, whether this node's replica may answer
        for it, and the other members to ask: owners first (in table
        order), then earlier owners while the table settles.
        """
        me = self._view.nodeName
        owners = self._view.table.owners(partition) or (me,)
        local = me in owners and not self._replica.holding(partition)
        others = [owner for owner in owners if owner != me]
        if self._view.settling():
            for member in self._view.earlierOwners(partition, owners):
                if member == me:
                    continue
                others.append(member)
        return owners, local, others

    def _byLeaf(self, partition: int) -> list[list[str]]:
        root = self._store.partitionRoot(partition)
        listed = self._listed
        if listed is not None and listed[0] == partition and listed[1] == root:
            return listed[2]
        byLeaf = self._store.partitionKeysByLeaf(partition)
        self._listed = (partition, root, byLeaf)
        return byLeaf

    def _keysPerLeaf(self) -> float:
        """
        How many keys a leaf of another member's partition likely holds,
        judged from this node's own partitions (0 when it holds none).
        """
        held = len(self._view.table.partitionsOf(self._view.nodeName))
        if not held:
            return 0.0
        return len(self._store) / held / LEAF_COUNT

    async def walk(
        self,
        partition: int,
        leaf: int,
        count: int,
        level: Consistency,
        maxSteps: int | None = None,
        maxRemote: int | None = None,
    ) -> KeyWalk:
        """
        The live keys from leaf C{leaf} of C{partition} on, partition after
        partition, until about C{count} keys were found, C{maxSteps}
        partitions (or parts of them) were listed, or other members were
        asked C{maxRemote} times; or to the end of the keyspace. Partitions
        known to be empty cost no step.

        Before listing partitions whose level needs other owners, their
        Merkle roots are asked of those owners, a window of partitions in
        one call per owner: where every root asked equals this node's (or,
        for a partition not held here, where they all agree), one copy
        stands for them all, and an empty one needs no listing at all.

        @raise ShortRead: when fewer owners of a partition answered than
            the level needs.
        """
        keys: list[str] = []
        steps = remote = 0
        whole = count >= WHOLE
        while partition < PARTITION_COUNT:
            window = range(partition, min(partition + ROOTS_WINDOW, PARTITION_COUNT))
            agreed, calls = await self._agreement(window, level)
            remote += calls
            if whole:
                # Everything is wanted: the window's partitions at once.
                scans = await gatherResults(
                    [
                        Deferred.fromCoroutine(
                            self.scan(p, 0, WHOLE, level, agreed.get(p))
                        )
                        for p in window
                    ]
                )
                for scanned in scans:
                    keys.extend(_listed(scanned).keys)
                partition = window.stop
                continue
            for current in window:
                # A partition may take several listings, a few leaves each.
                while partition == current:
                    scanned = _listed(
                        await self.scan(
                            current,
                            leaf,
                            count - len(keys),
                            level,
                            agreed.get(current),
                        )
                    )
                    keys.extend(scanned.keys)
                    steps += scanned.listed
                    remote += scanned.remote
                    if scanned.nextLeaf < LEAF_COUNT:
                        leaf = scanned.nextLeaf
                    else:
                        partition, leaf = current + 1, 0
                    if (
                        len(keys) >= count
                        or (maxSteps is not None and steps >= maxSteps)
                        or (maxRemote is not None and remote >= maxRemote)
                    ):
                        return KeyWalk(keys, partition, leaf)
        return KeyWalk(keys, PARTITION_COUNT, 0)

    async def _agreement(
        self, window: Iterable[int], level: Consistency
    ) -> tuple[dict[int, _Agreed], int]:
        """
        For the partitions of C{window} whose owners (as many as C{level}
        needs, this node's replica first) hold identical copies, which copy
        to read, and how many calls that took. While the table settles,
        none: earlier owners are read too.
        """
        agreed: dict[int, _Agreed] = {}
        if self._view.settling():
            return agreed, 0
        store = self._store
        asks: dict[str, list[int]] = {}
        chosen: dict[int, tuple[bool, list[str], int]] = {}
        for partition in window:
            owners, local, others = self._sources(partition)
            required = level.required(len(owners))
            need = required - local
            if need <= 0:
                agreed[partition] = _Agreed(
                    None, store.partitionRoot(partition), required
                )
                continue
            members = others[:need]
            if len(members) < need:
                continue
            chosen[partition] = (local, members, required)
            for member in members:
                asks.setdefault(member, []).append(partition)
        if not asks:
            return agreed, 0
        answers = await gatherResults(
            [self._tryRoots(member, wanted) for member, wanted in asks.items()]
        )
        roots: dict[tuple[str, int], bytes] = {}
        for (member, wanted), answer in zip(asks.items(), answers, strict=True):
            if answer is not None and len(answer) == len(wanted):
                for partition, root in zip(wanted, answer, strict=True):
                    roots[member, partition] = root
        for partition, (local, members, required) in chosen.items():
            found = [
                roots[member, partition]
                for member in members
                if (member, partition) in roots
            ]
            if len(found) < len(members):
                continue
            if local:
                found.append(store.partitionRoot(partition))
            if len(set(found)) == 1:
                agreed[partition] = _Agreed(
                    None if local else members[0], found[0], required
                )
        return agreed, len(asks)

    def _tryRoots(
        self, member: str, partitions: Sequence[int]
    ) -> Deferred[list[bytes] | None]:
        def failed(failure: Failure) -> None:
            self.log.debug(
                "roots from {member} failed: {error}",
                member=member,
                error=failure.getErrorMessage(),
            )

        asked: Deferred[list[bytes] | None] = self._peers.roots(
            member, list(partitions)
        ).addCallback(lambda roots: roots)
        return asked.addErrback(failed)

    async def scan(
        self,
        partition: int,
        fromLeaf: int,
        atLeast: int,
        level: Consistency,
        agreed: _Agreed | None = None,
    ) -> PartitionScan:
        """
        The live keys of the leaves of C{partition} from C{fromLeaf} on, as
        many leaves as it takes for about C{atLeast} keys (all of them for
        L{WHOLE}), read from as many owners as C{level} needs, or from the
        one copy C{agreed} names.
        """
        owners, local, others = self._sources(partition)
        required = level.required(len(owners))
        if agreed is not None and agreed.root == EMPTY_ROOT:
            return PartitionScan([], LEAF_COUNT, agreed.answered, required, False, 0)
        if agreed is not None:
            local = agreed.source is None
        toLeaf, mine = self._listLocal(partition, fromLeaf, atLeast, local)
        answers = [] if mine is None else [mine]
        if mine is None:
            perLeaf = self._keysPerLeaf()
            if perLeaf:
                toLeaf = min(LEAF_COUNT, fromLeaf + math.ceil(atLeast / perLeaf))
        leaves = list(range(fromLeaf, toLeaf))
        calls = 0
        if agreed is not None and agreed.source is not None:
            calls += 1
            copy = await self._tryRange(agreed.source, partition, leaves)
            if copy is not None:
                answers.append(copy)
                return self._scanned(answers, toLeaf, agreed.answered, required, 1)
            # It did not answer after all (this node's replica was not to
            # be read either): read the owners one by one.
            agreed = None
        if agreed is not None:
            return self._scanned(answers, toLeaf, agreed.answered, required, 0)
        answered = len(answers)
        owned = [member for member in others if member in owners]
        extras = [member for member in others if member not in owners]
        # The earlier owners are asked alongside; they count towards the
        # newest record, not towards the level.
        extraAnswers = gatherResults(
            [self._tryRange(member, partition, leaves) for member in extras]
        )
        calls += len(extras)
        while answered < required and owned:
            batch = owned[: required - answered]
            del owned[: len(batch)]
            calls += len(batch)
            results = await gatherResults(
                [self._tryRange(member, partition, leaves) for member in batch]
            )
            for result in results:
                if result is not None:
                    answers.append(result)
                    answered += 1
        for result in await extraAnswers:
            if result is not None:
                answers.append(result)
        return self._scanned(answers, toLeaf, answered, required, calls)

    def _listLocal(
        self, partition: int, fromLeaf: int, atLeast: int, local: bool
    ) -> tuple[int, list[tuple[str, Record]] | None]:
        """
        Where a listing of C{partition} from C{fromLeaf} on should stop
        for about C{atLeast} keys, and this node's records of those leaves
        (expired ones too: they outrank older copies), or L{None} when its
        replica is not read (C{local} false).
        """
        store = self._store
        if not local:
            return LEAF_COUNT, None
        if not store.partitionEntries(partition):
            return LEAF_COUNT, []
        byLeaf = self._byLeaf(partition)
        toLeaf = LEAF_COUNT
        found = 0
        for leaf in range(fromLeaf, LEAF_COUNT):
            found += len(byLeaf[leaf])
            if found >= atLeast:
                toLeaf = leaf + 1
                break
        mine = []
        for leaf in range(fromLeaf, toLeaf):
            for key in byLeaf[leaf]:
                record = store.record(key, expired=True)
                if record is not None:
                    mine.append((key, record))
        return toLeaf, mine

    def _scanned(
        self,
        answers: list[list[tuple[str, Record]]],
        toLeaf: int,
        answered: int,
        required: int,
        calls: int,
    ) -> PartitionScan:
        now = self._store.nowMs()
        keys = [key for key, record in _newest(answers).items() if _live(record, now)]
        return PartitionScan(keys, toLeaf, answered, required, calls > 0, 1)

    def _tryRange(
        self, member: str, partition: int, leaves: Sequence[int]
    ) -> Deferred[list[tuple[str, Record]] | None]:
        """
        C{member}'s records of C{leaves} of C{partition}, or L{None} if it
        could not be asked.
        """

        def failed(failure: Failure) -> None:
            self.log.debug(
                "listing partition {partition} from {member} failed: {error}",
                partition=partition,
                member=member,
                error=failure.getErrorMessage(),
            )

        listing: Deferred[list[tuple[str, Record]] | None] = Deferred.fromCoroutine(
            self._range(member, partition, list(leaves))
        )
        return listing.addErrback(failed)

    async def _range(
        self, member: str, partition: int, leaves: list[int]
    ) -> list[tuple[str, Record]]:
        """
        C{member}'s records of C{leaves} of C{partition}, asked again in
        halves when an answer may have been cut at the range limits. Their
        values are not used, only their keys, versions and expiry, so a
        damaged one (L{Record.intact}) is listed all the same: its key is
        there; reads and anti-entropy find and repair the damage.
        """
        records = await self._peers.range(member, partition, leaves)
        if len(records) >= RANGE_MAX_RECORDS or (
            sum(len(key) + len(record.value) for key, record in records)
            > _RANGE_FULL_BYTES
        ):
            if len(leaves) > 1:
                half = len(leaves) // 2
                return await self._range(
                    member, partition, leaves[:half]
                ) + await self._range(member, partition, leaves[half:])
            self.log.warn(
                "leaf {leaf} of partition {partition} on {member} holds more"
                " than a range answer carries: some of its keys are not listed",
                leaf=leaves[0],
                partition=partition,
                member=member,
            )
        return records

    async def randomKey(
        self, level: Consistency, accept: Callable[[str], bool] | None = None
    ) -> str | None:
        """
        A key picked at random among those C{accept} takes (all if not
        given): from a partition this node holds when any has such keys
        (the partitions are tried from a random one on, then one of the
        keys of the first with any is picked uniformly), else from the
        others; L{None} when the cluster holds no such key.
        """
        me = self._view.nodeName
        start = self._random.randrange(PARTITION_COUNT)
        order = [
            (start + offset) % PARTITION_COUNT for offset in range(PARTITION_COUNT)
        ]
        mine = self._view.table.partitionsOf(me)
        store = self._store
        local = [p for p in order if p in mine or not self._view.table.owners(p)]
        # Partitions whose replica here is empty are tried last: another
        # replica may hold keys this one missed.
        local.sort(key=lambda p: store.partitionEntries(p) == 0)
        rest = [p for p in order if p not in mine and self._view.table.owners(p)]
        for partition in local + rest:
            scanned = await self.scan(partition, 0, WHOLE, level)
            keys = scanned.keys
            if accept is not None:
                keys = [key for key in keys if accept(key)]
            if keys:
                return self._random.choice(keys)
        return None

    # Flushing

    async def flush(self, level: Consistency) -> FlushOutcome:
        """
        Tombstone every live key of every partition on its owners at
        C{level}.

        @raise NoMajority: at quorum or all, when this node reaches no
            majority of the cluster.
        """
        if level is not Consistency.one:
            self._view.checkMajority()
        outcome = FlushOutcome()
        partitions = list(range(PARTITION_COUNT))
        for start in range(0, PARTITION_COUNT, FLUSH_PARALLEL):
            await gatherResults(
                [
                    Deferred.fromCoroutine(self._flushPartition(p, level, outcome))
                    for p in partitions[start : start + FLUSH_PARALLEL]
                ]
            )
        return outcome

    async def _flushPartition(
        self, partition: int, level: Consistency, outcome: FlushOutcome
    ) -> None:
        owners, _, others = self._sources(partition)
        store = self._store
        answers: list[list[tuple[str, Record]]] = []
        answered = 0
        if store.partitionEntries(partition):
            # Whatever this replica holds, caught up or not, owned or left
            # over from an earlier table (which a release would push back
            # to the owners): its keys are tombstoned too.
            answers.append(store.partitionContents(partition))
        if self._view.nodeName in owners:
            answered += 1
        leaves = list(range(LEAF_COUNT))
        results = await gatherResults(
            [self._tryRange(member, partition, leaves) for member in others]
        )
        for member, result in zip(others, results, strict=True):
            if result is not None:
                answers.append(result)
                answered += member in owners
        required = level.required(len(owners))
        if answered < required:
            outcome.partitionsShort += 1
        newest = _newest(answers)
        for record in newest.values():
            self._store.hlc.observe(record.timestamp)
        now = store.nowMs()
        writes: list[Deferred[WriteOutcome]] = []
        for key, record in newest.items():
            if not _live(record, now):
                continue
            outcome.deleted += 1
            tombstone = store.newRecord(b"", tombstone=True)
            written = self._coordinator.write(key, tombstone, level)
            if isinstance(written, Deferred):
                writes.append(written)
            elif not written.ok:
                outcome.writesShort += 1
        for written in await gatherResults(writes):
            if not written.ok:
                outcome.writesShort += 1
