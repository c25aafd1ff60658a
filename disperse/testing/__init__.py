"""
Fakes for testing code built on Disperse, shipped with the package so that
applications embedding a node can use them too.
"""

from disperse.testing.reactor import FakeUDPPort, MemoryReactorWithUDP

__all__ = ["FakeUDPPort", "MemoryReactorWithUDP"]
