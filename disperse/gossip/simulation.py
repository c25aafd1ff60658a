"""
A deterministic, in-memory cluster of L{Swim} state machines, for tests and
benchmarks.

This module owns the fake world: one C{twisted.internet.task.Clock} shared by
every node, a network that can drop, delay (with jitter, hence reorder),
duplicate and partition packets, and node processes that can be paused (like
C{SIGSTOP}: no timers fire and nothing is read until resumed), crashed and
restarted.  Every datagram goes through the real codec of
L{disperse.gossip.wire}, so byte counts are real and the codec is exercised;
push/pull exchanges and stream pings are simulated as streams that are
reliable but still subject to partitions, pauses and crashes.

Given the same seed and the same calls, a run is exactly reproducible.
"""

from __future__ import annotations

import bisect
import functools
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from twisted.internet.base import DelayedCall as TwistedDelayedCall
from twisted.internet.task import Clock

from disperse.gossip.config import GossipConfig
from disperse.gossip.messages import (
    Message,
    NodeState,
    PacketMessage,
    Ping,
    PushPull,
)
from disperse.gossip.swim import Address, Member, Swim
from disperse.gossip.wire import (
    MAX_PACKET_SIZE,
    decodePacket,
    encodeMessage,
    encodePacket,
    encodeStream,
    packetOverhead,
    packMessages,
)
from disperse.logs import logger

log = logger()

DEFAULT_PORT = 7946


def _callTime(call: TwistedDelayedCall) -> float:
    # Sorted on the time proper: postponing a call only records the delay,
    # which is folded in when the call reaches the head of the queue.
    return call.time


# Broadcasts are sent many times over: encode each once.
_encode = functools.lru_cache(maxsize=8192)(encodeMessage)


class SimulationClock(Clock):
    """
    A C{Clock} that keeps its calls sorted by insertion instead of sorting
    them all on every call: the same behaviour, at a cost a few hundred
    simulated nodes can afford.
    """

    def callLater(
        self, delay: float, callable: Callable[..., object], *args: object, **kw: object
    ) -> TwistedDelayedCall:
        call = TwistedDelayedCall(
            self.seconds() + delay,
            callable,
            args,
            kw,
            self.calls.remove,
            self._resort,
            self.seconds,
        )
        bisect.insort(self.calls, call, key=_callTime)
        return call

    def _resort(self, call: TwistedDelayedCall) -> None:
        self.calls.remove(call)
        bisect.insort(self.calls, call, key=_callTime)

    def _sortCalls(self) -> None:
        # Kept sorted on insertion and when reset earlier; a call postponed
        # since is moved back once it reaches the head.
        calls = self.calls
        while calls and calls[0].delayed_time:
            call = calls.pop(0)
            call.activate_delay()
            bisect.insort(calls, call, key=_callTime)

    def nextCallTime(self) -> float | None:
        self._sortCalls()
        return self.calls[0].getTime() if self.calls else None


class _NodeCall:
    """
    A call scheduled by one simulated process; see L{NodeClock}.
    """

    def __init__(
        self,
        owner: NodeClock,
        time: float,
        f: Callable[..., object],
        args: tuple[object, ...],
        kw: dict[str, object],
    ) -> None:
        self._owner = owner
        self.time = time
        self._f = f
        self._args = args
        self._kw = kw
        self._done = False
        self.underlying: TwistedDelayedCall | None = None

    def active(self) -> bool:
        return not self._done

    def cancel(self) -> None:
        if self._done:
            return
        self._done = True
        if self.underlying is not None and self.underlying.active():
            self.underlying.cancel()
        self._owner._forget(self)

    def reset(self, secondsFromNow: float) -> None:
        if self._done:
            return
        self.time = self._owner.seconds() + secondsFromNow
        if self.underlying is not None and self.underlying.active():
            self.underlying.reset(secondsFromNow)

    def run(self) -> None:
        if self._done:
            return
        self._done = True
        self._owner._forget(self)
        self._f(*self._args, **self._kw)


class NodeClock:
    """
    One simulated process's view of the shared clock.

    Time keeps flowing while the process is paused, but its calls do not
    run: they run, in order, when it is resumed, as a process woken from
    C{SIGSTOP} catches up with its overdue timers.  A killed clock drops
    everything.
    """

    def __init__(self, shared: SimulationClock) -> None:
        self._shared = shared
        self._pending: set[_NodeCall] = set()
        self._overdue: list[_NodeCall] = []
        self.paused = False
        self.killed = False

    def seconds(self) -> float:
        return self._shared.seconds()

    def callLater(
        self, delay: float, callable: Callable[..., object], *args: Any, **kw: Any
    ) -> _NodeCall:
        call = _NodeCall(self, self.seconds() + delay, callable, args, kw)
        if self.killed:
            call._done = True
            return call
        self._pending.add(call)
        call.underlying = self._shared.callLater(delay, self._fire, call)
        return call

    def _forget(self, call: _NodeCall) -> None:
        self._pending.discard(call)

    def _fire(self, call: _NodeCall) -> None:
        if self.killed or not call.active():
            return
        if self.paused:
            self._overdue.append(call)
            return
        call.run()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        """
        Run the calls that fell due while paused, oldest first.
        """
        self.paused = False
        overdue, self._overdue = self._overdue, []
        overdue.sort(key=lambda c: c.time)
        for call in overdue:
            if self.killed or self.paused:
                # A call that paused or killed us again: keep the rest.
                self._overdue.extend(c for c in overdue if c.active())
                return
            call.run()

    def kill(self) -> None:
        self.killed = True
        for call in list(self._pending):
            call.cancel()
        self._overdue.clear()


class ProcessState(Enum):
    running = "running"
    paused = "paused"
    crashed = "crashed"


@dataclass(frozen=True, slots=True)
class SimEvent:
    """
    A membership event as one node's listener saw it.

    @ivar kind: C{"joined"}, C{"updated"}, C{"left"} or C{"failed"}.
    """

    time: float
    observer: str
    subject: str
    kind: str
    incarnation: int


@dataclass(slots=True)
class NetworkConditions:
    """
    What the simulated network does to each datagram.  Mutable: change it in
    the middle of a run to model a degrading network.

    @ivar dropRate: probability that a datagram is lost.
    @ivar delay: fixed one-way latency, seconds.
    @ivar jitter: extra latency drawn uniformly from M{[0, jitter)}; packets
        overtake each other when it exceeds their spacing.
    @ivar duplicateRate: probability that a datagram arrives twice.
    """

    dropRate: float = 0.0
    delay: float = 0.0005
    jitter: float = 0.0
    duplicateRate: float = 0.0


@dataclass(slots=True)
class Traffic:
    """
    Bytes and datagrams one node sent.
    """

    packets: int = 0
    packetBytes: int = 0
    streamBytes: int = 0
    pushPulls: int = 0


@dataclass(slots=True)
class SimNode:
    """
    One simulated process and what it did.
    """

    name: str
    address: Address
    swim: Swim
    clock: NodeClock
    state: ProcessState = ProcessState.running
    traffic: Traffic = field(default_factory=Traffic)
    inbox: list[tuple[Address, list[Message]]] = field(default_factory=list)
    generation: int = 0


class _Sink:
    def __init__(self, simulation: Simulation, name: str) -> None:
        self._simulation = simulation
        self._name = name

    def sendPacket(self, addr: Address, messages: list[PacketMessage]) -> None:
        self._simulation._sendPacket(self._name, addr, messages)

    def sendStreamPing(self, addr: Address, ping: Ping, timeout: float) -> None:
        self._simulation._streamPing(self._name, addr, ping, timeout)

    def requestPushPull(self, addr: Address, join: bool) -> None:
        self._simulation._pushPull(self._name, addr, join)


class _Recorder:
    def __init__(self, simulation: Simulation, name: str) -> None:
        self._simulation = simulation
        self._name = name

    def _record(self, kind: str, member: Member) -> None:
        self._simulation.events.append(
            SimEvent(
                self._simulation.clock.seconds(),
                self._name,
                member.name,
                kind,
                member.incarnation,
            )
        )

    def memberJoined(self, member: Member) -> None:
        self._record("joined", member)

    def memberUpdated(self, member: Member) -> None:
        self._record("updated", member)

    def memberLeft(self, member: Member) -> None:
        self._record("left", member)

    def memberFailed(self, member: Member) -> None:
        self._record("failed", member)


class Simulation:
    """
    A cluster of L{Swim} nodes on one fake clock and an in-memory network.

    @ivar clock: the shared clock; advance it with L{advance} or
        L{runUntil} so that every call runs at its exact time.
    @ivar conditions: the network's behaviour, mutable at any time.
    @ivar events: every membership event every node reported, in order.
    """

    def __init__(
        self,
        config: GossipConfig | None = None,
        seed: int = 0,
        conditions: NetworkConditions | None = None,
        *,
        crc: bool = True,
        compress: bool = False,
    ) -> None:
        """
        @param crc: checksum datagrams, as memberlist does for protocol 5
            peers (and Disperse nodes advertise 5).
        @param compress: LZW-compress datagrams when that shrinks them.
        """
        self.config = config or GossipConfig.local()
        self.clock = SimulationClock()
        self.rng = random.Random(seed)
        self.conditions = conditions or NetworkConditions()
        self.events: list[SimEvent] = []
        self.nodes: dict[str, SimNode] = {}
        self._byAddress: dict[Address, str] = {}
        self._blocked: set[tuple[str, str]] = set()
        self._crc = crc
        self._compress = compress
        self._budget = MAX_PACKET_SIZE - packetOverhead(crc=crc)

    # Building the cluster

    def addressFor(self, index: int) -> Address:
        return (
            f"10.{index // 62500 % 256}.{index // 250 % 250}.{index % 250 + 1}",
            DEFAULT_PORT,
        )

    def addNode(
        self,
        name: str | None = None,
        seeds: Sequence[str] = (),
        *,
        start: bool = True,
        meta: bytes = b"",
    ) -> SimNode:
        """
        Create a node, start it and join it through the named C{seeds}.
        """
        if name is None:
            name = f"node-{len(self.nodes)}"
        if name in self.nodes:
            raise ValueError(f"{name} already exists")
        address = self.addressFor(len(self.nodes))
        node = self._makeNode(name, address, meta)
        self.nodes[name] = node
        self._byAddress[address] = name
        if start:
            self.startNode(name, seeds)
        return node

    def _makeNode(self, name: str, address: Address, meta: bytes) -> SimNode:
        clock = NodeClock(self.clock)
        swim = Swim(
            self.config,
            name=name,
            host=address[0],
            port=address[1],
            clock=clock,
            rng=random.Random(self.rng.getrandbits(64)),
            sink=_Sink(self, name),
            listener=_Recorder(self, name),
            meta=meta,
        )
        return SimNode(name, address, swim, clock)

    def startNode(self, name: str, seeds: Sequence[str] = ()) -> None:
        node = self.nodes[name]
        node.swim.start()
        others = [self.nodes[s].address for s in seeds if s != name]
        if others:
            node.swim.join(others)

    def addNodes(
        self, count: int, seeds: Sequence[str] = (), stagger: float = 0.0
    ) -> list[SimNode]:
        """
        Add C{count} nodes joining through C{seeds}, each starting at a
        random moment within C{stagger} seconds (all at once if zero).
        """
        added = []
        for _ in range(count):
            node = self.addNode(seeds=seeds, start=False)
            added.append(node)
            delay = self.rng.uniform(0, stagger) if stagger > 0 else 0.0
            self.clock.callLater(delay, self.startNode, node.name, list(seeds))
        return added

    # Faults

    def crash(self, name: str) -> None:
        """
        Kill the process: no goodbye, nothing sent or received any more.
        """
        node = self.nodes[name]
        node.state = ProcessState.crashed
        node.clock.kill()
        node.swim.stop()
        node.inbox.clear()

    def restart(self, name: str, seeds: Sequence[str] = ()) -> SimNode:
        """
        Start a fresh process under the same name and address, which knows
        nothing but its seeds.
        """
        old = self.nodes[name]
        if old.state != ProcessState.crashed:
            self.crash(name)
        node = self._makeNode(name, old.address, old.swim._meta)
        node.traffic = old.traffic
        node.generation = old.generation + 1
        self.nodes[name] = node
        self.startNode(name, seeds)
        return node

    def leave(self, name: str) -> None:
        self.nodes[name].swim.leave()

    def pause(self, name: str) -> None:
        node = self.nodes[name]
        if node.state == ProcessState.running:
            node.state = ProcessState.paused
            node.clock.pause()

    def resume(self, name: str) -> None:
        """
        Wake a paused process: it reads what queued up for it, then runs
        its overdue timers, as a reactor woken inside its poll does.
        """
        node = self.nodes[name]
        if node.state != ProcessState.paused:
            return
        node.state = ProcessState.running
        inbox, node.inbox = node.inbox, []
        for source, messages in inbox:
            for message in messages:
                node.swim.receive(source, message)
        node.clock.resume()

    def pausePeriodically(
        self, name: str, period: float, duration: float, first: float | None = None
    ) -> None:
        """
        Pause C{name} for C{duration} seconds every C{period} seconds,
        starting C{first} seconds from now (one period if not given).
        """

        def pauseNow() -> None:
            self.pause(name)
            self.clock.callLater(duration, self.resume, name)
            self.clock.callLater(period, pauseNow)

        self.clock.callLater(period if first is None else first, pauseNow)

    def partition(
        self, side: Iterable[str], other: Iterable[str], oneWay: bool = False
    ) -> None:
        """
        Cut the links from C{side} to C{other}, and back unless C{oneWay}.
        """
        sideList, otherList = list(side), list(other)
        for a in sideList:
            for b in otherList:
                self._blocked.add((a, b))
                if not oneWay:
                    self._blocked.add((b, a))

    def heal(self) -> None:
        self._blocked.clear()

    def canReach(self, source: str, destination: str) -> bool:
        return (source, destination) not in self._blocked

    # Running

    def advance(self, seconds: float) -> None:
        """
        Run every call due in the next C{seconds}, each at its own time.
        """
        self._runTo(self.clock.seconds() + seconds)

    def _runTo(self, end: float) -> None:
        clock = self.clock
        while True:
            nextTime = clock.nextCallTime()
            if nextTime is None or nextTime > end:
                break
            clock.advance(max(0.0, nextTime - clock.seconds()))
        if clock.seconds() < end:
            clock.advance(end - clock.seconds())

    def runUntil(
        self, predicate: Callable[[], bool], timeout: float, step: float = 0.05
    ) -> float | None:
        """
        Advance in C{step}s until C{predicate} holds; return the elapsed
        time, or C{None} if C{timeout} passed first.
        """
        started = self.clock.seconds()
        while True:
            if predicate():
                return self.clock.seconds() - started
            if self.clock.seconds() - started >= timeout:
                return None
            self.advance(step)

    # Observing

    def running(self) -> list[str]:
        """
        Names of the nodes whose process runs (paused ones included).
        """
        return [n.name for n in self.nodes.values() if n.state != ProcessState.crashed]

    def view(self, observer: str) -> dict[str, NodeState]:
        """
        What C{observer} thinks of everyone it knows.
        """
        return {m.name: m.state for m in self.nodes[observer].swim.members()}

    def seesAlive(self, observer: str, subject: str) -> bool:
        member = self.nodes[observer].swim.member(subject)
        return member is not None and member.state in (
            NodeState.alive,
            NodeState.suspect,
        )

    def allSeeAlive(self, subject: str, observers: Iterable[str] | None = None) -> bool:
        names = self.running() if observers is None else list(observers)
        return all(self.seesAlive(o, subject) for o in names if o != subject)

    def noneSeeAlive(
        self, subject: str, observers: Iterable[str] | None = None
    ) -> bool:
        names = self.running() if observers is None else list(observers)
        return not any(self.seesAlive(o, subject) for o in names if o != subject)

    def converged(self, names: Iterable[str] | None = None) -> bool:
        """
        Whether each of C{names} (default: every running node) sees all of
        them alive.
        """
        group = self.running() if names is None else list(names)
        wanted = set(group)
        for observer in group:
            seen = {m.name for m in self.nodes[observer].swim.aliveMembers()}
            if not wanted <= seen:
                return False
        return True

    def failures(
        self, subjects: Iterable[str] | None = None, since: float = 0.0
    ) -> list[SimEvent]:
        """
        C{failed} events (about C{subjects}, if given) from C{since} on.
        """
        wanted = None if subjects is None else set(subjects)
        return [
            e
            for e in self.events
            if e.kind == "failed"
            and e.time >= since
            and (wanted is None or e.subject in wanted)
        ]

    # The network

    def _live(self, name: str) -> SimNode | None:
        node = self.nodes.get(name)
        if node is None or node.state == ProcessState.crashed:
            return None
        return node

    def _sendPacket(
        self, sender: str, addr: Address, messages: list[PacketMessage]
    ) -> None:
        node = self.nodes[sender]
        try:
            payloads = packMessages([_encode(m) for m in messages], self._budget)
        except Exception:
            log.failure("{sender} sent something unencodable", sender=sender)
            return
        for payload in payloads:
            data = encodePacket(payload, crc=self._crc, compress=self._compress)
            node.traffic.packets += 1
            node.traffic.packetBytes += len(data)
            self._transmit(sender, node.address, addr, data)

    def _transmit(
        self, sender: str, source: Address, addr: Address, data: bytes
    ) -> None:
        receiver = self._byAddress.get(addr)
        if receiver is None or not self.canReach(sender, receiver):
            return
        c = self.conditions
        if c.dropRate > 0 and self.rng.random() < c.dropRate:
            return
        copies = 2 if c.duplicateRate > 0 and self.rng.random() < c.duplicateRate else 1
        for _ in range(copies):
            delay = c.delay + (self.rng.uniform(0, c.jitter) if c.jitter > 0 else 0.0)
            self.clock.callLater(delay, self._deliver, sender, source, receiver, data)

    def _deliver(
        self, sender: str, source: Address, receiver: str, data: bytes
    ) -> None:
        node = self._live(receiver)
        if node is None or not self.canReach(sender, receiver):
            return
        try:
            packet = decodePacket(data)
        except Exception:
            log.failure("{receiver} got an undecodable packet", receiver=receiver)
            return
        self._handOver(node, source, list(packet.messages))

    def _handOver(
        self, node: SimNode, source: Address, messages: list[Message]
    ) -> None:
        if node.state == ProcessState.paused:
            node.inbox.append((source, messages))
            return
        for message in messages:
            node.swim.receive(source, message)

    def _streamDelay(self) -> float:
        c = self.conditions
        return c.delay + (self.rng.uniform(0, c.jitter) if c.jitter > 0 else 0.0)

    def _streamPing(
        self, sender: str, addr: Address, ping: Ping, timeout: float
    ) -> None:
        node = self.nodes[sender]
        generation = node.generation
        node.traffic.streamBytes += len(encodeStream(ping))
        receiver = self._byAddress.get(addr)
        if receiver is None:
            return
        there = self._streamDelay()
        back = self._streamDelay()
        if there + back > timeout:
            return

        def arrive() -> None:
            target = self._live(receiver)
            if (
                target is None
                or target.state == ProcessState.paused
                or not self.canReach(sender, receiver)
                or not self.canReach(receiver, sender)
            ):
                return
            ack = target.swim.handleStreamPing(ping)
            if ack is None:
                return
            target.traffic.streamBytes += len(encodeStream(ack))
            self.clock.callLater(back, answer, ack)

        def answer(ack: Message) -> None:
            origin = self._live(sender)
            if origin is None or origin.generation != generation:
                return
            self._handOver(origin, addr, [ack])

        self.clock.callLater(there, arrive)

    def _pushPull(self, initiator: str, addr: Address, join: bool) -> None:
        node = self.nodes[initiator]
        local = node.swim.localState(join)
        node.traffic.streamBytes += len(encodeStream(local))
        node.traffic.pushPulls += 1
        receiver = self._byAddress.get(addr)
        clock = node.clock
        timeout = self.config.streamTimeout
        there = self._streamDelay()

        def fail(after: float) -> None:
            clock.callLater(after, node.swim.pushPullFailed, addr, join)

        if receiver is None:
            fail(timeout)
            return

        def arrive() -> None:
            target = self._live(receiver)
            if target is None:
                # Connection refused.
                fail(there)
                return
            if (
                target.state == ProcessState.paused
                or not self.canReach(initiator, receiver)
                or not self.canReach(receiver, initiator)
            ):
                fail(max(0.0, timeout - there))
                return
            # Like memberlist, the answering side sends its state before
            # merging the one it received.
            remote: PushPull = target.swim.localState(join)
            target.traffic.streamBytes += len(encodeStream(remote))
            target.swim.mergeRemoteState(local.nodes, join)
            clock.callLater(
                self._streamDelay(),
                node.swim.mergeRemoteState,
                remote.nodes,
                join,
                addr,
            )

        self.clock.callLater(there, arrive)
