"""
The Twisted side of membership: the UDP protocol and TCP streams that carry
the SWIM state machine's traffic, joining through seeds with retries, and
leaving gracefully on stop.

All protocol decisions live in L{disperse.gossip.swim.Swim}; this module only
moves bytes between it and the network, through L{disperse.gossip.wire}.
Nothing that arrives from the network may raise out of here: bad packets and
streams are counted, logged at debug level, and dropped.
"""

from __future__ import annotations

import ipaddress
import os
import random
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NoReturn, TypeAlias

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IReactorTCP,
    IReactorTime,
    IReactorUDP,
)
from twisted.internet.protocol import (
    DatagramProtocol,
    Factory,
    Protocol,
    ServerFactory,
    connectionDone,
)
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from disperse.gossip import wire
from disperse.gossip.config import GossipSettings
from disperse.gossip.crypto import Keyring
from disperse.gossip.messages import (
    Ack,
    NodeState,
    PacketMessage,
    Ping,
    PushPull,
)
from disperse.gossip.swim import Address, ClusterListener, Member, Swim
from disperse.gossip.wire import StreamMessage
from disperse.logs import logger

# Join retries back off from the first delay to the last, doubling.
JOIN_RETRY_FIRST = 1.0
JOIN_RETRY_MAX = 30.0
# How long a stopping node lets its "left" notice spread.
LEAVE_TIMEOUT = 5.0
# How often binding UDP and TCP to the same OS-chosen port is attempted.
BIND_ATTEMPTS = 10


class KeyringError(ValueError):
    """
    A key rotation step that cannot be done; the message says why.
    """


@dataclass
class GossipCounters:
    """
    Traffic seen by one node's gossip transport.
    """

    packetsIn: int = 0
    packetsOut: int = 0
    bytesIn: int = 0
    bytesOut: int = 0
    badPackets: int = 0
    decryptFailures: int = 0
    streamsIn: int = 0
    streamsOut: int = 0
    badStreams: int = 0
    streamTimeouts: int = 0


Resolver: TypeAlias = Callable[[str, int], "Deferred[list[Address]]"]


def _lookup(host: str, port: int) -> list[Address]:
    addresses: list[Address] = []
    for info in socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM):
        address = (str(info[4][0]), int(info[4][1]))
        if address not in addresses:
            addresses.append(address)
    return addresses


def threadedResolver(reactor: Any) -> Resolver:
    """
    Resolve with the system resolver in the reactor's thread pool; IP
    literals need no lookup.
    """

    def resolve(host: str, port: int) -> Deferred[list[Address]]:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return deferToThreadPool(
                reactor, reactor.getThreadPool(), _lookup, host, port
            )
        return succeed([(host, port)])

    return resolve


def _hostPort(address: IAddress) -> Address:
    host: str = getattr(address, "host", "")
    port: int = getattr(address, "port", 0)
    return (host, port)


class _GossipDatagrams(DatagramProtocol):
    """
    The UDP side: every datagram is a packet of messages for the state
    machine.
    """

    log = logger()
    noisy = False

    def __init__(self, membership: Membership) -> None:
        self._membership = membership

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self._membership.packetReceived(datagram, (addr[0], addr[1]))


class _StreamProtocol(Protocol):
    """
    One side of a memberlist stream: one message each way, then close.

    Accepted streams (C{reply is None}) answer the peer's message; streams we
    open deliver the peer's answer to C{reply}. Either way the exchange must
    finish within the stream timeout or the connection is aborted.
    """

    def __init__(
        self,
        membership: Membership,
        decoder: wire.StreamDecoder,
        reply: Deferred[StreamMessage] | None = None,
    ) -> None:
        self._membership = membership
        self._decoder = decoder
        self._reply = reply
        self._timeout: Any = None
        self._done = False

    def connectionMade(self) -> None:
        clock = self._membership.clock
        self._timeout = clock.callLater(
            self._membership.settings.config.streamTimeout, self._timedOut
        )

    def _timedOut(self) -> None:
        self._timeout = None
        self._membership.counters.streamTimeouts += 1
        self._fail(Failure(TimeoutError("stream timed out")))
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        if self._done:
            return
        try:
            message = self._decoder.feed(data)
        except wire.WireError as e:
            self._membership.streamRejected(self.transport, e)
            self._fail(Failure(e))
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        if message is not None:
            self._finish(message)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None
        if self._done:
            return
        try:
            message = self._decoder.endOfStream()
        except wire.WireError as e:
            self._fail(Failure(e))
            return
        self._finish(message)

    def _finish(self, message: StreamMessage) -> None:
        self._done = True
        if self._reply is not None:
            self._reply.callback(message)
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        answer = self._membership.streamReceived(message)
        if answer is not None:
            self.transport.write(answer)  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _fail(self, failure: Failure) -> None:
        if self._done:
            return
        self._done = True
        if self._reply is not None:
            self._reply.errback(failure)


class _StreamFactory(ServerFactory):
    noisy = False

    def __init__(self, membership: Membership) -> None:
        self._membership = membership

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        self._membership.counters.streamsIn += 1
        return _StreamProtocol(self._membership, self._membership.newDecoder(True))


class _OutgoingStream(Factory):
    """
    Connects one stream we open; quiet, as there is one per push/pull.
    """

    noisy = False

    def __init__(self, protocol: _StreamProtocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        return self._protocol


class Membership(Service):
    """
    One node's membership: the state machine, the UDP and TCP ports it
    speaks on, and joining through the configured seeds.

    @ivar swim: the state machine; it answers nothing until the service
        starts.
    @ivar port: the gossip port: as given, then the one actually bound
        (UDP and TCP share it).
    """

    log = logger()

    def __init__(
        self,
        *,
        name: str,
        bindAddress: str,
        advertiseAddress: str,
        port: int,
        seeds: Sequence[Address],
        settings: GossipSettings,
        reactor: Any,
        meta: Callable[[], bytes],
        listener: ClusterListener | None = None,
        rng: random.Random | None = None,
        resolve: Resolver | None = None,
    ) -> None:
        """
        @param resolve: how seed names become addresses; by default the
            system resolver, in a thread.
        """
        self.nodeName = name
        self._bindAddress = bindAddress
        self._advertiseAddress = advertiseAddress
        self.port = port
        self._seeds = list(seeds)
        self.settings = settings
        self._reactor = reactor
        self.clock: IReactorTime = reactor
        self._meta = meta
        self._listener = listener
        self._rng = rng or random.Random()
        self._resolve = resolve or threadedResolver(reactor)
        self.counters = GossipCounters()
        self.swim = Swim(
            settings.config,
            name=name,
            host=advertiseAddress,
            port=port,
            clock=self.clock,
            rng=self._rng,
            sink=self,
            listener=listener,
        )
        self._udp: IListeningPort | None = None
        self._tcp: IListeningPort | None = None
        self._joinDelay = JOIN_RETRY_FIRST
        self._joinCall: Any = None
        # Whether this node is part of a cluster it can coordinate for: it
        # joined through a seed, or it starts the cluster (no seeds, or
        # every seed is itself).
        self.joined = not self._seeds

    # Lifecycle

    def privilegedStartService(self) -> None:
        self._listen()
        super().privilegedStartService()

    def _listen(self) -> None:
        # UDP and TCP share one port number, as memberlist expects; with an
        # OS-chosen port, the TCP side may find that number taken, so try
        # again with another.
        udp: IReactorUDP = self._reactor
        tcp: IReactorTCP = self._reactor
        for _ in range(BIND_ATTEMPTS):
            try:
                udpPort = udp.listenUDP(
                    self.port,
                    _GossipDatagrams(self),
                    interface=self._bindAddress,
                    maxPacketSize=65536,
                )
            except CannotListenError as e:
                self._cannotListen(e)
            bound = _hostPort(udpPort.getHost())[1]
            try:
                tcpPort = tcp.listenTCP(
                    bound, _StreamFactory(self), interface=self._bindAddress
                )
            except CannotListenError as e:
                udpPort.stopListening()
                if self.port:
                    self._cannotListen(e)
                continue
            self._udp, self._tcp, self.port = udpPort, tcpPort, bound
            return
        self._cannotListen(CannotListenError(self._bindAddress, 0, "no free port"))

    def _cannotListen(self, error: CannotListenError) -> NoReturn:
        self.log.critical("gossip cannot listen: {reason}", reason=str(error))
        raise SystemExit(1)

    def startService(self) -> None:
        if self._udp is None:
            self._listen()
        super().startService()
        # The metadata may name ports bound by services started before this
        # one: read it now.
        self.swim.updateMeta(self._meta())
        self.swim.start(port=self.port)
        self.log.info(
            "gossip listening on {host}:{port} (UDP and TCP) as {name}",
            host=self._bindAddress,
            port=self.port,
            name=self.nodeName,
        )
        if self._seeds:
            self._join()

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        if self._joinCall is not None and self._joinCall.active():
            self._joinCall.cancel()
        return Deferred.fromCoroutine(self._leave())

    async def _leave(self) -> None:
        swim = self.swim
        if swim.running:
            left: Deferred[None] = Deferred()
            swim.leave(lambda: left.callback(None) if not left.called else None)
            left.addTimeout(LEAVE_TIMEOUT, self.clock, lambda *a: None)
            await left
            swim.stop()
            self.log.info("left the cluster")
        ports = [p for p in (self._udp, self._tcp) if p is not None]
        self._udp = self._tcp = None
        stopped = [p.stopListening() for p in ports]
        await DeferredList([d for d in stopped if d is not None])

    # Joining

    def _join(self) -> None:
        self._joinCall = None
        Deferred.fromCoroutine(self._tryJoin()).addErrback(
            lambda f: self.log.failure("join attempt failed", f)
        )

    async def _tryJoin(self) -> None:
        addresses, onlyUs = await self._resolveSeeds()
        swim = self.swim
        if not swim.running:
            return
        if onlyUs:
            # Every seed is this node: it is the first of a new cluster, and
            # others will join through it.
            self.log.info("this node is its own seed: starting a new cluster")
            self.joined = True
            self._notifyJoined()
            return
        answered: Deferred[int] = Deferred()
        swim.join(addresses, answered.callback)
        count = await answered if addresses else 0
        if count:
            self.joined = True
            self._notifyJoined()
            self._joinDelay = JOIN_RETRY_FIRST
            self.log.info(
                "joined the cluster through {count} of {total} seed addresses",
                count=count,
                total=len(addresses),
            )
            return
        self.log.info(
            "no seed answered ({seeds}); retrying in {delay} s",
            seeds=", ".join(f"{h}:{p}" for h, p in self._seeds),
            delay=self._joinDelay,
        )
        if self.running:
            self._joinCall = self.clock.callLater(self._joinDelay, self._join)
            self._joinDelay = min(self._joinDelay * 2, JOIN_RETRY_MAX)

    def _notifyJoined(self) -> None:
        if self._listener is not None:
            self._listener.clusterJoined()

    async def _resolveSeeds(self) -> tuple[list[Address], bool]:
        """
        Every address of every seed: a name may stand for several members
        (a Kubernetes headless service, say). Our own address is left out.

        @return: the addresses, and whether every seed resolved to this node
            alone.
        """
        me = (self._advertiseAddress, self.port)
        selfOnly = True
        addresses: list[Address] = []
        for host, port in self._seeds:
            try:
                resolved = await self._resolve(host, port)
            except OSError as e:
                self.log.info("cannot resolve seed {host}: {error}", host=host, error=e)
                selfOnly = False
                continue
            for address in resolved:
                if address != me and address not in addresses:
                    addresses.append(address)
        return addresses, selfOnly and not addresses

    # What the state machine sends

    def sendPacket(self, addr: Address, messages: list[PacketMessage]) -> None:
        settings = self.settings
        budget = settings.config.packetSize - wire.packetOverhead(
            label=settings.label, encrypted=settings.keyring is not None, crc=True
        )
        try:
            payloads = wire.packMessages(
                [wire.encodeMessage(m) for m in messages], budget
            )
        except (ValueError, TypeError):
            self.log.failure("cannot encode gossip to {addr}", addr=addr)
            return
        if self._udp is None:
            return
        for payload in payloads:
            data = wire.encodePacket(
                payload,
                label=settings.label,
                keyring=settings.keyring,
                nonce=os.urandom(12) if settings.keyring else None,
                crc=True,
                compress=settings.compress,
            )
            try:
                self._udp.write(data, addr)  # type: ignore[attr-defined]
            except OSError as e:
                self.log.debug("cannot send to {addr}: {error}", addr=addr, error=e)
                continue
            self.counters.packetsOut += 1
            self.counters.bytesOut += len(data)

    def sendStreamPing(self, addr: Address, ping: Ping, timeout: float) -> None:
        def acked(message: StreamMessage) -> None:
            if isinstance(message, Ack):
                self.swim.receive(addr, message)

        Deferred.fromCoroutine(self._exchange(addr, ping)).addCallbacks(
            acked, self._streamFailed, errbackArgs=(addr,)
        )

    def requestPushPull(self, addr: Address, join: bool) -> None:
        swim = self.swim

        def answered(message: StreamMessage) -> None:
            if not isinstance(message, PushPull):
                raise wire.WireError(
                    f"expected push/pull, got {type(message).__name__}"
                )
            swim.mergeRemoteState(list(message.nodes), join, peer=addr)

        def failed(failure: Failure) -> None:
            self._streamFailed(failure, addr)
            swim.pushPullFailed(addr, join)

        Deferred.fromCoroutine(self._exchange(addr, swim.localState(join))).addCallback(
            answered
        ).addErrback(failed)

    def _streamFailed(self, failure: Failure, addr: Address) -> None:
        self.log.debug(
            "stream to {addr} failed: {error}",
            addr=addr,
            error=failure.getErrorMessage(),
        )

    async def _exchange(self, addr: Address, message: StreamMessage) -> StreamMessage:
        """
        Open a stream to C{addr}, send C{message}, and return the answer.
        """
        self.counters.streamsOut += 1
        settings = self.settings
        reply: Deferred[StreamMessage] = Deferred()
        protocol = _StreamProtocol(self, self.newDecoder(False), reply)
        # Members are known by IP address, so no name resolution here.
        endpointType = TCP6ClientEndpoint if ":" in addr[0] else TCP4ClientEndpoint
        endpoint = endpointType(
            self._reactor, addr[0], addr[1], timeout=settings.config.streamTimeout
        )
        data = wire.encodeStream(
            message,
            label=settings.label,
            keyring=settings.keyring,
            nonce=os.urandom(12) if settings.keyring else None,
            compress=settings.compress,
        )

        await endpoint.connect(_OutgoingStream(protocol))
        assert protocol.transport is not None
        protocol.transport.write(data)
        return await reply

    # What arrives

    def newDecoder(self, accepted: bool) -> wire.StreamDecoder:
        return wire.StreamDecoder(
            label=self.settings.label,
            keyring=self.settings.keyring,
            labelHeader=accepted,
        )

    def packetReceived(self, data: bytes, source: Address) -> None:
        counters = self.counters
        counters.packetsIn += 1
        counters.bytesIn += len(data)
        try:
            packet = wire.decodePacket(
                data, label=self.settings.label, keyring=self.settings.keyring
            )
        except wire.WireError as e:
            counters.badPackets += 1
            if isinstance(e, wire.DecryptError):
                counters.decryptFailures += 1
            self.log.debug(
                "dropped a packet from {source}: {error}", source=source, error=e
            )
            return
        counters.badPackets += packet.malformed
        swim = self.swim
        if not swim.running:
            return
        for message in packet.messages:
            swim.receive(source, message)

    def streamReceived(self, message: StreamMessage) -> bytes | None:
        """
        Answer a message that arrived on a stream a peer opened.
        """
        swim = self.swim
        if not swim.running:
            return None
        answer: StreamMessage | None
        if isinstance(message, PushPull):
            answer = swim.localState(message.header.join)
        elif isinstance(message, Ping):
            answer = swim.handleStreamPing(message)
        else:
            answer = None
        encoded = None
        if answer is not None:
            settings = self.settings
            encoded = wire.encodeStream(
                answer,
                label=settings.label,
                keyring=settings.keyring,
                nonce=os.urandom(12) if settings.keyring else None,
                compress=settings.compress,
                labelHeader=False,
            )
        if isinstance(message, PushPull):
            swim.mergeRemoteState(list(message.nodes), message.header.join)
        return encoded

    def streamRejected(self, transport: Any, error: wire.WireError) -> None:
        self.counters.badStreams += 1
        if isinstance(error, wire.DecryptError):
            self.counters.decryptFailures += 1
        peer = _hostPort(transport.getPeer()) if transport is not None else None
        self.log.debug("dropped a stream from {peer}: {error}", peer=peer, error=error)

    # Key rotation

    def installKey(self, key: bytes) -> None:
        """
        Accept C{key} for decryption too, ahead of making it primary.

        @raise KeyringError: if this node does not encrypt gossip.
        """
        keyring = self._keyring()
        if key not in keyring.keys:
            self._setKeyring(Keyring(keyring.primaryKey, [*keyring.keys[1:], key]))

    def useKey(self, key: bytes) -> None:
        """
        Encrypt with C{key} from now on; it must be installed already.
        """
        keyring = self._keyring()
        if key not in keyring.keys:
            raise KeyringError("install the key before making it primary")
        self._setKeyring(Keyring(key, [k for k in keyring.keys if k != key]))

    def removeKey(self, key: bytes) -> None:
        """
        Stop accepting C{key}; the primary key cannot be removed.
        """
        keyring = self._keyring()
        if key == keyring.primaryKey:
            raise KeyringError("the primary key cannot be removed; use another first")
        if key not in keyring.keys:
            raise KeyringError("no such key")
        self._setKeyring(
            Keyring(keyring.primaryKey, [k for k in keyring.keys if k != key])
        )

    def _keyring(self) -> Keyring:
        keyring = self.settings.keyring
        if keyring is None:
            raise KeyringError(
                "gossip encryption is off on this node; start it with --gossip-key"
            )
        return keyring

    def _setKeyring(self, keyring: Keyring) -> None:
        self.settings = replace(self.settings, keyring=keyring)
        self.log.info("gossip keyring now has {count} keys", count=len(keyring.keys))

    # Queries

    def members(self) -> list[Member]:
        return self.swim.members()

    def liveMembers(self) -> list[Member]:
        """
        Members believed alive or suspect: the original's notion of a member.
        """
        return [
            m for m in self.members() if m.state in (NodeState.alive, NodeState.suspect)
        ]
