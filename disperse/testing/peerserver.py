"""
One connection to a node's node-to-node server in memory, on a L{Clock},
fed raw bytes through a L{StringTransport}: for tests and fuzzers of the
framing.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from disperse.cluster.peer.server import (
    PeerAPI,
    PeerServerFactory,
    PeerServerProtocol,
)
from disperse.cluster.peer.signatures import Verifier, deriveSecret
from disperse.config import NodeConfig
from disperse.security.limits import HTTPLimits
from disperse.testing.node import makeNode

CLIENT = IPv4Address("TCP", "10.0.0.2", 40000)


def peerServer(limits: HTTPLimits | None = None) -> PeerServerFactory:
    """
    The node-to-node server of a fresh node named C{fuzz}.
    """
    clock = Clock()
    clock.advance(1_700_000_000)
    node = makeNode(NodeConfig(nodeName="fuzz", replicas=1), clock)
    api = PeerAPI(
        node.replica, Verifier(deriveSecret("in-memory cluster secret"), clock)
    )
    return PeerServerFactory(
        api,
        limits or HTTPLimits(maxHeaderSize=2048, maxPeerBodySize=8192),
        clock,
    )


def peerConnection(
    factory: PeerServerFactory,
) -> tuple[PeerServerProtocol, StringTransport]:
    """
    A new connection to C{factory}'s server.
    """
    protocol = factory.buildProtocol(CLIENT)
    assert isinstance(protocol, PeerServerProtocol)
    transport = StringTransport(peerAddress=CLIENT)
    protocol.makeConnection(transport)
    return protocol, transport
