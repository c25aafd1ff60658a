"""
Tests for L{disperse.gossip.service}: the Twisted glue between sockets and
the SWIM state machine, on a memory reactor. Bad input is counted and
dropped, streams time out, joins retry with backoff.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from disperse.gossip import wire
from disperse.gossip.config import GossipConfig, GossipSettings
from disperse.gossip.crypto import Keyring
from disperse.gossip.messages import (
    DEFAULT_VSN,
    Ack,
    NodeState,
    Ping,
    PushNodeState,
    PushPull,
)
from disperse.gossip.service import JOIN_RETRY_FIRST, Membership
from disperse.gossip.swim import Address, ClusterListener, Member
from disperse.testing import MemoryReactorWithUDP

START = 1_700_000_000.0
PEER = ("127.0.0.2", 7946)
KEY = b"k" * 16


class MembershipTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorWithUDP()
        self.reactor.advance(START)
        self.resolved: list[tuple[str, int]] = []
        self.meta = b"node metadata"

    def build(
        self,
        seeds: list[Address] | None = None,
        keyring: Keyring | None = None,
        port: int = 7946,
        listener: ClusterListener | None = None,
    ) -> Membership:
        def resolve(host: str, port: int) -> Deferred[list[Address]]:
            self.resolved.append((host, port))
            return succeed([(host, port)])

        return Membership(
            name="a",
            bindAddress="127.0.0.1",
            advertiseAddress="127.0.0.1",
            port=port,
            seeds=seeds or [],
            settings=GossipSettings(config=GossipConfig.local(), keyring=keyring),
            reactor=self.reactor,
            meta=lambda: self.meta,
            listener=listener,
            rng=random.Random(1),
            resolve=resolve,
        )

    def start(
        self, seeds: list[Address] | None = None, keyring: Keyring | None = None
    ) -> Membership:
        membership = self.build(seeds, keyring)
        membership.privilegedStartService()
        membership.startService()
        return membership

    def receive(self, membership: Membership, data: bytes) -> None:
        [udp] = self.reactor.udpPorts
        udp.protocol.datagramReceived(data, PEER)

    def test_listensOnOnePortForBoth(self) -> None:
        self.start()
        [udp] = self.reactor.udpPorts
        [(tcpPort, _, _, interface)] = self.reactor.tcpServers
        self.assertEqual((udp.port, tcpPort, interface), (7946, 7946, "127.0.0.1"))

    def test_pingIsAcked(self) -> None:
        membership = self.start()
        self.receive(membership, wire.encodePacket(wire.encodeMessage(Ping(5, "a"))))
        [udp] = self.reactor.udpPorts
        [(data, addr)] = udp.written
        self.assertEqual(addr, PEER)
        self.assertIn(Ack(5), wire.decodePacket(data).messages)
        self.assertEqual(
            (membership.counters.packetsIn, membership.counters.packetsOut), (1, 1)
        )

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=300))
    def test_garbageIsDropped(self, data: bytes) -> None:
        """
        Whatever arrives, nothing escapes C{datagramReceived}; what cannot be
        decoded is counted.
        """
        self.reactor = MemoryReactorWithUDP()
        membership = self.start()
        self.receive(membership, data)
        try:
            wire.decodePacket(data)
        except wire.WireError:
            self.assertEqual(membership.counters.badPackets, 1)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_wrongKeyIsCounted(self) -> None:
        membership = self.start(keyring=Keyring(KEY))
        packet = wire.encodePacket(
            wire.encodeMessage(Ping(5, "a")),
            keyring=Keyring(b"x" * 16),
            nonce=b"n" * 12,
        )
        self.receive(membership, packet)
        self.assertEqual(
            (membership.counters.badPackets, membership.counters.decryptFailures),
            (1, 1),
        )
        self.assertEqual(self.reactor.udpPorts[0].written, [])

    def acceptStream(self) -> tuple[Any, StringTransport]:
        [(_, factory, _, _)] = self.reactor.tcpServers
        protocol = factory.buildProtocol(IPv4Address("TCP", *PEER))
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_pushPullIsAnsweredAndMerged(self) -> None:
        membership = self.start()
        protocol, transport = self.acceptStream()
        remote = PushNodeState(
            "b", bytes([127, 0, 0, 2]), 7946, b"{}", 3, NodeState.alive, DEFAULT_VSN
        )
        protocol.dataReceived(wire.encodeStream(PushPull(True, (remote,))))
        answer = wire.StreamDecoder(labelHeader=False).feed(transport.value())
        assert isinstance(answer, PushPull)
        self.assertEqual([n.name for n in answer.nodes], ["a"])
        self.assertTrue(transport.disconnecting)
        [b] = [m for m in membership.members() if m.name == "b"]
        self.assertEqual((b.host, b.state), ("127.0.0.2", NodeState.alive))

    def test_garbageStreamIsClosed(self) -> None:
        membership = self.start()
        protocol, transport = self.acceptStream()
        protocol.dataReceived(b"\xff\x00garbage")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(membership.counters.badStreams, 1)

    def test_stalledStreamTimesOut(self) -> None:
        membership = self.start()
        protocol, transport = self.acceptStream()
        whole = wire.encodeStream(Ping(1, "a"))
        protocol.dataReceived(whole[:2])
        self.reactor.advance(GossipConfig.local().streamTimeout)
        self.assertTrue(transport.disconnected)
        self.assertEqual(membership.counters.streamTimeouts, 1)
        protocol.connectionLost(Failure(ConnectionRefusedError()))

    def test_joinRetriesWithBackoff(self) -> None:
        """
        A seed that is not up yet is tried again after 1 s, then 2 s, 4 s...
        while the node carries on.
        """
        self.start(seeds=[PEER])
        attempts = []
        for delay in (
            0.0,
            JOIN_RETRY_FIRST,
            JOIN_RETRY_FIRST * 2,
            JOIN_RETRY_FIRST * 4,
        ):
            self.reactor.advance(delay)
            host, port, factory, _, _ = self.reactor.tcpClients[-1]
            attempts.append((len(self.reactor.tcpClients), (host, port)))
            factory.clientConnectionFailed(
                self.reactor.connectors[-1], Failure(ConnectionRefusedError())
            )
            self.reactor.advance(0)
        self.assertEqual(attempts, [(i, PEER) for i in range(1, 5)])
        self.assertEqual(self.resolved, [PEER] * 4)

    def test_ownAddressIsNotASeed(self) -> None:
        self.start(seeds=[("127.0.0.1", 7946)])
        self.reactor.advance(60)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_stopLeaves(self) -> None:
        membership = self.start()
        self.successResultOf(membership.stopService())
        self.assertFalse(self.reactor.udpPorts[0].listening)
        self.assertFalse(membership.swim.running)

    def test_stateMachineBeforeStart(self) -> None:
        """
        The state machine exists from construction on; until the service
        starts it knows of nobody and answers nothing.
        """
        membership = self.build()
        self.assertFalse(membership.swim.running)
        self.assertEqual(membership.members(), [])
        membership.privilegedStartService()
        self.receive(membership, wire.encodePacket(wire.encodeMessage(Ping(5, "a"))))
        self.assertEqual(self.reactor.udpPorts[0].written, [])

    def test_startsWithBoundPortAndCurrentMeta(self) -> None:
        """
        Started, the state machine announces the port actually bound (the
        system chose it) and the metadata as it is at start, not as it was
        at construction.
        """
        membership = self.build(port=0)
        self.meta = b"metadata naming ports bound since"
        membership.privilegedStartService()
        membership.startService()
        [me] = membership.members()
        self.assertNotEqual(me.port, 0)
        self.assertEqual(me.port, membership.port)
        self.assertEqual(me.meta, b"metadata naming ports bound since")

    def test_clusterJoinedWhenSeedAnswers(self) -> None:
        """
        The listener hears C{clusterJoined} once a seed answered the join.
        """
        listener = _Listener()
        membership = self.build(seeds=[PEER], listener=listener)
        membership.privilegedStartService()
        membership.startService()
        self.assertEqual(listener.joined, 0)
        [(host, port, factory, _, _)] = self.reactor.tcpClients
        self.assertEqual((host, port), PEER)
        protocol = factory.buildProtocol(None)
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        answer = PushPull(join=True, nodes=())
        protocol.dataReceived(wire.encodeStream(answer))
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(listener.joined, 1)
        self.assertTrue(membership.joined)

    def test_clusterJoinedAsOwnSeed(self) -> None:
        """
        A node whose only seed is itself starts a cluster: its listener
        hears C{clusterJoined} at once.
        """
        listener = _Listener()
        membership = self.build(seeds=[("127.0.0.1", 7946)], listener=listener)
        membership.privilegedStartService()
        membership.startService()
        self.assertEqual(listener.joined, 1)


class _Listener:
    def __init__(self) -> None:
        self.joined = 0
        self.members: list[tuple[str, str]] = []

    def clusterJoined(self) -> None:
        self.joined += 1

    def memberJoined(self, member: Member) -> None:
        self.members.append(("joined", member.name))

    def memberUpdated(self, member: Member) -> None:
        self.members.append(("updated", member.name))

    def memberLeft(self, member: Member) -> None:
        self.members.append(("left", member.name))

    def memberFailed(self, member: Member) -> None:
        self.members.append(("failed", member.name))


class StreamDecryptTests(SynchronousTestCase):
    def test_wrongKeyStreamCountsAsDecryptFailure(self) -> None:
        """
        A join with the wrong key is a push/pull stream that does not
        decrypt: counted as such, so a key mismatch is visible.
        """
        reactor = MemoryReactorWithUDP()
        membership = Membership(
            name="a",
            bindAddress="127.0.0.1",
            advertiseAddress="127.0.0.1",
            port=7946,
            seeds=[],
            settings=GossipSettings(keyring=Keyring(KEY)),
            reactor=reactor,
            meta=lambda: b"{}",
        )
        membership.privilegedStartService()
        membership.startService()
        [(_, factory, _, _)] = reactor.tcpServers
        protocol = factory.buildProtocol(IPv4Address("TCP", *PEER))
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(
            wire.encodeStream(
                PushPull(True), keyring=Keyring(b"x" * 16), nonce=b"n" * 12
            )
        )
        self.assertEqual(
            (membership.counters.badStreams, membership.counters.decryptFailures),
            (1, 1),
        )
