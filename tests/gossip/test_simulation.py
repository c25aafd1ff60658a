"""
Cluster scenarios on the deterministic simulator of
L{disperse.gossip.simulation}: boot, failure detection, loss, pauses,
partitions, restarts; plus the simulator's own mechanics.
"""

from __future__ import annotations

import dataclasses

from twisted.internet.task import Clock

from disperse.gossip.config import GossipConfig
from disperse.gossip.messages import NodeState
from disperse.gossip.simulation import (
    NetworkConditions,
    NodeClock,
    ProcessState,
    Simulation,
    SimulationClock,
)


def bootCluster(
    n: int, seed: int = 0, conditions: NetworkConditions | None = None
) -> Simulation:
    sim = Simulation(GossipConfig.local(), seed=seed, conditions=conditions)
    sim.addNode("seed")
    sim.addNodes(n - 1, seeds=["seed"])
    assert sim.runUntil(sim.converged, timeout=10) is not None
    return sim


# The simulator's mechanics


def test_simulationClockKeepsTwistedOrder() -> None:
    clock = SimulationClock()
    ran: list[str] = []
    clock.callLater(2, ran.append, "c")
    clock.callLater(1, ran.append, "a")
    clock.callLater(1, ran.append, "b")
    cancelled = clock.callLater(1.5, ran.append, "x")
    moved = clock.callLater(0.5, ran.append, "d")
    cancelled.cancel()
    moved.reset(3)
    clock.advance(5)
    assert ran == ["a", "b", "c", "d"]


def test_pausedNodeClockCatchesUp() -> None:
    shared = SimulationClock()
    clock = NodeClock(shared)
    ran: list[tuple[str, float]] = []
    clock.callLater(1, lambda: ran.append(("one", clock.seconds())))
    clock.callLater(2, lambda: ran.append(("two", clock.seconds())))
    cancelled = clock.callLater(2.5, lambda: ran.append(("no", clock.seconds())))
    clock.pause()
    shared.advance(3)
    cancelled.cancel()
    assert ran == []
    clock.resume()
    assert ran == [("one", 3.0), ("two", 3.0)]
    clock.kill()
    clock.callLater(1, lambda: ran.append(("dead", 0)))
    shared.advance(5)
    assert len(ran) == 2


def test_twistedClockSatisfiesSwim() -> None:
    """
    The plain Twisted clock drives a node too (typing is checked by mypy).
    """
    from random import Random

    from disperse.gossip.swim import Swim

    class Sink:
        def sendPacket(self, addr: object, messages: object) -> None:
            pass

        def sendStreamPing(self, addr: object, ping: object, timeout: float) -> None:
            pass

        def requestPushPull(self, addr: object, join: bool) -> None:
            pass

    swim = Swim(
        GossipConfig.local(),
        name="a",
        host="127.0.0.1",
        port=1,
        clock=Clock(),
        rng=Random(0),
        sink=Sink(),
    )
    swim.start()
    assert [m.name for m in swim.members()] == ["a"]


def test_runsAreReproducible() -> None:
    def run() -> list[tuple[float, str, str, str]]:
        sim = Simulation(
            GossipConfig.local(),
            seed=7,
            conditions=NetworkConditions(dropRate=0.1, jitter=0.01),
        )
        sim.addNode("seed")
        sim.addNodes(9, seeds=["seed"], stagger=1.0)
        sim.advance(5)
        sim.crash("node-3")
        sim.advance(20)
        return [(e.time, e.observer, e.subject, e.kind) for e in sim.events]

    assert run() == run()


def test_bytesAreCountedThroughTheCodec() -> None:
    sim = bootCluster(5)
    sim.advance(10)
    for node in sim.nodes.values():
        assert node.traffic.packets > 0
        assert node.traffic.packetBytes > 20 * node.traffic.packets
    assert sum(n.traffic.streamBytes for n in sim.nodes.values()) > 0
    assert all(n.swim.counters.badMessages == 0 for n in sim.nodes.values())


# Scenarios


def test_fiftyNodesBootThroughOneSeed() -> None:
    sim = Simulation(GossipConfig.local(), seed=1)
    sim.addNode("seed")
    sim.addNodes(49, seeds=["seed"])
    took = sim.runUntil(sim.converged, timeout=10, step=0.1)
    assert took is not None and took <= 2.0
    assert sim.failures() == []


def test_lateJoinerSeenByAll() -> None:
    sim = bootCluster(30)
    sim.advance(5)
    sim.addNode("late", seeds=["seed"])
    took = sim.runUntil(lambda: sim.allSeeAlive("late"), timeout=10, step=0.05)
    assert took is not None and took <= 1.0
    assert sim.converged()


def test_crashedNodeDeclaredDeadByAll() -> None:
    sim = bootCluster(20)
    sim.advance(5)
    sim.crash("node-7")
    took = sim.runUntil(lambda: sim.noneSeeAlive("node-7"), timeout=60, step=0.1)
    # Local preset, 20 members: 3 * log10(20) = 3.9 s minimum suspicion,
    # plus up to two probe periods to notice.
    assert took is not None and took < 8.0
    survivors = set(sim.running())
    assert sim.failures(subjects=survivors) == []
    assert {e.observer for e in sim.failures(subjects=["node-7"])} == survivors


def test_lossDeclaresNoHealthyNodeDead() -> None:
    """
    10% datagram loss, 50 members, two simulated minutes: suspicions come
    and go, but every one is refuted in time.  (bench/gossip runs ten.)
    """
    sim = bootCluster(50, seed=3)
    sim.conditions.dropRate = 0.10
    start = sim.clock.seconds()
    sim.advance(120)
    assert sim.failures(since=start) == []
    assert sim.converged()


def test_pausedNodeNotDeclaredDead() -> None:
    """
    A node stopped for 5 s every 30 s (a long GC pause, a stalled VM) stays
    a member: with 50 members the Local preset's minimum suspicion is
    3 * log10(50) = 5.1 s, reached only once a second member confirms, and
    the node refutes as soon as it wakes up.
    """
    sim = bootCluster(50, seed=4)
    sim.pausePeriodically("node-13", period=30, duration=5, first=1)
    start = sim.clock.seconds()
    sim.advance(120)
    assert sim.failures(since=start) == []
    # It was noticed, though: suspected and refuted.
    assert sim.nodes["node-13"].swim.counters.refutations > 0


def test_partitionThenHealMerges() -> None:
    sim = bootCluster(20, seed=5)
    names = sorted(sim.nodes)
    left, right = names[:10], names[10:]
    sim.partition(left, right)
    sim.advance(60)
    # Each side declared the other dead.
    assert all(not sim.seesAlive(a, b) for a in left for b in right)
    assert all(not sim.seesAlive(b, a) for a in left for b in right)
    assert sim.converged(left) and sim.converged(right)
    sim.heal()
    # Dead members are not probed; push/pull (every 15 s) or a refutation
    # reaching across brings the halves back together.
    took = sim.runUntil(sim.converged, timeout=60, step=0.5)
    assert took is not None


def test_healedNodeHearsOfItsDeathFromTheNodesItProbes() -> None:
    """
    A node cut off long enough for the others to declare it dead, but not
    so long that it gave up on them, probes them again once the link
    heals. They tell it, with their acks, that they hold it dead: it
    refutes at once, instead of staying dead to them until a push/pull
    (turned off here) happens to carry the news.
    """
    config = dataclasses.replace(GossipConfig.lan(), pushPullInterval=0)
    sim = Simulation(config, seed=11)
    sim.addNode("seed")
    sim.addNodes(3, seeds=["seed"])
    assert sim.runUntil(sim.converged, timeout=10) is not None
    others = [n for n in sim.nodes if n != "node-2"]
    sim.partition(["node-2"], others)
    assert sim.runUntil(lambda: sim.noneSeeAlive("node-2"), timeout=20)
    # Long enough for every message about the death to have gone round.
    sim.advance(12)
    # Alone, it still suspects the others: with nobody to confirm, its
    # suspicions take the longest timeout.
    assert any(sim.seesAlive("node-2", other) for other in others)
    sim.heal()
    took = sim.runUntil(sim.converged, timeout=30, step=0.1)
    assert took is not None and took < 3, took
    assert sim.nodes["node-2"].swim.counters.refutations > 0


def test_oneWayPartition() -> None:
    """
    When a node's outbound packets are lost it is suspected; if its
    suspicion reaches it (inbound still works), it refutes, but nobody hears:
    it is declared dead, and comes back once the link heals.
    """
    sim = bootCluster(10, seed=6)
    others = [n for n in sim.nodes if n != "node-4"]
    sim.partition(["node-4"], others, oneWay=True)
    assert sim.runUntil(lambda: sim.noneSeeAlive("node-4"), timeout=60)
    sim.heal()
    assert sim.runUntil(sim.converged, timeout=60, step=0.5) is not None


def test_restartedNodeIsReadmitted() -> None:
    sim = bootCluster(20, seed=8)
    sim.crash("node-5")
    assert sim.runUntil(lambda: sim.noneSeeAlive("node-5"), timeout=60)
    sim.restart("node-5", seeds=["seed"])
    took = sim.runUntil(lambda: sim.allSeeAlive("node-5"), timeout=10, step=0.05)
    assert took is not None and took < 2.0
    assert sim.nodes["node-5"].swim.incarnation > 1


def test_quickRestartRefutesOldIncarnation() -> None:
    """
    Restarted before anyone noticed: the others still hold it alive with a
    higher incarnation than the fresh process's first one.
    """
    sim = bootCluster(10, seed=9)
    node = sim.nodes["node-2"]
    node.swim.updateMeta(b"v2")  # incarnation 2
    sim.advance(2)
    sim.restart("node-2", seeds=["seed"])
    sim.advance(3)
    fresh = sim.nodes["node-2"].swim
    assert fresh.incarnation >= 3
    member = sim.nodes["seed"].swim.member("node-2")
    assert member is not None and member.incarnation == fresh.incarnation
    assert member.state == NodeState.alive


def test_gracefulLeave() -> None:
    sim = bootCluster(10, seed=10)
    sim.leave("node-6")
    sim.advance(2)
    assert sim.noneSeeAlive("node-6")
    assert sim.failures() == []
    lefts = {e.observer for e in sim.events if e.kind == "left"}
    assert lefts >= set(sim.nodes) - {"node-6"}


def test_duplicatesAndReorderingAreHarmless() -> None:
    sim = bootCluster(
        20,
        seed=11,
        conditions=NetworkConditions(duplicateRate=0.2, jitter=0.05, delay=0.001),
    )
    sim.advance(60)
    assert sim.failures() == []
    assert sim.converged()


def test_pausedNodeCrashedWhilePaused() -> None:
    sim = bootCluster(10, seed=12)
    sim.pause("node-1")
    assert sim.nodes["node-1"].state is ProcessState.paused
    sim.advance(2)
    sim.crash("node-1")
    sim.resume("node-1")
    assert sim.runUntil(lambda: sim.noneSeeAlive("node-1"), timeout=60)
