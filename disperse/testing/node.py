"""
Nodes built in memory for tests, wired as L{disperse.tap} wires them
(L{Node.build}), over peers that refuse every call unless the test brings
its own.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from disperse.cluster.clients import RepairClient
from disperse.cluster.members import MemberDirectory
from disperse.config import NodeConfig
from disperse.gossip.service import Membership
from disperse.node import Node
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
    node = nodeType.build(
        config,
        clock,
        peers=peers if peers is not None else RefusingPeers(),
        directory=directory if directory is not None else MemberDirectory(),
        membership=membership,
    )
    if membership is not None:
        membership.setServiceParent(node)
    return node
