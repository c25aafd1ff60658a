"""
A node started with seeds coordinates nothing until it has joined: with a
partition table of itself alone it would acknowledge quorum writes that no
real replica holds, and answer reads from its own empty store.
"""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from disperse.cluster.placement import MemberSpec
from disperse.cluster.replicator import Consistency, NoMajority
from disperse.node import Node, NotJoined
from disperse.tap import Options, makeService
from disperse.testing import MemoryReactorWithUDP
from disperse.web.api import CacheAPI


def startNode(*args: str) -> tuple[Node, MemoryReactorWithUDP]:
    options = Options(environ={})
    options.parseOptions(["--port", "7001", "--http-port", "8123", *args])
    reactor = MemoryReactorWithUDP()
    node = makeService(options, reactor)
    assert isinstance(node, Node)
    node.privilegedStartService()
    node.startService()
    return node, reactor


class JoinTests(SynchronousTestCase):
    def test_notJoinedRefuses(self) -> None:
        node, _ = startNode("--peer", "127.0.0.1:7002")
        self.addCleanup(node.stopService)
        self.assertFalse(node.ready)
        self.assertRaises(NotJoined, node.put, "k", b"v", 0, False, Consistency.quorum)
        self.assertRaises(NotJoined, node.get, "k")
        self.assertRaises(NotJoined, node.delete, "k")
        # This node's own store stays reachable (X-Is-Sync).
        node.putLocal("k", b"v")
        stub: Any = StubTreq(CacheAPI(node).resource())
        response = self.successResultOf(stub.get("http://node/cache/k"))
        self.assertEqual(response.code, 503)
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["1"])
        body = self.successResultOf(stub.json_content(response))
        self.assertIn("not joined its cluster yet", body["error"])

    def test_readyOnceJoined(self) -> None:
        node, _ = startNode("--peer", "127.0.0.1:7002")
        self.addCleanup(node.stopService)
        node.clusterJoined()
        self.assertTrue(node.ready)
        outcome = node.put("k", b"v", level=Consistency.quorum)
        self.assertTrue(getattr(outcome, "ok", False))

    def test_withoutSeedsReadyAtOnce(self) -> None:
        node, _ = startNode()
        self.addCleanup(node.stopService)
        self.assertTrue(node.ready)
        self.assertTrue(getattr(node.put("k", b"v"), "ok", False))


class MajorityTests(SynchronousTestCase):
    def test_cutOffNodeRefusesQuorum(self) -> None:
        """
        A node that lost sight of most of the cluster answers quorum
        requests 503 with the reason, and still serves "one".
        """
        node, _ = startNode()
        self.addCleanup(node.stopService)
        name = node.config.nodeName
        others = [MemberSpec(n) for n in ("b", "c", "d")]
        node.replicator.updateMembers([MemberSpec(name), *others])
        node.replicator.updateMembers([MemberSpec(name), others[0]])
        self.assertRaises(NoMajority, node.get, "k")
        stub: Any = StubTreq(CacheAPI(node).resource())
        response = self.successResultOf(
            stub.put("http://node/cache/k", json={"value": "v"})
        )
        self.assertEqual(response.code, 503)
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["1"])
        body = self.successResultOf(stub.json_content(response))
        self.assertIn("reaches only 2 of the 4 members", body["error"])
        self.assertIsNone(node.getLocal("k"))
        response = self.successResultOf(
            stub.put("http://node/cache/k?consistency=one", json={"value": "v"})
        )
        self.assertEqual(response.code, 200)
        self.assertEqual(node.stats()["replication"]["knownMembers"], 4)
