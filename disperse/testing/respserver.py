"""
A node's whole Redis protocol port in memory: node, dispatcher with tokens
and rate limits, and the server's protocol, on a L{Clock}, fed raw bytes
through L{StringTransport}s. For tests and fuzzers of the RESP front end
(L{disperse.testing.resp} calls handlers alone).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from disperse.config import NodeConfig
from disperse.node import Node
from disperse.resp.dispatch import Dispatcher
from disperse.resp.server import RespFactory, RespProtocol, wireLimits
from disperse.resp.stats import RespStats
from disperse.security.ratelimit import RateLimiter
from disperse.security.tokens import parseTokens
from disperse.testing.node import makeNode
from disperse.testing.site import TOKENS


@dataclass
class InMemoryRespPort:
    clock: Clock
    node: Node
    factory: RespFactory

    def exchange(self, data: bytes, chunk: int = 0, host: str = "10.0.0.1") -> bytes:
        """
        Feed C{data} on a new connection (in pieces of C{chunk} bytes, all
        at once if 0), let the clock run past every timeout, close the
        connection and return everything the node wrote back.
        """
        address = IPv4Address("TCP", host, 40000)
        protocol = self.factory.buildProtocol(address)
        assert isinstance(protocol, RespProtocol)
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 6380), peerAddress=address
        )
        protocol.makeConnection(transport)
        step = chunk or max(len(data), 1)
        for start in range(0, len(data), step):
            if transport.disconnecting:
                break
            protocol.dataReceived(data[start : start + step])
        # Replies waiting on (absent) replicas time out.
        for _ in range(4):
            self.clock.advance(self.node.config.replicaTimeout)
        protocol.connectionLost()
        written: bytes = transport.value()
        return written


def inMemoryRespPort(withTokens: bool = True) -> InMemoryRespPort:
    """
    A one-node cluster's Redis port with small limits (values of at most
    4 KiB, 1 MiB of memory), the HTTP API's test tokens
    (L{disperse.testing.site.TOKENS}) unless C{withTokens} is false, and
    rate limits too high for one connection to reach.
    """
    clock = Clock()
    clock.advance(1_700_000_000)
    node = makeNode(
        NodeConfig(nodeName="fuzz", replicas=1, maxValueSize=4096, maxMemory=1 << 20),
        clock,
    )
    stats = RespStats()
    node.respStats = stats
    dispatcher = Dispatcher(
        stats,
        clock.seconds,
        perClient=RateLimiter(clock, 100_000),
        overall=RateLimiter(clock, 1_000_000),
    )
    tokens = parseTokens(TOKENS) if withTokens else None
    factory = RespFactory(
        node,
        dispatcher,
        clock,
        wireLimits(node.config.maxValueSize),
        tokens=lambda: tokens,
        maxConnectionsPerClient=1_000_000,
    )
    return InMemoryRespPort(clock, node, factory)
