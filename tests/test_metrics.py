"""
Tests for L{disperse.metrics} and L{disperse.web.metrics}: requests go
through the real site and resource (an HTTP channel on a string
transport), and every scrape is read back with C{prometheus_client}'s own
parser.
"""

from __future__ import annotations

from prometheus_client.exposition import CONTENT_TYPE_LATEST, CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from disperse.cluster.coordinator import Consistency
from disperse.cluster.members import MemberDirectory
from disperse.config import NodeConfig
from disperse.gossip.config import GossipSettings
from disperse.gossip.crypto import Keyring
from disperse.gossip.messages import NodeState
from disperse.gossip.service import Membership
from disperse.gossip.swim import Member
from disperse.metrics import LATENCY_BUCKETS, NodeMetrics, RequestStats
from disperse.node import Node
from disperse.resp.stats import RespStats
from disperse.testing import MemoryReactorWithUDP
from disperse.testing.node import makeNode
from disperse.web.api import CacheAPI
from disperse.web.metrics import MeteredSite, MetricsPage
from disperse.web.routes import routeOf, segments
from tests.cluster.test_coordinator import Cluster

START = 1_700_000_000.0
# What the fake timer advances by between two readings: one request's
# latency, which falls in the 2.5 ms bucket.
TICK = 0.002

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """
    The families (name to type) and samples of an exposition.
    """
    families = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


class Answer:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        status, *lines = head.decode("latin-1").split("\r\n")
        self.code = int(status.split()[1])
        self.headers = {
            name.lower(): text.strip()
            for name, _, text in (line.partition(":") for line in lines)
        }


class FakeTimer:
    """
    A monotonic clock that moves on by L{TICK} each time it is read.
    """

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += TICK
        return self.now


class MetricsTestsMixin:
    def makeSite(self, node: Node) -> None:
        self.metrics = NodeMetrics(node)
        api = CacheAPI(node, metrics=MetricsPage(self.metrics.registry))
        self.site = MeteredSite(
            api.resource(), self.metrics.requests, timer=FakeTimer()
        )

    def send(self, request: bytes) -> Answer:
        """
        One request over a fresh connection to the site; its answer.
        """
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
        assert channel is not None
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 1234))
        channel.makeConnection(transport)
        channel.dataReceived(request)
        return Answer(transport.value())

    def call(self, method: str, path: str, body: bytes = b"") -> Answer:
        headers = f"{method} {path} HTTP/1.1\r\nHost: node.test\r\n"
        if body:
            headers += (
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            )
        return self.send(headers.encode() + b"\r\n" + body)

    def scrape(self) -> tuple[dict[str, str], Samples]:
        answer = self.call("GET", "/metrics")
        assert answer.code == 200, answer.body
        # No Accept header: the classic text format, as prometheus_client
        # chooses it.
        assert answer.headers["content-type"] == CONTENT_TYPE_PLAIN_0_0_4
        return parse(answer.body.decode("utf-8"))


class NodeMetricsTests(MetricsTestsMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.node = makeNode(
            NodeConfig(
                nodeName="alpha",
                advertiseAddress="127.0.0.1",
                zone="z1",
                maxMemory=1024 * 1024,
                maxValueSize=1024,
            ),
            self.clock,
        )
        self.makeSite(self.node)

    def test_everyFamily(self) -> None:
        """
        A scrape of a fresh node has every family the operations guide
        lists, with Prometheus's types, and nothing else.
        """
        families, _ = self.scrape()
        self.assertEqual(
            families,
            {
                "disperse_node_info": "gauge",
                "disperse_store_keys": "gauge",
                "disperse_store_tombstones": "gauge",
                "disperse_store_bytes": "gauge",
                "disperse_store_max_bytes": "gauge",
                "disperse_store_hits": "counter",
                "disperse_store_misses": "counter",
                "disperse_store_sets": "counter",
                "disperse_store_deletes": "counter",
                "disperse_store_evictions": "counter",
                "disperse_store_expirations": "counter",
                "disperse_members": "gauge",
                "disperse_member_events": "counter",
                "disperse_replication_operations": "counter",
                "disperse_replication_under_replicated": "counter",
                "disperse_replication_acks": "counter",
                "disperse_replication_read_repairs": "counter",
                "disperse_replication_read_retries": "counter",
                "disperse_replication_read_retries_skipped": "counter",
                "disperse_replication_applied": "counter",
                "disperse_replication_remote_failures": "counter",
                "disperse_replication_no_majority": "counter",
                "disperse_replication_members": "gauge",
                "disperse_replication_known_members": "gauge",
                "disperse_replication_partitions_catching_up": "gauge",
                "disperse_hints_queued": "counter",
                "disperse_hints_delivered": "counter",
                "disperse_hints_dropped": "counter",
                "disperse_hints_pending": "gauge",
                "disperse_hints_bytes": "gauge",
                "disperse_antientropy_rounds": "counter",
                "disperse_antientropy_rounds_overrun": "counter",
                "disperse_antientropy_roots_compared": "counter",
                "disperse_antientropy_exchanges": "counter",
                "disperse_antientropy_differing": "counter",
                "disperse_antientropy_catch_ups": "counter",
                "disperse_antientropy_failures": "counter",
                "disperse_antientropy_partitions_released": "counter",
                "disperse_antientropy_keys_released": "counter",
                "disperse_antientropy_partitions_kept": "counter",
                "disperse_antientropy_releases_deferred": "counter",
                "disperse_antientropy_repairs": "counter",
                "disperse_antientropy_in_flight": "gauge",
                "disperse_antientropy_queued": "gauge",
                "disperse_integrity_failures": "counter",
                "disperse_integrity_scrubbed": "counter",
                "disperse_integrity_scrub_passes": "counter",
                "disperse_integrity_replaced": "counter",
                "disperse_integrity_leaves_resummed": "counter",
                "disperse_rate_limited": "counter",
                "disperse_peer_calls_served": "counter",
                "disperse_peer_calls_refused": "counter",
                "disperse_http_requests": "counter",
                "disperse_http_request_duration_seconds": "histogram",
                "disperse_http_requests_in_flight": "gauge",
            },
        )

    def test_redisFamilies(self) -> None:
        """
        With the Redis front end served, its commands are counted by command
        and status, timed in a histogram per command, and its connections
        counted; the families are absent while it is not served.
        """
        stats = RespStats(bounds=(0.001, 0.01), connections=3, accepted=9)
        stats.rejected = 2
        stats.protocolErrors = 1
        stats.rateLimited = 4
        stats.record("get", 0.0005)
        stats.record("get", 0.005)
        stats.record("get", 0.02, failed=True)
        stats.record("client|setname", 0.0001)
        self.node.respStats = stats
        families, samples = self.scrape()
        self.assertEqual(
            {name: kind for name, kind in families.items() if "_redis_" in name},
            {
                "disperse_redis_commands": "counter",
                "disperse_redis_command_duration_seconds": "histogram",
                "disperse_redis_connections": "gauge",
                "disperse_redis_connections_accepted": "counter",
                "disperse_redis_connections_rejected": "counter",
                "disperse_redis_protocol_errors": "counter",
                "disperse_redis_idle_closed": "counter",
                "disperse_redis_rate_limited": "counter",
            },
        )
        commands = "disperse_redis_commands_total"
        self.assertEqual(value(samples, commands, command="get", status="ok"), 2)
        self.assertEqual(value(samples, commands, command="get", status="error"), 1)
        self.assertEqual(
            value(samples, commands, command="client|setname", status="ok"), 1
        )
        buckets = "disperse_redis_command_duration_seconds_bucket"
        self.assertEqual(
            [
                value(samples, buckets, command="get", le=le)
                for le in ("0.001", "0.01", "+Inf")
            ],
            [1, 2, 3],
        )
        self.assertAlmostEqual(
            value(
                samples, "disperse_redis_command_duration_seconds_sum", command="get"
            ),
            0.0255,
        )
        self.assertEqual(value(samples, "disperse_redis_connections"), 3)
        self.assertEqual(value(samples, "disperse_redis_connections_accepted_total"), 9)
        self.assertEqual(value(samples, "disperse_redis_connections_rejected_total"), 2)
        self.assertEqual(value(samples, "disperse_redis_protocol_errors_total"), 1)
        self.assertEqual(value(samples, "disperse_redis_rate_limited_total"), 4)
        self.node.respStats = None
        families, _ = self.scrape()
        self.assertFalse([name for name in families if "_redis_" in name])

    def test_requestsByRouteMethodStatus(self) -> None:
        self.assertEqual(self.call("PUT", "/cache/k", b'{"value": "v"}').code, 200)
        self.assertEqual(self.call("GET", "/cache/k").body, b"v")
        self.assertEqual(self.call("GET", "/cache/k").code, 200)
        self.assertEqual(self.call("GET", "/cache/nothing").code, 404)
        self.assertEqual(self.call("GET", "/cache/members").code, 200)
        self.assertEqual(self.call("GET", "/health").code, 200)
        self.assertEqual(self.call("GET", "/no/such/route").code, 404)
        self.assertEqual(self.call("BREW", "/cache/k").code, 405)
        _, samples = self.scrape()
        requests = "disperse_http_requests_total"
        for route, method, status, count in [
            ("/cache/{key}", "PUT", "200", 1),
            ("/cache/{key}", "GET", "200", 2),
            ("/cache/{key}", "GET", "404", 1),
            ("/cache/members", "GET", "200", 1),
            ("/health", "GET", "200", 1),
            ("other", "GET", "404", 1),
            ("/cache/{key}", "other", "405", 1),
        ]:
            self.assertEqual(
                value(samples, requests, route=route, method=method, status=status),
                count,
                (route, method, status),
            )
        # The scrape counts itself once it is answered, so not yet here.
        self.assertNotIn(
            (
                requests,
                frozenset(
                    {"route": "/metrics", "method": "GET", "status": "200"}.items()
                ),
            ),
            samples,
        )
        self.assertEqual(value(samples, "disperse_store_hits_total"), 2)
        self.assertEqual(value(samples, "disperse_store_misses_total"), 1)
        self.assertEqual(value(samples, "disperse_store_keys"), 1)
        self.assertEqual(value(samples, "disperse_store_max_bytes"), 1024 * 1024)
        self.assertEqual(
            value(
                samples, "disperse_node_info", node="alpha", zone="z1", version="0.1.0"
            ),
            1,
        )
        self.assertEqual(value(samples, "disperse_http_requests_in_flight"), 1)

    def test_latencyHistogram(self) -> None:
        """
        Latency is the time from a whole request received to its answer,
        by route and method, in buckets from half a millisecond to 5 s.
        """
        for _ in range(3):
            self.call("GET", "/cache/k")
        self.call("GET", "/stats")
        _, samples = self.scrape()
        name = "disperse_http_request_duration_seconds"
        key = {"route": "/cache/{key}", "method": "GET"}
        self.assertEqual(value(samples, name + "_count", **key), 3)
        self.assertAlmostEqual(value(samples, name + "_sum", **key), 3 * TICK)
        self.assertEqual(value(samples, name + "_bucket", le="0.001", **key), 0)
        self.assertEqual(value(samples, name + "_bucket", le="0.0025", **key), 3)
        self.assertEqual(value(samples, name + "_bucket", le="+Inf", **key), 3)
        self.assertEqual(
            value(samples, name + "_count", route="/stats", method="GET"), 1
        )
        self.assertEqual(LATENCY_BUCKETS[0], 0.0005)
        self.assertEqual(LATENCY_BUCKETS[-1], 5.0)

    def test_headAndOtherMethodsOnMetrics(self) -> None:
        head = self.call("HEAD", "/metrics")
        self.assertEqual((head.code, head.body), (200, b""))
        self.assertEqual(self.call("POST", "/metrics").code, 405)

    def test_textFormatVersionOnRequest(self) -> None:
        answer = self.send(
            b"GET /metrics HTTP/1.1\r\nHost: node.test\r\n"
            b"Accept: text/plain; version=1.0.0\r\n\r\n"
        )
        self.assertTrue(answer.headers["content-type"].startswith(CONTENT_TYPE_LATEST))
        families, _ = parse(answer.body.decode("utf-8"))
        self.assertIn("disperse_store_keys", families)

    def test_openMetricsOnRequest(self) -> None:
        answer = self.send(
            b"GET /metrics HTTP/1.1\r\nHost: node.test\r\n"
            b"Accept: application/openmetrics-text; version=1.0.0\r\n\r\n"
        )
        self.assertTrue(
            answer.headers["content-type"].startswith("application/openmetrics-text")
        )
        self.assertTrue(answer.body.endswith(b"# EOF\n"))

    def test_clientGoneBeforeAnswer(self) -> None:
        """
        A request whose client goes away before it is answered is counted
        with status C{disconnected}.
        """

        class Never(Resource):
            isLeaf = True

            def render(self, request: Request) -> int:
                return NOT_DONE_YET

        site = MeteredSite(Never(), RequestStats(), timer=FakeTimer())
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        assert channel is not None
        channel.makeConnection(StringTransport())
        channel.dataReceived(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(site.inFlight, 1)
        channel.connectionLost(Failure(ConnectionError("gone")))
        self.assertEqual(site.requests.count("other", b"GET", "disconnected"), 1)
        self.assertEqual(site.inFlight, 0)

    def test_rateLimitedFedLater(self) -> None:
        _, samples = self.scrape()
        self.assertEqual(value(samples, "disperse_rate_limited_total"), 0)
        rejected = [0]
        self.metrics.collector.rateLimited = lambda: rejected[0]
        rejected[0] = 7
        _, samples = self.scrape()
        self.assertEqual(value(samples, "disperse_rate_limited_total"), 7)

    def test_memberEvents(self) -> None:
        member = Member(
            name="beta",
            host="127.0.0.2",
            port=7946,
            meta=b"",
            incarnation=1,
            state=NodeState.dead,
            stateChange=START,
        )
        self.node.directory.memberJoined(member)
        self.node.directory.memberFailed(member)
        self.node.directory.memberFailed(member)
        _, samples = self.scrape()
        events = "disperse_member_events_total"
        self.assertEqual(value(samples, events, event="joined"), 1)
        self.assertEqual(value(samples, events, event="failed"), 2)
        self.assertEqual(value(samples, events, event="left"), 0)

    def test_integrity(self) -> None:
        """
        Damaged records by source, and what the scrub checked: one series
        per source, present at zero.
        """
        integrity = self.node.store.integrity
        integrity.peer = 2
        integrity.disk = 1
        integrity.scrubbed = 5000
        _, samples = self.scrape()
        failures = "disperse_integrity_failures_total"
        self.assertEqual(value(samples, failures, source="peer"), 2)
        self.assertEqual(value(samples, failures, source="scrub"), 0)
        self.assertEqual(value(samples, failures, source="disk"), 1)
        self.assertEqual(value(samples, "disperse_integrity_scrubbed_total"), 5000)
        stats = self.node.stats()["integrity"]
        self.assertEqual(
            (stats["peer"], stats["disk"], stats["scrubbed"], stats["scrubRate"]),
            (2, 1, 5000, 10_000),
        )

    def test_registryPerNode(self) -> None:
        """
        Two nodes in one process keep their metrics apart.
        """
        other = NodeMetrics(
            makeNode(NodeConfig(nodeName="beta", maxMemory=1024), self.clock)
        )
        self.call("PUT", "/cache/k", b'{"value": "v"}')
        _, samples = self.scrape()
        self.assertEqual(value(samples, "disperse_store_keys"), 1)
        theirs = parse(
            MetricsPage(other.registry).render(self.fakeGet()).decode("utf-8")
        )[1]
        self.assertEqual(value(theirs, "disperse_store_keys"), 0)

    def fakeGet(self) -> Request:
        from twisted.web.test.requesthelper import DummyRequest

        request: Request = DummyRequest([b"metrics"])  # type: ignore[assignment]
        return request


class GossipMetricsTests(MetricsTestsMixin, SynchronousTestCase):
    """
    A node with gossip membership exports its traffic and state machine.
    """

    def setUp(self) -> None:
        settings = GossipSettings(keyring=Keyring(b"k" * 16, [b"o" * 16]))
        config = NodeConfig(nodeName="alpha", gossip=settings)
        reactor = MemoryReactorWithUDP()
        directory = MemberDirectory()
        self.membership = Membership(
            name="alpha",
            bindAddress="127.0.0.1",
            advertiseAddress="127.0.0.1",
            port=7946,
            seeds=[],
            settings=settings,
            reactor=reactor,
            meta=lambda: b"{}",
            listener=directory,
        )
        self.node = makeNode(
            config, reactor, directory=directory, membership=self.membership
        )
        self.node.startService()
        self.addCleanup(self.node.stopService)
        self.makeSite(self.node)

    def test_gossipFamilies(self) -> None:
        self.membership.counters.packetsIn = 5
        self.membership.counters.bytesOut = 300
        self.membership.counters.decryptFailures = 2
        families, samples = self.scrape()
        for name in [
            "disperse_gossip_packets",
            "disperse_gossip_bytes",
            "disperse_gossip_streams",
            "disperse_gossip_bad_packets",
            "disperse_gossip_decrypt_failures",
            "disperse_gossip_bad_streams",
            "disperse_gossip_stream_timeouts",
            "disperse_gossip_probes",
            "disperse_gossip_probe_failures",
            "disperse_gossip_indirect_probes",
            "disperse_gossip_stream_probes",
            "disperse_gossip_suspicions",
            "disperse_gossip_refutations",
            "disperse_gossip_push_pulls",
            "disperse_gossip_bad_messages",
        ]:
            self.assertEqual(families.get(name), "counter", name)
        self.assertEqual(families["disperse_gossip_health_score"], "gauge")
        self.assertEqual(families["disperse_gossip_keys"], "gauge")
        self.assertEqual(
            value(samples, "disperse_gossip_packets_total", direction="in"), 5
        )
        self.assertEqual(
            value(samples, "disperse_gossip_bytes_total", direction="out"), 300
        )
        self.assertEqual(value(samples, "disperse_gossip_decrypt_failures_total"), 2)
        self.assertEqual(value(samples, "disperse_gossip_keys"), 2)
        self.assertEqual(value(samples, "disperse_members", state="alive"), 1)
        self.assertEqual(value(samples, "disperse_members", state="dead"), 0)


class ReplicationCountersTests(SynchronousTestCase):
    def test_acksFromOtherReplicas(self) -> None:
        cluster = Cluster()
        cluster.network.down.add("n2")
        self.assertTrue(cluster.put("n0", "k", b"v", Consistency.quorum).ok)
        cluster.settle()
        counters = cluster.nodes["n0"].counters
        self.assertEqual(counters.acks, 1)
        self.assertGreaterEqual(counters.remoteFailures, 1)


class RouteTests(SynchronousTestCase):
    def test_routes(self) -> None:
        for method, path, route in [
            (b"GET", b"/cache/a/b", "/cache/{key}"),
            (b"GET", b"/cache/members", "/cache/members"),
            (b"PUT", b"/cache/members", "/cache/{key}"),
            (b"POST", b"/cluster/keys/install", "/cluster/keys/install"),
            (b"GET", b"/ui/app.js", "/ui"),
            (b"GET", b"/../etc/passwd", "other"),
            (b"POST", b"/internal/v1/apply", "other"),
        ]:
            self.assertEqual(routeOf(method, segments(path)).label, route, path)
