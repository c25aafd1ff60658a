"""
A node started with seeds coordinates nothing until it has joined: with a
partition table of itself alone it would acknowledge quorum writes that no
real replica holds, and answer reads from its own empty store.
"""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from disperse.cluster.replicator import Consistency
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
