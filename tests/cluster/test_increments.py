"""
Tests for L{disperse.cluster.increments}: convergent counters across
several nodes on one clock, over the in-memory network. Increments made on
both sides of a partition all count once it heals (through read repair,
anti-entropy or hints); increments acknowledged at quorum survive the loss
of a replica; a C{SET} resets a counter; a node's entry stays whole when
it reads stale copies.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import replace
from decimal import Decimal
from typing import TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from disperse.cluster.coordinator import HINT_INTERVAL, Consistency
from disperse.cluster.increments import IncrementOutcome, Increments
from disperse.cluster.serial import KeySerializer
from disperse.cluster.view import SETTLE_WINDOW
from disperse.store import renderedValue
from disperse.store.counter import (
    NO_VERSION,
    CounterState,
    NotAnInteger,
    counterRecord,
    decodeState,
)
from tests.cluster.test_antientropy import TWO_ROUNDS
from tests.cluster.test_antientropy import Cluster as BaseCluster

T = TypeVar("T")
ONE, QUORUM, ALL = Consistency.one, Consistency.quorum, Consistency.all


class Cluster(BaseCluster):
    """
    Nodes with anti-entropy (three unless named), each with its increments.
    """

    def __init__(self, names: Iterable[str] = ("n0", "n1", "n2")) -> None:
        super().__init__(names)
        # Past the moments after the table change, when reads and writes
        # wait for every replica: these tests are about the steady state.
        self.run(SETTLE_WINDOW)
        self.increments: dict[str, Increments] = {}
        for index, name in enumerate(self.names):
            self.restart(name, seed=index)

    def restart(self, name: str, seed: int, remembered: int = 1000) -> None:
        """
        Give C{name} new increments: as after a restart, it remembers none
        of its entries.
        """
        self.increments[name] = Increments(
            coordinator=self.nodes[name],
            store=self.stores[name],
            serial=KeySerializer(),
            random=random.Random(1000 + seed),
            remembered=remembered,
        )

    def resolve(self, result: Deferred[T]) -> T:
        answers: list[T | Failure] = []
        result.addBoth(answers.append)
        for _ in range(2000):
            if answers:
                break
            self.clock.advance(0.001)
        assert answers, "no answer in time"
        answer = answers[0]
        if isinstance(answer, Failure):
            answer.raiseException()
        assert not isinstance(answer, Failure)
        return answer

    def incr(
        self, via: str, key: str, delta: int | Decimal, level: Consistency
    ) -> IncrementOutcome:
        return self.resolve(self.increments[via].increment(key, delta, level))

    def read(self, via: str, key: str, level: Consistency) -> bytes | None:
        result = self.nodes[via].read(key, level)
        outcome = self.resolve(result) if isinstance(result, Deferred) else result
        record = outcome.value
        return None if record is None else renderedValue(record)

    def held(self, key: str) -> dict[str, bytes | None]:
        return {name: store.encoded(key) for name, store in self.stores.items()}

    def counts(self, key: str) -> dict[str, bytes | None]:
        counted: dict[str, bytes | None] = {}
        for name, store in self.stores.items():
            record = store.record(key)
            live = record is not None and not record.tombstone
            counted[name] = renderedValue(record) if live and record else None
        return counted


def actors(cluster: Cluster, name: str, key: str) -> int:
    """
    How many actors the counter C{key} held by C{name} has entries for.
    """
    record = cluster.stores[name].record(key)
    assert record is not None and record.counter
    return len(decodeState(record.value).entries)


class PartitionTests(SynchronousTestCase):
    def partitioned(self) -> Cluster:
        """
        Five increments through n0 and three through each of n1 and n2 at
        level one, n0 cut off from the others; then the cut heals and
        every hint is lost.
        """
        cluster = Cluster()
        cluster.network.partition({"n0"}, {"n1", "n2"})
        for _ in range(5):
            self.assertTrue(cluster.incr("n0", "k", 1, ONE).ok)
        for via in ("n1", "n2"):
            for _ in range(3):
                self.assertTrue(cluster.incr(via, "k", 1, ONE).ok)
        cluster.run(0.1)
        self.assertEqual(cluster.counts("k"), {"n0": b"5", "n1": b"6", "n2": b"6"})
        cluster.forgetHints()
        cluster.network.heal()
        return cluster

    def test_readRepairMergesBothSides(self) -> None:
        cluster = self.partitioned()
        # Two copies, one from each side, merged by the read.
        self.assertEqual(cluster.read("n0", "k", QUORUM), b"11")
        self.assertEqual(cluster.read("n2", "k", ALL), b"11")
        cluster.run(0.1)
        held = cluster.held("k")
        self.assertEqual(len(set(held.values())), 1, held)
        self.assertEqual(cluster.counts("k"), {"n0": b"11", "n1": b"11", "n2": b"11"})

    def test_antiEntropyMergesBothSides(self) -> None:
        cluster = self.partitioned()
        cluster.run(TWO_ROUNDS)
        self.assertEqual(cluster.counts("k"), {"n0": b"11", "n1": b"11", "n2": b"11"})
        self.assertEqual(len(set(cluster.held("k").values())), 1)
        self.assertEqual(cluster.roots("n0"), cluster.roots("n1"))
        self.assertEqual(cluster.roots("n0"), cluster.roots("n2"))

    def test_antiEntropyMergesCopiesOfOneVersion(self) -> None:
        """
        Two copies with the same header, one holding more of an actor's
        increments (whose encoding happens to sort lower: 256 against 255):
        anti-entropy still brings the larger total everywhere.
        """
        cluster = Cluster()
        base = CounterState(False, NO_VERSION, 0, {})
        behind = counterRecord(replace(base, entries={7: (255, 0)}), 0, 99, 1)
        ahead = counterRecord(replace(base, entries={7: (256, 0)}), 0, 99, 1)
        self.assertGreater(behind.precedence, ahead.precedence)
        cluster.stores["n0"].merge("k", behind)
        for name in ("n1", "n2"):
            cluster.stores[name].merge("k", ahead)
        cluster.run(TWO_ROUNDS)
        self.assertEqual(
            cluster.counts("k"), {"n0": b"256", "n1": b"256", "n2": b"256"}
        )

    def test_hintsMergeBothSides(self) -> None:
        cluster = Cluster()
        cluster.network.partition({"n0"}, {"n1", "n2"})
        cluster.incr("n0", "k", 2, ONE)
        cluster.incr("n1", "k", Decimal("0.5"), ONE)
        cluster.network.heal()
        cluster.run(2 * HINT_INTERVAL)
        self.assertEqual(
            cluster.counts("k"), {"n0": b"2.5", "n1": b"2.5", "n2": b"2.5"}
        )

    def test_bothSidesKeepIncrementingTheSameEntry(self) -> None:
        """
        After the heal, each side's coordinator goes on with its own entry:
        no increment counts twice, none is lost.
        """
        cluster = self.partitioned()
        self.assertEqual(cluster.incr("n0", "k", 1, QUORUM).value, 12)
        self.assertEqual(cluster.incr("n1", "k", -2, QUORUM).value, 10)
        cluster.run(TWO_ROUNDS)
        self.assertEqual(cluster.read("n2", "k", ALL), b"10")
        self.assertEqual(actors(cluster, "n2", "k"), 3)


class FailureTests(SynchronousTestCase):
    def test_acknowledgedIncrementsSurviveAReplicasLoss(self) -> None:
        """
        Increments acknowledged at quorum by n0 and n1 while n2 was down;
        then n1 dies and n2 is back: increments through n2 read them
        (from n0) and add to them, and the total is every acknowledged
        increment.
        """
        cluster = Cluster()
        cluster.network.down.add("n2")
        acknowledged = sum(cluster.incr("n0", "k", 1, QUORUM).ok for _ in range(5))
        cluster.run(0.1)
        cluster.forgetHints()
        cluster.network.down = {"n1"}
        acknowledged += sum(cluster.incr("n2", "k", 1, QUORUM).ok for _ in range(3))
        self.assertEqual(acknowledged, 8)
        self.assertEqual(cluster.read("n2", "k", QUORUM), b"8")
        # The coordinator that made the first five dies too, and restarts
        # remembering nothing: its next increments go to a new entry.
        cluster.network.down = set()
        cluster.restart("n0", seed=10)
        self.assertEqual(cluster.incr("n0", "k", 1, QUORUM).value, 9)
        cluster.run(TWO_ROUNDS)
        self.assertEqual(cluster.counts("k"), {"n0": b"9", "n1": b"9", "n2": b"9"})

    def test_staleReadDoesNotShrinkTheEntry(self) -> None:
        """
        A node that coordinates a key it does not hold, at level one, reads
        one replica: when that one missed its earlier increments, it still
        adds to its whole entry (it remembers what it wrote).
        """
        cluster = Cluster([f"n{i}" for i in range(5)])
        key = next(
            f"k{i}"
            for i in range(1000)
            if "n0" not in cluster.nodes["n0"].owners(f"k{i}")
        )
        owners = list(cluster.nodes["n0"].owners(key))
        first = cluster.nodes["n0"]._preferred(owners)[0]
        others = [owner for owner in owners if owner != first]
        cluster.network.down = {first}
        for _ in range(3):
            self.assertTrue(cluster.incr("n0", key, 1, ONE).ok)
        cluster.run(0.1)
        cluster.forgetHints()
        cluster.network.down = set(others)
        self.assertEqual(cluster.counts(key)[first], None)
        self.assertEqual(cluster.incr("n0", key, 1, ONE).value, 4)
        cluster.network.down = set()
        self.assertEqual(cluster.read("n0", key, ALL), b"4")
        self.assertEqual(actors(cluster, first, key), 1)

    def test_forgottenEntryGetsANewActor(self) -> None:
        """
        A node that remembers no entry for a key (here: room for one key,
        two keys in turn) increments it under a new actor: more entries,
        the same total.
        """
        cluster = Cluster()
        cluster.restart("n0", seed=20, remembered=1)
        for _ in range(3):
            for key in ("a", "b"):
                cluster.incr("n0", key, 1, QUORUM)
        self.assertEqual(len(cluster.increments["n0"]), 1)
        self.assertEqual(cluster.read("n1", "a", QUORUM), b"3")
        self.assertEqual(cluster.read("n1", "b", QUORUM), b"3")
        self.assertEqual(actors(cluster, "n0", "a"), 3)

    def test_refusedIncrementWritesNothing(self) -> None:
        cluster = Cluster()
        cluster.write("n0", "k", b"text", ALL)
        cluster.run(0.1)
        self.assertRaises(NotAnInteger, cluster.incr, "n1", "k", 1, QUORUM)
        self.assertEqual(cluster.read("n2", "k", ALL), b"text")

    def test_readShortOfItsLevelWritesNothing(self) -> None:
        cluster = Cluster()
        cluster.network.down = {"n1", "n2"}
        outcome = cluster.incr("n0", "k", 1, QUORUM)
        self.assertEqual(
            (outcome.read.ok, outcome.write, outcome.ok), (False, None, False)
        )
        self.assertIsNone(cluster.stores["n0"].record("k"))


class ResetTests(SynchronousTestCase):
    def test_setResetsTheCounter(self) -> None:
        cluster = Cluster()
        for via in ("n0", "n1", "n2"):
            cluster.incr(via, "k", 1, QUORUM)
        cluster.write("n1", "k", b"100", QUORUM)
        cluster.run(0.1)
        self.assertEqual(cluster.read("n2", "k", QUORUM), b"100")
        self.assertEqual(cluster.incr("n0", "k", 1, QUORUM).value, 101)
        cluster.run(TWO_ROUNDS)
        self.assertEqual(
            cluster.counts("k"), {"n0": b"101", "n1": b"101", "n2": b"101"}
        )

    def test_setWinsOverIncrementsThatDidNotSeeIt(self) -> None:
        """
        A C{SET} on one side of a partition and increments on the other,
        made later by the clock: the reset wins once the sides meet, since
        the increments were based on the value before it.
        """
        cluster = Cluster()
        cluster.incr("n0", "k", 1, ALL)
        cluster.network.partition({"n0"}, {"n1", "n2"})
        cluster.write("n1", "k", b"50", ONE)
        cluster.run(0.1)
        cluster.incr("n0", "k", 1, ONE)
        cluster.forgetHints()
        cluster.network.heal()
        self.assertEqual(cluster.read("n0", "k", ALL), b"50")
        self.assertEqual(cluster.incr("n0", "k", 1, QUORUM).value, 51)
