"""
Fakes and harnesses for testing code built on Disperse, shipped with the
package so that applications embedding a node can use them too: a memory
reactor that can listen on UDP (L{disperse.testing.reactor}), an in-memory
network of peers (L{disperse.testing.peers}), nodes, the public site and the
node-to-node server in memory (L{disperse.testing.node},
L{disperse.testing.site}, L{disperse.testing.peerserver}), a checker of
client histories (L{disperse.testing.history}), and the one harness that
starts real node processes (L{disperse.testing.cluster}).
"""

from disperse.testing.reactor import FakeUDPPort, MemoryReactorWithUDP

__all__ = ["FakeUDPPort", "MemoryReactorWithUDP"]
