"""
Tests for L{disperse.cluster.view}: the partition table over the members
that hold data, its listeners, and the majority rule (a node that reaches
only a minority of the members it knows of refuses quorum and all).
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from disperse.cluster.coordinator import Consistency, ReadOutcome
from disperse.cluster.placement import MemberSpec, PartitionTable
from disperse.cluster.view import FORGET_DEPARTED, ClusterView, NoMajority
from disperse.store import Store
from disperse.testing.peers import MemoryPeerNetwork
from tests.cluster.test_coordinator import Cluster, NoMembers, build


class TableListenerTests(SynchronousTestCase):
    def test_tableListeners(self) -> None:
        clock = Clock()
        node = ClusterView(nodeName="a", clock=clock, source=NoMembers())
        seen: list[tuple[int, int]] = []

        def listener(old: PartitionTable, new: PartitionTable) -> None:
            seen.append((len(old.members), len(new.members)))

        node.addTableListener(listener)
        self.assertEqual(node.tableVersion, 1)
        node.updateMembers([MemberSpec("a"), MemberSpec("b")])
        node.updateMembers([MemberSpec("b"), MemberSpec("a")])
        self.assertEqual(node.tableVersion, 2)
        node.removeTableListener(listener)
        node.updateMembers([MemberSpec("a")])
        self.assertEqual(seen, [(1, 2)])
        self.assertEqual(node.tableVersion, 3)


class MajorityTests(SynchronousTestCase):
    """
    A node that reaches only a minority of the members it knows of refuses
    quorum and all: its table, built from that minority, may name replicas
    that share none with the rest of the cluster's.
    """

    FOUR = ["n0", "n1", "n2", "n3"]

    def cutOff(self) -> Cluster:
        """
        Four members; n2 then loses sight of n0 and n1 (its table keeps
        itself and n3, as a partition's minority side would).
        """
        cluster = Cluster(self.FOUR)
        cluster.views["n2"].updateMembers([MemberSpec("n2"), MemberSpec("n3")])
        return cluster

    def test_minorityRefusesQuorumAndAll(self) -> None:
        cluster = self.cutOff()
        node = cluster.nodes["n2"]
        record = cluster.stores["n2"].newRecord(b"v")
        for level in (Consistency.quorum, Consistency.all):
            e = self.assertRaises(NoMajority, node.write, "k", record, level)
            self.assertEqual((e.reachable, e.known), (2, 4))
            self.assertRaises(NoMajority, node.read, "k", level)
        self.assertEqual(node.counters.noMajority, 4)
        # Refused before anything was stored.
        self.assertIsNone(cluster.stores["n2"].record("k"))
        self.assertEqual(node.counters.writes, 0)

    def test_minorityStillServesOne(self) -> None:
        cluster = self.cutOff()
        self.assertTrue(cluster.put("n2", "k", b"v", Consistency.one).ok)
        read = cluster.get("n2", "k", Consistency.one)
        self.assertEqual(read.value, cluster.stores["n2"].record("k"))

    def test_majorityServes(self) -> None:
        """
        Three of four reachable is a majority: one member's death does not
        stop quorums.
        """
        cluster = Cluster(self.FOUR)
        view = cluster.views["n0"]
        view.updateMembers([MemberSpec(n) for n in ["n0", "n1", "n3"]])
        self.assertEqual(view.knownMembers(), 4)
        self.assertTrue(cluster.put("n0", "k", b"v", Consistency.quorum).ok)

    def test_leftMembersDoNotCount(self) -> None:
        """
        Members that left on purpose shrank the cluster: the rest is whole,
        whichever order the leave notice and the new table come in.
        """
        cluster = Cluster(self.FOUR)
        view = cluster.views["n2"]
        view.memberLeft("n0")
        view.updateMembers([MemberSpec(n) for n in ["n1", "n2", "n3"]])
        view.updateMembers([MemberSpec("n2"), MemberSpec("n3")])
        view.memberLeft("n1")
        self.assertEqual(view.knownMembers(), 2)
        self.assertTrue(cluster.put("n2", "k", b"v", Consistency.quorum).ok)

    def test_departedForgottenAfterAWhile(self) -> None:
        cluster = self.cutOff()
        node = cluster.nodes["n2"]
        cluster.clock.advance(FORGET_DEPARTED - 1)
        self.assertRaises(NoMajority, node.read, "k", Consistency.quorum)
        cluster.clock.advance(1)
        self.assertEqual(cluster.views["n2"].knownMembers(), 2)
        self.assertTrue(cluster.get("n2", "k", Consistency.quorum).ok)

    def test_horizonIsConfigurable(self) -> None:
        """
        Operators can shorten (or lengthen) how long vanished members
        count, say for a two-node cluster that should serve quorum again
        soon after its peer crashed.
        """
        clock = Clock()
        view, _, node = build(
            "n0",
            Store(clock, 1),
            clock,
            MemoryPeerNetwork(clock).client("n0"),
            forgetDeparted=30.0,
        )
        view.updateMembers([MemberSpec("n0"), MemberSpec("n1")])
        view.updateMembers([MemberSpec("n0")])
        self.assertRaises(NoMajority, node.read, "k", Consistency.quorum)
        clock.advance(30)
        self.assertEqual(view.knownMembers(), 1)
        self.assertIsInstance(node.read("k", Consistency.quorum), ReadOutcome)

    def test_healRestoresQuorum(self) -> None:
        cluster = self.cutOff()
        view = cluster.views["n2"]
        view.updateMembers([MemberSpec(n) for n in self.FOUR])
        self.assertEqual(view.knownMembers(), 4)
        self.assertTrue(cluster.put("n2", "k", b"v", Consistency.quorum).ok)

    def test_rejoinAfterLeaving(self) -> None:
        """
        A member that left and came back counts again when it vanishes
        without leaving the second time.
        """
        cluster = Cluster(["n0", "n1", "n2"])
        view = cluster.views["n0"]
        view.memberLeft("n1")
        view.updateMembers([MemberSpec("n0"), MemberSpec("n2")])
        view.updateMembers([MemberSpec(n) for n in ["n0", "n1", "n2"]])
        view.updateMembers([MemberSpec("n0")])
        self.assertEqual(view.knownMembers(), 3)
        self.assertRaises(NoMajority, cluster.nodes["n0"].read, "k", Consistency.quorum)
