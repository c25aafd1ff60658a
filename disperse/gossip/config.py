"""
Tuning knobs of the SWIM/Lifeguard membership protocol, and the formulas that
scale them with the size of the cluster.

The presets reproduce the numbers of HashiCorp memberlist's
C{DefaultLANConfig}, C{DefaultWANConfig} and C{DefaultLocalConfig}, so a
Disperse node behaves like a memberlist peer configured the same way.  All
durations are in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from disperse.gossip.crypto import Keyring


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """
    Timing and fan-out parameters of the membership protocol.

    @ivar probeInterval: base period between two failure probes.
    @ivar probeTimeout: how long a direct ping may go unanswered before we
        ask other members to probe indirectly (not scaled by awareness).
    @ivar indirectChecks: how many members we ask to probe indirectly.
    @ivar gossipInterval: period between two gossip rounds.
    @ivar gossipNodes: members contacted in each gossip round.
    @ivar retransmitMult: each broadcast is sent
        C{retransmitMult * ceil(log10(N + 1))} times.
    @ivar suspicionMult: a suspect becomes dead after
        C{suspicionMult * max(1, log10(N)) * probeInterval} at the least.
    @ivar suspicionMaxTimeoutMult: the suspicion timeout starts at this many
        times the minimum and shrinks with independent confirmations.
    @ivar pushPullInterval: base period of full state exchanges; scaled up
        beyond 32 members.  Zero disables them.
    @ivar awarenessMaxMultiplier: upper bound of the local health multiplier
        that stretches the probe interval.
    @ivar gossipToTheDeadTime: how long dead members still receive gossip
        (and are kept before being forgotten).
    @ivar deadNodeReclaimTime: after this long a dead member's name may be
        taken by a node at another address; zero never allows it (members
        that left gracefully can always be replaced).
    @ivar disableStreamPings: do not ask for a stream (TCP) ping fallback
        when the direct ping fails.
    @ivar packetSize: the UDP payload budget for one packet.
    @ivar announceOnJoin: a Disperse extension, invisible on the wire: once
        the first seed answered our join, send our alive message straight to
        every member it told us about, so each learns of us within one
        network delay instead of hoping the epidemic reaches it.
    @ivar streamTimeout: what the glue should use as a deadline for stream
        connections (push/pull, stream pings).
    """

    probeInterval: float = 1.0
    probeTimeout: float = 0.5
    indirectChecks: int = 3
    gossipInterval: float = 0.2
    gossipNodes: int = 3
    retransmitMult: int = 4
    suspicionMult: int = 4
    suspicionMaxTimeoutMult: int = 6
    pushPullInterval: float = 30.0
    awarenessMaxMultiplier: int = 8
    gossipToTheDeadTime: float = 30.0
    deadNodeReclaimTime: float = 0.0
    disableStreamPings: bool = False
    packetSize: int = 1400
    streamTimeout: float = 10.0
    announceOnJoin: bool = True

    @classmethod
    def lan(cls) -> GossipConfig:
        """
        memberlist's C{DefaultLANConfig}: a data centre network.
        """
        return cls()

    @classmethod
    def wan(cls) -> GossipConfig:
        """
        memberlist's C{DefaultWANConfig}: slower, lossier links.
        """
        return replace(
            cls.lan(),
            streamTimeout=30.0,
            suspicionMult=6,
            pushPullInterval=60.0,
            probeTimeout=3.0,
            probeInterval=5.0,
            gossipNodes=4,
            gossipInterval=0.5,
            gossipToTheDeadTime=60.0,
        )

    @classmethod
    def local(cls) -> GossipConfig:
        """
        memberlist's C{DefaultLocalConfig}: loopback or one quiet switch.
        """
        return replace(
            cls.lan(),
            streamTimeout=1.0,
            indirectChecks=1,
            retransmitMult=2,
            suspicionMult=3,
            pushPullInterval=15.0,
            probeTimeout=0.2,
            probeInterval=1.0,
            gossipInterval=0.1,
            gossipToTheDeadTime=15.0,
        )


PROFILES = {
    "local": GossipConfig.local,
    "lan": GossipConfig.lan,
    "wan": GossipConfig.wan,
}


@dataclass(frozen=True)
class GossipSettings:
    """
    How a node speaks the gossip protocol: the timing knobs, the label that
    keeps clusters on one network apart, and the keys that encrypt it.
    """

    config: GossipConfig = field(default_factory=GossipConfig.lan)
    label: str = ""
    keyring: Keyring | None = None
    compress: bool = False


# Push/pull intervals are not stretched until the cluster is this large.
PUSH_PULL_SCALE_THRESHOLD = 32


def suspicionTimeout(suspicionMult: int, numNodes: int, interval: float) -> float:
    """
    The minimum time a member stays suspect before it is declared dead.
    """
    nodeScale = max(1.0, math.log10(max(1.0, float(numNodes))))
    return suspicionMult * nodeScale * interval


def retransmitLimit(retransmitMult: int, numNodes: int) -> int:
    """
    How many times one broadcast is sent before it is dropped.
    """
    return retransmitMult * math.ceil(math.log10(numNodes + 1))


def pushPullScale(interval: float, numNodes: int) -> float:
    """
    The push/pull period for a cluster of C{numNodes}: one more multiple of
    the base for each doubling beyond L{PUSH_PULL_SCALE_THRESHOLD}.
    """
    if numNodes <= PUSH_PULL_SCALE_THRESHOLD:
        return interval
    multiplier = (
        math.ceil(math.log2(numNodes) - math.log2(PUSH_PULL_SCALE_THRESHOLD)) + 1
    )
    return multiplier * interval
