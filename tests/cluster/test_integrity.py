"""
Damaged records between nodes: a copy that fails its content hash, in
flight or in one replica's memory, is discarded, counted and repaired from
another replica, and clients still read the value written. Whole nodes in
memory (L{disperse.testing.nodes}), on one clock.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from disperse.cluster.coordinator import Consistency, ReadOutcome, WriteOutcome
from disperse.cluster.peer.server import DamagedRecords
from disperse.node import Node
from disperse.store import Record
from disperse.store.integrity import Scrub
from disperse.store.partition import partitionOf
from disperse.store.record import intact
from disperse.testing.damage import damageEntry, flipped
from disperse.testing.nodes import MemoryNodes

KEY = "user:42"
VALUE = b"the value written"


class IntegrityClusterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.cluster = MemoryNodes(("a", "b", "c"))
        self.partition = partitionOf(KEY)

    def write(self, node: Node, key: str = KEY, value: bytes = VALUE) -> WriteOutcome:
        written = node.put(key, value, level=Consistency.all)
        if isinstance(written, Deferred):
            self.cluster.settle(0.1)
            written = self.successResultOf(written)
        self.assertTrue(written.ok)
        return written

    def read(self, node: Node, level: Consistency = Consistency.quorum) -> ReadOutcome:
        read = node.coordinator.read(KEY, level)
        if isinstance(read, Deferred):
            self.cluster.settle(0.1)
            read = self.successResultOf(read)
        return read

    def firstAsked(self, coordinator: str) -> str:
        """
        The replica C{coordinator}'s reads of L{KEY} ask first.
        """
        node = self.cluster[coordinator]
        owners = node.coordinator.owners(KEY)
        return node.coordinator._preferred(owners)[0]

    def assertHeldIntact(self, name: str, record: Record) -> None:
        blob = self.cluster[name].store.encoded(KEY)
        assert blob is not None
        self.assertTrue(intact(blob))
        self.assertEqual(Record.decode(blob), record)

    def assertRootsAgree(self) -> None:
        roots = {
            name: node.store.partitionRoot(self.partition)
            for name, node in self.cluster.nodes.items()
        }
        self.assertEqual(len(set(roots.values())), 1, roots)

    def test_damagedReplicaReadAndRepaired(self) -> None:
        """
        A quorum read that gets a damaged copy from one replica asks
        another in its place, returns the value written, and repairs the
        damaged replica; the coordinator counts the damage.
        """
        self.write(self.cluster["a"])
        written = self.cluster["a"].store.record(KEY)
        assert written is not None
        damaged = self.firstAsked("a")
        damageEntry(self.cluster[damaged].store, KEY)
        outcome = self.read(self.cluster["a"])
        self.assertTrue(outcome.ok)
        self.assertEqual(outcome.answered, 2)
        assert outcome.value is not None
        self.assertEqual(outcome.value.value, VALUE)
        self.assertEqual(self.cluster["a"].store.integrity.peer, 1)
        self.cluster.settle(0.1)
        self.assertHeldIntact(damaged, written)
        self.assertEqual(self.cluster[damaged].store.integrity.replaced, 1)
        self.assertEqual(self.cluster["a"].coordinator.counters.readRepairs, 1)
        self.assertRootsAgree()

    def test_damagedLocalCopy(self) -> None:
        """
        A read that asks several replicas checks the coordinator's own copy
        too: a damaged one is no answer, another replica is asked, and the
        copy here is repaired.
        """
        a = self.cluster["a"]
        self.write(a)
        written = a.store.record(KEY)
        assert written is not None
        damageEntry(a.store, KEY)
        outcome = self.read(a)
        self.assertTrue(outcome.ok)
        assert outcome.value is not None
        self.assertEqual(outcome.value.value, VALUE)
        self.assertEqual(a.store.integrity.failures()["scrub"], 1)
        self.assertHeldIntact("a", written)
        self.assertEqual(a.store.integrity.replaced, 1)

    def test_damagedHintDropped(self) -> None:
        """
        A hint gone bad in the coordinator's memory is dropped before
        delivery, rather than fail its whole batch at every round.
        """
        a = self.cluster["a"]
        a.coordinator.start()
        self.addCleanup(a.coordinator.stop)
        good = Record(b"good", 0, 10, 1)
        bad = Record(b"bad", 0, 10, 1, contentHash=12345)
        a.coordinator.hints.add("b", "k1", good)
        a.coordinator.hints.add("b", "k2", bad)
        a.coordinator._wakeHints()
        self.cluster.settle(1.5)
        self.assertEqual(self.cluster["b"].store.record("k1"), good)
        self.assertIsNone(self.cluster["b"].store.record("k2"))
        self.assertEqual(a.coordinator.hints.pending("b"), 0)
        self.assertEqual(a.coordinator.hints.counters.dropped, 1)
        self.assertEqual(a.store.integrity.failures()["scrub"], 1)
        self.assertEqual(self.cluster["b"].store.integrity.peer, 0)

    def test_readAnswerDamagedInFlight(self) -> None:
        self.write(self.cluster["a"])
        first = self.firstAsked("a")
        self.cluster.network.damaging.add((first, "a"))
        outcome = self.read(self.cluster["a"])
        self.assertTrue(outcome.ok)
        assert outcome.value is not None
        self.assertEqual(outcome.value.value, VALUE)
        self.assertEqual(self.cluster["a"].store.integrity.peer, 1)

    def test_noIntactCopyEnough(self) -> None:
        """
        At C{all}, a damaged copy is a missing answer: the read fails its
        level rather than return it.
        """
        self.write(self.cluster["a"])
        damageEntry(self.cluster["b"].store, KEY)
        outcome = self.read(self.cluster["a"], Consistency.all)
        self.assertFalse(outcome.ok)
        self.assertEqual(outcome.answered, 2)
        assert outcome.value is not None
        self.assertEqual(outcome.value.value, VALUE)

    def test_writeDamagedInFlight(self) -> None:
        """
        A replica does not take a write damaged on the way, nor
        acknowledge it: the coordinator keeps a hint, whose delivery
        later brings the intact record.
        """
        a = self.cluster["a"]
        a.coordinator.start()
        self.addCleanup(a.coordinator.stop)
        self.cluster.network.damaging.add(("a", "b"))
        written = a.put(KEY, VALUE, level=Consistency.quorum)
        if isinstance(written, Deferred):
            self.cluster.settle(0.1)
            written = self.successResultOf(written)
        self.assertTrue(written.ok)
        self.cluster.settle(0.1)
        self.assertIsNone(self.cluster["b"].store.record(KEY))
        self.assertEqual(self.cluster["b"].store.integrity.peer, 1)
        self.assertEqual(a.coordinator.hints.pending("b"), 1)
        self.cluster.network.damaging.clear()
        self.cluster.settle(1.5)
        record = a.store.record(KEY)
        assert record is not None
        self.assertHeldIntact("b", record)
        self.assertRootsAgree()

    def test_applyTakesTheIntactOnes(self) -> None:
        """
        A batch with a damaged record: the others are merged, the damaged
        one is not, and the call fails.
        """
        b = self.cluster["b"]
        good = Record(b"good", 0, 10, 1).encode()
        bad = flipped(Record(b"bad", 0, 10, 1).encode())
        with self.assertRaises(DamagedRecords) as raised:
            b.replica.applyLocal([("k1", good), ("k2", bad)], sender="a")
        self.assertEqual(raised.exception.count, 1)
        self.assertIsNotNone(b.store.record("k1"))
        self.assertIsNone(b.store.record("k2"))
        self.assertEqual(b.store.integrity.peer, 1)

    def test_antiEntropyRangeDamagedInFlight(self) -> None:
        """
        A range answer with a damaged copy: not taken (counted), and the
        exchange goes on as if the peer lacked it; once the link is sound,
        the next exchange takes it.
        """
        a, b = self.cluster["a"], self.cluster["b"]
        self.write(a)
        newer = b.putLocal(KEY, b"newer, on b alone")
        self.cluster.network.damaging.add(("b", "a"))
        self.cluster.until(
            Deferred.fromCoroutine(a.antiEntropy.exchange(self.partition, "b"))
        )
        self.assertEqual(a.store.integrity.peer, 1)
        self.assertEqual(b.store.integrity.peer, 0)
        record = a.store.record(KEY)
        assert record is not None
        self.assertEqual(record.value, VALUE)
        self.assertHeldIntact("b", newer)
        self.cluster.network.damaging.clear()
        self.cluster.until(
            Deferred.fromCoroutine(a.antiEntropy.exchange(self.partition, "b"))
        )
        self.assertHeldIntact("a", newer)

    def test_exchangeFindsOwnDamage(self) -> None:
        """
        An exchange over leaves that differ checks this node's copies too:
        one gone bad is dropped and the peer's taken in its place.
        """
        a, b = self.cluster["a"], self.cluster["b"]
        self.write(a)
        written = a.store.record(KEY)
        assert written is not None
        # Another key of the same Merkle leaf, on b alone, makes the leaf
        # differ (a hash tag of the key keeps its partition).
        tree = a.store.partitionTree(self.partition)
        other = next(
            key
            for key in (f"{{{KEY}}}{i}" for i in range(100_000))
            if tree.leafOf(key) == tree.leafOf(KEY)
        )
        b.putLocal(other, b"b alone")
        damageEntry(a.store, KEY)
        self.cluster.until(
            Deferred.fromCoroutine(a.antiEntropy.exchange(self.partition, "b"))
        )
        self.assertEqual(a.store.integrity.failures()["scrub"], 1)
        self.assertHeldIntact("a", written)
        self.assertIsNotNone(a.store.record(other))

    def test_scrubThenAntiEntropy(self) -> None:
        """
        The scrub removes a damaged entry; anti-entropy, whose trees now
        differ, brings it back from another replica.
        """
        self.write(self.cluster["a"])
        written = self.cluster["a"].store.record(KEY)
        assert written is not None
        b = self.cluster["b"]
        damageEntry(b.store, KEY)
        scrub = Scrub(b.store)
        while not b.store.integrity.scrubPasses:
            scrub.step(10_000)
        self.assertEqual(b.store.integrity.scrub, 1)
        self.assertIsNone(b.store.record(KEY))
        self.assertNotEqual(
            b.store.partitionRoot(self.partition),
            self.cluster["a"].store.partitionRoot(self.partition),
        )
        self.cluster.until(
            Deferred.fromCoroutine(b.antiEntropy.exchange(self.partition, "a"))
        )
        self.assertHeldIntact("b", written)
        self.assertRootsAgree()

    def test_treeSummedAgain(self) -> None:
        """
        An entry damaged in memory and then overwritten before the scrub
        found it leaves its leaf's digest wrong (its first digest cannot
        be subtracted); the next exchange finds the leaf differing with no
        record to move, and sums it again.
        """
        self.write(self.cluster["a"])
        damageEntry(self.cluster["b"].store, KEY)
        self.write(self.cluster["a"], value=b"newer")
        self.assertNotEqual(
            self.cluster["b"].store.partitionRoot(self.partition),
            self.cluster["a"].store.partitionRoot(self.partition),
        )
        self.cluster.until(
            Deferred.fromCoroutine(
                self.cluster["b"].antiEntropy.exchange(self.partition, "a")
            )
        )
        self.assertEqual(self.cluster["b"].store.integrity.leavesResummed, 1)
        self.assertRootsAgree()
