"""
Tests for L{disperse.web.dashboard} through the HTTP API: the page and its
assets with their types and cache headers, C{/cluster/events}, and
C{/cluster/overview} fanning out to members' C{/stats} through a fake
client, on a L{Clock}.
"""

from __future__ import annotations

import json
import re
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, TimeoutError, succeed
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from disperse.cluster.placement import MemberSpec
from disperse.config import NodeConfig
from disperse.node import Node
from disperse.resp.stats import RespStats
from disperse.store.partition import PARTITION_COUNT
from disperse.testing.node import makeNode
from disperse.web.api import CacheAPI
from disperse.web.dashboard import (
    OVERVIEW_MAX_AGE,
    STATS_TIMEOUT,
    HTTPStatsClient,
    loadAssets,
)

START = 1_700_000_000.0
URL = "http://node.test"


class FakeStats:
    """
    Members' C{/stats} answers, chosen by the test: a document, a failure,
    or (for addresses not listed) an answer that has not come yet.
    """

    def __init__(self) -> None:
        self.answers: dict[str, dict[str, Any] | Exception] = {}
        self.asked: list[str] = []
        self.authorizations: list[bytes | None] = []
        self.schemes: list[str] = []
        self.pending: dict[str, Deferred[dict[str, Any]]] = {}

    def stats(
        self,
        httpAddress: str,
        authorization: bytes | None = None,
        scheme: str = "http",
    ) -> Deferred[dict[str, Any]]:
        self.asked.append(httpAddress)
        self.schemes.append(scheme)
        self.authorizations.append(authorization)
        answer = self.answers.get(httpAddress)
        if answer is None:
            d: Deferred[dict[str, Any]] = Deferred()
            self.pending[httpAddress] = d
            return d
        if isinstance(answer, Exception):
            failed: Deferred[dict[str, Any]] = Deferred()
            failed.errback(answer)
            return failed
        return succeed(answer)


class KnownMembers(Node):
    """
    A node whose membership view is whatever the test says.
    """

    known: list[dict[str, Any]]

    def clusterMembers(self) -> list[dict[str, Any]]:
        return [dict(member) for member in self.known]


def member(name: str, state: str = "alive", port: int = 8000) -> dict[str, Any]:
    return {
        "name": name,
        "gossip_addr": f"127.0.0.1:{port - 54}",
        "http_addr": f"127.0.0.1:{port}",
        "state": state,
        "incarnation": 1,
        "zone": "",
        "last_change": START - 10,
    }


class DashboardTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        node = makeNode(NodeConfig(nodeName="alpha"), self.clock, nodeType=KnownMembers)
        assert isinstance(node, KnownMembers)
        self.node = node
        self.node.known = [
            member("alpha", port=8000),
            member("beta", port=8001),
            member("gamma", port=8002),
        ]
        self.node.view.updateMembers(
            [MemberSpec("alpha"), MemberSpec("beta"), MemberSpec("gamma")]
        )
        self.peers = FakeStats()
        self.peers.answers["127.0.0.1:8001"] = {
            "node": "beta",
            "keys": 5,
            "bytes": 900,
            "maxBytes": 1000,
            "cacheRequests": 42,
            "gossip": {"secret": "not shown"},
        }
        self.peers.answers["127.0.0.1:8002"] = ConnectionRefusedError()
        self.api = CacheAPI(self.node, peerStats=self.peers)
        self.stub: Any = StubTreq(self.api.resource())

    def get(
        self, path: str, headers: dict[str, list[str]] | None = None
    ) -> tuple[int, Any, bytes]:
        d = self.stub.get(URL + path, headers=headers)
        self.stub.flush()
        response = self.successResultOf(d)
        body = self.successResultOf(self.stub.content(response))
        return response.code, response.headers, body

    def getJSON(self, path: str) -> Any:
        code, headers, body = self.get(path)
        self.assertEqual(code, 200, body)
        self.assertEqual(headers.getRawHeaders("content-type"), ["application/json"])
        return json.loads(body)

    # The page and its assets

    def test_pageAtRootAndUi(self) -> None:
        for path in ("/", "/ui", "/ui/", "/ui/index.html"):
            code, headers, body = self.get(path)
            self.assertEqual(code, 200, path)
            self.assertEqual(
                headers.getRawHeaders("content-type"), ["text/html; charset=utf-8"]
            )
            self.assertEqual(headers.getRawHeaders("cache-control"), ["no-cache"])
            self.assertIn(b"<!doctype html>", body)
            policy = headers.getRawHeaders("content-security-policy")[0]
            self.assertIn("script-src 'self'", policy)

    def test_assets(self) -> None:
        for name, contentType in (
            ("dashboard.js", "text/javascript; charset=utf-8"),
            ("dashboard.css", "text/css; charset=utf-8"),
        ):
            code, headers, body = self.get("/ui/" + name)
            self.assertEqual(code, 200)
            self.assertEqual(headers.getRawHeaders("content-type"), [contentType])
            self.assertEqual(
                headers.getRawHeaders("x-content-type-options"), ["nosniff"]
            )
            self.assertIn("max-age", headers.getRawHeaders("cache-control")[0])
            self.assertEqual(body, loadAssets()[name].body)

    def test_pageLinksAssetsByVersion(self) -> None:
        # A new version's page names new URLs, so assets cached for a day
        # are never mixed with a newer page.
        _, _, page = self.get("/")
        assets = loadAssets()
        for name in ("dashboard.js", "dashboard.css"):
            version = assets[name].etag.strip(b'"')
            self.assertIn(b'"/ui/%s?v=%s"' % (name.encode(), version), page)

    def test_notModified(self) -> None:
        _, headers, _ = self.get("/ui/dashboard.js")
        etag = headers.getRawHeaders("etag")[0]
        code, _, body = self.get("/ui/dashboard.js", {"If-None-Match": [etag]})
        self.assertEqual((code, body), (304, b""))

    def test_unknownAsset(self) -> None:
        for path in ("/ui/secret.txt", "/ui/..%2Fapi.py", "/ui/nothing.js", "/ui/a/b"):
            code, _, body = self.get(path)
            self.assertEqual(code, 404, path)
            self.assertIn(json.loads(body)["error"], ("no such file", "no such route"))

    # Membership events

    def test_events(self) -> None:
        self.node.events.record(START - 2, "beta", "joined", "alive", 1)
        self.node.events.record(START - 1, "gamma", "failed", "dead", 3)
        document = self.getJSON("/cluster/events")
        self.assertEqual((document["node"], document["last"]), ("alpha", 2))
        self.assertEqual([e["member"] for e in document["events"]], ["beta", "gamma"])
        later = self.getJSON("/cluster/events?since=1")
        self.assertEqual(
            later["events"],
            [
                {
                    "id": 2,
                    "time": START - 1,
                    "member": "gamma",
                    "change": "failed",
                    "state": "dead",
                    "incarnation": 3,
                }
            ],
        )

    def test_eventsBadSince(self) -> None:
        for since in ("-1", "x", "1.5"):
            code, _, body = self.get("/cluster/events?since=" + since)
            self.assertEqual(code, 400)
            self.assertEqual(
                json.loads(body), {"error": "since must be a non-negative integer"}
            )

    # The overview

    def test_overview(self) -> None:
        self.node.events.record(START - 1, "gamma", "joined", "alive", 1)
        document = self.getJSON("/cluster/overview")
        self.assertEqual((document["node"], document["time"]), ("alpha", START))
        byName = {m["name"]: m for m in document["members"]}
        self.assertEqual(list(byName), ["alpha", "beta", "gamma"])
        # This node's counters come without a request to itself.
        self.assertNotIn("127.0.0.1:8000", self.peers.asked)
        self.assertEqual(byName["alpha"]["stats"]["keys"], 0)
        self.assertEqual(
            byName["beta"]["stats"],
            {"keys": 5, "bytes": 900, "maxBytes": 1000, "cacheRequests": 42},
        )
        self.assertEqual(byName["gamma"]["stats"], None)
        self.assertEqual(byName["gamma"]["error"], "no answer to /stats")
        self.assertEqual(byName["beta"]["state"], "alive")
        self.assertEqual(document["events"][0]["member"], "gamma")

        partitions = document["partitions"]
        self.assertEqual(partitions["count"], PARTITION_COUNT)
        self.assertEqual(partitions["replicas"], 3)
        self.assertEqual(partitions["table"], self.node.view.table.digest())
        self.assertEqual(len(partitions["owners"]), PARTITION_COUNT)
        self.assertEqual(partitions["owners"][7], list(self.node.view.table.owners(7)))
        counts = partitions["members"]
        self.assertEqual(sum(c["primary"] for c in counts.values()), PARTITION_COUNT)
        self.assertEqual(counts["beta"]["replicas"], PARTITION_COUNT)

    def test_callersTokenGoesToTheOtherMembers(self) -> None:
        """
        The other members' /stats are asked with the dashboard caller's own
        credentials: members that take tokens answer whoever may read the
        overview here.
        """
        code, _, _ = self.get(
            "/cluster/overview", headers={"Authorization": ["Bearer t0ken"]}
        )
        self.assertEqual(code, 200)
        self.assertEqual(self.peers.authorizations, [b"Bearer t0ken"] * 2)

    def test_membersServingTLSAreAskedOverHTTPS(self) -> None:
        """
        A member whose API is served over TLS gossips so, and its counters
        are asked for over https (others still over http).
        """
        self.node.known[1]["http_scheme"] = "https"
        self.getJSON("/cluster/overview")
        self.assertEqual(
            sorted(zip(self.peers.asked, self.peers.schemes, strict=True)),
            [("127.0.0.1:8001", "https"), ("127.0.0.1:8002", "http")],
        )

    def test_deadMembersAreNotAsked(self) -> None:
        self.node.known[2] = member("gamma", state="dead", port=8002)
        self.node.known.append(member("delta", state="left", port=8003))
        document = self.getJSON("/cluster/overview")
        self.assertEqual(self.peers.asked, ["127.0.0.1:8001"])
        byName = {m["name"]: m for m in document["members"]}
        self.assertEqual(byName["gamma"]["state"], "dead")
        self.assertEqual(byName["gamma"]["stats"], None)
        self.assertNotIn("error", byName["gamma"])

    def test_ownersOnlyWhenTheTableChanged(self) -> None:
        table = self.node.view.table.digest()
        document = self.getJSON("/cluster/overview?table=" + table)
        self.assertNotIn("owners", document["partitions"])
        self.assertEqual(document["partitions"]["table"], table)
        stale = self.getJSON("/cluster/overview?table=0123")
        self.assertEqual(len(stale["partitions"]["owners"]), PARTITION_COUNT)

    def test_concurrentOverviewsShareOneFanOut(self) -> None:
        del self.peers.answers["127.0.0.1:8001"]
        first = self.stub.get(URL + "/cluster/overview")
        second = self.stub.get(URL + "/cluster/overview")
        self.stub.flush()
        self.assertNoResult(first)
        self.assertEqual(self.peers.asked.count("127.0.0.1:8001"), 1)
        self.peers.pending["127.0.0.1:8001"].callback({"keys": 9})
        self.stub.flush()
        for d in (first, second):
            response = self.successResultOf(d)
            body = json.loads(self.successResultOf(self.stub.content(response)))
            self.assertEqual(body["members"][1]["stats"], {"keys": 9})

    def test_recentOverviewIsReused(self) -> None:
        self.getJSON("/cluster/overview")
        self.clock.advance(OVERVIEW_MAX_AGE / 2)
        self.getJSON("/cluster/overview")
        self.assertEqual(self.peers.asked.count("127.0.0.1:8001"), 1)
        self.clock.advance(OVERVIEW_MAX_AGE)
        self.getJSON("/cluster/overview")
        self.assertEqual(self.peers.asked.count("127.0.0.1:8001"), 2)

    def test_noMembershipYet(self) -> None:
        self.node.known = []
        document = self.getJSON("/cluster/overview")
        self.assertEqual([m["name"] for m in document["members"]], ["alpha"])
        self.assertEqual(document["members"][0]["state"], "alive")

    def test_redisFigures(self) -> None:
        """
        A member that serves the Redis protocol shows its connections and
        commands from the C{redis} section of its C{/stats}; one that does
        not shows neither.
        """
        self.peers.answers["127.0.0.1:8001"] = {
            "keys": 5,
            "cacheRequests": 42,
            "redis": {"connections": 3, "commands": 1200, "perCommand": {}},
        }
        counters = RespStats(connections=1)
        counters.record("get", 0.001)
        self.node.respStats = counters
        byName = {
            m["name"]: m["stats"] for m in self.getJSON("/cluster/overview")["members"]
        }
        self.assertEqual(
            byName["beta"],
            {
                "keys": 5,
                "cacheRequests": 42,
                "redisConnections": 3,
                "redisCommands": 1200,
            },
        )
        self.assertEqual(byName["alpha"]["redisConnections"], 1)
        self.assertEqual(byName["alpha"]["redisCommands"], 1)

    def test_integrityFailures(self) -> None:
        """
        A member's damaged records found, all sources together, from the
        C{integrity} section of its C{/stats}; left out when malformed.
        """
        self.peers.answers["127.0.0.1:8001"] = {
            "keys": 5,
            "integrity": {"peer": 2, "scrub": 1, "disk": 0, "scrubbed": 10},
        }
        self.node.store.integrity.disk = 4
        byName = {
            m["name"]: m["stats"] for m in self.getJSON("/cluster/overview")["members"]
        }
        self.assertEqual(byName["beta"], {"keys": 5, "integrityFailures": 3})
        self.assertEqual(byName["alpha"]["integrityFailures"], 4)
        self.peers.answers["127.0.0.1:8001"] = {
            "keys": 5,
            "integrity": {"peer": "two", "scrub": 1, "disk": 0},
        }
        self.clock.advance(60)
        byName = {
            m["name"]: m["stats"] for m in self.getJSON("/cluster/overview")["members"]
        }
        self.assertEqual(byName["beta"], {"keys": 5})

    def test_diskFigures(self) -> None:
        """
        A member with a data directory shows whether it takes writes and is
        loading, its bytes on disk and its last snapshot's age; malformed
        sections are left out.
        """
        self.peers.answers["127.0.0.1:8001"] = {
            "keys": 5,
            "persistence": {
                "writable": False,
                "loading": False,
                "logBytes": 100,
                "snapshotBytes": 900,
                "lastSnapshot": {"age": 61.5, "entries": 3, "seconds": 0.25},
                "load": {"seconds": 1.5, "records": 10},
            },
        }
        byName = {
            m["name"]: m["stats"] for m in self.getJSON("/cluster/overview")["members"]
        }
        self.assertEqual(
            byName["beta"],
            {
                "keys": 5,
                "diskWritable": 0,
                "diskLoading": 0,
                "diskBytes": 1000,
                "snapshotAge": 61,
                "snapshotMs": 250,
                "loadMs": 1500,
            },
        )
        self.assertNotIn("diskWritable", byName["alpha"])
        self.peers.answers["127.0.0.1:8001"] = {
            "keys": 5,
            "persistence": {"writable": "yes", "loading": False},
        }
        self.clock.advance(60)
        byName = {
            m["name"]: m["stats"] for m in self.getJSON("/cluster/overview")["members"]
        }
        self.assertEqual(byName["beta"], {"keys": 5})

    def test_noRedisFigures(self) -> None:
        self.peers.answers["127.0.0.1:8001"] = {
            "keys": 5,
            "redis": {"connections": "three", "commands": None},
        }
        members = self.getJSON("/cluster/overview")["members"]
        for shown in (m["stats"] for m in members if m["stats"] is not None):
            self.assertFalse({"redisConnections", "redisCommands"} & set(shown))

    def test_cacheRequestsAreCounted(self) -> None:
        # This node's own store alone: the count is the point, not replication.
        for _ in range(3):
            self.get("/cache/missing", {"X-Is-Sync": ["true"]})
        self.get("/health")
        self.assertEqual(self.getJSON("/stats")["cacheRequests"], 3)
        self.assertEqual(
            self.getJSON("/cluster/overview")["members"][0]["stats"]["cacheRequests"],
            3,
        )


class HTTPStatsClientTests(SynchronousTestCase):
    def test_givesUpAfterTimeout(self) -> None:
        reactor = MemoryReactorClock()
        client = HTTPStatsClient(reactor)
        d = client.stats("127.0.0.1:8001")
        host, port = reactor.tcpClients[0][:2]
        self.assertEqual((host, port), ("127.0.0.1", 8001))
        reactor.advance(STATS_TIMEOUT * 0.9)
        self.assertNoResult(d)
        reactor.advance(STATS_TIMEOUT * 0.1)
        # Cancelled while connecting; either way the fan-out goes on without.
        self.failureResultOf(d, TimeoutError, ConnectingCancelledError)


class AssetTests(SynchronousTestCase):
    def test_assetsAreShipped(self) -> None:
        self.assertEqual(
            sorted(loadAssets()), ["dashboard.css", "dashboard.js", "index.html"]
        )

    def test_pageReferencesOnlyShippedAssets(self) -> None:
        page = loadAssets()["index.html"].body.decode()
        linked = set(re.findall(r'"/ui/([^"?]+)"', page))
        self.assertEqual(linked, {"dashboard.css", "dashboard.js"})
