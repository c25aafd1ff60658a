"""
The SWIM + Lifeguard membership state machine, as a pure object.

L{Swim} owns the member list, incarnation numbers, probing, suspicion,
Lifeguard's local health awareness, the broadcast queue and the schedule of
gossip and push/pull rounds.  It does no I/O: decoded messages come in through
L{Swim.receive}, and everything it wants sent goes out through a
L{GossipSink}.  Time and randomness come only from the injected clock and
C{random.Random}, so a cluster of them can run deterministically on one fake
clock (see L{disperse.gossip.simulation}).

The algorithm follows HashiCorp memberlist so that a Disperse node can be a
memberlist peer.

How the glue drives it:
  - every decoded datagram message: L{Swim.receive}(source, message);
  - a ping arriving on a stream: reply with L{Swim.handleStreamPing};
  - an incoming push/pull: reply with L{Swim.localState}, then
    L{Swim.mergeRemoteState}(nodes, join);
  - a push/pull we asked for with L{GossipSink.requestPushPull}: on success
    L{Swim.mergeRemoteState}(nodes, join, peer=addr), on failure
    L{Swim.pushPullFailed}(addr, join) -- exactly one of the two;
  - a stream ping we asked for with L{GossipSink.sendStreamPing}: feed the
    ack it got back to L{Swim.receive}; nothing on failure.
"""

from __future__ import annotations

import functools
import ipaddress
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from disperse.gossip.awareness import Awareness
from disperse.gossip.broadcasts import BroadcastQueue
from disperse.gossip.clock import DelayedCall, SchedulingClock
from disperse.gossip.config import GossipConfig, pushPullScale, suspicionTimeout
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
    PushPull,
    Suspect,
    UserMessage,
)
from disperse.gossip.suspicion import Suspicion
from disperse.gossip.wire import encodeMessage
from disperse.logs import logger

Address: TypeAlias = tuple[str, int]

_UINT32 = 0xFFFFFFFF

# Bytes of framing a packet may need around its messages: the compound
# header (type and count) and a CRC envelope.
_PACKET_OVERHEAD = 2 + 5
# Bytes of framing per message inside a compound packet (its length).
_MESSAGE_OVERHEAD = 2
# Refutations are retransmitted this many times as often as other news.
_REFUTATION_BOOST = 3


@dataclass(frozen=True, slots=True)
class Member:
    """
    A snapshot of what we know about one member.
    """

    name: str
    host: str
    port: int
    meta: bytes
    incarnation: int
    state: NodeState
    stateChange: float
    vsn: tuple[int, ...] = DEFAULT_VSN

    @property
    def address(self) -> Address:
        return (self.host, self.port)


class GossipSink(Protocol):
    """
    Where the state machine's outgoing traffic goes.
    """

    def sendPacket(self, addr: Address, messages: list[PacketMessage]) -> None:
        """
        Send C{messages} in one datagram (a compound one if several).
        """

    def sendStreamPing(self, addr: Address, ping: Ping, timeout: float) -> None:
        """
        Ping C{addr} over a stream connection, giving up after C{timeout}
        seconds; feed the L{Ack} back through L{Swim.receive}.
        """

    def requestPushPull(self, addr: Address, join: bool) -> None:
        """
        Exchange full state with C{addr}, sending L{Swim.localState}; report
        the outcome with L{Swim.mergeRemoteState} or L{Swim.pushPullFailed}.
        """


class MembershipListener(Protocol):
    """
    Told about membership changes, with a snapshot of the member.
    """

    def memberJoined(self, member: Member) -> None:
        """
        C{member} is new to us, or came back after it failed or left.
        """

    def memberUpdated(self, member: Member) -> None:
        """
        C{member} gossiped new metadata.
        """

    def memberLeft(self, member: Member) -> None:
        """
        C{member} left on purpose.
        """

    def memberFailed(self, member: Member) -> None:
        """
        C{member} stopped answering and was declared dead.
        """


class ClusterListener(MembershipListener, Protocol):
    """
    Told about membership changes, and about joining the cluster.
    """

    def clusterJoined(self) -> None:
        """
        This node is part of a cluster now: it joined through a seed, or it
        is the first of a new one. Said by the glue
        (L{disperse.gossip.service.Membership}), never by L{Swim}.
        """


class _NoListener:
    """
    The listener of a state machine that nobody listens to.
    """

    def memberJoined(self, member: Member) -> None:
        pass

    def memberUpdated(self, member: Member) -> None:
        pass

    def memberLeft(self, member: Member) -> None:
        pass

    def memberFailed(self, member: Member) -> None:
        pass


@dataclass(slots=True)
class _NodeRecord:
    name: str
    host: str
    port: int
    meta: bytes
    vsn: tuple[int, ...]
    incarnation: int
    state: NodeState
    stateChange: float

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    def deadOrLeft(self) -> bool:
        return self.state in (NodeState.dead, NodeState.left)

    def snapshot(self) -> Member:
        return Member(
            self.name,
            self.host,
            self.port,
            self.meta,
            self.incarnation,
            self.state,
            self.stateChange,
            self.vsn,
        )


@dataclass(slots=True)
class _AckHandler:
    onAck: Callable[[], None]
    onNack: Callable[[], None] | None
    timer: DelayedCall


@dataclass(slots=True)
class _ProbeRun:
    target: str
    incarnation: int
    seqNo: int
    started: float
    timeoutCall: DelayedCall | None = None
    expectedNacks: int = 0
    nacks: int = 0
    done: bool = False


@dataclass(slots=True)
class _JoinAttempt:
    pending: list[Address]
    onResult: Callable[[int], None] | None
    successes: int = 0


@dataclass(slots=True)
class _Counters:
    """
    What happened so far, for tests, benchmarks and metrics.
    """

    probes: int = 0
    probesFailed: int = 0
    indirectPings: int = 0
    streamPings: int = 0
    suspicions: int = 0
    refutations: int = 0
    pushPulls: int = 0
    badMessages: int = 0


@functools.lru_cache(maxsize=8192)
def encodedSize(message: PacketMessage) -> int:
    """
    The size of C{message} as memberlist encodes it.
    """
    return len(encodeMessage(message))


@functools.lru_cache(maxsize=4096)
def packAddress(host: str) -> bytes:
    """
    The raw address bytes memberlist puts on the wire for C{host}, an IP
    literal.
    """
    return ipaddress.ip_address(host).packed


@functools.lru_cache(maxsize=4096)
def unpackAddress(raw: bytes) -> str:
    """
    The textual form of raw wire address bytes (4 or 16 of them).
    """
    if len(raw) not in (4, 16):
        raise ValueError(f"bad address length {len(raw)}")
    return str(ipaddress.ip_address(raw))


class Swim:
    """
    One node's view of the cluster and the protocol that maintains it.
    """

    log = logger()

    def __init__(
        self,
        config: GossipConfig,
        *,
        name: str,
        host: str,
        port: int,
        clock: SchedulingClock,
        rng: random.Random,
        sink: GossipSink,
        listener: MembershipListener | None = None,
        meta: bytes = b"",
        vsn: tuple[int, ...] = DEFAULT_VSN,
        messageSize: Callable[[PacketMessage], int] | None = None,
    ) -> None:
        """
        @param host: the IP literal other members should reach us at.
        @param messageSize: the encoded size of a message, to fill packets;
            by default, measured by encoding it.
        """
        self.config = config
        self.name = name
        self._host = host
        self._packedHost = packAddress(host)
        self._port = port
        self._meta = meta
        self._vsn = vsn
        self._clock = clock
        self._rng = rng
        self._sink = sink
        self._listener: MembershipListener = listener or _NoListener()
        self._messageSize = messageSize or encodedSize
        self._nodes: list[_NodeRecord] = []
        self._nodeMap: dict[str, _NodeRecord] = {}
        self._probeIndex = 0
        self._suspicions: dict[str, Suspicion] = {}
        self._ackHandlers: dict[int, _AckHandler] = {}
        self._broadcasts = BroadcastQueue(config.retransmitMult, self.estNumNodes)
        self._awareness = Awareness(config.awarenessMaxMultiplier)
        self._incarnation = 0
        self._seqNo = 0
        self._running = False
        self._left = False
        self._probeCall: DelayedCall | None = None
        self._gossipCall: DelayedCall | None = None
        self._gossipPhase = 0.0
        self._pushPullCall: DelayedCall | None = None
        self._probe: _ProbeRun | None = None
        self._joins: list[_JoinAttempt] = []
        self._seeds: list[Address] = []
        self.counters = _Counters()

    # Lifecycle

    def start(self, port: int | None = None) -> None:
        """
        Announce ourselves (to ourselves, until we join) and begin probing,
        gossiping and push/pulls, each with a random stagger.

        @param port: the port actually bound, when the one given at
            construction was 0 for the system to choose.
        """
        if self._running:
            return
        if port is not None:
            self._port = port
        self._running = True
        cfg = self.config
        # Gossip rounds keep this beat whenever there is news to send.
        self._gossipPhase = self._now() + self._rng.uniform(0, cfg.gossipInterval)
        self._aliveNode(
            Alive(
                self._nextIncarnation(),
                self.name,
                self._packedHost,
                self._port,
                self._meta,
                self._vsn,
            ),
            bootstrap=True,
        )
        if cfg.probeInterval > 0:
            self._probeCall = self._schedule(
                self._rng.uniform(0, cfg.probeInterval), self._probeTick
            )
        if cfg.pushPullInterval > 0:
            self._pushPullCall = self._schedule(
                self._rng.uniform(0, cfg.pushPullInterval), self._pushPullTick
            )

    def stop(self) -> None:
        """
        Stop every timer; the object answers nothing afterwards.
        """
        self._running = False
        for call in (self._probeCall, self._gossipCall, self._pushPullCall):
            if call is not None and call.active():
                call.cancel()
        self._probeCall = self._gossipCall = self._pushPullCall = None
        for handler in self._ackHandlers.values():
            if handler.timer.active():
                handler.timer.cancel()
        self._ackHandlers.clear()
        if self._probe is not None:
            self._cancelProbeTimeout(self._probe)
            self._probe = None
        for suspicion in self._suspicions.values():
            suspicion.cancel()
        self._suspicions.clear()

    @property
    def running(self) -> bool:
        return self._running

    @property
    def hasLeft(self) -> bool:
        return self._left

    def join(
        self, seeds: Sequence[Address], onResult: Callable[[int], None] | None = None
    ) -> None:
        """
        Pull the full state of each seed (and push ours to it).  Seeds are
        remembered: any that we do not see alive later is tried again at
        each push/pull round, which reunites the halves of a healed
        partition.

        @param onResult: called once every seed answered or failed, with the
            number that answered; zero means the join failed and the glue
            should retry later.
        """
        for addr in seeds:
            if addr not in self._seeds:
                self._seeds.append(addr)
        attempt = _JoinAttempt(list(seeds), onResult)
        if not attempt.pending:
            self._finishJoin(attempt)
            return
        self._joins.append(attempt)
        for addr in list(attempt.pending):
            self._sink.requestPushPull(addr, True)

    def leave(self, onBroadcast: Callable[[], None] | None = None) -> None:
        """
        Leave gracefully: gossip that we are dead, signed by ourselves, which
        others take as "left" rather than "failed".

        @param onBroadcast: called once that news has been sent as often as
            it will be (or at once if nobody is there to hear it); the glue
            may stop the node then.
        """
        me = self._nodeMap.get(self.name)
        if self._left or me is None:
            if onBroadcast is not None:
                onBroadcast()
            return
        self._left = True
        if not self._anyOtherAlive():
            finished = onBroadcast
            onBroadcast = None
        else:
            finished = None
        self._deadNode(Dead(me.incarnation, self.name, self.name), onBroadcast)
        if finished is not None:
            finished()

    def updateMeta(self, meta: bytes) -> None:
        """
        Change our metadata and gossip it with a new incarnation.
        """
        self._meta = meta
        if not self._running or self._left:
            return
        self._aliveNode(
            Alive(
                self._nextIncarnation(),
                self.name,
                self._packedHost,
                self._port,
                meta,
                self._vsn,
            ),
            bootstrap=True,
        )

    # Queries

    def estNumNodes(self) -> int:
        """
        Members in our list, whatever their state, including ourselves.
        """
        return len(self._nodes)

    def members(self) -> list[Member]:
        """
        Every member we know of, in any state, ourselves included.
        """
        return [node.snapshot() for node in self._nodes]

    def aliveMembers(self) -> list[Member]:
        """
        Members that are alive or merely suspect, ourselves included.
        """
        return [node.snapshot() for node in self._nodes if not node.deadOrLeft()]

    def member(self, name: str) -> Member | None:
        node = self._nodeMap.get(name)
        return None if node is None else node.snapshot()

    @property
    def healthScore(self) -> int:
        """
        Lifeguard's awareness score: zero is healthy.
        """
        return self._awareness.score

    @property
    def incarnation(self) -> int:
        return self._incarnation

    def pendingBroadcasts(self) -> int:
        return len(self._broadcasts)

    def broadcastTransmits(self, node: str) -> int | None:
        """
        How many times the queued news about C{node} has been sent, or
        C{None} if nothing is queued about it.
        """
        return self._broadcasts.transmits(node)

    # Inputs

    def receive(self, source: Address, message: Message) -> None:
        """
        Handle one decoded message that arrived in a datagram from C{source}.
        Never raises: bad input is logged and dropped.
        """
        if not self._running:
            return
        try:
            if not _wellFormed(message):
                self.counters.badMessages += 1
                self.log.warn(
                    "Dropping malformed {kind} from {source}",
                    kind=type(message).__name__,
                    source=source,
                )
                return
            if isinstance(message, Ping):
                self._handlePing(source, message)
            elif isinstance(message, IndirectPing):
                self._handleIndirectPing(source, message)
            elif isinstance(message, Ack):
                self._handleAck(message)
            elif isinstance(message, Nack):
                self._handleNack(message)
            elif isinstance(message, Suspect):
                self._suspectNode(message)
            elif isinstance(message, Alive):
                self._aliveNode(message)
            elif isinstance(message, Dead):
                self._deadNode(message)
            else:
                self.log.debug(
                    "Ignoring {kind} from {source}",
                    kind=type(message).__name__,
                    source=source,
                )
        except Exception:
            self.counters.badMessages += 1
            self.log.failure(
                "Failed to handle {kind} from {source}",
                kind=type(message).__name__,
                source=source,
            )

    def handleStreamPing(self, ping: Ping) -> Ack | None:
        """
        Answer a ping that arrived over a stream connection: the ack to send
        back on that stream, or C{None} if it is not for us.
        """
        try:
            if not self._running or not _wellFormed(ping):
                return None
            if ping.node and ping.node != self.name:
                return None
            return Ack(ping.seqNo)
        except Exception:
            self.log.failure("Failed to handle a stream ping")
            return None

    def localState(self, join: bool = False) -> PushPull:
        """
        Our full state, for a push/pull exchange.
        """
        return PushPull(
            join=join,
            nodes=tuple(
                PushNodeState(
                    name=node.name,
                    addr=packAddress(node.host),
                    port=node.port,
                    meta=node.meta,
                    incarnation=node.incarnation,
                    state=node.state,
                    vsn=node.vsn,
                )
                for node in self._nodes
            ),
        )

    def mergeRemoteState(
        self,
        nodes: Sequence[PushNodeState],
        join: bool,
        peer: Address | None = None,
    ) -> None:
        """
        Merge a peer's full state from a push/pull exchange.

        @param peer: set when this completes an exchange we requested with
            L{GossipSink.requestPushPull}; C{None} when the peer asked.
        """
        if not self._running:
            return
        self.counters.pushPulls += 1
        for remote in nodes:
            try:
                self._mergeOne(remote)
            except Exception:
                self.counters.badMessages += 1
                self.log.failure("Failed to merge state of {node}", node=remote)
        if peer is not None:
            self._pushPullDone(peer, join, True)

    def pushPullFailed(self, peer: Address, join: bool) -> None:
        """
        A push/pull we requested could not be completed.
        """
        try:
            self._pushPullDone(peer, join, False)
        except Exception:
            self.log.failure("Failed to record a push/pull failure")

    # Scheduling helpers

    def _schedule(
        self, delay: float, f: Callable[..., object], *args: object
    ) -> DelayedCall:
        return self._clock.callLater(delay, self._safely, f, *args)

    def _safely(self, f: Callable[..., object], *args: object) -> None:
        if not self._running:
            return
        try:
            f(*args)
        except Exception:
            self.log.failure("Unexpected error in {f}", f=f)

    def _now(self) -> float:
        return self._clock.seconds()

    def _nextSeqNo(self) -> int:
        self._seqNo = (self._seqNo + 1) & _UINT32
        return self._seqNo

    def _nextIncarnation(self, skip: int = 1) -> int:
        self._incarnation = (self._incarnation + skip) & _UINT32
        return self._incarnation

    # Sending

    def _send(self, addr: Address, messages: list[PacketMessage]) -> None:
        """
        Send C{messages}, filling the rest of the packet with broadcasts.
        """
        used = _PACKET_OVERHEAD + sum(
            _MESSAGE_OVERHEAD + self._messageSize(m) for m in messages
        )
        extra = self._broadcasts.take(_MESSAGE_OVERHEAD, self.config.packetSize - used)
        self._sink.sendPacket(addr, messages + extra)

    def _queueBroadcast(
        self,
        node: str,
        message: PacketMessage,
        onFinished: Callable[[], None] | None = None,
        boost: int = 1,
    ) -> None:
        self._broadcasts.queue(
            node, message, self._messageSize(message), onFinished, boost
        )
        self._wakeGossip()

    def _wakeGossip(self) -> None:
        """
        Restart gossip rounds that stopped for lack of news, on the same beat
        as before: an idle node schedules no timers at all.
        """
        cfg = self.config
        if (
            self._gossipCall is not None
            or not self._running
            or cfg.gossipInterval <= 0
            or cfg.gossipNodes <= 0
        ):
            return
        since = (self._now() - self._gossipPhase) % cfg.gossipInterval
        self._gossipCall = self._schedule(cfg.gossipInterval - since, self._gossipTick)

    # Probing

    def _probeTick(self) -> None:
        self._probeCall = None
        target = self._nextProbeTarget()
        if target is None:
            self._probeCall = self._schedule(self.config.probeInterval, self._probeTick)
            return
        self._probeNode(target)

    def _nextProbeTarget(self) -> _NodeRecord | None:
        checked = 0
        while checked < len(self._nodes) + 1:
            if self._probeIndex >= len(self._nodes):
                self._resetNodes()
                self._probeIndex = 0
                checked += 1
                continue
            node = self._nodes[self._probeIndex]
            self._probeIndex += 1
            if node.name == self.name or node.deadOrLeft():
                checked += 1
                continue
            return node
        return None

    def _resetNodes(self) -> None:
        """
        At the end of a probe pass: forget members dead (or gone) for longer
        than we gossip to the dead, and reshuffle the probe order.
        """
        now = self._now()
        horizon = self.config.gossipToTheDeadTime
        kept: list[_NodeRecord] = []
        for node in self._nodes:
            if (
                node.deadOrLeft()
                and node.name != self.name
                and now - node.stateChange > horizon
            ):
                del self._nodeMap[node.name]
                continue
            kept.append(node)
        self._nodes = kept
        self._rng.shuffle(self._nodes)

    def _probeNode(self, node: _NodeRecord) -> None:
        self.counters.probes += 1
        interval = self._awareness.scaleTimeout(self.config.probeInterval)
        ping = Ping(
            self._nextSeqNo(),
            node.name,
            self._packedHost,
            self._port,
            self.name,
        )
        run = _ProbeRun(node.name, node.incarnation, ping.seqNo, self._now())
        self._probe = run

        def nacked() -> None:
            run.nacks += 1

        self._ackHandlers[ping.seqNo] = _AckHandler(
            onAck=lambda: self._probeAcked(run),
            onNack=nacked,
            timer=self._schedule(interval, self._probeDeadline, run),
        )
        if node.state == NodeState.alive:
            self._send(node.address, [ping])
        else:
            # Lifeguard's buddy system: tell a suspect it is suspected so it
            # can refute at once instead of waiting for the gossip.
            self._send(
                node.address, [ping, Suspect(node.incarnation, node.name, self.name)]
            )
        run.timeoutCall = self._schedule(
            self.config.probeTimeout, self._probeTimedOut, run
        )

    def _cancelProbeTimeout(self, run: _ProbeRun) -> None:
        if run.timeoutCall is not None and run.timeoutCall.active():
            run.timeoutCall.cancel()
        run.timeoutCall = None

    def _retire(self, call: DelayedCall) -> None:
        """
        Be done with a timer whose call has become a no-op: let it run at
        once rather than cancel it. Twisted keeps a cancelled call in its
        schedule and wakes up for it all the same; a live member answers a
        probe in a millisecond, and the wake-ups at the probe's timeout and
        deadline were a good part of what an idle node spent.
        """
        if call.active():
            call.reset(0)

    def _probeAcked(self, run: _ProbeRun) -> None:
        self._finishProbe(run, -1)

    def _probeTimedOut(self, run: _ProbeRun) -> None:
        run.timeoutCall = None
        if run.done:
            return
        node = self._nodeMap.get(run.target)
        if node is None:
            return
        peers = self._randomNodes(
            self.config.indirectChecks,
            lambda n: (
                n.name not in (self.name, run.target) and n.state == NodeState.alive
            ),
        )
        for peer in peers:
            wantNack = len(peer.vsn) > 1 and peer.vsn[1] >= 4
            if wantNack:
                run.expectedNacks += 1
            self.counters.indirectPings += 1
            self._send(
                peer.address,
                [
                    IndirectPing(
                        run.seqNo,
                        packAddress(node.host),
                        node.port,
                        node.name,
                        wantNack,
                        self._packedHost,
                        self._port,
                        self.name,
                    )
                ],
            )
        if (
            not self.config.disableStreamPings
            and len(node.vsn) > 1
            and node.vsn[1] >= 3
        ):
            self.counters.streamPings += 1
            remaining = run.started + self._awareness.scaleTimeout(
                self.config.probeInterval
            )
            self._sink.sendStreamPing(
                node.address,
                Ping(run.seqNo, node.name, self._packedHost, self._port, self.name),
                max(0.0, remaining - self._now()),
            )

    def _probeDeadline(self, run: _ProbeRun) -> None:
        self._ackHandlers.pop(run.seqNo, None)
        if run.done:
            return
        self.counters.probesFailed += 1
        # With nacking peers, missing nacks point at us rather than at the
        # target; without them any failed probe counts against us.
        delta = max(0, run.expectedNacks - run.nacks) if run.expectedNacks > 0 else 1
        self._finishProbe(run, delta)
        self.log.debug(
            "{me}: suspect {target} has failed, no acks received",
            me=self.name,
            target=run.target,
        )
        self._suspectNode(Suspect(run.incarnation, run.target, self.name))

    def _finishProbe(self, run: _ProbeRun, awarenessDelta: int) -> None:
        if run.done:
            return
        run.done = True
        # Both timers return at once for a finished run.
        if run.timeoutCall is not None:
            self._retire(run.timeoutCall)
            run.timeoutCall = None
        handler = self._ackHandlers.pop(run.seqNo, None)
        if handler is not None:
            self._retire(handler.timer)
        self._awareness.applyDelta(awarenessDelta)
        if self._probe is run:
            self._probe = None
        # The next probe comes one base interval after this one started, or
        # at once if this one ran longer (a failed probe under a degraded
        # health score waits for a stretched deadline).
        delay = max(0.0, run.started + self.config.probeInterval - self._now())
        if self._running and self._probeCall is None:
            self._probeCall = self._schedule(delay, self._probeTick)

    def _randomNodes(
        self, k: int, accept: Callable[[_NodeRecord], bool]
    ) -> list[_NodeRecord]:
        """
        Up to C{k} distinct random members passing C{accept}.
        """
        nodes = self._nodes
        n = len(nodes)
        chosen: list[_NodeRecord] = []
        if k <= 0 or n == 0:
            return chosen
        # Random draws are cheap when most members qualify; three rounds of
        # the list make small clusters exhaustive enough.
        for _ in range(3 * n):
            if len(chosen) >= k:
                break
            node = nodes[self._rng.randrange(n)]
            if node in chosen or not accept(node):
                continue
            chosen.append(node)
        return chosen

    # Answering probes

    def _handlePing(self, source: Address, ping: Ping) -> None:
        if ping.node and ping.node != self.name:
            self.log.debug(
                "{me}: got a ping for {node} from {source}",
                me=self.name,
                node=ping.node,
                source=source,
            )
            return
        messages: list[PacketMessage] = [Ack(ping.seqNo)]
        pinger = self._nodeMap.get(ping.sourceNode) if ping.sourceNode else None
        if pinger is not None and pinger.state == NodeState.dead:
            # A member we declared dead probes us: a partition between us
            # has healed. The news of its death went round long ago, so
            # nothing would tell it before a push/pull happens to; told now,
            # it refutes, and everyone takes it back within a gossip round.
            messages.append(Dead(pinger.incarnation, pinger.name, self.name))
        self._send(
            self._replyAddress(source, ping.sourceAddr, ping.sourcePort),
            messages,
        )

    def _replyAddress(self, source: Address, raw: bytes, port: int) -> Address:
        if raw and port > 0:
            return (unpackAddress(raw), port)
        return source

    def _handleIndirectPing(self, source: Address, request: IndirectPing) -> None:
        requester = self._replyAddress(source, request.sourceAddr, request.sourcePort)
        target = (unpackAddress(request.target), request.port or self._port)
        seqNo = self._nextSeqNo()
        nackCall: list[DelayedCall] = []

        def relayAck() -> None:
            for call in nackCall:
                if call.active():
                    call.cancel()
            self._send(requester, [Ack(request.seqNo)])

        self._ackHandlers[seqNo] = _AckHandler(
            onAck=relayAck,
            onNack=None,
            timer=self._schedule(self.config.probeTimeout, self._dropHandler, seqNo),
        )
        self._send(
            target,
            [Ping(seqNo, request.node, self._packedHost, self._port, self.name)],
        )
        if request.nack:
            nackCall.append(
                self._schedule(
                    self.config.probeTimeout,
                    self._send,
                    requester,
                    [Nack(request.seqNo)],
                )
            )

    def _dropHandler(self, seqNo: int) -> None:
        self._ackHandlers.pop(seqNo, None)

    def _handleAck(self, ack: Ack) -> None:
        handler = self._ackHandlers.pop(ack.seqNo, None)
        if handler is None:
            return
        # Its handler gone, the timer finds nothing to do.
        self._retire(handler.timer)
        handler.onAck()

    def _handleNack(self, nack: Nack) -> None:
        handler = self._ackHandlers.get(nack.seqNo)
        if handler is not None and handler.onNack is not None:
            handler.onNack()

    # Membership changes

    def _addNode(self, node: _NodeRecord) -> None:
        # A random position keeps the expected time until someone probes a
        # new member short, instead of every node probing it last.
        self._nodeMap[node.name] = node
        self._nodes.append(node)
        last = len(self._nodes) - 1
        offset = self._rng.randrange(last + 1)
        self._nodes[offset], self._nodes[last] = self._nodes[last], self._nodes[offset]

    def _refute(self, me: _NodeRecord, accused: int) -> None:
        self.counters.refutations += 1
        incarnation = self._nextIncarnation()
        if accused >= incarnation:
            incarnation = self._nextIncarnation(accused - incarnation + 1)
        me.incarnation = incarnation
        # Having to refute means others could not hear from us in time.
        self._awareness.applyDelta(1)
        self._queueBroadcast(
            self.name,
            Alive(
                incarnation, self.name, self._packedHost, self._port, me.meta, me.vsn
            ),
            boost=_REFUTATION_BOOST,
        )

    def _aliveNode(
        self,
        alive: Alive,
        bootstrap: bool = False,
        onFinished: Callable[[], None] | None = None,
    ) -> None:
        if self._left and alive.node == self.name:
            return
        vsn = tuple(alive.vsn)
        if len(vsn) >= 3 and (vsn[0] == 0 or vsn[1] == 0 or vsn[0] > vsn[1]):
            self.log.warn(
                "Ignoring alive for {node}: bad protocol versions {vsn}",
                node=alive.node,
                vsn=vsn,
            )
            return
        host = unpackAddress(alive.addr)
        now = self._now()
        node = self._nodeMap.get(alive.node)
        isNew = node is None
        replaces = False
        if node is None:
            node = _NodeRecord(
                alive.node,
                host,
                alive.port,
                alive.meta,
                vsn,
                0,
                NodeState.dead,
                now,
            )
            self._addNode(node)
        elif (node.host, node.port) != (host, alive.port):
            reclaim = self.config.deadNodeReclaimTime
            canReclaim = reclaim > 0 and now - node.stateChange > reclaim
            if node.state == NodeState.left or (
                node.state == NodeState.dead and canReclaim
            ):
                replaces = True
            else:
                self.log.warn(
                    "Conflicting address for {node}: ours {ours}, theirs {theirs}",
                    node=alive.node,
                    ours=node.address,
                    theirs=(host, alive.port),
                )
                return
        isLocal = node.name == self.name
        if (
            not isLocal
            and not isNew
            and not replaces
            and alive.incarnation <= node.incarnation
        ):
            return
        if isLocal and alive.incarnation < node.incarnation:
            return
        self._cancelSuspicion(node.name)
        oldState, oldMeta = node.state, node.meta
        if isLocal and not bootstrap:
            # Someone gossips an old or foreign picture of us (we restarted,
            # or a namesake runs elsewhere): outbid it.
            if (
                alive.incarnation == node.incarnation
                and alive.meta == node.meta
                and vsn == node.vsn
            ):
                return
            self._refute(node, alive.incarnation)
            self.log.warn(
                "{me}: refuting an alive message at incarnation {inc}",
                me=self.name,
                inc=alive.incarnation,
            )
        else:
            # A refutation races suspicion timers all over the cluster, and
            # one member that misses it declares a live node dead: spread it
            # more thoroughly than ordinary news.
            self._queueBroadcast(
                alive.node,
                alive,
                onFinished,
                _REFUTATION_BOOST if node.state == NodeState.suspect else 1,
            )
            if vsn:
                node.vsn = vsn
            node.incarnation = alive.incarnation
            node.meta = alive.meta
            node.host, node.port = host, alive.port
            if node.state != NodeState.alive:
                node.state = NodeState.alive
                node.stateChange = now
        if oldState in (NodeState.dead, NodeState.left):
            self._notify(self._listener.memberJoined, node)
        elif oldMeta != node.meta:
            self._notify(self._listener.memberUpdated, node)

    def _suspectNode(self, suspect: Suspect) -> None:
        node = self._nodeMap.get(suspect.node)
        if node is None or suspect.incarnation < node.incarnation:
            return
        existing = self._suspicions.get(suspect.node)
        if existing is not None:
            # Independent confirmations shorten the timer; pass news on so
            # that others can count it too.
            if existing.confirm(suspect.fromNode):
                self._queueBroadcast(suspect.node, suspect)
            return
        if node.state != NodeState.alive:
            return
        if node.name == self.name:
            self._refute(node, suspect.incarnation)
            self.log.info(
                "{me}: refuting a suspicion from {source}",
                me=self.name,
                source=suspect.fromNode,
            )
            return
        self.counters.suspicions += 1
        self._queueBroadcast(suspect.node, suspect)
        node.incarnation = suspect.incarnation
        node.state = NodeState.suspect
        changed = self._now()
        node.stateChange = changed
        # Aim for the nominal timeout two probe periods short of the
        # suspicion multiplier, and expect no confirmations from a cluster
        # too small to give them.
        wanted = self.config.suspicionMult - 2
        n = self.estNumNodes()
        if n - 2 < wanted:
            wanted = 0
        minimum = suspicionTimeout(
            self.config.suspicionMult, n, self.config.probeInterval
        )
        maximum = self.config.suspicionMaxTimeoutMult * minimum
        name = node.name
        self._suspicions[name] = Suspicion(
            self._clock,
            fromNode=suspect.fromNode,
            wanted=wanted,
            minimum=minimum,
            maximum=maximum,
            onTimeout=lambda confirmations: self._safely(
                self._suspicionExpired, name, changed, confirmations
            ),
        )

    def _suspicionExpired(self, name: str, changed: float, confirmations: int) -> None:
        node = self._nodeMap.get(name)
        if (
            node is None
            or node.state != NodeState.suspect
            or node.stateChange != changed
        ):
            return
        self.log.info(
            "{me}: marking {node} as failed, suspicion timed out "
            "({confirmations} confirmations)",
            me=self.name,
            node=name,
            confirmations=confirmations,
        )
        self._deadNode(Dead(node.incarnation, name, self.name))

    def _cancelSuspicion(self, name: str) -> None:
        suspicion = self._suspicions.pop(name, None)
        if suspicion is not None:
            suspicion.cancel()

    def _deadNode(
        self, dead: Dead, onFinished: Callable[[], None] | None = None
    ) -> None:
        node = self._nodeMap.get(dead.node)
        if node is None or dead.incarnation < node.incarnation:
            return
        self._cancelSuspicion(dead.node)
        if node.deadOrLeft():
            return
        if node.name == self.name and not self._left:
            self._refute(node, dead.incarnation)
            self.log.info(
                "{me}: refuting a death notice from {source}",
                me=self.name,
                source=dead.fromNode,
            )
            return
        self._queueBroadcast(dead.node, dead, onFinished)
        node.incarnation = dead.incarnation
        # A node that signs its own death notice left on purpose.
        node.state = NodeState.left if dead.node == dead.fromNode else NodeState.dead
        node.stateChange = self._now()
        if node.state == NodeState.left:
            self._notify(self._listener.memberLeft, node)
        else:
            self._notify(self._listener.memberFailed, node)

    def _mergeOne(self, remote: PushNodeState) -> None:
        state = NodeState(remote.state)
        if state == NodeState.alive:
            self._aliveNode(
                Alive(
                    remote.incarnation,
                    remote.name,
                    remote.addr,
                    remote.port,
                    remote.meta,
                    tuple(remote.vsn),
                )
            )
        elif state == NodeState.left:
            self._deadNode(Dead(remote.incarnation, remote.name, remote.name))
        else:
            # Someone else's verdict of death is only a suspicion here: the
            # member gets its chance to refute.
            self._suspectNode(Suspect(remote.incarnation, remote.name, self.name))

    def _anyOtherAlive(self) -> bool:
        return any(
            node.name != self.name and not node.deadOrLeft() for node in self._nodes
        )

    def _notify(self, tell: Callable[[Member], None], node: _NodeRecord) -> None:
        # A listener's bug must not stop the protocol.
        try:
            tell(node.snapshot())
        except Exception:
            self.log.failure(
                "Membership listener failed on {event} for {node}",
                event=tell.__name__,
                node=node.name,
            )

    # Gossip and anti-entropy

    def _gossipTick(self) -> None:
        if not len(self._broadcasts):
            self._gossipCall = None
            return
        self._gossipCall = self._schedule(self.config.gossipInterval, self._gossipTick)
        now = self._now()
        deadline = self.config.gossipToTheDeadTime

        def accept(node: _NodeRecord) -> bool:
            if node.name == self.name:
                return False
            if node.state in (NodeState.alive, NodeState.suspect):
                return True
            return node.state == NodeState.dead and now - node.stateChange <= deadline

        for node in self._randomNodes(self.config.gossipNodes, accept):
            messages = self._broadcasts.take(
                _MESSAGE_OVERHEAD, self.config.packetSize - _PACKET_OVERHEAD
            )
            if not messages:
                return
            self._sink.sendPacket(node.address, messages)

    def _pushPullTick(self) -> None:
        self._pushPullCall = self._schedule(
            pushPullScale(self.config.pushPullInterval, self.estNumNodes()),
            self._pushPullTick,
        )
        peers = self._randomNodes(
            1, lambda n: n.name != self.name and n.state == NodeState.alive
        )
        if peers:
            self._sink.requestPushPull(peers[0].address, False)
        # A seed we no longer count as alive may sit on the far side of a
        # healed partition that both sides have long forgotten: try it.
        reachable = {n.address for n in self._nodes if not n.deadOrLeft()}
        lost = [a for a in self._seeds if a not in reachable]
        if lost:
            self._sink.requestPushPull(self._rng.choice(lost), False)

    def _pushPullDone(self, peer: Address, join: bool, ok: bool) -> None:
        if not join:
            return
        for attempt in self._joins:
            if peer in attempt.pending:
                attempt.pending.remove(peer)
                if ok:
                    attempt.successes += 1
                    if attempt.successes == 1 and self.config.announceOnJoin:
                        self._announce(exclude=peer)
                if not attempt.pending:
                    self._joins.remove(attempt)
                    self._finishJoin(attempt)
                return

    def _announce(self, exclude: Address) -> None:
        """
        Tell every member the seed told us about that we are here, rather
        than wait for the epidemic, whose few retransmits (sized for the
        steady state) miss a member now and then.
        """
        me = self._nodeMap.get(self.name)
        if me is None or self._left:
            return
        alive = Alive(
            me.incarnation, self.name, self._packedHost, self._port, me.meta, me.vsn
        )
        for node in list(self._nodes):
            if (
                node.name != self.name
                and node.state == NodeState.alive
                and node.address != exclude
            ):
                self._send(node.address, [alive])

    def _finishJoin(self, attempt: _JoinAttempt) -> None:
        if attempt.onResult is None:
            return
        try:
            attempt.onResult(attempt.successes)
        except Exception:
            self.log.failure("Join result callback failed")


def _uint32(value: object) -> bool:
    return (
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _UINT32
    )


def _text(value: object) -> bool:
    return isinstance(value, str)


def _raw(value: object) -> bool:
    return isinstance(value, bytes)


def _flag(value: object) -> bool:
    return isinstance(value, bool)


def _versions(value: object) -> bool:
    return isinstance(value, tuple | list) and all(
        isinstance(v, int) and 0 <= v <= 255 for v in value
    )


_Check: TypeAlias = Callable[[object], bool]

# What each field of each message that reaches the state machine must hold,
# so that handlers can trust them. Written out per message rather than read
# from the annotations; a test checks that every field of every packet
# message has its entry.
FIELD_CHECKS: dict[type, dict[str, _Check]] = {
    Ping: {
        "seqNo": _uint32,
        "node": _text,
        "sourceAddr": _raw,
        "sourcePort": _uint32,
        "sourceNode": _text,
    },
    IndirectPing: {
        "seqNo": _uint32,
        "target": _raw,
        "port": _uint32,
        "node": _text,
        "nack": _flag,
        "sourceAddr": _raw,
        "sourcePort": _uint32,
        "sourceNode": _text,
    },
    Ack: {"seqNo": _uint32, "payload": _raw},
    Nack: {"seqNo": _uint32},
    Suspect: {"incarnation": _uint32, "node": _text, "fromNode": _text},
    Alive: {
        "incarnation": _uint32,
        "node": _text,
        "addr": _raw,
        "port": _uint32,
        "meta": _raw,
        "vsn": _versions,
    },
    Dead: {"incarnation": _uint32, "node": _text, "fromNode": _text},
    UserMessage: {"payload": _raw},
}


def _wellFormed(message: object) -> bool:
    """
    Whether every field of a decoded message holds what its check in
    L{FIELD_CHECKS} requires; a message of a kind without checks is not.
    """
    checks = FIELD_CHECKS.get(type(message))
    if checks is None:
        return False
    return all(check(getattr(message, name, None)) for name, check in checks.items())
