"""
Tests for L{disperse.cluster.coordinator}: several nodes on one Clock over
an in-memory network. Quorums, hinted handoff, read repair, read retries,
the settle window after a table change, and convergence of concurrent
writers.
"""

from __future__ import annotations

from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from disperse.cluster.clients import PeerClient
from disperse.cluster.coordinator import (
    ELSEWHERE,
    HINT_INTERVAL,
    READ_RETRY_AFTER,
    RETRY_BUDGET,
    RETRY_BURST,
    SLOW_FOR,
    Consistency,
    Coordinator,
    ReadOutcome,
    WriteOutcome,
)
from disperse.cluster.hints import HintStore
from disperse.cluster.members import MemberWatcher
from disperse.cluster.placement import MemberSpec
from disperse.cluster.replica import Replica
from disperse.cluster.view import FORGET_DEPARTED, SETTLE_WINDOW, ClusterView
from disperse.config import nodeIdFor
from disperse.store import Record, Store
from disperse.store.partition import partitionOf
from disperse.testing.peers import MemoryPeerNetwork

START = 1_700_000_000.0
NAMES = ["n0", "n1", "n2"]
T = TypeVar("T")


def build(
    name: str,
    store: Store,
    clock: Clock,
    peers: PeerClient,
    *,
    replicas: int = 3,
    hints: HintStore | None = None,
    forgetDeparted: float = FORGET_DEPARTED,
    readRetryAfter: float = READ_RETRY_AFTER,
) -> tuple[ClusterView, Replica, Coordinator]:
    """
    One node's view, replica and coordinator, as the node wires them.
    """
    view = ClusterView(
        nodeName=name,
        clock=clock,
        source=NoMembers(),
        replicas=replicas,
        forgetDeparted=forgetDeparted,
    )
    replica = Replica(store=store, clock=clock)
    coordinator = Coordinator(
        view=view,
        replica=replica,
        clock=clock,
        peers=peers,
        hints=hints,
        readRetryAfter=readRetryAfter,
    )
    return view, replica, coordinator


class NoMembers:
    """
    A member source for views whose members the test sets itself.
    """

    def watch(self, watcher: MemberWatcher) -> None:
        pass

    def dataHolders(self) -> list[MemberSpec]:
        return []


class Cluster:
    """
    Three (or more) nodes' views, replicas and coordinators, all owning
    every key.
    """

    def __init__(
        self,
        names: list[str] = NAMES,
        replicas: int = 3,
        readRetryAfter: float = READ_RETRY_AFTER,
    ) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.network = MemoryPeerNetwork(self.clock)
        self.stores: dict[str, Store] = {}
        self.views: dict[str, ClusterView] = {}
        self.replicas: dict[str, Replica] = {}
        self.nodes: dict[str, Coordinator] = {}
        self._replicas = replicas
        self._readRetryAfter = readRetryAfter
        for name in names:
            self._add(name)
            self.views[name].updateMembers([MemberSpec(n) for n in names])
        # Past the moments after a table change, when quorums wait for
        # every replica: the tests below are about the steady state.
        self.clock.advance(SETTLE_WINDOW)

    def _add(self, name: str) -> Coordinator:
        store = Store(self.clock, nodeIdFor(name))
        view, replica, node = build(
            name,
            store,
            self.clock,
            self.network.client(name),
            replicas=self._replicas,
            hints=HintStore(1024 * 1024),
            readRetryAfter=self._readRetryAfter,
        )
        node.start()
        self.stores[name] = store
        self.views[name] = view
        self.replicas[name] = replica
        self.nodes[name] = node
        self.network.nodes[name] = replica
        return node

    def join(self, name: str) -> Coordinator:
        """
        Start C{name} and have it join: its table has every member, while
        the others have not heard of it yet.
        """
        node = self._add(name)
        self.views[name].updateMembers([MemberSpec(n) for n in self.nodes], joined=True)
        return node

    def settle(self, seconds: float = 0.1) -> None:
        for _ in range(int(seconds / 0.001)):
            self.clock.advance(0.001)

    def resolve(self, result: T | Deferred[T], seconds: float = 2.0) -> T:
        if not isinstance(result, Deferred):
            return result
        answers: list[T] = []
        result.addCallback(answers.append)
        steps = 0
        while not answers and steps < seconds / 0.001:
            self.clock.advance(0.001)
            steps += 1
        assert answers, "no answer in time"
        return answers[0]

    def put(self, via: str, key: str, value: bytes, level: Consistency) -> WriteOutcome:
        record = self.stores[via].newRecord(value)
        return self.resolve(self.nodes[via].write(key, record, level))

    def delete(self, via: str, key: str, level: Consistency) -> WriteOutcome:
        record = self.stores[via].newRecord(b"", tombstone=True)
        return self.resolve(self.nodes[via].write(key, record, level))

    def get(self, via: str, key: str, level: Consistency) -> ReadOutcome:
        return self.resolve(self.nodes[via].read(key, level))

    def forgetHints(self) -> None:
        for node in self.nodes.values():
            for member in node.hints.members():
                node.hints.forget(member)

    def holds(self, key: str) -> dict[str, bytes | None]:
        held = {}
        for name, store in self.stores.items():
            record = store.record(key)
            held[name] = None if record is None or record.tombstone else record.value
        return held


class ConsistencyTests(SynchronousTestCase):
    def test_required(self) -> None:
        self.assertEqual(
            [
                (level.value, level.required(n))
                for level in Consistency
                for n in (1, 3, 5)
            ],
            [
                ("one", 1),
                ("one", 1),
                ("one", 1),
                ("quorum", 1),
                ("quorum", 2),
                ("quorum", 3),
                ("all", 1),
                ("all", 3),
                ("all", 5),
            ],
        )


class CoordinatorTests(SynchronousTestCase):
    def test_quorumWriteReachesEveryReplica(self) -> None:
        cluster = Cluster()
        outcome = cluster.put("n0", "k", b"v", Consistency.quorum)
        self.assertEqual(outcome, WriteOutcome(acks=2, required=2, replicas=3))
        cluster.settle()
        self.assertEqual(cluster.holds("k"), {"n0": b"v", "n1": b"v", "n2": b"v"})
        read = cluster.get("n1", "k", Consistency.quorum)
        self.assertEqual((read.ok, read.value and read.value.value), (True, b"v"))

    def test_expiredNewestReadsAsAbsent(self) -> None:
        """
        A replica that missed a write with a TTL still holds the older
        version; once the newer one expires, a read that sees both reports
        the key absent (not the older value) and removes the older copy.
        """
        cluster = Cluster()
        cluster.put("n0", "k", b"old", Consistency.all)
        cluster.network.down.add("n2")
        record = cluster.stores["n0"].newRecord(b"new", ttlMs=500)
        cluster.resolve(cluster.nodes["n0"].write("k", record, Consistency.quorum))
        cluster.network.down.clear()
        cluster.forgetHints()
        cluster.clock.advance(1)
        self.assertEqual(cluster.holds("k")["n2"], b"old")
        # n2 coordinates: its own (older) copy and one other answer.
        read = cluster.get("n2", "k", Consistency.quorum)
        self.assertIsNone(read.value)
        cluster.settle()
        self.assertEqual(cluster.holds("k")["n2"], None)

    def test_readAfterAcknowledgedWriteSeesIt(self) -> None:
        """
        Quorum writes and quorum reads overlap: a read on another node right
        after the write's acknowledgement sees it, even with one replica
        down.
        """
        cluster = Cluster()
        cluster.network.down.add("n2")
        self.assertTrue(cluster.put("n0", "k", b"v1", Consistency.quorum).ok)
        read = cluster.get("n1", "k", Consistency.quorum)
        assert read.value is not None
        self.assertEqual(read.value.value, b"v1")

    def test_hintedHandoff(self) -> None:
        cluster = Cluster()
        cluster.network.down.add("n2")
        self.assertTrue(cluster.put("n0", "k", b"v", Consistency.quorum).ok)
        cluster.settle()
        self.assertEqual(cluster.nodes["n0"].hints.pending("n2"), 1)
        self.assertIsNone(cluster.holds("k")["n2"])
        cluster.network.down.discard("n2")
        cluster.settle(HINT_INTERVAL + 0.1)
        self.assertEqual(cluster.holds("k")["n2"], b"v")
        self.assertEqual(cluster.nodes["n0"].hints.counters.delivered, 1)
        self.assertEqual(cluster.nodes["n0"].hints.pending("n2"), 0)

    def test_hintDeliverySleepsWithoutHints(self) -> None:
        """
        Hint delivery keeps no timer while no hint waits, wakes for the
        first one, and sleeps again once it is delivered.
        """
        cluster = Cluster()
        node, clock = cluster.nodes["n0"], cluster.clock
        self.assertEqual(clock.getDelayedCalls(), [])
        cluster.network.down.add("n2")
        self.assertTrue(cluster.put("n0", "k", b"v", Consistency.quorum).ok)
        cluster.settle(HINT_INTERVAL * 3)
        self.assertEqual(node.hints.pending("n2"), 1, "still down: kept")
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        cluster.network.down.discard("n2")
        cluster.settle(HINT_INTERVAL + 0.1)
        self.assertEqual(node.hints.pending("n2"), 0)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_underReplicatedWrite(self) -> None:
        """
        When the level cannot be met the outcome says how many replicas took
        the write; the ones that did keep it, the others get hints.
        """
        cluster = Cluster()
        cluster.network.down.update({"n1", "n2"})
        outcome = cluster.put("n0", "k", b"v", Consistency.quorum)
        self.assertEqual(outcome, WriteOutcome(acks=1, required=2, replicas=3))
        self.assertFalse(outcome.ok)
        self.assertEqual(cluster.holds("k")["n0"], b"v")
        self.assertEqual(cluster.nodes["n0"].hints.members(), ["n1", "n2"])

    def test_unansweredReplicaTimesOut(self) -> None:
        cluster = Cluster()
        cluster.network.silent.update({"n1", "n2"})
        outcome = cluster.put("n0", "k", b"v", Consistency.all)
        self.assertEqual(outcome, WriteOutcome(acks=1, required=3, replicas=3))
        read = cluster.get("n0", "k", Consistency.quorum)
        self.assertEqual((read.answered, read.ok), (1, False))

    def test_eachWaitEndsAtItsOwnTimeout(self) -> None:
        """
        Reads and writes started at different moments give up on a silent
        replica one timeout after each started, however many wait at once
        and whatever finished in between; no timer is left behind.
        """
        cluster = Cluster()
        cluster.network.silent.add("n2")
        node, clock = cluster.nodes["n0"], cluster.clock
        scheduled = len(clock.getDelayedCalls())
        started = clock.seconds()
        early = node.write("k", cluster.stores["n0"].newRecord(b"v"), Consistency.all)
        clock.advance(0.4)
        answered = node.write(
            "j", cluster.stores["n0"].newRecord(b"w"), Consistency.quorum
        )
        late = node.read("k", Consistency.all)
        self.assertEqual(cluster.resolve(answered).acks, 2)
        outcomes: list[object] = []
        assert isinstance(early, Deferred) and isinstance(late, Deferred)
        early.addCallback(outcomes.append)
        late.addCallback(outcomes.append)
        clock.advance(started + 0.999 - clock.seconds())
        self.assertEqual(outcomes, [])
        clock.advance(0.002)
        self.assertEqual(outcomes, [WriteOutcome(acks=2, required=3, replicas=3)])
        clock.advance(started + 1.399 - clock.seconds())
        self.assertEqual(len(outcomes), 1)
        clock.advance(0.002)
        self.assertEqual(len(outcomes), 2)
        # Left: the delivery of what the silent replica missed, no wait.
        self.assertEqual(node.hints.members(), ["n2"])
        self.assertEqual(len(clock.getDelayedCalls()), scheduled + 1)

    def test_readAsksAnotherReplicaWhenOneFails(self) -> None:
        cluster = Cluster()
        cluster.put("n0", "k", b"v", Consistency.all)
        cluster.network.down.add("n1")
        read = cluster.get("n2", "k", Consistency.all)
        self.assertEqual((read.answered, read.ok), (2, False))
        read = cluster.get("n2", "k", Consistency.quorum)
        self.assertEqual((read.answered, read.ok), (2, True))

    def test_readRepair(self) -> None:
        cluster = Cluster()
        cluster.put("n0", "k", b"old", Consistency.all)
        cluster.network.down.add("n2")
        cluster.put("n0", "k", b"new", Consistency.quorum)
        cluster.nodes["n0"].hints.forget("n2")
        cluster.network.down.discard("n2")
        self.assertEqual(cluster.holds("k")["n2"], b"old")
        read = cluster.get("n2", "k", Consistency.all)
        assert read.value is not None
        self.assertEqual(read.value.value, b"new")
        cluster.settle()
        self.assertEqual(cluster.holds("k"), {"n0": b"new", "n1": b"new", "n2": b"new"})
        self.assertEqual(cluster.nodes["n2"].counters.readRepairs, 1)

    def test_deleteReplicates(self) -> None:
        cluster = Cluster()
        cluster.put("n0", "k", b"v", Consistency.all)
        self.assertTrue(cluster.delete("n1", "k", Consistency.quorum).ok)
        cluster.settle()
        self.assertEqual(cluster.holds("k"), {"n0": None, "n1": None, "n2": None})
        self.assertIsNone(cluster.get("n2", "k", Consistency.quorum).value)

    def test_localReadAtOneIsImmediate(self) -> None:
        cluster = Cluster()
        cluster.put("n0", "k", b"v", Consistency.all)
        outcome = cluster.nodes["n1"].read("k", Consistency.one)
        assert isinstance(outcome, ReadOutcome) and outcome.value is not None
        self.assertEqual(outcome.value.value, b"v")

    def test_nonOwnerCoordinates(self) -> None:
        """
        With more nodes than replicas, a node that holds no replica of a key
        still serves it, by asking the owners.
        """
        names = [f"n{i}" for i in range(5)]
        cluster = Cluster(names, replicas=3)
        key = next(
            f"k{i}"
            for i in range(100)
            if "n0" not in cluster.nodes["n0"].owners(f"k{i}")
        )
        self.assertTrue(cluster.put("n0", key, b"v", Consistency.quorum).ok)
        cluster.settle()
        self.assertIsNone(cluster.stores["n0"].record(key))
        read = cluster.get("n0", key, Consistency.quorum)
        assert read.value is not None
        self.assertEqual(read.value.value, b"v")

    @settings(max_examples=40, deadline=None)
    @given(
        st.lists(
            st.tuples(st.sampled_from(NAMES), st.binary(min_size=1, max_size=3)),
            min_size=1,
            max_size=8,
        ),
        st.sets(st.sampled_from(NAMES), max_size=1),
    )
    def test_concurrentWritersConverge(
        self, writes: list[tuple[str, bytes]], down: set[str]
    ) -> None:
        """
        Writers on different nodes, at level one, some replicas down: once
        everyone is back and hints are delivered, every replica holds the
        same record, the one with the highest version.
        """
        cluster = Cluster()
        cluster.network.down.update(down)
        pending = []
        for via, value in writes:
            if via in down:
                continue
            record = cluster.stores[via].newRecord(value)
            pending.append(record)
            cluster.nodes[via].write("k", record, Consistency.one)
        cluster.network.down.clear()
        cluster.settle(HINT_INTERVAL * 2)
        records = {name: store.record("k") for name, store in cluster.stores.items()}
        if pending:
            newest = max(pending, key=lambda r: r.precedence)
            self.assertEqual(set(records.values()), {newest})

    def test_readWithPeersFailingAtOnce(self) -> None:
        """
        Peers whose calls fail synchronously (no connection possible) make a
        read under-replicated, not an error: asking again from inside the
        first ask must not run past the last candidate.
        """
        clock = Clock()
        view, replica, node = build("a", Store(clock, 1), clock, _FailingPeers())
        view.updateMembers([MemberSpec("a"), MemberSpec("b"), MemberSpec("c")])
        replica.holdReads([partitionOf("k")])
        outcome = node.read("k", Consistency.quorum)
        assert isinstance(outcome, Deferred)
        result = self.successResultOf(outcome)
        self.assertEqual((result.ok, result.answered), (False, 0))
        self.assertEqual(node.counters.remoteFailures, 2)


class ReadRetryTests(SynchronousTestCase):
    """
    A read whose replica is slow to answer asks one more after a short wait
    instead of waiting out the timeout, and reads ask that replica last for
    a while.
    """

    def timed(self, cluster: Cluster, via: str) -> tuple[ReadOutcome, float]:
        started = cluster.clock.seconds()
        outcome = cluster.get(via, "k", Consistency.quorum)
        return outcome, cluster.clock.seconds() - started

    def test_slowReplicaCostsOneRetry(self) -> None:
        cluster = Cluster()
        cluster.put("n0", "k", b"v", Consistency.all)
        # n0 reads from n1 first (the next member on the ring).
        cluster.network.silent.add("n1")
        outcome, took = self.timed(cluster, "n0")
        self.assertEqual((outcome.ok, outcome.answered), (True, 2))
        self.assertEqual(outcome.value, cluster.stores["n2"].record("k"))
        self.assertGreaterEqual(took, READ_RETRY_AFTER)
        self.assertLess(took, READ_RETRY_AFTER + 0.01)
        self.assertEqual(cluster.nodes["n0"].counters.readRetries, 1)

    def test_slowReplicaAskedLast(self) -> None:
        """
        For L{SLOW_FOR} after a replica was slow, reads ask the others
        first, at once; then it is asked first again.
        """
        cluster = Cluster()
        cluster.put("n0", "k", b"v", Consistency.all)
        cluster.network.silent.add("n1")
        self.timed(cluster, "n0")
        calls = dict(cluster.network.calls)
        outcome, took = self.timed(cluster, "n0")
        self.assertEqual((outcome.ok, took < 0.01), (True, True))
        self.assertEqual(cluster.nodes["n0"].counters.readRetries, 1)
        self.assertEqual(cluster.network.calls[("n0", "n1")], calls[("n0", "n1")])
        cluster.network.silent.clear()
        cluster.clock.advance(SLOW_FOR)
        outcome, took = self.timed(cluster, "n0")
        self.assertEqual((outcome.ok, took < 0.01), (True, True))
        self.assertEqual(cluster.network.calls[("n0", "n1")], calls[("n0", "n1")] + 1)

    def test_hungReplicaProbedByOneRead(self) -> None:
        """
        Once its time as slow is up, a replica that still does not answer is
        asked first by one read only, which retries; the reads started
        meanwhile keep asking the others first.
        """
        cluster = Cluster()
        cluster.put("n0", "k", b"v", Consistency.all)
        cluster.network.silent.add("n1")
        node = cluster.nodes["n0"]
        self.timed(cluster, "n0")
        cluster.clock.advance(SLOW_FOR)
        calls = cluster.network.calls[("n0", "n1")]
        pending = [node.read("k", Consistency.quorum) for _ in range(5)]
        self.assertEqual(cluster.network.calls[("n0", "n1")], calls + 1)
        cluster.settle(READ_RETRY_AFTER + 0.01)
        outcomes: list[ReadOutcome] = []
        for d in pending:
            assert isinstance(d, Deferred)
            d.addCallback(outcomes.append)
        self.assertEqual([o.ok for o in outcomes], [True] * 5)
        self.assertEqual(node.counters.readRetries, 2)

    def test_answerEndsSlowness(self) -> None:
        """
        A replica taken for slow that answers after all is asked first
        again at once.
        """
        cluster = Cluster()
        cluster.put("n0", "k", b"v", Consistency.all)
        cluster.network.latency = 2 * READ_RETRY_AFTER
        self.timed(cluster, "n0")
        self.assertEqual(cluster.nodes["n0"].counters.readRetries, 1)
        # n1 answered, late; the network is quick again.
        cluster.network.latency = 0.001
        calls = cluster.network.calls[("n0", "n1")]
        outcome, took = self.timed(cluster, "n0")
        self.assertEqual((outcome.ok, took < 0.01), (True, True))
        self.assertEqual(cluster.network.calls[("n0", "n1")], calls + 1)

    def test_answersInTimeAskNoMore(self) -> None:
        cluster = Cluster()
        cluster.put("n0", "k", b"v", Consistency.all)
        cluster.network.latency = READ_RETRY_AFTER / 3
        calls = sum(cluster.network.calls.values())
        for _ in range(5):
            outcome, _ = self.timed(cluster, "n0")
            self.assertTrue(outcome.ok)
        self.assertEqual(sum(cluster.network.calls.values()), calls + 5)
        self.assertEqual(cluster.nodes["n0"].counters.readRetries, 0)

    def test_retriesBudgeted(self) -> None:
        """
        When every replica is slow, retries stay within their budget: a
        tenth of the reads, after a burst of a hundred.
        """
        cluster = Cluster()
        cluster.put("n0", "k", b"v", Consistency.all)
        cluster.network.latency = 3 * READ_RETRY_AFTER
        node = cluster.nodes["n0"]
        pending = [node.read("k", Consistency.quorum) for _ in range(200)]
        cluster.settle(1.0)
        outcomes: list[ReadOutcome] = []
        for d in pending:
            assert isinstance(d, Deferred)
            d.addCallback(outcomes.append)
        self.assertEqual(len(outcomes), 200)
        self.assertTrue(all(outcome.ok for outcome in outcomes))
        self.assertLessEqual(
            node.counters.readRetries, RETRY_BURST + RETRY_BUDGET * 200
        )
        self.assertGreater(node.counters.readRetries, 0)
        self.assertGreater(node.counters.readRetriesSkipped, 0)
        self.assertEqual(
            node.counters.readRetries + node.counters.readRetriesSkipped, 200
        )

    def test_retryingOff(self) -> None:
        """
        A wait at least as long as the timeout turns retries off: a read
        whose replica never answers ends at the timeout.
        """
        cluster = Cluster(readRetryAfter=1.0)
        cluster.put("n0", "k", b"v", Consistency.all)
        cluster.network.silent.add("n1")
        outcome, took = self.timed(cluster, "n0")
        self.assertEqual((outcome.ok, outcome.answered), (False, 1))
        self.assertGreaterEqual(took, 1.0)
        self.assertEqual(cluster.nodes["n0"].counters.readRetries, 0)


class HintStoreTests(SynchronousTestCase):
    def record(self, size: int) -> Record:
        return Record(b"x" * size, 0, 1, 1)

    def test_boundedOldestDropped(self) -> None:
        hints = HintStore(maxBytes=1000)
        for i in range(10):
            hints.add("a" if i % 2 else "b", f"k{i}", self.record(100))
        self.assertLessEqual(hints.bytes, 1000)
        self.assertEqual(hints.counters.queued, 10)
        self.assertGreater(hints.counters.dropped, 0)
        kept = hints.take("a", 100) + hints.take("b", 100)
        self.assertEqual(len(kept) + hints.counters.dropped, 10)
        self.assertEqual(hints.bytes, 0)

    def test_restoreKeepsOrder(self) -> None:
        hints = HintStore(maxBytes=10_000)
        for i in range(3):
            hints.add("a", f"k{i}", self.record(1))
        taken = hints.take("a", 2)
        hints.restore("a", taken)
        self.assertEqual([k for k, _ in hints.take("a", 10)], ["k0", "k1", "k2"])


class _FailingPeers:
    def apply(self, member: str, records: object) -> Deferred[object]:
        return fail(ConnectionRefusedError(member))

    def fetch(self, member: str, keys: object) -> Deferred[list[Record | None]]:
        return fail(ConnectionRefusedError(member))


class SettlingTests(SynchronousTestCase):
    def test_quorumWaitsForEveryReplicaAfterATableChange(self) -> None:
        """
        Right after the table changes, a quorum write and read wait for
        every replica of the table (views may differ between coordinators);
        once it has been stable a while, the first majority is enough.
        """
        cluster = Cluster()
        slow = cluster.network
        view = cluster.views["n0"]
        view.updateMembers([MemberSpec(n) for n in NAMES] + [MemberSpec("n3")])
        view.updateMembers([MemberSpec(n) for n in NAMES])
        slow.latency = 0.01
        slow.silent.add("n2")
        started = cluster.clock.seconds()
        outcome = cluster.put("n0", "k", b"v", Consistency.quorum)
        # The silent replica was waited for until the timeout.
        self.assertGreaterEqual(cluster.clock.seconds() - started, 1.0)
        self.assertEqual(outcome, WriteOutcome(acks=2, required=2, replicas=3))
        cluster.clock.advance(SETTLE_WINDOW)
        started = cluster.clock.seconds()
        outcome = cluster.put("n0", "k", b"w", Consistency.quorum)
        self.assertLess(cluster.clock.seconds() - started, 0.1)
        self.assertEqual(outcome, WriteOutcome(acks=2, required=2, replicas=3))

    def displaced(self, cluster: Cluster, joiner: str) -> tuple[str, str]:
        """
        A key that C{joiner} took over: with it, one of the members before
        it no longer holds the key. The key, and that member.
        """
        table = cluster.views[joiner].table
        for i in range(1000):
            key = f"k{i}"
            owners = table.ownersOf(key)
            gone = [m for m in NAMES if m not in owners]
            if joiner in owners and gone:
                return key, gone[0]
        raise AssertionError("no key moved")

    def test_joinerWritesReachTheReplicasBeforeIt(self) -> None:
        """
        A node that has just joined writes, for a while, to the replicas of
        the table without it as well: a member that has not heard of it yet
        still reads its own store at "one" for keys it owned, and sees the
        write. Only replicas of the joiner's own table acknowledge.
        """
        cluster = Cluster()
        cluster.join("n3")
        key, unaware = self.displaced(cluster, "n3")
        outcome = cluster.put("n3", key, b"v", Consistency.all)
        self.assertEqual(outcome, WriteOutcome(acks=3, required=3, replicas=3))
        read = cluster.get(unaware, key, Consistency.one)
        self.assertIsNotNone(read.value)
        self.assertEqual(read.value.value, b"v")  # type: ignore[union-attr]
        # Once the window is over, the joiner's own table is all it writes to.
        cluster.clock.advance(SETTLE_WINDOW)
        cluster.put("n3", key, b"w", Consistency.all)
        cluster.settle()
        self.assertEqual(cluster.holds(key)[unaware], b"v")

    def test_joinerReadsReachTheReplicasBeforeIt(self) -> None:
        """
        A read through a node that has just joined, even at "one", waits for
        every replica of its table and of the table before it: a write
        acknowledged by a member that has not heard of the joiner is seen.
        Only replicas of the joiner's own table count towards the level.
        """
        cluster = Cluster()
        cluster.join("n3")
        key, unaware = self.displaced(cluster, "n3")
        # Acknowledged by the unaware member alone, as a write at "one" is
        # the moment it is stored there.
        record = cluster.stores[unaware].newRecord(b"v")
        cluster.stores[unaware].merge(key, record)
        read = cluster.get("n3", key, Consistency.one)
        self.assertEqual(read.record, record)
        self.assertEqual((read.answered, read.required, read.replicas), (3, 1, 3))

    def test_oneWaitsForEveryReplicaAfterATableChange(self) -> None:
        """
        Right after the table changes, "one" too waits for every replica
        (up to the timeout) and still succeeds on one; afterwards it does
        not wait.
        """
        cluster = Cluster()
        view = cluster.views["n0"]
        view.updateMembers([MemberSpec(n) for n in NAMES] + [MemberSpec("n3")])
        view.updateMembers([MemberSpec(n) for n in NAMES])
        cluster.network.latency = 0.01
        started = cluster.clock.seconds()
        outcome = cluster.put("n0", "k", b"v", Consistency.one)
        self.assertGreaterEqual(cluster.clock.seconds() - started, 0.01)
        self.assertEqual(outcome, WriteOutcome(acks=3, required=1, replicas=3))
        started = cluster.clock.seconds()
        read = cluster.get("n0", "k", Consistency.one)
        self.assertGreaterEqual(cluster.clock.seconds() - started, 0.01)
        self.assertEqual(read.answered, 3)
        cluster.clock.advance(SETTLE_WINDOW)
        outcome = cluster.resolve(
            cluster.nodes["n0"].write(
                "k", cluster.stores["n0"].newRecord(b"w"), Consistency.one
            )
        )
        self.assertEqual(outcome, WriteOutcome(acks=1, required=1, replicas=3))
        self.assertEqual(cluster.get("n0", "k", Consistency.one).answered, 1)


class _RecordingPeers:
    def __init__(self) -> None:
        self.fetched: list[str] = []

    def apply(self, member: str, records: object) -> Deferred[object]:
        return Deferred()

    def fetch(self, member: str, keys: object) -> Deferred[list[Record | None]]:
        self.fetched.append(member)
        return Deferred()


class ReadPreferenceTests(SynchronousTestCase):
    def test_readsAskTheNextMemberOnTheRing(self) -> None:
        """
        With every member a replica, a quorum read asks the member after
        the coordinator in name order, whatever the key: its fetches then
        batch into one queue. The last member wraps around to the first.
        """
        names = ["a", "b", "c"]
        for me, expected in zip(names, ["b", "c", "a"], strict=True):
            clock = Clock()
            peers = _RecordingPeers()
            view, _, node = build(me, Store(clock, 1), clock, peers)
            view.updateMembers([MemberSpec(n) for n in names])
            clock.advance(SETTLE_WINDOW)
            for i in range(50):
                node.read(f"key-{i}", Consistency.quorum)
            self.assertEqual(set(peers.fetched), {expected})

    def test_orderFollowsTheTable(self) -> None:
        clock = Clock()
        peers = _RecordingPeers()
        # These peers never answer: no retries, only the first asked counts.
        view, _, node = build("a", Store(clock, 1), clock, peers, readRetryAfter=1.0)
        view.updateMembers([MemberSpec(n) for n in "abc"])
        clock.advance(SETTLE_WINDOW)
        node.read("k", Consistency.quorum)
        view.updateMembers([MemberSpec(n) for n in "ac"])
        clock.advance(SETTLE_WINDOW)
        node.read("k", Consistency.quorum)
        self.assertEqual(peers.fetched, ["b", "c"])


class LocalTests(SynchronousTestCase):
    """
    L{Coordinator.localPartition}: when the local replica alone answers,
    and the reads and writes it then serves.
    """

    def test_alone(self) -> None:
        """
        A node alone reads and writes every key at every level by itself,
        as read and write would, and counts them.
        """
        cluster = Cluster(names=["n0"])
        node = cluster.nodes["n0"]
        for level in Consistency:
            self.assertEqual(
                node.localPartition("k", level, writing=True), partitionOf("k")
            )
        self.assertTrue(node.writeHere("k", b"v", 0, False, Consistency.quorum))
        record = node.readHere("k", Consistency.quorum)
        assert isinstance(record, Record)
        self.assertEqual((record.value, record.binary), (b"v", False))
        outcome = node.read("k", Consistency.all)
        assert isinstance(outcome, ReadOutcome)
        self.assertEqual(record, outcome.record)
        self.assertEqual(node.readAllHere(["k", "j"], Consistency.one), [record, None])
        self.assertEqual((node.counters.reads, node.counters.writes), (4, 1))

    def test_replicated(self) -> None:
        """
        With three replicas, the local one alone answers a read at level
        one only, and never takes a write alone.
        """
        cluster = Cluster()
        node = cluster.nodes["n0"]
        partition = partitionOf("k")
        self.assertEqual(node.localPartition("k", Consistency.one, False), partition)
        self.assertEqual(node.localPartition("k", Consistency.quorum, False), -1)
        for level in Consistency:
            self.assertEqual(node.localPartition("k", level, writing=True), -1)
        self.assertIs(node.readHere("k", Consistency.quorum), ELSEWHERE)
        self.assertIs(node.readAllHere(["k"], Consistency.all), ELSEWHERE)
        self.assertFalse(node.writeHere("k", b"v", 0, False, Consistency.one))
        self.assertEqual(cluster.holds("k"), {"n0": None, "n1": None, "n2": None})
        self.assertEqual((node.counters.reads, node.counters.writes), (0, 0))

    def test_notAnOwner(self) -> None:
        """
        A key this node holds no replica of is read elsewhere.
        """
        cluster = Cluster(names=["n0", "n1", "n2", "n3", "n4"], replicas=1)
        node = cluster.nodes["n0"]
        owners = {key: node.owners(key) for key in (f"k{n}" for n in range(50))}
        self.assertIn(("n0",), owners.values())
        self.assertNotEqual(set(owners.values()), {("n0",)})
        for key, held in owners.items():
            expected = partitionOf(key) if held == ("n0",) else -1
            self.assertEqual(node.localPartition(key, Consistency.one, False), expected)
            self.assertEqual(node.localPartition(key, Consistency.one, True), expected)

    def test_held(self) -> None:
        """
        A partition whose reads are held here is read elsewhere.
        """
        cluster = Cluster()
        cluster.replicas["n0"].beginLoading()
        self.assertEqual(
            cluster.nodes["n0"].localPartition("k", Consistency.one, False), -1
        )

    def test_syncs(self) -> None:
        """
        A write acknowledged only once synced to disk is not taken alone.
        """
        cluster = Cluster(names=["n0"])
        cluster.replicas["n0"].waitsForSync = True
        self.assertEqual(
            cluster.nodes["n0"].localPartition("k", Consistency.one, True), -1
        )

    def test_settling(self) -> None:
        """
        In the moments after a table change, reads and writes go the long
        way (earlier owners are asked too).
        """
        cluster = Cluster(names=["n0"])
        cluster.views["n0"].updateMembers([MemberSpec("n0"), MemberSpec("n1")])
        node = cluster.nodes["n0"]
        self.assertEqual(node.localPartition("k", Consistency.one, False), -1)
