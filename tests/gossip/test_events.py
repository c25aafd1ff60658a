"""
Tests for L{disperse.gossip.events}: a bounded ring of membership events
with ids a reader can resume from, and the node feeding it.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from disperse.config import NodeConfig
from disperse.gossip.events import MembershipEvents
from disperse.gossip.messages import NodeState
from disperse.gossip.swim import Member
from disperse.testing.node import makeNode


class MembershipEventsTests(SynchronousTestCase):
    def test_keepsTheNewestUpToCapacity(self) -> None:
        events = MembershipEvents(capacity=3)
        for i in range(5):
            events.record(float(i), f"n{i}", "joined", "alive", 1)
        self.assertEqual([e.member for e in events.since()], ["n2", "n3", "n4"])
        self.assertEqual([e.id for e in events.since()], [3, 4, 5])
        self.assertEqual(events.lastId, 5)

    def test_since(self) -> None:
        events = MembershipEvents()
        self.assertEqual((events.since(), events.lastId), ([], 0))
        first = events.record(10.0, "a", "joined", "alive", 1)
        second = events.record(11.0, "a", "failed", "dead", 1)
        self.assertEqual(events.since(first.id), [second])
        self.assertEqual(events.since(second.id), [])
        self.assertEqual(
            second.asJSON(),
            {
                "id": 2,
                "time": 11.0,
                "member": "a",
                "change": "failed",
                "state": "dead",
                "incarnation": 1,
            },
        )

    def test_capacityMustBePositive(self) -> None:
        self.assertRaises(ValueError, MembershipEvents, 0)


class NodeRecordsEventsTests(SynchronousTestCase):
    def test_everyChangeIsRecorded(self) -> None:
        clock = Clock()
        clock.advance(1000)
        node = makeNode(NodeConfig(nodeName="alpha"), clock)

        def member(state: NodeState, incarnation: int) -> Member:
            return Member("beta", "127.0.0.1", 7947, b"{}", incarnation, state, 0.0)

        node.directory.memberJoined(member(NodeState.alive, 1))
        clock.advance(5)
        node.directory.memberFailed(member(NodeState.dead, 1))
        clock.advance(5)
        node.directory.memberJoined(member(NodeState.alive, 2))
        clock.advance(5)
        node.directory.memberLeft(member(NodeState.left, 2))
        self.assertEqual(
            [(e.time, e.change, e.state, e.incarnation) for e in node.events.since()],
            [
                (1000.0, "joined", "alive", 1),
                (1005.0, "failed", "dead", 1),
                (1010.0, "joined", "alive", 2),
                (1015.0, "left", "left", 2),
            ],
        )
        clock.advance(1)  # the placement rebuild that follows the burst
