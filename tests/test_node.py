"""
A node started with seeds coordinates nothing until it has joined: with a
partition table of itself alone it would acknowledge quorum writes that no
real replica holds, and answer reads from its own empty store.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from disperse.cluster.coordinator import Consistency
from disperse.cluster.placement import MemberSpec
from disperse.cluster.view import PLACEMENT_DELAY, NoMajority
from disperse.config import NodeConfig
from disperse.gossip.messages import NodeState
from disperse.gossip.swim import Member
from disperse.node import Node, NotJoined
from disperse.persist.datadir import DataDir
from disperse.persist.log import InlineSyncer
from disperse.persist.service import Persistence
from disperse.resp.stats import RespStats
from disperse.tap import Options, makeService
from disperse.testing import MemoryReactorWithUDP
from disperse.testing.damage import damageEntry, flipped
from disperse.testing.node import makeNode
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
        node, reactor = startNode()
        self.addCleanup(node.stopService)
        name = node.config.nodeName
        others = [MemberSpec(n) for n in ("b", "c", "d")]
        node.view.updateMembers([MemberSpec(name), *others])
        node.view.updateMembers([MemberSpec(name), others[0]])
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
        answer = stub.put("http://node/cache/k?consistency=one", json={"value": "v"})
        # The table changed a moment ago: even "one" waits for every replica
        # (b does not answer) before it counts the acknowledgements.
        self.assertNoResult(answer)
        reactor.advance(node.config.replicaTimeout)
        stub.flush()
        response = self.successResultOf(answer)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("x-disperse-acks"), ["1"])
        self.assertEqual(node.stats()["replication"]["knownMembers"], 4)


def _member(name: str, state: NodeState = NodeState.alive) -> Member:
    meta = json.dumps({"http_addr": f"127.0.0.1:{8000 + ord(name[0])}"}).encode()
    return Member(name, "127.0.0.1", 7000, meta, 1, state, 0.0)


class PlacementTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.node = makeNode(NodeConfig(nodeName="a"), self.clock)
        self.members = [_member(n) for n in "abc"]
        for member in self.members:
            self.node.directory.memberJoined(member)
        self.clock.advance(PLACEMENT_DELAY)
        self.assertEqual(len(self.node.view.table.members), 3)

    def test_leaveRebuildsAtOnce(self) -> None:
        """
        A member that left on purpose stops serving: the table drops it at
        once, not after the burst delay.
        """
        gone = replace(self.members[2], state=NodeState.left)
        self.node.directory.memberLeft(gone)
        self.assertEqual(
            sorted(m.name for m in self.node.view.table.members), ["a", "b"]
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_failureWaitsForTheBurst(self) -> None:
        dead = replace(self.members[2], state=NodeState.dead)
        self.node.directory.memberFailed(dead)
        self.assertEqual(len(self.node.view.table.members), 3)
        self.clock.advance(PLACEMENT_DELAY)
        self.assertEqual(len(self.node.view.table.members), 2)


class StatsTests(SynchronousTestCase):
    def test_redisSectionOnlyWhenServed(self) -> None:
        """
        C{/stats} has a C{redis} section, the Redis front end's own summary,
        only while that front end counts (C{--redis-port} given).
        """
        node = makeNode(NodeConfig(nodeName="a"), Clock())
        self.assertNotIn("redis", node.stats())
        counters = RespStats(connections=1)
        counters.record("get", 0.002)
        node.respStats = counters
        self.assertEqual(node.stats()["redis"], counters.summary())


class PutUntilTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.node = makeNode(NodeConfig(nodeName="a"), self.clock)

    def test_absoluteExpiry(self) -> None:
        nowMs = self.node.store.nowMs()
        outcome = self.node.putUntil("k", b"v", nowMs + 1500, binary=True)
        self.assertTrue(getattr(outcome, "ok", False))
        record = self.node.getLocal("k")
        assert record is not None
        self.assertEqual((record.expiresAtMs, record.binary), (nowMs + 1500, True))
        self.clock.advance(1.5)
        self.assertIsNone(self.node.getLocal("k"))

    def test_pastExpiryDeletes(self) -> None:
        """
        A time already past writes a tombstone, which outlives the value
        it replaces (an expired value would lapse into one for less long).
        """
        self.node.put("k", b"v")
        self.node.putUntil("k", b"w", self.node.store.nowMs())
        record = self.node.store.record("k")
        assert record is not None
        self.assertTrue(record.tombstone)

    def test_refusedBeforeJoining(self) -> None:
        node, _ = startNode("--peer", "127.0.0.1:7002")
        self.addCleanup(node.stopService)
        self.assertRaises(NotJoined, node.putUntil, "k", b"v", 0)


class ScrubTests(SynchronousTestCase):
    def test_scrubRunsWithTheNode(self) -> None:
        """
        The scrub starts and stops with the node, at C{--scrub-rate}, on the
        node's clock: a damaged entry is found and removed.
        """
        node, reactor = startNode("--scrub-rate", "2000")
        self.assertTrue(node.scrubber.running)
        self.assertEqual(node.scrubber.rate, 2000)
        node.putLocal("k", b"v")
        damageEntry(node.store, "k")
        reactor.pump([0.1] * 10)
        self.assertEqual(node.store.integrity.scrub, 1)
        self.assertIsNone(node.getLocal("k"))
        node.stopService()
        reactor.pump([0.1] * 10)
        self.assertFalse(node.scrubber.running)

    def test_off(self) -> None:
        node, _ = startNode("--scrub-rate", "0")
        self.addCleanup(node.stopService)
        self.assertFalse(node.scrubber.running)


class DiskIntegrityTests(SynchronousTestCase):
    def node(self, path: Path, clock: Clock) -> Node:
        node = makeNode(NodeConfig(nodeName="solo", handoffTimeout=0), clock)
        dataDir = DataDir.open(path, "solo")
        node.persist(Persistence(dataDir, node.store, clock, InlineSyncer(), "always"))
        return node

    def test_damagedOnDiskCounted(self) -> None:
        """
        An entry read back from the data directory that fails its content
        hash (it was damaged before it was written) is not loaded, and is
        counted as found on disk.
        """
        path = Path(self.mktemp())
        clock = Clock()
        clock.advance(1_800_000_000)
        node = self.node(path, clock)
        node.startService()
        clock.advance(0)
        node.putLocal("good", b"v")
        bad = node.store.newRecord(b"damaged before it reached the disk").encode()
        # Stored as it came, as a store takes what its replica checked.
        node.store.mergeEncoded("bad", flipped(bad))
        clock.advance(1)
        node.stopService()
        clock.advance(1)

        clock = Clock()
        clock.advance(1_800_000_010)
        again = self.node(path, clock)
        again.startService()
        self.addCleanup(again.stopService)
        clock.advance(0)
        self.assertIsNotNone(again.getLocal("good"))
        self.assertIsNone(again.store.record("bad"))
        self.assertEqual(again.store.integrity.disk, 1)
        self.assertEqual(again.stats()["integrity"]["disk"], 1)
