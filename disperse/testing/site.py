"""
A whole public HTTP front end of one node in memory: node, API with
tokens and rate limits and the guarded site, on a L{Clock}, fed raw bytes
through L{StringTransport}s. For tests and fuzzers of the request
handling. (The node-to-node port has its own server,
L{disperse.cluster.peer.server}.)
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from disperse.config import NodeConfig
from disperse.node import Node
from disperse.security.limits import HTTPLimits
from disperse.security.ratelimit import RateLimiter
from disperse.security.tokens import parseTokens
from disperse.testing.node import makeNode
from disperse.web.api import CacheAPI
from disperse.web.auth import RequestGuard
from disperse.web.service import DisperseSite

READER = "reader-token-0123456789abcdef"
WRITER = "writer-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
TOKENS = f"{READER} read\n{WRITER} read,write users/\n{ADMIN} admin\n"


@dataclass
class InMemorySite:
    clock: Clock
    node: Node
    site: DisperseSite

    def exchange(self, data: bytes, chunk: int = 0, host: str = "10.0.0.1") -> bytes:
        """
        Feed C{data} on a new connection (in pieces of C{chunk} bytes, all
        at once if 0), let the clock run past every timeout, and return
        everything the node wrote back.
        """
        address = IPv4Address("TCP", host, 40000)
        channel = self.site.buildProtocol(address)
        assert channel is not None
        transport = StringTransport(peerAddress=address)
        channel.makeConnection(transport)
        step = chunk or max(len(data), 1)
        for start in range(0, len(data), step):
            if transport.disconnecting:
                break
            channel.dataReceived(data[start : start + step])
        # Run the timeouts, and close as a real transport would once the
        # node has closed its side.
        for _ in range(12):
            if transport.disconnecting:
                break
            self.clock.advance(10)
        channel.connectionLost()
        written: bytes = transport.value()
        return written


def inMemorySite(withGuard: bool = True, withTokens: bool = True) -> InMemorySite:
    clock = Clock()
    clock.advance(1_700_000_000)
    node = makeNode(
        NodeConfig(nodeName="fuzz", replicas=1, maxValueSize=4096, maxMemory=1 << 20),
        clock,
    )
    node.httpPort = 8000
    guard = (
        RequestGuard(
            tokens=parseTokens(TOKENS) if withTokens else None,
            perClient=RateLimiter(clock, 1000),
            overall=RateLimiter(clock, 10000),
        )
        if withGuard
        else None
    )
    api = CacheAPI(node, guard=guard)
    limits = HTTPLimits(maxHeaderSize=2048, maxBodySize=4096 + 1024)
    site = DisperseSite(api.resource(), limits=limits, reactor=clock)
    return InMemorySite(clock, node, site)
