"""
Disperse: a distributed cache on Twisted.

Layers, from the inside out (docs/ARCHITECTURE.md follows a request through
them):

- L{disperse.units}, L{disperse.timesource}, L{disperse.logs},
  L{disperse.send}: parsers, the time interface of pure cores, log levels,
  sending an answer at once.
- L{disperse.store}: entries, versions, expiry, eviction, partitions and
  their Merkle trees.
- L{disperse.gossip}: the SWIM/Lifeguard membership protocol and its wire
  codec.
- L{disperse.security}: HTTP limits, client tokens, rate limits and
  node-to-node TLS.
- L{disperse.cluster}: member metadata, placement, the view, coordinator and
  replica, anti-entropy, and the node-to-node protocol.
- L{disperse.config} and L{disperse.node}: the node's configuration, and the
  one core service every front end talks to.
- L{disperse.metrics} and L{disperse.web}: Prometheus collectors, and the
  public HTTP port.
- L{disperse.tap}: command-line options and service wiring for C{twistd}.
- L{disperse.cli}, L{disperse.testing}, L{disperse.testbed}: the command-line
  client, test fakes and harnesses, and the fault bed.
"""

__version__ = "0.1.0"
