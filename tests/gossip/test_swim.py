"""
Deterministic unit tests of the SWIM/Lifeguard state machine in
L{disperse.gossip.swim}, driven message by message on a fake clock.
"""

from __future__ import annotations

import dataclasses
import math
import random
import typing
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from twisted.internet.base import DelayedCall
from twisted.internet.task import Clock

from disperse.gossip.awareness import Awareness
from disperse.gossip.broadcasts import BroadcastQueue
from disperse.gossip.config import (
    GossipConfig,
    pushPullScale,
    retransmitLimit,
    suspicionTimeout,
)
from disperse.gossip.messages import (
    DEFAULT_VSN,
    Ack,
    Alive,
    Dead,
    IndirectPing,
    Message,
    Nack,
    NodeState,
    PacketMessage,
    Ping,
    PushNodeState,
    Suspect,
    UserMessage,
)
from disperse.gossip.suspicion import Suspicion, remainingSuspicionTime
from disperse.gossip.swim import (
    FIELD_CHECKS,
    Address,
    Member,
    Swim,
    _wellFormed,
    packAddress,
)

PORT = 7946


@dataclass
class RecordingSink:
    packets: list[tuple[Address, list[PacketMessage]]] = field(default_factory=list)
    streamPings: list[tuple[Address, Ping, float]] = field(default_factory=list)
    pushPulls: list[tuple[Address, bool]] = field(default_factory=list)

    # Members that answer our pings (after a millisecond), as live ones do.
    answering: set[str] = field(default_factory=set)
    swim: Swim | None = None
    clock: Clock | None = None

    def sendPacket(self, addr: Address, messages: list[PacketMessage]) -> None:
        self.packets.append((addr, messages))
        for m in messages:
            if isinstance(m, Ping) and m.node in self.answering:
                assert self.clock is not None and self.swim is not None
                self.clock.callLater(0.001, self.swim.receive, addr, Ack(m.seqNo))

    def sendStreamPing(self, addr: Address, ping: Ping, timeout: float) -> None:
        self.streamPings.append((addr, ping, timeout))

    def requestPushPull(self, addr: Address, join: bool) -> None:
        self.pushPulls.append((addr, join))

    def sent(self, kind: type) -> list[tuple[Address, PacketMessage]]:
        return [
            (addr, m)
            for addr, messages in self.packets
            for m in messages
            if isinstance(m, kind)
        ]

    def clear(self) -> None:
        self.packets.clear()
        self.streamPings.clear()
        self.pushPulls.clear()


@dataclass
class RecordingListener:
    events: list[tuple[str, str, NodeState]] = field(default_factory=list)

    def memberJoined(self, member: Member) -> None:
        self.events.append(("joined", member.name, member.state))

    def memberUpdated(self, member: Member) -> None:
        self.events.append(("updated", member.name, member.state))

    def memberLeft(self, member: Member) -> None:
        self.events.append(("left", member.name, member.state))

    def memberFailed(self, member: Member) -> None:
        self.events.append(("failed", member.name, member.state))

    def about(self, name: str) -> list[str]:
        return [kind for kind, subject, _ in self.events if subject == name]


@dataclass
class Harness:
    swim: Swim
    clock: Clock
    sink: RecordingSink
    listener: RecordingListener

    def addMember(
        self, name: str, incarnation: int = 1, answers: bool = True
    ) -> Address:
        """
        Make C{name} known as alive; unless told otherwise it acks pings.
        """
        if answers:
            self.sink.answering.add(name)
        host = hostOf(name)
        self.swim.receive(
            (host, PORT), Alive(incarnation, name, packAddress(host), PORT)
        )
        return (host, PORT)

    def advance(self, seconds: float, step: float = 0.01) -> None:
        for _ in range(round(seconds / step)):
            self.clock.advance(step)

    def state(self, name: str) -> NodeState | None:
        member = self.swim.member(name)
        return None if member is None else member.state

    def nextPingTo(self, name: str, limit: float = 30.0) -> Ping:
        """
        Advance until a ping to C{name} leaves, and return it.
        """
        waited = 0.0
        while waited < limit:
            for _, message in self.sink.sent(Ping):
                assert isinstance(message, Ping)
                if message.node == name:
                    return message
            self.clock.advance(0.01)
            waited += 0.01
        raise AssertionError(f"no ping to {name}")


HOSTS: dict[str, str] = {}


def hostOf(name: str) -> str:
    return HOSTS.setdefault(name, f"10.0.0.{len(HOSTS) + 1}")


def makeHarness(
    config: GossipConfig | None = None, name: str = "a", seed: int = 0
) -> Harness:
    clock = Clock()
    sink = RecordingSink()
    listener = RecordingListener()
    swim = Swim(
        config or GossipConfig.local(),
        name=name,
        host=hostOf(name),
        port=PORT,
        clock=clock,
        rng=random.Random(seed),
        sink=sink,
        listener=listener,
    )
    sink.swim, sink.clock = swim, clock
    swim.start()
    return Harness(swim, clock, sink, listener)


# Formulas and building blocks


def test_presetsMatchMemberlist() -> None:
    lan, wan, local = GossipConfig.lan(), GossipConfig.wan(), GossipConfig.local()
    assert (lan.probeInterval, lan.probeTimeout, lan.indirectChecks) == (1.0, 0.5, 3)
    assert (lan.gossipInterval, lan.gossipNodes, lan.retransmitMult) == (0.2, 3, 4)
    assert (lan.suspicionMult, lan.suspicionMaxTimeoutMult) == (4, 6)
    assert (lan.pushPullInterval, lan.gossipToTheDeadTime) == (30.0, 30.0)
    assert lan.awarenessMaxMultiplier == 8
    assert (wan.probeInterval, wan.probeTimeout, wan.suspicionMult) == (5.0, 3.0, 6)
    assert (wan.gossipNodes, wan.gossipInterval, wan.pushPullInterval) == (
        4,
        0.5,
        60.0,
    )
    assert (local.probeTimeout, local.indirectChecks, local.retransmitMult) == (
        0.2,
        1,
        2,
    )
    assert (local.suspicionMult, local.gossipInterval, local.pushPullInterval) == (
        3,
        0.1,
        15.0,
    )


def test_scalingFormulas() -> None:
    assert suspicionTimeout(4, 1, 1.0) == 4.0
    assert suspicionTimeout(4, 1000, 1.0) == pytest.approx(12.0)
    assert suspicionTimeout(3, 50, 1.0) == pytest.approx(3 * math.log10(50))
    assert retransmitLimit(4, 1) == 4
    assert retransmitLimit(4, 9) == 4
    assert retransmitLimit(4, 10) == 8
    assert retransmitLimit(2, 500) == 6
    assert pushPullScale(30.0, 32) == 30.0
    assert pushPullScale(30.0, 33) == 60.0
    assert pushPullScale(30.0, 64) == 60.0
    assert pushPullScale(30.0, 65) == 90.0


def test_suspicionTimeoutShrinksLogarithmically() -> None:
    """
    With k wanted confirmations the timeout falls from max to min as
    log(n + 1) / log(k + 1).
    """
    assert remainingSuspicionTime(0, 3, 0, 2.0, 30.0) == 30.0
    assert remainingSuspicionTime(1, 3, 0, 2.0, 30.0) == pytest.approx(16.0)
    assert remainingSuspicionTime(2, 3, 0, 2.0, 30.0) == pytest.approx(
        30 - math.log(3) / math.log(4) * 28, abs=0.001
    )
    assert remainingSuspicionTime(3, 3, 0, 2.0, 30.0) == 2.0
    assert remainingSuspicionTime(4, 3, 0, 2.0, 30.0) == 2.0
    assert remainingSuspicionTime(3, 3, 5.0, 2.0, 30.0) == -3.0
    assert remainingSuspicionTime(0, 0, 1.0, 2.0, 30.0) == 1.0


def test_suspicionTimerConfirmations() -> None:
    clock = Clock()
    fired: list[int] = []
    s = Suspicion(
        clock,
        fromNode="b",
        wanted=3,
        minimum=2.0,
        maximum=30.0,
        onTimeout=fired.append,
    )
    assert not s.confirm("b"), "the accuser does not confirm itself"
    clock.advance(1)
    assert s.confirm("c")
    assert not s.confirm("c"), "one confirmation per member"
    clock.advance(14.9)
    assert fired == []
    clock.advance(0.2)
    assert fired == [1]


def test_suspicionOverdueFiresPromptly() -> None:
    clock = Clock()
    fired: list[int] = []
    s = Suspicion(
        clock, fromNode="b", wanted=1, minimum=2.0, maximum=12.0, onTimeout=fired.append
    )
    clock.advance(5)
    assert s.confirm("c")
    assert fired == []
    clock.advance(0)
    assert fired == [1]
    assert not s.confirm("d"), "enough confirmations"


def test_suspicionCancel() -> None:
    clock = Clock()
    fired: list[int] = []
    s = Suspicion(
        clock, fromNode="b", wanted=0, minimum=2.0, maximum=12.0, onTimeout=fired.append
    )
    s.cancel()
    clock.advance(20)
    assert fired == []


def test_awarenessBounds() -> None:
    a = Awareness(8)
    a.applyDelta(-1)
    assert a.score == 0
    assert a.scaleTimeout(1.0) == 1.0
    a.applyDelta(3)
    assert a.scaleTimeout(0.5) == 2.0
    a.applyDelta(100)
    assert a.score == 7
    assert a.scaleTimeout(1.0) == 8.0


def test_broadcastQueueOrderAndLimits() -> None:
    n = [4]
    q = BroadcastQueue(2, lambda: n[0])
    finished: list[str] = []
    q.queue("b", Suspect(1, "b", "a"), 30, lambda: finished.append("b"))
    q.queue("c", Suspect(1, "c", "a"), 30)
    assert [m.node for m in q.take(2, 1000)] == ["c", "b"]  # type: ignore[union-attr]
    q.queue("d", Suspect(1, "d", "a"), 30)
    # The never-sent message goes first, then the others.
    assert [m.node for m in q.take(2, 40)] == ["d"]  # type: ignore[union-attr]
    assert q.transmits("d") == 1
    # Limit for 4 members is 2 * ceil(log10(5)) = 2: all done now.
    assert len(q.take(2, 1000)) == 3
    assert finished == ["b"]
    assert len(q) == 0
    assert q.transmits("d") is None


def test_broadcastQueueNewerNewsReplaces() -> None:
    q = BroadcastQueue(2, lambda: 10)
    finished: list[str] = []
    q.queue("b", Suspect(1, "b", "a"), 30, lambda: finished.append("old"))
    q.queue("b", Alive(2, "b", packAddress("10.0.0.9"), PORT), 50)
    assert finished == ["old"]
    assert isinstance(q.pending("b"), Alive)
    assert len(q) == 1


# Joining and basic membership


def test_startAnnouncesSelf() -> None:
    h = makeHarness()
    assert h.listener.events == [("joined", "a", NodeState.alive)]
    assert h.swim.incarnation == 1
    (me,) = h.swim.members()
    assert (me.name, me.host, me.port, me.state) == ("a", hostOf("a"), PORT, 0)
    assert h.swim.pendingBroadcasts() == 1


def test_aliveAddsMemberOnce() -> None:
    h = makeHarness()
    h.addMember("b")
    h.addMember("b")
    assert h.listener.about("b") == ["joined"]
    assert h.state("b") == NodeState.alive
    assert h.swim.estNumNodes() == 2


def test_metaChangeIsAnUpdate() -> None:
    h = makeHarness()
    h.addMember("b")
    host = hostOf("b")
    h.swim.receive((host, PORT), Alive(2, "b", packAddress(host), PORT, b"new"))
    assert h.listener.about("b") == ["joined", "updated"]
    member = h.swim.member("b")
    assert member is not None and member.meta == b"new"


def test_staleAliveIgnored() -> None:
    h = makeHarness()
    h.addMember("b", incarnation=5)
    host = hostOf("b")
    h.swim.receive((host, PORT), Alive(4, "b", packAddress(host), PORT, b"old"))
    member = h.swim.member("b")
    assert member is not None and (member.incarnation, member.meta) == (5, b"")


def test_conflictingAddressRejected() -> None:
    h = makeHarness()
    h.addMember("b")
    h.swim.receive(("10.9.9.9", PORT), Alive(9, "b", packAddress("10.9.9.9"), PORT))
    member = h.swim.member("b")
    assert member is not None and member.host == hostOf("b")


def test_joinReportsSuccessAndFailure() -> None:
    h = makeHarness()
    results: list[int] = []
    seeds = [("10.1.0.1", PORT), ("10.1.0.2", PORT)]
    h.swim.join(seeds, results.append)
    assert h.sink.pushPulls == [(seeds[0], True), (seeds[1], True)]
    host = hostOf("b")
    h.swim.mergeRemoteState(
        [PushNodeState("b", packAddress(host), PORT, b"", 3, NodeState.alive)],
        True,
        peer=seeds[0],
    )
    assert results == []
    h.swim.pushPullFailed(seeds[1], True)
    assert results == [1]
    assert h.state("b") == NodeState.alive
    h.swim.join([("10.1.0.3", PORT)], results.append)
    h.swim.pushPullFailed(("10.1.0.3", PORT), True)
    assert results == [1, 0]
    h.swim.join([], results.append)
    assert results == [1, 0, 0]


def test_joinAnnouncesToEveryMember() -> None:
    """
    After the first seed answers, the joiner tells every member it learned
    of that it exists, directly.
    """
    h = makeHarness()
    seed = ("10.1.0.1", PORT)
    h.swim.join([seed])
    nodes = [
        PushNodeState(n, packAddress(hostOf(n)), PORT, b"", 1, NodeState.alive)
        for n in ("s", "b", "c")
    ]
    h.sink.clear()
    h.swim.mergeRemoteState(nodes, True, peer=seed)
    told = {addr for addr, m in h.sink.sent(Alive) if m.node == "a"}  # type: ignore[union-attr]
    assert told == {(hostOf(n), PORT) for n in ("s", "b", "c")}


def test_localStateAndMerge() -> None:
    h = makeHarness()
    h.addMember("b", incarnation=4)
    state = h.swim.localState(join=True)
    assert state.join
    assert {(n.name, n.incarnation, n.state) for n in state.nodes} == {
        ("a", 1, NodeState.alive),
        ("b", 4, NodeState.alive),
    }
    # A remote verdict of death is only a suspicion here.
    h.swim.mergeRemoteState(
        [PushNodeState("b", packAddress(hostOf("b")), PORT, b"", 4, NodeState.dead)],
        False,
    )
    assert h.state("b") == NodeState.suspect
    # ...but a remote "left" is believed.
    h.swim.mergeRemoteState(
        [PushNodeState("b", packAddress(hostOf("b")), PORT, b"", 4, NodeState.left)],
        False,
    )
    assert h.state("b") == NodeState.left
    assert h.listener.about("b") == ["joined", "left"]


# Probing


def test_probeAckedIsHealthy() -> None:
    h = makeHarness()
    addr = h.addMember("b", answers=False)
    ping = h.nextPingTo("b")
    assert ping.sourceNode == "a" and ping.sourcePort == PORT
    h.swim.receive(addr, Ack(ping.seqNo))
    h.advance(1.0)
    assert h.state("b") == NodeState.alive
    assert h.sink.sent(IndirectPing) == []
    assert h.swim.healthScore == 0
    assert h.swim.counters.probesFailed == 0


def test_ackedProbeLeavesNoTimerBehind() -> None:
    """
    Once a probe is acked, its timeout and deadline timers run at once (as
    no-ops) instead of lying cancelled in the schedule, where the reactor
    would still wake up for them: an idle node has only its next probe and
    its next push/pull ahead.
    """
    h = makeHarness(GossipConfig.local())
    h.addMember("b")
    h.advance(3.0)
    assert h.swim.pendingBroadcasts() == 0
    h.sink.clear()
    made: list[DelayedCall] = []
    schedule = h.clock.callLater

    def recording(*args: Any, **kw: Any) -> DelayedCall:
        call = schedule(*args, **kw)
        assert isinstance(call, DelayedCall)
        made.append(call)
        return call

    h.clock.callLater = recording  # type: ignore[method-assign]
    h.nextPingTo("b")
    sent = h.clock.seconds()
    h.clock.advance(0.002)
    assert h.swim.counters.probes > 0
    assert [c for c in made if c.cancelled] == []
    ahead = sorted(c.getTime() - sent for c in h.clock.getDelayedCalls())
    assert len(ahead) == 2, ahead
    assert ahead[0] == pytest.approx(GossipConfig.local().probeInterval, abs=0.011)
    h.advance(1.0)
    assert h.state("b") == NodeState.alive
    assert h.swim.counters.probesFailed == 0
    assert h.sink.sent(IndirectPing) == []


def test_probeRoundRobinCoversEveryone() -> None:
    h = makeHarness()
    names = [f"m{i}" for i in range(6)]
    for name in names:
        h.addMember(name)
    probed: list[str] = []

    def answerAll() -> None:
        for addr, m in h.sink.sent(Ping):
            assert isinstance(m, Ping)
            if m.seqNo not in seen:
                seen.add(m.seqNo)
                probed.append(m.node)
                h.swim.receive(addr, Ack(m.seqNo))

    seen: set[int] = set()
    for _ in range(1200):
        h.clock.advance(0.01)
        answerAll()
    # Twelve seconds: each member twice, once in each shuffled pass.
    assert len(probed) >= 11
    assert set(probed[:6]) == set(names)
    assert set(probed[6:12]) <= set(names)


def test_failedProbeGoesIndirectThenSuspectThenDead() -> None:
    h = makeHarness()
    h.addMember("b", answers=False)
    for name in ("c", "d"):
        h.addMember(name)
    ping = h.nextPingTo("b")
    h.sink.clear()
    h.advance(0.19)
    assert h.sink.sent(IndirectPing) == []
    h.advance(0.02)
    # After probeTimeout: one indirect ping (Local preset) and a stream ping.
    (indirect,) = h.sink.sent(IndirectPing)
    req = indirect[1]
    assert isinstance(req, IndirectPing)
    assert req.node == "b" and req.seqNo == ping.seqNo and req.nack
    assert indirect[0] in {(hostOf("c"), PORT), (hostOf("d"), PORT)}
    ((streamAddr, streamPing, timeout),) = h.sink.streamPings
    assert streamAddr == (hostOf("b"), PORT) and streamPing.seqNo == ping.seqNo
    assert timeout == pytest.approx(0.8, abs=0.02)
    h.advance(0.8)
    assert h.state("b") == NodeState.suspect
    assert h.listener.about("b") == ["joined"]
    # Nobody confirms: the timer runs its maximum, 6 * 3 * log10(4) s, but
    # at least 6 * 3 s since log10 is floored at one.
    h.advance(17.9)
    assert h.state("b") == NodeState.suspect
    h.advance(0.2)
    assert h.state("b") == NodeState.dead
    assert h.listener.about("b") == ["joined", "failed"]


def test_indirectAckSavesTheTarget() -> None:
    h = makeHarness()
    h.addMember("b", answers=False)
    for name in ("c",):
        h.addMember(name)
    ping = h.nextPingTo("b")
    h.advance(0.21)
    h.swim.receive((hostOf("c"), PORT), Ack(ping.seqNo))
    h.advance(2)
    assert h.state("b") == NodeState.alive


def test_streamAckSavesTheTarget() -> None:
    h = makeHarness()
    h.addMember("b", answers=False)
    for name in ("c",):
        h.addMember(name)
    h.nextPingTo("b")
    h.advance(0.21)
    ((addr, streamPing, _),) = h.sink.streamPings
    ack = h.swim  # the glue feeds the stream's ack back as any ack
    ack.receive(addr, Ack(streamPing.seqNo))
    h.advance(2)
    assert h.state("b") == NodeState.alive


def test_streamPingsCanBeDisabled() -> None:
    h = makeHarness(replace(GossipConfig.local(), disableStreamPings=True))
    h.addMember("b", answers=False)
    h.nextPingTo("b")
    h.advance(1.0)
    assert h.sink.streamPings == []


def test_suspicionShrinksWithConfirmations() -> None:
    """
    One independent confirmation (k = suspicionMult - 2 = 1) brings the
    timeout down to the minimum, 3 * max(1, log10(4)) = 3 s.
    """
    h = makeHarness()
    for name in ("b", "c", "d"):
        h.addMember(name)
    h.swim.receive((hostOf("c"), PORT), Suspect(1, "b", "c"))
    assert h.state("b") == NodeState.suspect
    h.advance(1.0)
    h.sink.clear()
    h.swim.receive((hostOf("d"), PORT), Suspect(1, "b", "d"))
    # New confirmation: gossiped on.
    assert h.swim.pendingBroadcasts() >= 1
    h.advance(1.9)
    assert h.state("b") == NodeState.suspect
    h.advance(0.2)
    assert h.state("b") == NodeState.dead


def test_ownSuspicionDoesNotConfirm() -> None:
    h = makeHarness()
    for name in ("b", "c", "d"):
        h.addMember(name)
    h.swim.receive((hostOf("c"), PORT), Suspect(1, "b", "c"))
    h.swim.receive((hostOf("d"), PORT), Suspect(1, "b", "c"))
    h.advance(10)
    assert h.state("b") == NodeState.suspect


def test_remoteRefutationClearsSuspicion() -> None:
    h = makeHarness()
    for name in ("b", "c", "d"):
        h.addMember(name)
    h.swim.receive((hostOf("c"), PORT), Suspect(1, "b", "c"))
    host = hostOf("b")
    h.swim.receive((host, PORT), Alive(2, "b", packAddress(host), PORT))
    assert h.state("b") == NodeState.alive
    h.advance(30)
    assert h.listener.about("b") == ["joined"]


def test_staleSuspicionIgnored() -> None:
    h = makeHarness()
    h.addMember("b", incarnation=3)
    h.swim.receive((hostOf("c"), PORT), Suspect(2, "b", "c"))
    assert h.state("b") == NodeState.alive


def test_refuteSuspicionAboutSelf() -> None:
    h = makeHarness()
    h.addMember("b")
    h.swim.receive((hostOf("b"), PORT), Suspect(1, "a", "b"))
    assert h.swim.incarnation == 2
    assert h.state("a") == NodeState.alive
    assert h.swim.healthScore == 1
    assert h.swim.counters.refutations == 1
    h.advance(0.3)
    refutes = [m for _, m in h.sink.sent(Alive) if m.node == "a"]  # type: ignore[union-attr]
    assert refutes and all(m.incarnation == 2 for m in refutes)  # type: ignore[union-attr]


def test_refuteDeathAboutSelfBeyondAccusation() -> None:
    h = makeHarness()
    h.addMember("b")
    h.swim.receive((hostOf("b"), PORT), Dead(7, "a", "b"))
    assert h.swim.incarnation == 8
    assert h.state("a") == NodeState.alive
    assert h.listener.about("a") == ["joined"]


def test_buddySystemCarriesSuspicion() -> None:
    """
    A ping to a member we suspect carries the suspicion, so it can refute
    at once.
    """
    h = makeHarness()
    for name in ("b", "c"):
        h.addMember(name)
    h.swim.receive((hostOf("c"), PORT), Suspect(1, "b", "c"))
    h.sink.clear()
    h.nextPingTo("b")
    packet = next(
        ms
        for addr, ms in h.sink.packets
        if addr == (hostOf("b"), PORT) and isinstance(ms[0], Ping)
    )
    assert Suspect(1, "b", "a") in packet


def test_buddyLetsTargetRefuteImmediately() -> None:
    h = makeHarness(name="b")
    h.addMember("a")
    h.swim.receive(
        (hostOf("a"), PORT), Ping(9, "b", packAddress(hostOf("a")), PORT, "a")
    )
    h.swim.receive((hostOf("a"), PORT), Suspect(1, "b", "a"))
    assert h.swim.incarnation == 2


def test_awarenessRisesOnMissedAcksAndStretchesProbes() -> None:
    h = makeHarness()
    # Alone with b: no indirect peers, hence no nacks to expect, and every
    # failed probe counts against us.
    h.addMember("b", answers=False)
    h.nextPingTo("b")
    h.advance(1.0)
    assert h.state("b") == NodeState.suspect
    assert h.swim.healthScore == 1
    # The next probe of a silent member waits (score + 1) intervals.
    h.addMember("c", answers=False)
    h.sink.clear()
    h.nextPingTo("c")
    score = h.swim.healthScore
    assert score >= 1
    sent = h.clock.seconds()
    while h.state("c") != NodeState.suspect:
        h.clock.advance(0.001)
    assert h.clock.seconds() - sent == pytest.approx(score + 1, abs=0.02)


def test_nacksSpareAwareness() -> None:
    """
    When the indirect peer nacks, the failure is the target's: our score
    stays put.
    """
    h = makeHarness()
    h.addMember("b", answers=False)
    for name in ("c",):
        h.addMember(name)
    ping = h.nextPingTo("b")
    h.advance(0.21)
    (indirect,) = h.sink.sent(IndirectPing)
    h.swim.receive(indirect[0], Nack(ping.seqNo))
    h.advance(1.0)
    assert h.state("b") == NodeState.suspect
    assert h.swim.healthScore == 0


def test_missingNacksCountAgainstUs() -> None:
    h = makeHarness()
    h.addMember("b", answers=False)
    for name in ("c",):
        h.addMember(name)
    h.nextPingTo("b")
    # Look right at the verdict, before c's next ack heals us.
    while h.state("b") != NodeState.suspect:
        h.clock.advance(0.0005)
    assert h.swim.healthScore == 1


def test_successfulProbesHeal() -> None:
    h = makeHarness()
    h.addMember("b", answers=False)
    h.swim.receive((hostOf("b"), PORT), Suspect(1, "a", "b"))
    h.swim.receive((hostOf("b"), PORT), Suspect(2, "a", "b"))
    assert h.swim.healthScore == 2
    for _ in range(2):
        ping = h.nextPingTo("b")
        h.swim.receive((hostOf("b"), PORT), Ack(ping.seqNo))
        h.sink.clear()
    assert h.swim.healthScore == 0


# Answering others


def test_pingAnsweredToSourceAddress() -> None:
    h = makeHarness()
    h.swim.receive(
        ("192.168.1.1", 1234), Ping(5, "a", packAddress("10.5.5.5"), 8000, "x")
    )
    assert h.sink.sent(Ack) == [(("10.5.5.5", 8000), Ack(5))]
    h.sink.clear()
    h.swim.receive(("192.168.1.1", 1234), Ping(6, "a"))
    assert h.sink.sent(Ack) == [(("192.168.1.1", 1234), Ack(6))]


def test_pingForSomeoneElseIgnored() -> None:
    h = makeHarness()
    h.swim.receive(("192.168.1.1", 1234), Ping(5, "zz"))
    assert h.sink.sent(Ack) == []


def test_indirectPingRelaysAck() -> None:
    h = makeHarness()
    requester = ("10.7.0.1", PORT)
    target = ("10.7.0.2", PORT)
    h.swim.receive(
        requester,
        IndirectPing(
            41,
            packAddress(target[0]),
            PORT,
            "t",
            True,
            packAddress(requester[0]),
            PORT,
            "r",
        ),
    )
    ((addr, ping),) = h.sink.sent(Ping)
    assert addr == target and isinstance(ping, Ping) and ping.node == "t"
    h.swim.receive(target, Ack(ping.seqNo))
    assert h.sink.sent(Ack) == [(requester, Ack(41))]
    h.advance(1.0)
    assert h.sink.sent(Nack) == []


def test_indirectPingNacksOnSilence() -> None:
    h = makeHarness()
    requester = ("10.7.0.1", PORT)
    h.swim.receive(
        requester, IndirectPing(41, packAddress("10.7.0.2"), PORT, "t", True)
    )
    h.advance(0.19)
    assert h.sink.sent(Nack) == []
    h.advance(0.02)
    assert h.sink.sent(Nack) == [(requester, Nack(41))]


def test_streamPingAnswer() -> None:
    h = makeHarness()
    assert h.swim.handleStreamPing(Ping(3, "a")) == Ack(3)
    assert h.swim.handleStreamPing(Ping(3, "other")) is None


# Gossip


def test_gossipSpreadsNewsWithinRetransmitLimit() -> None:
    h = makeHarness()
    for name in ("b", "c", "d"):
        h.addMember(name)
    h.advance(1.0)  # flush the join news
    h.sink.clear()
    h.swim.receive((hostOf("c"), PORT), Suspect(1, "b", "c"))
    assert h.swim.broadcastTransmits("b") == 0
    h.advance(2.0)
    # Four members: 2 * ceil(log10(5)) = 2 transmits, then dropped.
    carried = [
        addr
        for addr, messages in h.sink.packets
        for m in messages
        if isinstance(m, Suspect) and m.node == "b" and m.fromNode == "c"
    ]
    assert len(carried) == 2
    assert h.swim.broadcastTransmits("b") is None


def test_gossipRoundsReachGossipNodes() -> None:
    h = makeHarness(replace(GossipConfig.lan(), probeInterval=0))
    for i in range(10):
        h.addMember(f"m{i}")
    h.advance(0.5)
    h.sink.clear()
    h.swim.receive((hostOf("m1"), PORT), Suspect(1, "m2", "m1"))
    while not h.sink.packets:
        h.clock.advance(0.01)
    # One round: three distinct members.
    assert len({addr for addr, _ in h.sink.packets}) == 3


def test_gossipToTheDeadThenForget() -> None:
    cfg = replace(GossipConfig.local(), gossipToTheDeadTime=5.0, retransmitMult=10)
    h = makeHarness(cfg)
    for name in ("b", "c"):
        h.addMember(name)
    h.swim.receive((hostOf("c"), PORT), Dead(1, "b", "c"))
    assert h.state("b") == NodeState.dead
    h.advance(1.0)
    dead = (hostOf("b"), PORT)
    assert any(addr == dead for addr, _ in h.sink.packets), "gossip to the dead"
    # Probes answered so that c stays alive; b is reaped at a pass boundary.
    for _ in range(800):
        h.clock.advance(0.01)
        for addr, m in h.sink.sent(Ping):
            h.swim.receive(addr, Ack(m.seqNo))  # type: ignore[union-attr]
        h.sink.clear()
    assert h.swim.member("b") is None
    assert h.state("c") == NodeState.alive


def test_pushPullIsPeriodic() -> None:
    h = makeHarness()
    h.addMember("b")
    h.advance(31)
    assert [j for _, j in h.sink.pushPulls] == [False, False]
    assert {a for a, _ in h.sink.pushPulls} == {(hostOf("b"), PORT)}


# Leaving and coming back


def test_leaveBroadcastsSelfSignedDeath() -> None:
    h = makeHarness()
    h.addMember("b")
    done: list[bool] = []
    h.swim.leave(lambda: done.append(True))
    assert h.swim.hasLeft
    assert h.state("a") == NodeState.left
    assert h.swim.pendingBroadcasts() >= 1
    h.advance(1.0)
    deaths = [m for _, m in h.sink.sent(Dead)]
    assert deaths and deaths[0] == Dead(1, "a", "a")
    assert done == [True]
    # Refutations no longer happen once we left.
    h.swim.receive((hostOf("b"), PORT), Suspect(1, "a", "b"))
    assert h.state("a") == NodeState.left


def test_leaveAloneFinishesAtOnce() -> None:
    h = makeHarness()
    done: list[bool] = []
    h.swim.leave(lambda: done.append(True))
    assert done == [True]


def test_othersSeeLeftNotFailed() -> None:
    h = makeHarness()
    h.addMember("b")
    h.swim.receive((hostOf("b"), PORT), Dead(1, "b", "b"))
    assert h.state("b") == NodeState.left
    assert h.listener.about("b") == ["joined", "left"]


def test_deadMemberRejoinsWithNewIncarnation() -> None:
    h = makeHarness()
    for name in ("b", "c"):
        h.addMember(name)
    h.swim.receive((hostOf("c"), PORT), Dead(3, "b", "c"))
    host = hostOf("b")
    h.swim.receive((host, PORT), Alive(3, "b", packAddress(host), PORT))
    assert h.state("b") == NodeState.dead
    h.swim.receive((host, PORT), Alive(4, "b", packAddress(host), PORT))
    assert h.state("b") == NodeState.alive
    assert h.listener.about("b") == ["joined", "failed", "joined"]


def test_restartedNodeOutbidsItsOldSelf() -> None:
    """
    A fresh process (incarnation 1) that hears of its previous life at
    incarnation 5 refutes above it.
    """
    h = makeHarness(name="b")
    host = hostOf("b")
    h.swim.mergeRemoteState(
        [
            PushNodeState("b", packAddress(host), PORT, b"", 5, NodeState.dead),
            PushNodeState("c", packAddress(hostOf("c")), PORT, b"", 1, NodeState.alive),
        ],
        True,
    )
    assert h.swim.incarnation == 6
    h.swim.mergeRemoteState(
        [PushNodeState("b", packAddress(host), PORT, b"x", 6, NodeState.alive)], False
    )
    assert h.swim.incarnation == 7, "same incarnation, different meta: refute"


def test_leftMemberMayComeBackElsewhere() -> None:
    h = makeHarness()
    h.addMember("b")
    h.swim.receive((hostOf("b"), PORT), Dead(1, "b", "b"))
    h.swim.receive(("10.8.8.8", PORT), Alive(2, "b", packAddress("10.8.8.8"), PORT))
    member = h.swim.member("b")
    assert member is not None
    assert (member.host, member.state) == ("10.8.8.8", NodeState.alive)


# Robustness


@pytest.mark.parametrize(
    "message",
    [
        Alive(1, "x", b"\x01\x02\x03", PORT),
        Alive(1, "x", packAddress("10.0.0.9"), PORT, b"", (0, 0, 0, 0, 0, 0)),
        Suspect(None, "b", "c"),  # type: ignore[arg-type]
        Suspect(1, None, "c"),  # type: ignore[arg-type]
        Dead(-1, "b", "c"),
        Ping("x", "a"),  # type: ignore[arg-type]
        IndirectPing(1, b"\x00", PORT, "t"),
        Ack(2**40),
        UserMessage(b"hi"),
    ],
)
def test_badMessagesNeverRaise(message: Message) -> None:
    h = makeHarness()
    h.addMember("b")
    before = h.swim.members()
    h.swim.receive(("10.0.0.99", PORT), message)
    h.advance(1.0)
    assert [m.name for m in h.swim.members()] == [m.name for m in before]


# One well-formed example of every message that reaches the state machine.
_GOOD_MESSAGES: list[PacketMessage] = [
    Ping(1, "a", packAddress("10.0.0.2"), PORT, "b"),
    IndirectPing(1, packAddress("10.0.0.3"), PORT, "c", True, b"", 0, "b"),
    Ack(1, b"payload"),
    Nack(1),
    Suspect(1, "b", "c"),
    Alive(1, "b", packAddress("10.0.0.2"), PORT, b"{}", DEFAULT_VSN),
    Dead(1, "b", "c"),
    UserMessage(b"hi"),
]


def test_everyPacketMessageIsExemplified() -> None:
    assert {type(m) for m in _GOOD_MESSAGES} == set(typing.get_args(PacketMessage))


@pytest.mark.parametrize("kind", typing.get_args(PacketMessage))
def test_everyFieldHasACheck(kind: type) -> None:
    """
    Each field of each message that can arrive in a packet has a check of
    its own: a field added or renamed without one fails here rather than go
    unchecked.
    """
    assert set(FIELD_CHECKS[kind]) == {f.name for f in dataclasses.fields(kind)}


@pytest.mark.parametrize(
    ("message", "name"),
    [(m, f.name) for m in _GOOD_MESSAGES for f in dataclasses.fields(m)],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_everyCheckRejectsAWrongValue(message: PacketMessage, name: str) -> None:
    """
    Every message above is well formed, and stops being so when any one of
    its fields holds a value of the wrong kind.
    """
    assert _wellFormed(message)
    assert not _wellFormed(replace(message, **{name: object()}))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (Ping(2**32, "a"), "sequence number beyond 32 bits"),
        (Ping(True, "a"), "a bool is no sequence number"),
        (Suspect(-1, "b", "c"), "negative incarnation"),
        (Alive(1, "b", b"", PORT, b"", (1, 256)), "version beyond a byte"),
        (IndirectPing(1, b"", PORT, "t", 1), "nack must be a bool"),  # type: ignore[arg-type]
        (PushNodeState("x", b"", PORT, b"", 1, NodeState.alive), "not a packet"),
    ],
)
def test_outOfRangeValuesAreMalformed(message: Message, reason: str) -> None:
    assert not _wellFormed(message), reason


def test_badPushNodeStateSkippedOthersMerged() -> None:
    h = makeHarness()
    h.swim.mergeRemoteState(
        [
            PushNodeState("x", b"\x01", PORT, b"", 1, NodeState.alive),
            PushNodeState("y", packAddress("10.0.0.50"), PORT, b"", 1, 7),  # type: ignore[arg-type]
            PushNodeState("z", packAddress("10.0.0.51"), PORT, b"", 1, NodeState.alive),
        ],
        False,
    )
    assert {m.name for m in h.swim.members()} == {"a", "z"}


def test_listenerErrorsAreContained() -> None:
    class Broken(RecordingListener):
        def memberJoined(self, member: Member) -> None:
            raise RuntimeError("boom")

    clock = Clock()
    swim = Swim(
        GossipConfig.local(),
        name="a",
        host="10.0.0.1",
        port=PORT,
        clock=clock,
        rng=random.Random(1),
        sink=RecordingSink(),
        listener=Broken(),
    )
    swim.start()
    swim.receive(("10.0.0.2", PORT), Alive(1, "b", packAddress("10.0.0.2"), PORT))
    assert swim.member("b") is not None


def test_stoppedMachineIsInert() -> None:
    h = makeHarness()
    h.addMember("b")
    h.swim.stop()
    h.sink.clear()
    h.swim.receive(("10.0.0.2", PORT), Ping(1, "a"))
    h.advance(60)
    assert h.sink.packets == []
    assert h.clock.getDelayedCalls() == []
