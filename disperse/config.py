"""
The L{NodeConfig} every part of a node reads, and the node id derived from
its name. Pure: no I/O. The parsers of its values are in L{disperse.units}.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from disperse.cluster.placement import Replicas
from disperse.gossip.config import GossipSettings
from disperse.store.integrity import DEFAULT_SCRUB_RATE


def nodeIdFor(nodeName: str) -> int:
    """
    The 32-bit id that breaks ties between writes with equal timestamps.

    Derived from the name, so a restarted node keeps its id.
    """
    digest = hashlib.blake2b(nodeName.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True)
class NodeConfig:
    """
    Everything a node is told at start-up.

    @ivar httpEndpoint: a Twisted server endpoint description.
    @ivar redisEndpoint: the endpoint of the Redis protocol port, or
        L{None} when the node serves none.
    @ivar redisIdleTimeout: seconds without traffic before a Redis
        connection is closed; 0 never closes one.
    @ivar advertiseAddress: the address other nodes and clients should use
        to reach this one.
    """

    nodeName: str
    bindAddress: str = "0.0.0.0"
    advertiseAddress: str = "127.0.0.1"
    gossipPort: int = 7946
    httpEndpoint: str = "tcp:8000"
    redisEndpoint: str | None = None
    redisIdleTimeout: float = 300.0
    peers: tuple[tuple[str, int], ...] = field(default_factory=tuple)
    maxMemory: int = 256 * 1000**2
    maxValueSize: int = 4 * 1024**2
    maxKeySize: int = 1024
    accessLog: str | None = None
    zone: str = ""
    gossip: GossipSettings = field(default_factory=GossipSettings)
    replicas: Replicas = 3
    readConsistency: str = "quorum"
    writeConsistency: str = "quorum"
    replicaTimeout: float = 1.0
    # How long a read waits for a replica before it asks one more.
    readRetryAfter: float = 0.1
    clusterSecret: bytes | None = None
    antiEntropyInterval: float = 30.0
    # How long a member that vanished without leaving still counts towards
    # the cluster size quorums need a majority of.
    forgetDeparted: float = 600.0
    # How long a stopping node may spend handing its partitions to their
    # next owners; 0 leaves at once.
    handoffTimeout: float = 30.0
    # Where the store is kept on disk (--data-dir); None keeps it in memory
    # only. When the log is synced: always, everysec or no (--fsync).
    dataDir: str | None = None
    fsync: str = "everysec"
    # Stored entries re-checked against their content hashes a second
    # (disperse.store.scrubber); 0 turns the scrub off.
    scrubRate: int = DEFAULT_SCRUB_RATE

    @property
    def httpsAPI(self) -> bool:
        """
        Whether the public API is served over TLS (an C{ssl:} endpoint).
        """
        return self.httpEndpoint.split(":", 1)[0].strip().lower() == "ssl"
