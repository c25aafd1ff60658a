"""
Tests for L{disperse.cluster.handoff}: who gains what when a node leaves,
and the bounded push of its records.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from disperse.cluster.handoff import HandoffResult, handOff, handoffPlan
from disperse.cluster.placement import MemberSpec, PartitionTable, Replicas
from disperse.cluster.replica import Replica
from disperse.config import nodeIdFor
from disperse.store import Store
from disperse.store.partition import PARTITION_COUNT
from disperse.testing.peers import MemoryPeerNetwork


def table(count: int, replicas: Replicas) -> PartitionTable:
    return PartitionTable.build([MemberSpec(f"n{i}") for i in range(count)], replicas)


class PlanTests(SynchronousTestCase):
    def test_eachPartitionGainsTheOwnerItLoses(self) -> None:
        """
        At R=3 of 5 members, each partition of the leaver gains exactly one
        new owner, who did not hold it before.
        """
        before = table(5, 3)
        plan = handoffPlan(before, "n2", 3)
        gained = sorted(p for partitions in plan.values() for p in partitions)
        self.assertEqual(gained, sorted(before.partitionsOf("n2")))
        for member, partitions in plan.items():
            self.assertNotEqual(member, "n2")
            for partition in partitions:
                self.assertNotIn(member, before.owners(partition))

    def test_everyoneHoldsEverythingAlready(self) -> None:
        """
        Three members at R=3: the two that stay hold every partition.
        """
        self.assertEqual(handoffPlan(table(3, 3), "n0", 3), {})
        self.assertEqual(handoffPlan(table(4, "all"), "n0", "all"), {})

    def test_singleCopy(self) -> None:
        before = table(3, 1)
        plan = handoffPlan(before, "n1", 1)
        self.assertEqual(
            sum(len(p) for p in plan.values()), len(before.partitionsOf("n1"))
        )
        self.assertGreater(len(before.partitionsOf("n1")), PARTITION_COUNT // 5)

    def test_lastMember(self) -> None:
        self.assertEqual(handoffPlan(table(1, 3), "n0", 3), {})


class HandOffTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.network = MemoryPeerNetwork(self.clock)
        self.stores: dict[str, Store] = {}
        members = [MemberSpec(f"n{i}") for i in range(3)]
        for spec in members:
            store = Store(self.clock, nodeIdFor(spec.name))
            self.network.nodes[spec.name] = Replica(store=store, clock=self.clock)
            self.stores[spec.name] = store
        self.table = PartitionTable.build(members, 1)

    def seedLeaver(self, count: int) -> list[str]:
        keys = [f"k{i}" for i in range(count)]
        mine = [k for k in keys if self.table.ownersOf(k) == ("n0",)]
        for key in mine:
            self.stores["n0"].put(key, key.encode())
        self.stores["n0"].delete(mine[0])
        return mine

    def test_recordsReachTheirNextOwner(self) -> None:
        mine = self.seedLeaver(3000)
        results: list[HandoffResult] = []
        handOff(
            store=self.stores["n0"],
            peers=self.network.client("n0"),
            plan=handoffPlan(self.table, "n0", 1),
            clock=self.clock,
            timeout=5.0,
        ).addCallback(results.append)
        self.clock.advance(0.01)
        self.clock.advance(0.01)
        [result] = results
        self.assertEqual(
            (result.keys, result.sent, result.failed, result.complete),
            (len(mine), len(mine), 0, True),
        )
        after = PartitionTable.build(
            [m for m in self.table.members if m.name != "n0"], 1
        )
        for key in mine:
            [owner] = after.ownersOf(key)
            record = self.stores[owner].record(key)
            assert record is not None
            # The delete travels as a tombstone.
            self.assertEqual(record.tombstone, key == mine[0])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_boundedInTime(self) -> None:
        """
        A next owner that never answers does not hold the leaver back past
        the timeout.
        """
        self.seedLeaver(300)
        self.network.silent.add("n1")
        self.network.timeout = 100.0
        results: list[HandoffResult] = []
        handOff(
            store=self.stores["n0"],
            peers=self.network.client("n0"),
            plan=handoffPlan(self.table, "n0", 1),
            clock=self.clock,
            timeout=5.0,
        ).addCallback(results.append)
        self.clock.advance(4.9)
        self.assertEqual(results, [])
        self.clock.advance(0.1)
        [result] = results
        self.assertFalse(result.complete)
        self.assertLess(result.sent, result.keys)
        self.assertGreater(result.sent, 0)
