"""
Disperse: a distributed cache on Twisted.

Layers, from the inside out:

- L{disperse.store}: pure data structures (entries, versions, expiry, eviction).
- L{disperse.gossip}: the SWIM/Lifeguard membership protocol and its wire codec.
- L{disperse.node}: the one core service every front end talks to.
- L{disperse.web}: the Klein HTTP API.
- L{disperse.tap}: command-line options and service wiring for C{twistd}.
"""

__version__ = "0.1.0"
