"""
Tests for L{disperse.cluster.antientropy}: whole clusters of nodes
with their anti-entropy on one Clock over the in-memory network. Repairs of
missed writes, convergence after a network partition heals, catch-up of a
node restarted empty, tombstones and expiry, pacing.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from disperse.cluster.antientropy import (
    LEAVES_PER_RANGE,
    RELEASE_AFTER,
    RELEASE_LIMIT,
    AntiEntropy,
)
from disperse.cluster.coordinator import Consistency, Coordinator, ReadOutcome
from disperse.cluster.hints import HintStore
from disperse.cluster.placement import MemberSpec
from disperse.cluster.replica import Replica
from disperse.cluster.view import SETTLE_WINDOW, ClusterView
from disperse.config import nodeIdFor
from disperse.store import Record, Store
from disperse.store.merkle import Digests
from disperse.store.partition import PARTITION_COUNT, partitionOf
from disperse.store.store import TREE_FANOUT
from disperse.testing.peers import MemoryPeerClient, MemoryPeerNetwork
from tests.cluster.test_coordinator import build

START = 1_700_000_000.0
INTERVAL = 10.0
JITTER = 0.1
# Two rounds are due within this long of any moment: two intervals, the
# second round's jitter, and time for its exchanges to finish.
TWO_ROUNDS = 2 * INTERVAL + JITTER * INTERVAL + 2.0


class Cluster:
    """
    Nodes (views, replicas, coordinators, stores) with their anti-entropy,
    on one clock.
    """

    def __init__(
        self, names: Iterable[str] = ("n0", "n1", "n2"), maxInFlight: int = 4
    ) -> None:
        self.names = list(names)
        self.clock = Clock()
        self.clock.advance(START)
        self.network = MemoryPeerNetwork(self.clock)
        self.maxInFlight = maxInFlight
        self.stores: dict[str, Store] = {}
        self.views: dict[str, ClusterView] = {}
        self.replicas: dict[str, Replica] = {}
        self.nodes: dict[str, Coordinator] = {}
        self.ae: dict[str, AntiEntropy] = {}
        for index, name in enumerate(self.names):
            self.boot(name, seed=index)
        # Each node saw itself alone before it saw the others, so it starts
        # by catching up with them: let that finish.
        self.run(3.0)

    def boot(self, name: str, seed: int) -> None:
        """
        Start (or restart, empty) node C{name}, seeing every member.
        """
        old = self.ae.get(name)
        if old is not None:
            old.stop()
            self.nodes[name].stop()
        store = Store(self.clock, nodeIdFor(name))
        view, replica, node = build(
            name,
            store,
            self.clock,
            self.network.client(name),
            hints=HintStore(1024 * 1024),
        )
        ae = AntiEntropy(
            view=view,
            replica=replica,
            peers=self.network.client(name),
            clock=self.clock,
            random=random.Random(seed),
            interval=INTERVAL,
            jitter=JITTER,
            maxInFlight=self.maxInFlight,
        )
        node.start()
        ae.start()
        self.stores[name] = store
        self.views[name] = view
        self.replicas[name] = replica
        self.nodes[name] = node
        self.ae[name] = ae
        self.network.nodes[name] = replica
        view.updateMembers([MemberSpec(n) for n in self.names])

    def run(self, seconds: float) -> None:
        """
        Advance the clock by C{seconds}, event by event.
        """
        end = self.clock.seconds() + seconds
        while self.clock.calls and self.clock.calls[0].getTime() <= end:
            self.clock.advance(
                max(0.0, self.clock.calls[0].getTime() - self.clock.seconds())
            )
        self.clock.advance(end - self.clock.seconds())

    def write(self, via: str, key: str, value: bytes, level: Consistency) -> None:
        record = self.stores[via].newRecord(value)
        self.nodes[via].write(key, record, level)

    def seed(self, keys: Iterable[str], on: Iterable[str]) -> None:
        """
        Store a record of each key, its name as value, on the owners among
        C{on}, as replicated writes would (written straight to the stores:
        the Clock sorts its calls on each callLater, so thousands of calls
        in flight would be slow).
        """
        holders = list(on)
        writer = self.stores[holders[0]]
        for key in keys:
            record = writer.newRecord(key.encode())
            for name in holders:
                if name in self.views[name].table.ownersOf(key):
                    self.stores[name].merge(key, record)

    def isolate(self, name: str) -> None:
        """
        Cut C{name} off from every other node, both ways.
        """
        self.network.partition({name}, set(self.names) - {name})

    def forgetHints(self) -> None:
        for node in self.nodes.values():
            for member in node.hints.members():
                node.hints.forget(member)

    def roots(self, name: str) -> list[bytes]:
        store = self.stores[name]
        return [store.partitionRoot(p) for p in range(PARTITION_COUNT)]

    def value(self, name: str, key: str) -> bytes | None:
        record = self.stores[name].record(key)
        return None if record is None or record.tombstone else record.value


class AntiEntropyTests(SynchronousTestCase):
    def test_missedWritesRepaired(self) -> None:
        """
        A replica that was down while keys were written, and whose hints
        were lost, holds them all within two intervals.
        """
        cluster = Cluster()
        cluster.isolate("n2")
        for i in range(50):
            cluster.write("n0", f"k{i}", b"v%d" % i, Consistency.quorum)
        cluster.run(0.1)
        cluster.forgetHints()
        cluster.network.heal()
        self.assertEqual(cluster.value("n2", "k0"), None)
        cluster.run(TWO_ROUNDS)
        self.assertEqual(
            [cluster.value("n2", f"k{i}") for i in range(50)],
            [b"v%d" % i for i in range(50)],
        )
        self.assertEqual(cluster.roots("n2"), cluster.roots("n0"))
        repaired = sum(
            ae.counters.keysPulled + ae.counters.keysPushed
            for ae in cluster.ae.values()
        )
        self.assertEqual(repaired, 50)

    def test_healedPartitionConverges(self) -> None:
        """
        Writes on both sides of a network partition, to the same keys and to
        others: once it heals, every replica of every partition has the same
        root within two intervals, and the newest write of each key won.
        """
        cluster = Cluster()
        cluster.network.partition({"n0"}, {"n1", "n2"})
        for i in range(200):
            cluster.write("n0", f"a{i}", b"n0", Consistency.one)
            cluster.write("n1", f"b{i}", b"n1", Consistency.one)
        cluster.run(0.1)
        for i in range(100):
            cluster.write("n2", f"a{i}", b"newer", Consistency.one)
        cluster.run(0.1)
        cluster.forgetHints()
        cluster.network.heal()
        cluster.run(TWO_ROUNDS)
        roots = {name: cluster.roots(name) for name in cluster.names}
        self.assertEqual(roots["n0"], roots["n1"])
        self.assertEqual(roots["n0"], roots["n2"])
        for name in cluster.names:
            self.assertEqual(cluster.value(name, "a0"), b"newer")
            self.assertEqual(cluster.value(name, "a150"), b"n0")
            self.assertEqual(cluster.value(name, "b7"), b"n1")

    def test_restartedEmptyNodeCatchesUp(self) -> None:
        """
        A node that restarts with an empty store catches up every key it
        owns as soon as it sees the cluster, before any periodic round.
        """
        names = [f"n{i}" for i in range(5)]
        cluster = Cluster(names)
        keys = [f"key{i}" for i in range(3000)]
        cluster.seed(keys, on=names)
        cluster.boot("n3", seed=99)
        self.assertEqual(len(cluster.stores["n3"]), 0)
        cluster.run(INTERVAL * 0.5)
        table = cluster.views["n3"].table
        owned = [key for key in keys if "n3" in table.owners(partitionOf(key))]
        self.assertGreater(len(owned), 1000)
        self.assertEqual(
            [key for key in owned if cluster.value("n3", key) != key.encode()], []
        )
        self.assertEqual(len(cluster.stores["n3"]), len(owned))
        ae = cluster.ae["n3"]
        self.assertEqual(ae.counters.rounds, 0)
        self.assertEqual(ae.counters.keysPulled, len(owned))
        self.assertEqual(ae.counters.failures, 0)

    def test_restartedNodeNotReadUntilCaughtUp(self) -> None:
        """
        A replica restarted empty serves no reads of the partitions it is
        catching up on: a quorum read of a key that only it and one other
        replica had (the third missed the write) returns the value, not
        the absence the empty replica would report, whichever node
        coordinates. Once caught up it serves reads again.
        """
        cluster = Cluster()
        keys = [f"k{i}" for i in range(200)]
        cluster.seed(keys, on=["n0", "n1"])
        cluster.boot("n1", seed=7)
        held = cluster.replicas["n1"].heldPartitions()
        self.assertEqual(held, frozenset(range(PARTITION_COUNT)))
        before = dict(cluster.network.calls)
        read: dict[tuple[str, str], bytes | None] = {}

        def remember(outcome: ReadOutcome, via: str, key: str) -> None:
            read[via, key] = outcome.value.value if outcome.value else None

        for via in ("n1", "n2"):
            for key in keys:
                d = cluster.nodes[via].read(key, Consistency.quorum)
                assert isinstance(d, Deferred)
                d.addCallback(remember, via, key)
        cluster.run(0.5)
        self.assertEqual(
            read, {(via, k): k.encode() for via in ("n1", "n2") for k in keys}
        )
        # n2 did ask the restarted replica, and was sent on to another.
        asked = cluster.network.calls[("n2", "n1")] - before.get(("n2", "n1"), 0)
        self.assertGreater(asked, 0)
        cluster.run(5.0)
        self.assertEqual(cluster.replicas["n1"].heldPartitions(), frozenset())
        self.assertEqual([k for k in keys if cluster.value("n1", k) is None], [])

    def test_deadNodeReplicasRestored(self) -> None:
        """
        When a member is declared dead, the members that take over its
        partitions copy them from the remaining replicas: every key is back
        to three copies without any write or periodic round.
        """
        names = [f"n{i}" for i in range(5)]
        cluster = Cluster(names)
        keys = [f"key{i}" for i in range(2000)]
        cluster.seed(keys, on=names)
        cluster.network.down.add("n4")
        survivors = names[:4]
        for name in survivors:
            cluster.views[name].updateMembers([MemberSpec(n) for n in survivors])
        cluster.run(INTERVAL * 0.5)
        table = cluster.views["n0"].table
        short = [
            key
            for key in keys
            if sum(cluster.value(o, key) == key.encode() for o in table.ownersOf(key))
            != 3
        ]
        self.assertEqual(short, [])
        for name in survivors:
            self.assertEqual(cluster.ae[name].counters.rounds, 0)
            self.assertEqual(cluster.replicas[name].heldPartitions(), frozenset())

    def test_thousandsOfMissedKeysInBoundedRounds(self) -> None:
        """
        Thousands of keys missed by one replica are repaired within two
        rounds, at a few requests per partition.
        """
        cluster = Cluster()
        keys = [f"k{i}" for i in range(5000)]
        cluster.seed(keys, on=["n0", "n1"])
        calls = sum(cluster.network.calls.values())
        cluster.run(TWO_ROUNDS)
        missing = [key for key in keys if cluster.value("n2", key) != key.encode()]
        self.assertEqual(missing, [])
        for ae in cluster.ae.values():
            self.assertLessEqual(ae.counters.rounds, 2)
        # Two rounds of 1024 root comparisons on each of three nodes, and
        # for the partitions that differ a descent, a range and a push.
        calls = sum(cluster.network.calls.values()) - calls
        self.assertLess(calls, 3 * 2 * PARTITION_COUNT + 6 * PARTITION_COUNT)

    def test_missedDeleteDoesNotResurrect(self) -> None:
        """
        A replica that missed a delete gets the tombstone; its stale value
        never comes back to the others.
        """
        cluster = Cluster()
        cluster.write("n0", "k", b"v", Consistency.all)
        cluster.run(0.1)
        cluster.isolate("n2")
        cluster.nodes["n0"].write(
            "k", cluster.stores["n0"].newRecord(b"", tombstone=True), Consistency.one
        )
        cluster.run(0.1)
        cluster.forgetHints()
        cluster.network.heal()
        self.assertEqual(cluster.value("n2", "k"), b"v")
        cluster.run(TWO_ROUNDS)
        for name in cluster.names:
            record = cluster.stores[name].record("k")
            assert record is not None
            self.assertTrue(record.tombstone)
        self.assertEqual(cluster.roots("n0"), cluster.roots("n2"))

    def test_expiredRecordsNotResurrected(self) -> None:
        """
        An expired record still held by a replica that has not swept it is
        not copied back to replicas that dropped it.
        """
        cluster = Cluster()
        record = cluster.stores["n0"].newRecord(b"v", ttlMs=2000)
        cluster.nodes["n0"].write("k", record, Consistency.all)
        cluster.run(3.0)
        for name in ("n0", "n1"):
            cluster.stores[name].sweep(100)
            self.assertFalse(cluster.stores[name].occupies("k"))
        self.assertTrue(cluster.stores["n2"].occupies("k"))
        cluster.run(TWO_ROUNDS)
        for name in ("n0", "n1"):
            self.assertFalse(cluster.stores[name].occupies("k"))
        self.assertIsNone(cluster.stores["n2"].record("k"))
        repaired = sum(
            ae.counters.keysPulled + ae.counters.keysPushed
            for ae in cluster.ae.values()
        )
        self.assertEqual(repaired, 0)

    def test_expiredReplacementDoesNotResurrectOlder(self) -> None:
        """
        A replica that missed a write with a time to live, and its hint,
        still holds the value that write replaced. Once the write has
        expired everywhere else, that older value does not come back: the
        replicas that took the write keep a tombstone of it, which reaches
        the stale replica instead.
        """
        cluster = Cluster()
        cluster.write("n0", "k", b"old", Consistency.all)
        cluster.run(0.1)
        cluster.isolate("n2")
        record = cluster.stores["n0"].newRecord(b"new", ttlMs=5000)
        cluster.nodes["n0"].write("k", record, Consistency.quorum)
        cluster.run(0.1)
        cluster.forgetHints()
        cluster.run(6.0)
        for store in cluster.stores.values():
            while store.sweep(100):
                pass
        cluster.network.heal()
        self.assertEqual(cluster.value("n2", "k"), b"old")
        cluster.run(TWO_ROUNDS)
        for name in cluster.names:
            self.assertIsNone(cluster.value(name, "k"), name)
            stored = cluster.stores[name].record("k")
            assert stored is not None
            self.assertEqual(stored.version, record.version)
        self.assertEqual(cluster.roots("n0"), cluster.roots("n2"))
        self.assertEqual(cluster.roots("n1"), cluster.roots("n2"))
        outcome = cluster.nodes["n2"].read("k", Consistency.all)
        if isinstance(outcome, Deferred):
            results: list[ReadOutcome] = []
            outcome.addCallback(results.append)
            cluster.run(1.0)
            outcome = results[0]
        self.assertIsNone(outcome.value)

    def test_pacingBoundsInFlight(self) -> None:
        """
        However many partitions differ, no more than maxInFlight exchanges
        run at once on a node.
        """
        cluster = Cluster(maxInFlight=2)
        cluster.seed([f"k{i}" for i in range(2000)], on=["n0", "n1"])
        peak = 0
        end = cluster.clock.seconds() + TWO_ROUNDS
        while cluster.clock.seconds() < end:
            cluster.run(0.001)
            peak = max(peak, *(ae.inFlight for ae in cluster.ae.values()))
        self.assertEqual(peak, 2)
        for ae in cluster.ae.values():
            self.assertEqual(ae.maxInFlightSeen, 2)
        self.assertEqual(
            [i for i in range(2000) if cluster.value("n2", f"k{i}") is None], []
        )

    def test_failedExchangesCountedAndRetried(self) -> None:
        """
        Exchanges with a peer that is down fail and are counted; the next
        round retries them.
        """
        cluster = Cluster()
        cluster.isolate("n2")
        cluster.write("n0", "k", b"v", Consistency.quorum)
        cluster.run(0.1)
        cluster.forgetHints()
        cluster.run(INTERVAL + JITTER * INTERVAL + 2.0)
        self.assertGreater(cluster.ae["n0"].counters.failures, 0)
        cluster.network.heal()
        cluster.run(TWO_ROUNDS)
        self.assertEqual(cluster.value("n2", "k"), b"v")

    def test_partitionInfoAndStats(self) -> None:
        cluster = Cluster(["n0", "n1"])
        cluster.write("n0", "k", b"v", Consistency.all)
        cluster.run(0.1)
        info = cluster.ae["n0"].partitionInfo()
        self.assertEqual(len(info), PARTITION_COUNT)
        row = info[partitionOf("k")]
        self.assertEqual(
            (row["owners"], row["held"], row["entries"]),
            (list(cluster.views["n0"].table.owners(partitionOf("k"))), True, 1),
        )
        self.assertEqual(
            row["root"], cluster.stores["n1"].partitionRoot(partitionOf("k")).hex()
        )
        self.assertNotEqual(row["root"], bytes(8).hex())
        stats = cluster.ae["n0"].stats()
        self.assertEqual(stats["inFlight"], 0)
        self.assertIn("keysPulled", stats)

    def test_stopCancelsRounds(self) -> None:
        cluster = Cluster()
        for ae in cluster.ae.values():
            ae.stop()
        cluster.run(TWO_ROUNDS)
        self.assertEqual([ae.counters.rounds for ae in cluster.ae.values()], [0, 0, 0])


class IdleRoundTests(SynchronousTestCase):
    def test_emptyClusterBootsWithoutExchanges(self) -> None:
        """
        Nodes that join with nothing to share compare roots and exchange
        no partition.
        """
        cluster = Cluster()
        for ae in cluster.ae.values():
            self.assertEqual(ae.counters.compared, 0)
            self.assertEqual(ae.counters.catchUps, 0)
            self.assertGreater(ae.counters.rootsCompared, 0)

    def test_inSyncRoundCostsOneRequestPerPeer(self) -> None:
        """
        When replicas agree, a round is one roots request per co-owner, not
        an exchange per partition.
        """
        cluster = Cluster()
        cluster.seed([f"k{i}" for i in range(200)], on=cluster.names)
        before = dict(cluster.network.calls)
        compared = cluster.ae["n0"].counters.compared
        roots = cluster.ae["n0"].counters.rootsCompared
        cluster.run(INTERVAL + JITTER * INTERVAL + 1.0)
        calls = {
            pair: count - before.get(pair, 0)
            for pair, count in cluster.network.calls.items()
            if pair[0] == "n0" and count != before.get(pair, 0)
        }
        self.assertEqual(calls, {("n0", "n1"): 1, ("n0", "n2"): 1})
        counters = cluster.ae["n0"].counters
        self.assertEqual(counters.rootsCompared - roots, PARTITION_COUNT)
        self.assertEqual(counters.compared, compared)


class _RefusingPeers:
    """
    Peers whose every call fails at once, as a member with no known
    address does.
    """

    def __getattr__(self, name: str) -> object:
        def call(member: str, *args: object) -> Deferred[object]:
            return fail(ConnectionRefusedError(member))

        return call


class SynchronousFailureTests(SynchronousTestCase):
    def test_exchangesFailingAtOnceDoNotRecurse(self) -> None:
        """
        Exchanges that fail inside the call that starts them (every
        partition at once) are counted and the queue drains, without a
        nested start per job.
        """
        clock = Clock()
        store = Store(clock, 1)
        peers: Any = _RefusingPeers()
        view, replica, _ = build("a", store, clock, peers)
        ae = AntiEntropy(
            view=view,
            replica=replica,
            peers=peers,
            clock=clock,
            random=random.Random(0),
        )
        ae.start()
        self.addCleanup(ae.stop)
        # "b" joins: a catch-up with it, whose roots request fails, so every
        # partition is exchanged, and each of those fails too.
        view.updateMembers([MemberSpec("a"), MemberSpec("b")])
        self.assertEqual(ae.counters.failures, 1 + PARTITION_COUNT)
        self.assertEqual(ae.inFlight, 0)


class NewOwnerTests(SynchronousTestCase):
    """
    Writes that nodes still unaware of a new owner made to the old owners
    reach it soon after, not a periodic round later.
    """

    def test_writesByLaggingViewsReachTheJoiner(self) -> None:
        """
        n2 joins and catches up at once; n0 and n1 hear of it only after
        they wrote more keys, to each other alone. Within the settle window
        after they heard, n2 holds those keys too, well before the periodic
        rounds (at 10 s) could have brought them.
        """
        cluster = Cluster(names=("n0", "n1"))
        self.assertEqual(cluster.clock.seconds(), START + 3.0)
        cluster.names.append("n2")
        cluster.boot("n2", seed=2)
        cluster.run(0.5)
        keys = [f"late{i}" for i in range(40)]
        for i, key in enumerate(keys):
            cluster.write(f"n{i % 2}", key, key.encode(), Consistency.all)
        cluster.run(0.5)
        self.assertEqual([cluster.value("n2", key) for key in keys], [None] * 40)
        for name in ("n0", "n1"):
            cluster.views[name].updateMembers([MemberSpec(n) for n in cluster.names])
        cluster.run(SETTLE_WINDOW + 0.5)
        self.assertLess(cluster.clock.seconds(), START + INTERVAL)
        self.assertEqual(
            [cluster.value("n2", key) for key in keys], [k.encode() for k in keys]
        )
        self.assertEqual(cluster.ae["n2"].counters.rounds, 0)

    def test_inSyncNewOwnersCostOneRequestEach(self) -> None:
        """
        When n3 leaves, n0's partitions it shared with n3 gain n1 or n2 as
        owners; replicas agreeing, once the settle window is over n0 sends
        each of them one roots request, and nothing is exchanged.
        """
        cluster = Cluster(names=("n0", "n1", "n2", "n3"))
        cluster.seed([f"k{i}" for i in range(400)], on=cluster.names)
        old = cluster.views["n0"].table
        del cluster.names[3]
        cluster.network.down.add("n3")
        for name in cluster.names:
            cluster.views[name].updateMembers([MemberSpec(n) for n in cluster.names])
        new = cluster.views["n0"].table
        # The catch-up of what n0 newly holds is over within the window.
        cluster.run(SETTLE_WINDOW - 0.1)
        ae = cluster.ae["n0"]
        compared = ae.counters.compared
        sent: list[tuple[str, list[int]]] = []
        roots = ae.peers.roots

        def recording(peer: str, partitions: list[int]) -> Any:
            sent.append((peer, partitions))
            return roots(peer, partitions)

        ae.peers.roots = recording  # type: ignore[assignment]
        cluster.run(1.0)
        self.assertLess(cluster.clock.seconds(), START + INTERVAL)
        expected = {
            owner: [
                p
                for p in sorted(old.partitionsOf("n0"))
                if owner in new.owners(p) and owner not in old.owners(p)
            ]
            for owner in ("n1", "n2")
        }
        self.assertTrue(all(expected.values()))
        self.assertEqual(dict(sent), expected)
        self.assertEqual(len(sent), 2)
        self.assertEqual(ae.counters.compared, compared)


class ReleaseTests(SynchronousTestCase):
    """
    Partitions a node no longer owns are pushed to their owners and dropped
    there, once they have not been owned for a while.
    """

    def grown(self) -> tuple[Cluster, list[str]]:
        """
        Three nodes holding 600 keys, then a fourth that joins and takes
        over a share of every old node's partitions.
        """
        cluster = Cluster()
        keys = [f"key{i}" for i in range(600)]
        cluster.seed(keys, on=cluster.names)
        cluster.names.append("n3")
        cluster.boot("n3", seed=3)
        for name in cluster.names[:3]:
            cluster.views[name].updateMembers([MemberSpec(n) for n in cluster.names])
        return cluster, keys

    def lost(self, cluster: Cluster, name: str) -> list[int]:
        """
        The partitions C{name} holds entries of but no longer owns.
        """
        mine = cluster.views[name].table.partitionsOf(name)
        store = cluster.stores[name]
        return [
            p
            for p in range(PARTITION_COUNT)
            if p not in mine and store.partitionEntries(p)
        ]

    def test_releasedOnceOwnersHoldThem(self) -> None:
        """
        After the join, each old node still holds the partitions it gave
        away; some while later it has dropped them, and every key still has
        its three copies on its owners.
        """
        cluster, keys = self.grown()
        cluster.run(INTERVAL * 0.5)
        lost = {name: self.lost(cluster, name) for name in cluster.names[:3]}
        self.assertTrue(all(lost.values()))
        cluster.run(RELEASE_AFTER + 2 * INTERVAL)
        for name in cluster.names:
            self.assertEqual(self.lost(cluster, name), [])
        for name, partitions in lost.items():
            counters = cluster.ae[name].counters
            self.assertEqual(counters.partitionsReleased, len(partitions))
            self.assertGreater(counters.keysReleased, 0)
            self.assertEqual(counters.failures, 0)
        table = cluster.views["n0"].table
        self.assertEqual(
            [
                key
                for key in keys
                if [cluster.value(o, key) for o in table.ownersOf(key)]
                != [key.encode()] * 3
            ],
            [],
        )
        self.assertEqual(sum(len(store) for store in cluster.stores.values()), 1800)

    def test_whatOnlyItHeldIsPushedFirst(self) -> None:
        """
        A record the releasing node alone holds (acknowledged there while it
        still owned the partition, say) reaches the owners before the
        partition is dropped; records the owners hold newer stay theirs.
        """
        cluster, keys = self.grown()
        cluster.run(INTERVAL * 0.5)
        partition = self.lost(cluster, "n0")[0]
        mine = [k for k in keys if partitionOf(k) == partition]
        only = "only-n0"
        while partitionOf(only) != partition:
            only += "x"
        cluster.stores["n0"].merge(only, cluster.stores["n0"].newRecord(b"mine"))
        owners = cluster.views["n0"].table.owners(partition)
        newer = cluster.stores[owners[0]].newRecord(b"newer")
        for owner in owners:
            cluster.stores[owner].merge(mine[0], newer)
        cluster.run(RELEASE_AFTER + 2 * INTERVAL)
        self.assertEqual(cluster.stores["n0"].partitionEntries(partition), 0)
        for owner in owners:
            self.assertEqual(cluster.value(owner, only), b"mine")
            self.assertEqual(cluster.value(owner, mine[0]), b"newer")

    def test_writeDuringTheReleaseIsNotDropped(self) -> None:
        """
        A record that reaches a partition after its owners were compared
        with it, while the release is still talking to them, keeps that
        partition for the next round, which pushes the record and then
        drops it.
        """
        cluster, _ = self.grown()
        cluster.run(INTERVAL * 0.5)
        lost = self.lost(cluster, "n0")
        first, last = lost[0], lost[-1]
        store = cluster.stores["n0"]

        def inPartition(prefix: str, partition: int) -> str:
            key = prefix
            while partitionOf(key) != partition:
                key += "x"
            return key

        # The last partition differs from its owners, so the release is
        # still exchanging it with the last owner (n3: owners are compared
        # in name order) after every owner was compared with the first.
        self.assertEqual(
            sorted(cluster.views["n0"].table.owners(first)), ["n1", "n2", "n3"]
        )
        store.merge(inPartition("only-n0", last), store.newRecord(b"mine"))
        late = inPartition("late", first)
        ae = cluster.ae["n0"]
        exchange = ae.exchange
        written: list[bool] = []

        def exchangeAndWrite(partition: int, peer: str, pull: bool = True) -> Any:
            if (partition, peer) == (last, "n3") and not written:
                written.append(store.merge(late, store.newRecord(b"late")))
            return exchange(partition, peer, pull)

        ae.exchange = exchangeAndWrite  # type: ignore[method-assign]
        cluster.run(RELEASE_AFTER + INTERVAL)
        self.assertEqual(written, [True])
        self.assertEqual(ae.counters.releasesDeferred, 1)
        self.assertEqual(self.lost(cluster, "n0"), [first])
        cluster.run(2 * INTERVAL)
        self.assertEqual(self.lost(cluster, "n0"), [])
        owners = cluster.views["n0"].table.owners(first)
        self.assertEqual([cluster.value(o, late) for o in owners], [b"late"] * 3)

    def test_keptWhileAnOwnerIsUnreachable(self) -> None:
        """
        A partition whose owners cannot all be reached is kept and tried
        again; once they can, it is released.
        """
        cluster, _ = self.grown()
        cluster.network.down.add("n3")
        cluster.run(RELEASE_AFTER + 2 * INTERVAL)
        lost = self.lost(cluster, "n0")
        self.assertTrue(lost)
        self.assertGreater(cluster.ae["n0"].counters.failures, 0)
        self.assertEqual(cluster.ae["n0"].counters.partitionsReleased, 0)
        cluster.network.down.discard("n3")
        cluster.run(2 * INTERVAL)
        self.assertEqual(self.lost(cluster, "n0"), [])

    def test_keptForGoodPastTheLimit(self) -> None:
        """
        Not taken within RELEASE_LIMIT, a partition is kept for good: pushed
        later, its copy could bring back what the owners deleted meanwhile.
        """
        cluster, _ = self.grown()
        cluster.network.down.add("n3")
        cluster.run(RELEASE_LIMIT + 2 * INTERVAL)
        lost = self.lost(cluster, "n0")
        self.assertEqual(cluster.ae["n0"].counters.partitionsKept, len(lost))
        cluster.network.down.discard("n3")
        cluster.run(4 * INTERVAL)
        self.assertEqual(self.lost(cluster, "n0"), lost)
        self.assertEqual(cluster.ae["n0"].counters.partitionsReleased, 0)

    def test_ownedAgainBeforeTheReleaseIsKept(self) -> None:
        """
        A partition owned again before its release comes is not dropped.
        """
        cluster, _ = self.grown()
        cluster.run(INTERVAL * 1.5)
        self.assertTrue(self.lost(cluster, "n0"))
        before = len(cluster.stores["n0"])
        cluster.network.down.add("n3")
        for name in cluster.names[:3]:
            cluster.views[name].updateMembers(
                [MemberSpec(n) for n in cluster.names[:3]]
            )
        cluster.run(RELEASE_AFTER + 2 * INTERVAL)
        self.assertEqual(self.lost(cluster, "n0"), [])
        self.assertEqual(len(cluster.stores["n0"]), before)
        self.assertEqual(cluster.ae["n0"].counters.partitionsReleased, 0)


class _RecordingPeers(MemoryPeerClient):
    """
    The in-memory client, noting each digest and range request it sends.
    """

    def __init__(self, network: MemoryPeerNetwork, source: str) -> None:
        super().__init__(network, source)
        self.sent: list[tuple[str, int, tuple[int, ...]]] = []

    def digests(
        self, member: str, partition: int, level: int, nodes: Sequence[int]
    ) -> Deferred[Digests]:
        self.sent.append(("digest", level, tuple(nodes)))
        return super().digests(member, partition, level, nodes)

    def range(
        self, member: str, partition: int, leaves: Sequence[int]
    ) -> Deferred[list[tuple[str, Record]]]:
        self.sent.append(("range", partition, tuple(leaves)))
        return super().range(member, partition, leaves)


class ExchangeRequestTests(SynchronousTestCase):
    def test_requestsFollowTheTree(self) -> None:
        """
        An exchange asks for the root, then for every child of each node
        that differs, level by level, ascending, then for the records of
        the differing leaves, LEAVES_PER_RANGE at a time: the requests that
        nodes of every version send and answer.
        """
        cluster = Cluster(["n0", "n1"])
        partition = 7
        keys = [f"k{i}" for i in range(60_000)]
        keys = [key for key in keys if partitionOf(key) == partition][:40]
        cluster.seed(keys, on=["n0"])
        tree = cluster.stores["n0"].partitionTree(partition)
        leaves = sorted({tree.leafOf(key) for key in keys})
        self.assertGreater(len(leaves), LEAVES_PER_RANGE)
        parents = sorted({leaf // TREE_FANOUT for leaf in leaves})
        peers = _RecordingPeers(cluster.network, "n0")
        ae = cluster.ae["n0"]
        ae.peers = peers
        done = Deferred.fromCoroutine(ae.exchange(partition, "n1"))
        cluster.run(1.0)
        self.successResultOf(done)
        children = tuple(
            child
            for parent in parents
            for child in range(parent * TREE_FANOUT, (parent + 1) * TREE_FANOUT)
        )
        self.assertEqual(
            peers.sent,
            [
                ("digest", 0, (0,)),
                ("digest", 1, tuple(range(TREE_FANOUT))),
                ("digest", 2, children),
                ("range", partition, tuple(leaves[:LEAVES_PER_RANGE])),
                ("range", partition, tuple(leaves[LEAVES_PER_RANGE:])),
            ],
        )
        self.assertEqual(ae.counters.differing, 1)
        self.assertEqual(ae.counters.keysPushed, len(keys))
        self.assertEqual(
            cluster.stores["n1"].partitionRoot(partition),
            cluster.stores["n0"].partitionRoot(partition),
        )
