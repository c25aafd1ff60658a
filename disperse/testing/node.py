"""
Nodes built in memory for tests, their parts wired as L{disperse.tap}
wires them: a store, the member directory, the cluster view, the replica,
the coordinator and anti-entropy, over peers that refuse every call unless
the test brings its own.
"""

from __future__ import annotations

import random

from twisted.internet.interfaces import IReactorTime

from disperse.cluster.antientropy import AntiEntropy
from disperse.cluster.clients import RepairClient
from disperse.cluster.coordinator import Coordinator
from disperse.cluster.hints import HintStore
from disperse.cluster.members import MemberDirectory
from disperse.cluster.replica import Replica
from disperse.cluster.view import ClusterView
from disperse.config import NodeConfig, nodeIdFor
from disperse.gossip.service import Membership
from disperse.node import Node
from disperse.store import Store
from disperse.testing.peers import RefusingPeers


def makeNode(
    config: NodeConfig,
    clock: IReactorTime,
    *,
    peers: RepairClient | None = None,
    directory: MemberDirectory | None = None,
    membership: Membership | None = None,
    nodeType: type[Node] = Node,
) -> Node:
    """
    A node named by C{config}, with C{membership} (whose listener should be
    C{directory}) or none: then it is a cluster of one.

    @param nodeType: L{Node} or a subclass a test made.
    """
    peers = peers if peers is not None else RefusingPeers()
    directory = directory if directory is not None else MemberDirectory()
    store = Store(clock, nodeIdFor(config.nodeName), maxBytes=config.maxMemory)
    view = ClusterView(
        nodeName=config.nodeName,
        clock=clock,
        source=directory,
        replicas=config.replicas,
        forgetDeparted=config.forgetDeparted,
    )
    replica = Replica(store=store, clock=clock)
    coordinator = Coordinator(
        view=view,
        replica=replica,
        clock=clock,
        peers=peers,
        timeout=config.replicaTimeout,
        readRetryAfter=config.readRetryAfter,
        hints=HintStore(max(config.maxMemory // 8, 1024 * 1024)),
    )
    antiEntropy = AntiEntropy(
        view=view,
        replica=replica,
        peers=peers,
        clock=clock,
        random=random.Random(),
        interval=config.antiEntropyInterval,
    )
    node = nodeType(
        config,
        clock,
        store=store,
        directory=directory,
        view=view,
        replica=replica,
        coordinator=coordinator,
        antiEntropy=antiEntropy,
        membership=membership,
    )
    if membership is not None:
        membership.setServiceParent(node)
    return node
