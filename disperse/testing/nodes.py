"""
Whole nodes (L{disperse.node.Node}, as front ends see them) in a cluster
held in memory: each built by L{makeNode} over the in-memory network of
L{disperse.testing.peers}, on one clock, told of the others as gossip
would tell it, its partition table placed and settled. No gossip runs:
a test changes membership through each node's directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from disperse.cluster.view import PLACEMENT_DELAY, SETTLE_WINDOW
from disperse.config import NodeConfig
from disperse.gossip.messages import NodeState
from disperse.gossip.swim import Member
from disperse.node import Node
from disperse.testing.node import makeNode
from disperse.testing.peers import MemoryPeerNetwork

# A moment in 2023: expiry is absolute, so a test clock starts at a
# realistic time rather than at the epoch.
START = 1_700_000_000.0


def memberOf(name: str, state: NodeState = NodeState.alive) -> Member:
    """
    A gossip member called C{name} that holds data (it publishes an HTTP
    address).
    """
    meta = json.dumps({"http_addr": f"{name}.test:8000", "http_port": 8000}).encode()
    return Member(name, "127.0.0.1", 7946, meta, 1, state, 0.0)


class MemoryNodes:
    """
    Nodes named C{names}, each knowing every other, over one
    L{MemoryPeerNetwork}.

    @ivar clock: the clock every node and the network run on.
    @ivar network: the network between them (cut links, stop nodes there).
    @ivar nodes: the nodes by name.
    """

    def __init__(
        self,
        names: Iterable[str] = ("a", "b", "c"),
        config: NodeConfig | None = None,
        clock: Clock | None = None,
    ) -> None:
        """
        @param config: what every node is told (its name replaced by each
            node's).
        """
        self.clock = clock if clock is not None else Clock()
        if not self.clock.seconds():
            self.clock.advance(START)
        self.network = MemoryPeerNetwork(self.clock)
        self.nodes: dict[str, Node] = {}
        base = config if config is not None else NodeConfig(nodeName="")
        names = list(names)
        for name in names:
            node = makeNode(
                replace(base, nodeName=name),
                self.clock,
                peers=self.network.client(name),
            )
            self.network.nodes[name] = node.replica
            self.nodes[name] = node
        for node in self.nodes.values():
            for name in names:
                node.directory.memberJoined(memberOf(name))
        self.clock.advance(PLACEMENT_DELAY)
        for node in self.nodes.values():
            # Nothing was written yet: there is nothing to catch up on.
            node.replica.releaseReads(list(node.replica.held))
        self.settle(SETTLE_WINDOW)

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def settle(self, seconds: float = 0.1) -> None:
        """
        Let C{seconds} pass in small steps, so that calls in flight arrive
        and the timeouts due meanwhile fire in order.
        """
        step = min(0.01, seconds)
        end = self.clock.seconds() + seconds
        while self.clock.seconds() < end:
            self.clock.advance(min(step, end - self.clock.seconds()))

    def until(self, deferred: Deferred[Any], within: float = 60.0) -> None:
        """
        Let time pass in small steps until C{deferred} has fired, or
        C{within} seconds have passed.
        """
        end = self.clock.seconds() + within
        while not deferred.called and self.clock.seconds() < end:
            self.clock.advance(0.01)
