"""
Tests for L{disperse.store}: a Hypothesis state machine against a reference
model, and examples of expiry, eviction, tombstones and merging.
"""

from __future__ import annotations

import itertools
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from disperse.store import ENTRY_OVERHEAD, HybridLogicalClock, Record, Store
from disperse.store.hlc import fromMs, physicalMs
from disperse.store.merkle import MerkleTree
from disperse.store.partition import PARTITION_COUNT, partitionOf
from disperse.store.record import HEADER_SIZE
from disperse.store.store import (
    DEFAULT_EXPIRY_TOMBSTONE_TTL,
    DEFAULT_TOMBSTONE_TTL,
    ValueTooLarge,
)
from tests.store.test_counter import counters as counterRecords

START = 1_700_000_000.0

KEYS = [f"k{i}" for i in range(12)]
keys = st.sampled_from(KEYS)
# The partitions the model's keys fall in: the only ones with entries.
PARTITIONS = sorted({partitionOf(key) for key in KEYS})
values = st.binary(max_size=40)


def tombstoneOf(record: Record, tombstoneTtlMs: float) -> Record:
    """
    The tombstone an expired C{record} that replaced an entry leaves.
    """
    return Record(
        b"",
        record.expiresAtMs + int(tombstoneTtlMs),
        record.timestamp,
        record.nodeId,
        tombstone=True,
    )


def entrySize(key: str, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD


class StoreModel(RuleBasedStateMachine):
    """
    The store against a dictionary: what was written is read back unless it
    expired, was deleted or was evicted; evictions happen only to stay within
    the budget and are all accounted for; the byte count is exact.
    """

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.clock.advance(START)
        self.budget = 6 * (ENTRY_OVERHEAD + 30)
        self.store = Store(self.clock, nodeId=7, maxBytes=self.budget, tombstoneTtl=5)
        # key -> (value or None for a tombstone, expiresAtMs, whether the
        # value replaced an entry, and so leaves a tombstone when it expires)
        self.model: dict[str, tuple[bytes | None, int, bool]] = {}

    def nowMs(self) -> int:
        return int(self.clock.seconds() * 1000)

    def live(self, key: str) -> bool:
        entry = self.model.get(key)
        return entry is not None and (not entry[1] or entry[1] > self.nowMs())

    def reconcile(self, written: str | None, evictionsBefore: int) -> None:
        """
        Drop from the model what the store evicted, checking each was an
        eviction: only ever to honour the budget, never the key just written.
        """
        vanished = [key for key in self.model if not self.store.occupies(key)]
        assert written not in vanished
        assert len(vanished) == self.store.evictions - evictionsBefore
        for key in vanished:
            del self.model[key]

    def forgetDropped(self) -> None:
        """
        Follow in the model what the store did on its own with expired
        entries: drop those it dropped, and turn into tombstones the values
        that replaced an entry (the tombstone keeps the value's version and
        runs out a tombstone lifetime after it).
        """
        for key in list(self.model):
            value, expiresAtMs, replaced = self.model[key]
            record = self.store.record(key, expired=True)
            if record is None:
                assert not self.live(key)
                del self.model[key]
            elif value is not None and record.tombstone:
                assert not self.live(key)
                assert replaced
                assert record.expiresAtMs == expiresAtMs + 5000
                self.model[key] = (None, record.expiresAtMs, False)

    @rule(key=keys, value=values, ttlMs=st.sampled_from([0, 0, 1, 500, 1500, 4000]))
    def put(self, key: str, value: bytes, ttlMs: int) -> None:
        before = self.store.evictions
        replaced = bool(ttlMs) and key in self.model
        record = self.store.put(key, value, ttlMs)
        assert record.expiresAtMs == (self.nowMs() + ttlMs if ttlMs else 0)
        self.model[key] = (value, record.expiresAtMs, replaced)
        self.reconcile(key, before)

    @rule(key=keys)
    def get(self, key: str) -> None:
        record = self.store.get(key)
        if self.live(key) and self.model[key][0] is not None:
            assert record is not None
            assert record.value == self.model[key][0]
        else:
            assert record is None
            # Reading an expired entry drops it, or leaves its tombstone.
            self.forgetDropped()

    @rule(key=keys)
    def delete(self, key: str) -> None:
        before = self.store.evictions
        existed = self.live(key) and self.model[key][0] is not None
        assert self.store.delete(key) == existed
        self.model[key] = (None, self.nowMs() + 5000, False)
        self.reconcile(key, before)

    @rule(seconds=st.sampled_from([0.001, 0.4, 1.0, 2.5, 6.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(budget=st.integers(min_value=1, max_value=5))
    def sweep(self, budget: int) -> None:
        assert self.store.sweep(budget) <= budget
        self.forgetDropped()

    @precondition(lambda self: bool(self.model))
    @rule(key=keys)
    def dropPartition(self, key: str) -> None:
        # Dropping the partition of a key forgets every entry of that
        # partition, tombstones and all, and nothing else.
        partition = partitionOf(key)
        dropped = [k for k in self.model if partitionOf(k) == partition]
        assert self.store.dropPartition(partition) == len(dropped)
        for k in dropped:
            del self.model[k]
        assert self.store.partitionEntries(partition) == 0
        assert self.store.partitionRoot(partition) == bytes(8)

    @rule()
    def sweepEverything(self) -> None:
        # A full sweep drops every entry whose expiry second has passed (and
        # may drop others already expired), and the byte count is exactly
        # what remains.
        self.clock.advance(1.0)
        while self.store.sweep(1000):
            pass
        self.forgetDropped()
        for _, expiresAtMs, _ in self.model.values():
            assert not expiresAtMs or (expiresAtMs // 1000 + 1) * 1000 > self.nowMs()
        expected = sum(
            entrySize(key, value or b"") for key, (value, _, _) in self.model.items()
        )
        assert self.store.stats().bytes == expected

    @invariant()
    def withinBudget(self) -> None:
        assert self.store.stats().bytes <= self.budget

    @invariant()
    def recordsMatch(self) -> None:
        for key in self.model:
            record = self.store.record(key)
            if self.live(key):
                assert record is not None
                value, expiresAtMs, _ = self.model[key]
                assert record.tombstone == (value is None)
                assert record.value == (value or b"")
                assert record.expiresAtMs == expiresAtMs
            else:
                assert record is None

    @invariant()
    def treesMatchRecords(self) -> None:
        """
        Every partition's Merkle root is that of a tree rebuilt from its
        entries: the unexpired records, and the expired entries not dropped
        yet (which the tree counts until they are removed).
        """
        byPartition: dict[int, list[tuple[str, Record]]] = {}
        for key, record in self.store.records(expired=True):
            byPartition.setdefault(partitionOf(key), []).append((key, record))
        for partition in PARTITIONS:
            rebuilt = MerkleTree.fromRecords(byPartition.get(partition, ()))
            assert self.store.partitionRoot(partition) == rebuilt.root()
            assert self.store.partitionEntries(partition) == rebuilt.entries
        unexpired = dict(self.store.records())
        for partition in byPartition:
            listed = self.store.partitionRecords(partition, range(256))
            assert dict(listed) == {
                k: r for k, r in unexpired.items() if partitionOf(k) == partition
            }

    @invariant()
    def partitionKeysMatch(self) -> None:
        """
        A partition's key count is its entries other than tombstones
        (expired values not dropped yet included), and the counts of all
        partitions add up to the store's.
        """
        values = Counter(
            partitionOf(key)
            for key, record in self.store.records(expired=True)
            if not record.tombstone
        )
        for partition in PARTITIONS:
            assert self.store.partitionKeys(partition) == values[partition]
        assert sum(map(self.store.partitionKeys, range(PARTITION_COUNT))) == len(
            self.store
        )

    @invariant()
    def keyCount(self) -> None:
        live = [k for k in self.model if self.live(k) and self.model[k][0] is not None]
        # Expired entries not yet swept do not count as keys, but the store
        # only learns they expired when it looks; so the count is bounded by
        # the model's, and equal to it after a sweep.
        assert len(self.store) >= len(live)


TestStoreModel = StoreModel.TestCase
TestStoreModel.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None
)


class StoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)

    def test_roundTrip(self) -> None:
        store = Store(self.clock, nodeId=1)
        store.put("k", b"\x00\xffbinary", binary=True)
        record = store.get("k")
        assert record is not None
        self.assertEqual((record.value, record.binary), (b"\x00\xffbinary", True))
        self.assertEqual(record.nodeId, 1)

    def test_expiryIsExactToTheMillisecond(self) -> None:
        store = Store(self.clock, nodeId=1)
        store.put("k", b"v", ttlMs=1500)
        self.clock.advance(1.499)
        self.assertIsNotNone(store.get("k"))
        self.clock.advance(0.001)
        self.assertIsNone(store.get("k"))
        self.assertEqual(store.stats().expirations, 1)

    def test_newRecordAtAnAbsoluteExpiry(self) -> None:
        """
        A record can be given its expiry as a time rather than a time to
        live (0 for none); a tombstone's is always the tombstone life.
        """
        store = Store(self.clock, nodeId=1, tombstoneTtl=60)
        nowMs = int(START * 1000)
        self.assertEqual(
            store.newRecord(b"v", expiresAtMs=nowMs + 5).expiresAtMs, nowMs + 5
        )
        self.assertEqual(store.newRecord(b"v", expiresAtMs=0).expiresAtMs, 0)
        tombstone = store.newRecord(b"", tombstone=True, expiresAtMs=5)
        self.assertEqual(tombstone.expiresAtMs, nowMs + 60_000)
        self.assertRaises(ValueError, store.newRecord, b"v", 10, expiresAtMs=5)
        self.assertRaises(ValueError, store.newRecord, b"v", expiresAtMs=-1)

    def test_sweepRemovesExpiredKeysWithoutReads(self) -> None:
        """
        Keys that expire are dropped by the sweep without anybody reading
        them, in bounded steps, so they do not pile up in memory.
        """
        store = Store(self.clock, nodeId=1)
        for i in range(1000):
            store.put(f"k{i}", b"v", ttlMs=1000)
        store.put("stays", b"v")
        self.clock.advance(2)
        looked = [store.sweep(300) for _ in range(5)]
        self.assertEqual(looked, [300, 300, 300, 100, 0])
        self.assertEqual(len(store), 1)
        stats = store.stats()
        self.assertEqual(stats.expirations, 1000)
        self.assertEqual(stats.bytes, entrySize("stays", b"v"))

    def test_sweepSkipsRewrittenKeys(self) -> None:
        store = Store(self.clock, nodeId=1)
        store.put("k", b"old", ttlMs=1000)
        store.put("k", b"new", ttlMs=10_000)
        self.clock.advance(3)
        store.sweep(100)
        record = store.get("k")
        assert record is not None
        self.assertEqual(record.value, b"new")

    def test_evictsLeastRecentlyUsed(self) -> None:
        """
        Beyond the budget the least recently used key goes first: a key read
        since it was written gets a second chance.
        """
        store = Store(self.clock, nodeId=1, maxBytes=3 * entrySize("a", b"v"))
        for key in "abc":
            store.put(key, b"v")
        store.get("a")
        store.put("d", b"v")
        self.assertEqual(
            [k for k in "abcd" if store.record(k) is not None], ["a", "c", "d"]
        )
        store.put("e", b"v")
        self.assertEqual(
            [k for k in "abcde" if store.record(k) is not None], ["a", "d", "e"]
        )
        self.assertEqual(store.stats().evictions, 2)

    def test_valueLargerThanBudget(self) -> None:
        store = Store(self.clock, nodeId=1, maxBytes=1000)
        self.assertRaises(ValueTooLarge, store.put, "k", b"x" * 1000)
        self.assertEqual(store.stats().bytes, 0)

    def test_deleteLeavesTombstoneThatWinsOverOlderWrites(self) -> None:
        store = Store(self.clock, nodeId=1)
        older = store.put("k", b"v")
        self.assertTrue(store.delete("k"))
        self.assertFalse(store.delete("k"))
        self.assertIsNone(store.get("k"))
        self.assertFalse(store.merge("k", older))
        self.assertIsNone(store.get("k"))
        tombstone = store.record("k")
        assert tombstone is not None
        self.assertTrue(tombstone.tombstone)
        self.assertEqual(store.stats().tombstones, 1)
        self.assertEqual(len(store), 0)

    def test_tombstonesArePurged(self) -> None:
        store = Store(self.clock, nodeId=1, tombstoneTtl=60)
        store.delete("k")
        self.clock.advance(61)
        store.sweep(10)
        self.assertEqual(store.stats().tombstones, 0)
        self.assertEqual(store.stats().bytes, 0)

    def test_mergeExpiredRecordIsIgnored(self) -> None:
        store = Store(self.clock, nodeId=1)
        expired = Record(b"v", int(START * 1000) - 1, fromMs(int(START * 1000)), 2)
        self.assertFalse(store.merge("k", expired))
        self.assertIsNone(store.record("k"))

    def test_expiredVersionStillOutranksOlder(self) -> None:
        """
        A newer write that has expired (and is not swept yet) keeps older
        versions out; arriving already expired, it replaces an older one
        with its tombstone.
        """
        store = Store(self.clock, nodeId=1)
        old = Store(self.clock, nodeId=2).newRecord(b"old")
        self.clock.advance(0.01)
        newer = store.put("k", b"new", ttlMs=1000)
        self.clock.advance(2)
        self.assertIsNone(store.record("k"))
        self.assertEqual(store.record("k", expired=True), newer)
        self.assertFalse(store.merge("k", old))
        self.assertIsNone(store.get("k"))

        other = Store(self.clock, nodeId=3)
        other.merge("k", old)
        self.assertTrue(other.merge("k", newer))
        self.assertEqual(
            other.record("k"), tombstoneOf(newer, DEFAULT_EXPIRY_TOMBSTONE_TTL * 1000)
        )
        # Ten minutes, shorter than a delete's hour.
        self.assertLess(DEFAULT_EXPIRY_TOMBSTONE_TTL, DEFAULT_TOMBSTONE_TTL)
        self.assertFalse(other.merge("k", old))
        self.assertEqual(len(other), 0)

    def test_expiringReplacementLeavesTombstone(self) -> None:
        """
        A value with a time to live that replaced an older entry leaves a
        tombstone of its own version when it expires, whether the sweep or
        a read finds it expired: the older value, still held by a replica
        that missed the newer one, is refused when a repair brings it back.
        The tombstone runs out the expiry tombstone lifetime after the value
        did (here that of a delete's tombstone, which caps it).
        """
        for lapse in ("sweep", "read"):
            store = Store(self.clock, nodeId=1, tombstoneTtl=60)
            old = store.put("k", b"old")
            self.clock.advance(0.01)
            newer = store.put("k", b"new", ttlMs=1000)
            self.clock.advance(2)
            if lapse == "sweep":
                while store.sweep(100):
                    pass
            else:
                self.assertIsNone(store.get("k"))
            tombstone = tombstoneOf(newer, 60_000)
            self.assertEqual(store.record("k"), tombstone, lapse)
            self.assertEqual(store.stats().tombstones, 1)
            self.assertEqual(store.stats().expirations, 1)
            self.assertFalse(store.merge("k", old))
            self.assertIsNone(store.get("k"))
            self.clock.advance(60)
            while store.sweep(100):
                pass
            self.assertFalse(store.occupies("k"))

    def test_expiringFirstWriteLeavesNothing(self) -> None:
        """
        A value with a time to live that replaced nothing leaves nothing
        when it expires: keys written once with a time to live cost no
        memory afterwards. Nor does a value that lapses after its tombstone
        would have run out.
        """
        store = Store(self.clock, nodeId=1, tombstoneTtl=60)
        store.put("once", b"v", ttlMs=1000)
        store.put("late", b"old")
        store.put("late", b"new", ttlMs=1000)
        self.clock.advance(2)
        while store.sweep(100):
            pass
        self.assertFalse(store.occupies("once"))
        self.assertTrue(store.occupies("late"))
        store.put("stale", b"old")
        store.put("stale", b"new", ttlMs=1000)
        self.clock.advance(62)
        self.assertIsNone(store.get("stale"))
        self.assertFalse(store.occupies("stale"))

    def test_replacedMarkIsLocal(self) -> None:
        """
        Whether a value replaced something here changes neither what peers
        are sent of it nor the Merkle trees: a replica that held an older
        version and one that did not hold the newer one identically; and
        the tombstones both end with, when one replica got it from the
        other, are identical too.
        """
        replaced = Store(self.clock, nodeId=1)
        fresh = Store(self.clock, nodeId=2)
        replaced.put("k", b"old")
        self.clock.advance(0.01)
        newer = replaced.put("k", b"new", ttlMs=1000)
        fresh.merge("k", newer)
        self.assertEqual(replaced.encoded("k"), newer.encode())
        self.assertEqual(fresh.encoded("k"), newer.encode())
        partition = partitionOf("k")
        self.assertEqual(
            replaced.partitionRoot(partition), fresh.partitionRoot(partition)
        )
        self.clock.advance(2)
        while replaced.sweep(100) or fresh.sweep(100):
            pass
        self.assertFalse(fresh.occupies("k"))
        tombstone = replaced.record("k")
        assert tombstone is not None
        self.assertTrue(fresh.merge("k", tombstone))
        self.assertEqual(fresh.encoded("k"), replaced.encoded("k"))
        self.assertEqual(
            replaced.partitionRoot(partition), fresh.partitionRoot(partition)
        )

    def test_peersCannotMarkReplacement(self) -> None:
        """
        The replica-local mark arriving from a peer is dropped: a value that
        replaced nothing here leaves nothing when it expires.
        """
        store = Store(self.clock, nodeId=1)
        blob = bytearray(store.newRecord(b"v", ttlMs=1000).encode())
        blob[HEADER_SIZE - 1] |= 0x80
        self.assertTrue(store.mergeEncoded("k", bytes(blob)))
        self.clock.advance(2)
        while store.sweep(100):
            pass
        self.assertFalse(store.occupies("k"))

    def test_repairMergeDoesNotEvict(self) -> None:
        """
        A merge with evict=False takes a key the store has no entry for only
        when that evicts nothing, and a newer version of a held key always.
        """
        size = entrySize("a", b"v")
        store = Store(self.clock, nodeId=1, maxBytes=2 * size)
        store.put("a", b"v")
        store.put("b", b"v")
        other = Store(self.clock, nodeId=2)
        self.assertFalse(store.merge("c", other.newRecord(b"v"), evict=False))
        self.assertFalse(store.occupies("c"))
        self.assertTrue(store.merge("a", other.newRecord(b"w"), evict=False))
        self.assertEqual(store.stats().evictions, 0)
        self.assertTrue(store.merge("c", other.newRecord(b"v")))
        self.assertEqual(store.stats().evictions, 1)

    def test_partitionTreesFollowEveryChange(self) -> None:
        """
        Writes, deletes, expiry and eviction all reach the partition's tree:
        a store that ends empty has empty roots.
        """
        store = Store(self.clock, nodeId=1, maxBytes=2 * entrySize("k0", b"v"))
        store.put("k0", b"v", ttlMs=1000)
        store.put("k1", b"v")
        partition = partitionOf("k1")
        self.assertNotEqual(store.partitionRoot(partition), bytes(8))
        store.put("k2", b"v", ttlMs=1000)  # evicts k0
        store.delete("k1")
        self.clock.advance(store._tombstoneTtlMs / 1000 + 2)
        store.sweep(100)
        store.get("k2")
        self.assertEqual(store.stats().evictions, 1)
        self.assertEqual(
            [store.partitionRoot(p) for p in range(PARTITION_COUNT)],
            [bytes(8)] * PARTITION_COUNT,
        )
        self.assertRaises(ValueError, store.partitionRecords, PARTITION_COUNT, [0])
        self.assertRaises(ValueError, store.partitionRecords, 0, [256])

    def test_localWritesOrderAfterObservedVersions(self) -> None:
        store = Store(self.clock, nodeId=1)
        future = Record(b"remote", 0, fromMs(int(START * 1000) + 60_000), 2)
        self.assertTrue(store.merge("k", future))
        local = store.put("k", b"local")
        self.assertGreater(local.version, future.version)


records = st.builds(
    Record,
    # Computed from the value (Hypothesis fills every field it is not given).
    contentHash=st.none(),
    value=st.binary(max_size=8),
    expiresAtMs=st.just(0),
    timestamp=st.integers(min_value=fromMs(1), max_value=fromMs(3)),
    nodeId=st.integers(min_value=0, max_value=3),
    tombstone=st.booleans(),
    # Counters merge otherwise: tests/store/test_counter.py.
    counter=st.just(False),
)


class MergeTests(SynchronousTestCase):
    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from("abc"), records), max_size=8))
    def test_anyDeliveryOrderConverges(self, writes: list[tuple[str, Record]]) -> None:
        """
        Replicas that receive the same writes in any order hold the same
        records afterwards (last writer wins by version).
        """
        states = set()
        for order in itertools.islice(itertools.permutations(writes), 24):
            clock = Clock()
            store = Store(clock, nodeId=9)
            for key, record in order:
                store.merge(key, record)
            states.add(
                tuple(sorted((k, r.version, r.value) for k, r in store.records()))
            )
        self.assertLessEqual(len(states), 1)

    @settings(max_examples=200, deadline=None)
    @given(records, records)
    def test_encodedMergeFollowsPrecedence(self, first: Record, second: Record) -> None:
        """
        A record in its wire form replaces the stored one exactly when its
        precedence is higher, and is then stored byte for byte.
        """
        store = Store(Clock(), nodeId=9)
        store.mergeEncoded("k", first.encode())
        applied = store.mergeEncoded("k", second.encode())
        self.assertEqual(applied, second.precedence > first.precedence)
        winner = second if applied else first
        self.assertEqual(store.encoded("k"), winner.encode())

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from("ab"), records), max_size=6))
    def test_mergeIsMergeEncoded(self, writes: list[tuple[str, Record]]) -> None:
        """
        Merging records leaves a store exactly as merging their encodings
        does: the same answers, bytes, Merkle roots, clock and counts (merge
        encodes a record itself, and observes only a timestamp its clock
        has not passed).
        """
        byRecord = Store(Clock(), nodeId=9)
        byBlob = Store(Clock(), nodeId=9)
        # A write stamped here first, as a local write is.
        local = byRecord.newRecord(b"mine")
        self.assertEqual(byBlob.newRecord(b"mine"), local)
        for key, record in [("a", local), *writes]:
            self.assertEqual(
                byRecord.merge(key, record), byBlob.mergeEncoded(key, record.encode())
            )
        self.assertEqual(byRecord.hlc.last, byBlob.hlc.last)
        self.assertEqual(byRecord.stats(), byBlob.stats())
        for key in "ab":
            self.assertEqual(byRecord.encoded(key), byBlob.encoded(key))
            partition = partitionOf(key)
            self.assertEqual(
                byRecord.partitionRoot(partition), byBlob.partitionRoot(partition)
            )

    def test_encodedMergeDropsUnknownFlags(self) -> None:
        """
        Flag bits a record does not have are not stored: replicas hash what
        they hold, so they must hold the same bytes.
        """
        store = Store(Clock(), nodeId=9)
        blob = bytearray(Record(b"v", 0, fromMs(1), 1).encode())
        blob[20] |= 0x80
        self.assertTrue(store.mergeEncoded("k", bytes(blob)))
        self.assertEqual(store.encoded("k"), Record(b"v", 0, fromMs(1), 1).encode())

    def test_encodedMergeRefusesAShortBlob(self) -> None:
        store = Store(Clock(), nodeId=9)
        self.assertRaises(ValueError, store.mergeEncoded, "k", b"short")
        self.assertIsNone(store.encoded("k"))


class HybridLogicalClockTests(SynchronousTestCase):
    def test_followsWallClock(self) -> None:
        clock = Clock()
        clock.advance(START)
        hlc = HybridLogicalClock(clock)
        self.assertEqual(physicalMs(hlc.now()), int(START * 1000))

    def test_strictlyIncreasingWhenClockStandsStillOrStepsBack(self) -> None:
        clock = Clock()
        clock.advance(START)
        hlc = HybridLogicalClock(clock)
        first = hlc.now()
        second = hlc.now()
        clock.rightNow -= 10
        third = hlc.now()
        self.assertLess(first, second)
        self.assertLess(second, third)

    def test_observedTimestampsAreOvertaken(self) -> None:
        clock = Clock()
        clock.advance(START)
        hlc = HybridLogicalClock(clock)
        remote = fromMs(int(START * 1000) + 5000) + 3
        hlc.observe(remote)
        self.assertGreater(hlc.now(), remote)


# Keys in two partitions, for the key counts of partitions.
COUNTED = ["{t}a", "{t}b", "{t}c", "{u}a", "{u}b"]
_START_MS = int(START * 1000)
merged = (
    st.builds(
        Record,
        contentHash=st.none(),
        value=st.binary(max_size=8),
        expiresAtMs=st.sampled_from(
            [0, 0, _START_MS - 1, _START_MS + 500, _START_MS + 3000]
        ),
        timestamp=st.sampled_from([fromMs(_START_MS + ms) for ms in (-1000, 0, 2000)]),
        nodeId=st.integers(min_value=1, max_value=3),
        tombstone=st.booleans(),
        binary=st.just(False),
        counter=st.just(False),
    )
    | counterRecords
)
changes = st.one_of(
    st.tuples(
        st.just("put"), st.sampled_from(COUNTED), st.sampled_from([0, 0, 500, 2000])
    ),
    st.tuples(st.just("delete"), st.sampled_from(COUNTED)),
    st.tuples(st.just("get"), st.sampled_from(COUNTED)),
    st.tuples(st.just("merge"), st.sampled_from(COUNTED), merged),
    st.tuples(st.just("advance"), st.sampled_from([0.3, 1.0, 4.0])),
    st.tuples(st.just("sweep"), st.integers(min_value=1, max_value=4)),
    st.tuples(st.just("drop"), st.sampled_from(COUNTED)),
)


class PartitionKeysTests(SynchronousTestCase):
    """
    L{Store.partitionKeys} counts a partition's keys as C{len(store)}
    counts the store's, through every way an entry comes and goes.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.partition = partitionOf("{t}")

    def keys(self, store: Store) -> int:
        return store.partitionKeys(self.partition)

    def test_writesDeletesAndExpiry(self) -> None:
        store = Store(self.clock, nodeId=1, tombstoneTtl=5)
        self.assertNotEqual(partitionOf("other"), self.partition)
        store.put("other", b"v")
        store.put("{t}a", b"v")
        store.put("{t}b", b"v")
        store.put("{t}a", b"w")
        self.assertEqual(self.keys(store), 2)
        store.delete("{t}a")
        store.delete("{t}a")
        store.delete("{t}never")
        self.assertEqual(self.keys(store), 1)
        store.put("{t}a", b"back")
        store.put("{t}c", b"v", ttlMs=1000)
        self.assertEqual(self.keys(store), 3)
        # Expired, not dropped yet: counted, as len(store) counts it.
        self.clock.advance(1.0)
        self.assertEqual((self.keys(store), len(store)), (3, 4))
        self.assertIsNone(store.get("{t}c"))
        self.assertEqual(self.keys(store), 2)
        # A value that replaced one leaves a tombstone when it expires.
        store.put("{t}b", b"v2", ttlMs=500)
        self.clock.advance(2.0)
        store.sweep(100)
        self.assertEqual(self.keys(store), 1)
        self.assertEqual(store.partitionEntries(self.partition), 3)
        # Tombstones run out: the count stays.
        self.clock.advance(6.0)
        store.sweep(100)
        self.assertEqual(store.partitionEntries(self.partition), 1)
        self.assertEqual((self.keys(store), len(store)), (1, 2))

    def test_mergesEvictionAndDrop(self) -> None:
        size = entrySize("{t}a", b"v")
        store = Store(self.clock, nodeId=1, maxBytes=3 * size)
        other = Store(self.clock, nodeId=2)
        older = other.newRecord(b"old")
        self.assertTrue(store.merge("{t}a", other.newRecord(b"v")))
        self.assertFalse(store.merge("{t}a", older))
        self.assertTrue(store.merge("{t}b", other.newRecord(b"v")))
        self.assertEqual(self.keys(store), 2)
        self.assertTrue(store.merge("{t}a", other.newRecord(b"", tombstone=True)))
        self.assertEqual(self.keys(store), 1)
        expired = other.newRecord(b"v", expiresAtMs=other.nowMs() - 1)
        self.assertFalse(store.merge("{t}c", expired))
        self.assertEqual(self.keys(store), 1)
        # The third entry fits; a fourth evicts the least recently used.
        store.put("{t}c", b"v")
        store.put("{t}d", b"v")
        self.assertEqual(store.stats().evictions, 1)
        self.assertEqual(self.keys(store), len(store))
        self.assertEqual(store.dropPartition(self.partition), 3)
        self.assertEqual((self.keys(store), len(store)), (0, 0))

    @settings(max_examples=200, deadline=None)
    @given(st.lists(changes, max_size=30))
    def test_anyChanges(self, changes: list[tuple[object, ...]]) -> None:
        """
        After any changes (writes, deletes, reads of expired keys, merges
        of values, tombstones, expired records and counters, sweeps,
        evictions, dropped partitions), each partition counts its entries
        that are not tombstones, and the counts add up to C{len(store)}.
        """
        clock = Clock()
        clock.advance(START)
        store = Store(
            clock, nodeId=1, maxBytes=4 * (ENTRY_OVERHEAD + 40), tombstoneTtl=3
        )
        for change in changes:
            match change:
                case ("put", str(key), int(ttlMs)):
                    store.put(key, b"value", ttlMs)
                case ("delete", str(key)):
                    store.delete(key)
                case ("get", str(key)):
                    store.get(key)
                case ("merge", str(key), Record() as record):
                    store.merge(key, record)
                case ("advance", float(seconds)):
                    clock.advance(seconds)
                case ("sweep", int(budget)):
                    store.sweep(budget)
                case ("drop", str(key)):
                    store.dropPartition(partitionOf(key))
            values = Counter(
                partitionOf(key)
                for key, record in store.records(expired=True)
                if not record.tombstone
            )
            for key in COUNTED:
                self.assertEqual(
                    store.partitionKeys(partitionOf(key)), values[partitionOf(key)]
                )
            self.assertEqual(
                sum(map(store.partitionKeys, range(PARTITION_COUNT))), len(store)
            )


class InstallTests(SynchronousTestCase):
    """
    L{Store.install} takes a partition read back from disk: the same
    bookkeeping as the entries merged one by one, the Merkle tree built when
    first needed, expiry scheduled.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)

    def _entries(self) -> tuple[int, dict[str, bytes]]:
        source = Store(self.clock, nodeId=1)
        # One hash tag: one partition.
        keys = [f"{{tag}}{i}" for i in range(60)]
        partition = partitionOf("{tag}")
        for index, key in enumerate(keys):
            if index % 3 == 0:
                source.put(key, b"v", ttlMs=5_000)
            elif index % 3 == 1:
                source.delete(key)
            else:
                source.put(key, b"value %d" % index)
        return partition, dict(source.partitionItems(partition))

    def test_sameAsMerged(self) -> None:
        partition, entries = self._entries()
        merged = Store(self.clock, nodeId=2)
        for key, blob in entries.items():
            merged.mergeEncoded(key, blob)
        installed = Store(self.clock, nodeId=2)
        self.assertEqual(installed.install(partition, dict(entries)), len(entries))

        def held(store: Store) -> tuple[int, int, int, int]:
            # What the store holds, not what it was asked to do.
            stats = store.stats()
            return (stats.keys, stats.tombstones, stats.bytes, stats.expirations)

        self.assertEqual(held(installed), held(merged))
        self.assertEqual(
            installed.partitionKeys(partition), merged.partitionKeys(partition)
        )
        self.assertEqual(installed.unbuiltTrees(), [partition])
        self.assertEqual(
            installed.partitionRoot(partition), merged.partitionRoot(partition)
        )
        self.assertEqual(installed.unbuiltTrees(), [])
        self.clock.advance(6)
        installed.sweep(10_000)
        merged.sweep(10_000)
        self.assertEqual(held(installed), held(merged))
        self.assertGreater(installed.stats().expirations, 0)
        self.assertEqual(
            installed.partitionRoot(partition), merged.partitionRoot(partition)
        )

    def test_mergedIntoAPartitionWrittenMeanwhile(self) -> None:
        """
        A partition written to while the data directory loaded merges what
        disk gives back by version: the newer write stays.
        """
        partition, entries = self._entries()
        key = next(k for k, b in entries.items() if b"value" in b)
        store = Store(self.clock, nodeId=2)
        self.clock.advance(1)
        store.put(key, b"newer")
        store.install(partition, entries)
        record = store.get(key)
        assert record is not None
        self.assertEqual(record.value, b"newer")
        merged = Store(self.clock, nodeId=3)
        for other, blob in entries.items():
            merged.mergeEncoded(other, blob)
        self.assertEqual(len(store), len(merged))
