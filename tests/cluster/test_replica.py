"""
Tests for L{disperse.cluster.replica}: what a replica answers to
anti-entropy exchanges, repairs that do not evict, and read holds.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from disperse.cluster.coordinator import Consistency
from disperse.cluster.peer.server import NotCaughtUp
from disperse.cluster.replica import MAX_READ_HOLD, Replica
from disperse.store import Record, Store
from disperse.store.merkle import DigestQuery, Digests
from disperse.store.partition import PARTITION_COUNT, partitionOf
from tests.cluster.test_coordinator import Cluster


class ReplicaTests(SynchronousTestCase):
    def test_digestsAndRange(self) -> None:
        cluster = Cluster()
        cluster.put("n0", "k", b"v", Consistency.all)
        cluster.settle()
        node = cluster.replicas["n1"]
        store = cluster.stores["n1"]
        partition = partitionOf("k")
        tree = store.partitionTree(partition)
        self.assertEqual(
            node.digestsLocal(partition, 0, [0]), Digests(0, {0: tree.root()})
        )
        leaf = tree.leafOf("k")
        asked = DigestQuery(2, (leaf, (leaf + 1) % 256))
        answer = node.digestsLocal(partition, *asked)
        self.assertEqual(
            cluster.stores["n0"].partitionTree(partition).compare(asked, answer), []
        )
        self.assertEqual(node.rangeLocal(partition, [leaf]), [("k", store.record("k"))])
        self.assertEqual(node.rangeLocal(partition, [(leaf + 1) % 256]), [])
        for bad in [
            lambda: node.digestsLocal(PARTITION_COUNT, 0, [0]),
            lambda: node.digestsLocal(0, 3, [0]),
            lambda: node.digestsLocal(0, 1, [16]),
            lambda: node.rangeLocal(0, [256]),
            lambda: node.rangeLocal(-1, [0]),
        ]:
            self.assertRaises(ValueError, bad)

    def test_repairApplyDoesNotEvict(self) -> None:
        clock = Clock()
        store = Store(clock, 1, maxBytes=300)
        node = Replica(store=store, clock=clock)
        store.put("held", b"v")
        record = Store(clock, 2).newRecord(b"x" * 100)
        blob = record.encode()
        self.assertEqual(node.applyLocal([("new", blob)], evict=False), [False])
        self.assertEqual(node.applyLocal([("new", blob)]), [True])
        self.assertEqual(store.stats().evictions, 1)

    def test_readHoldEnds(self) -> None:
        """
        A partition held out of reads refuses fetches until released, or
        until the hold's bound passes (with a warning), whichever is first.
        """
        clock = Clock()
        store = Store(clock, 1)
        node = Replica(store=store, clock=clock)
        store.put("k", b"v")
        store.put("other", b"w")
        partition = partitionOf("k")
        node.holdReads([partition, partitionOf("other")])
        self.assertRaises(NotCaughtUp, node.fetchLocal, ["k"])
        node.releaseReads([partitionOf("other")])
        self.assertEqual(node.heldPartitions(), frozenset({partition}))
        clock.advance(MAX_READ_HOLD - 1)
        self.assertRaises(NotCaughtUp, node.fetchLocal, ["other", "k"])
        clock.advance(1)
        found = node.fetchLocal(["k"])
        self.assertEqual(
            [Record.decode(blob).value if blob else None for blob in found], [b"v"]
        )
        self.assertEqual(node.heldPartitions(), frozenset())

    def test_counts(self) -> None:
        """
        A replica counts the keys of each partition asked, except one it
        is catching up on (its copy may be short): that one is left to
        another owner.
        """
        clock = Clock()
        store = Store(clock, 1)
        node = Replica(store=store, clock=clock)
        for key in ("{t}a", "{t}b", "other"):
            store.put(key, b"v")
        store.delete("{t}b")
        store.delete("{t}gone")
        tagged, other = partitionOf("{t}"), partitionOf("other")
        self.assertEqual(node.countsLocal([tagged, other, 0]), [1, 1, 0])
        node.holdReads([other])
        self.assertEqual(node.countsLocal([other, tagged]), [None, 1])
        self.assertRaises(ValueError, node.countsLocal, [PARTITION_COUNT])
        self.assertRaises(ValueError, node.countsLocal, [-1])
