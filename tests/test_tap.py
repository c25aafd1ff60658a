"""
Tests for L{disperse.tap}: whole parsed configurations, environment
fallbacks, bad values, and the service tree C{makeService} builds.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile

import pytest
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from disperse.cluster.peer.signatures import deriveSecret
from disperse.config import NodeConfig
from disperse.gossip.service import Membership
from disperse.node import Node
from disperse.resp.server import RespFactory
from disperse.security.tokens import TokenTable
from disperse.security.wiring import TokenReloader
from disperse.store.hlc import physicalMs
from disperse.tap import DEVELOPMENT_SECRET, Options, makeService
from disperse.testing import MemoryReactorWithUDP
from disperse.web.service import HTTPService


def parse(argv: list[str], environ: dict[str, str] | None = None) -> NodeConfig:
    options = Options(environ=environ or {})
    options.parseOptions(argv)
    return options.nodeConfig()


class OptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        config = parse(["--advertise", "10.1.2.3"])
        self.assertEqual(
            config,
            NodeConfig(
                nodeName=f"{socket.gethostname()}-7946",
                bindAddress="127.0.0.1",
                advertiseAddress="10.1.2.3",
                gossipPort=7946,
                httpEndpoint="tcp:8000:interface=127.0.0.1",
                peers=(),
                maxMemory=256_000_000,
                maxValueSize=4 * 1024 * 1024,
                maxKeySize=1024,
                accessLog=None,
                replicas=3,
                readConsistency="quorum",
                writeConsistency="quorum",
                replicaTimeout=1.0,
                clusterSecret=deriveSecret(DEVELOPMENT_SECRET),
            ),
        )

    def test_everyFlag(self) -> None:
        config = parse(
            [
                "--port=7001",
                "--http-port=9001",
                "--node-name=alpha",
                "--bind=127.0.0.1",
                "--peer=127.0.0.1:7000",
                "--peer=db.example:7002,[::1]:7003",
                "--max-memory=1GiB",
                "--max-value-size=512K",
                "--access-log=/tmp/access.log",
                "--replicas=all",
                "--read-consistency=one",
                "--write-consistency=all",
                "--replica-timeout=250ms",
                "--read-retry-after=40ms",
                "--forget-departed=2m",
                "--scrub-rate=500",
                "--cluster-secret=sixteen chars or more",
            ]
        )
        self.assertEqual(
            config,
            NodeConfig(
                nodeName="alpha",
                bindAddress="127.0.0.1",
                advertiseAddress="127.0.0.1",
                gossipPort=7001,
                httpEndpoint="tcp:9001:interface=127.0.0.1",
                peers=(("127.0.0.1", 7000), ("db.example", 7002), ("::1", 7003)),
                maxMemory=1024**3,
                maxValueSize=512 * 1024,
                maxKeySize=1024,
                accessLog="/tmp/access.log",
                replicas="all",
                readConsistency="one",
                writeConsistency="all",
                replicaTimeout=0.25,
                readRetryAfter=0.04,
                forgetDeparted=120.0,
                scrubRate=500,
                clusterSecret=deriveSecret("sixteen chars or more"),
            ),
        )

    def test_environmentFallbacks(self) -> None:
        environ = {
            "PORT": "7947",
            "HTTP_PORT": "8001",
            "PEER": "127.0.0.1:7946,127.0.0.1:7948",
            "NODE_NAME": "beta",
        }
        config = parse(["--bind=127.0.0.1"], environ)
        self.assertEqual(
            (config.gossipPort, config.httpEndpoint, config.peers, config.nodeName),
            (
                7947,
                "tcp:8001:interface=127.0.0.1",
                (("127.0.0.1", 7946), ("127.0.0.1", 7948)),
                "beta",
            ),
        )

    def test_flagsWinOverEnvironment(self) -> None:
        environ = {"PORT": "1", "HTTP_PORT": "2", "PEER": "a:3", "NODE_NAME": "env"}
        config = parse(
            ["--port=7000", "--http-port=8000", "--peer=b:4", "--node-name=flag"],
            environ,
        )
        self.assertEqual(
            (config.gossipPort, config.httpEndpoint, config.peers, config.nodeName),
            (7000, "tcp:8000:interface=127.0.0.1", (("b", 4),), "flag"),
        )

    def test_endpointDescription(self) -> None:
        config = parse(["--http-port", "tcp:0:interface=127.0.0.1"])
        self.assertEqual(config.httpEndpoint, "tcp:0:interface=127.0.0.1")

    def test_ipv6BindInEndpoint(self) -> None:
        config = parse(["--bind", "::1", "--http-port", "8000"])
        self.assertEqual(config.httpEndpoint, "tcp:8000:interface=\\:\\:1")

    def test_badValues(self) -> None:
        cases = [
            (["--port", "seventy"], "--port: 'seventy' is not a port number"),
            (["--port", "70000"], "--port: port 70000 is out of range 0-65535"),
            (["--http-port", "fast"], "--http-port: 'fast' is neither a port number"),
            (["--max-memory", "lots"], "--max-memory: 'lots' is not a size"),
            (["--max-memory", "0"], "--max-memory must be positive"),
            (
                ["--max-memory", "1MB", "--max-value-size", "2MB"],
                "--max-value-size must not exceed --max-memory",
            ),
            (["--peer", "host:port"], "--peer: 'port' is not a port number"),
            (["--peer", ":7946"], "--peer: ':7946' has no host"),
            (["--replicas", "0"], "--replicas:"),
            (["--read-consistency", "most"], "--read-consistency must be one"),
            (["--read-retry-after", "soon"], "--read-retry-after:"),
            (["--read-retry-after", "0"], "--read-retry-after must be positive"),
            (["--cluster-secret", "short"], "--cluster-secret:"),
            (["--scrub-rate", "fast"], "--scrub-rate: 'fast' is not a whole number"),
            (["--scrub-rate", "-1"], "--scrub-rate must not be negative"),
            (
                ["--bind", "0.0.0.0", "--advertise", "10.0.0.1"],
                "nodes listening beyond loopback need --cluster-secret",
            ),
        ]
        for argv, message in cases:
            with self.assertRaises(usage.UsageError) as raised:
                parse(argv)
            self.assertTrue(
                str(raised.exception).startswith(message), (argv, str(raised.exception))
            )

    def test_clusterSecretFromEnvironment(self) -> None:
        config = parse(
            ["--bind", "0.0.0.0", "--advertise", "10.0.0.1"],
            {"DISPERSE_CLUSTER_SECRET": "a secret of the whole cluster"},
        )
        self.assertEqual(
            config.clusterSecret, deriveSecret("a secret of the whole cluster")
        )

    def test_badEnvironment(self) -> None:
        with self.assertRaises(usage.UsageError):
            parse([], {"PORT": "x"})


class RedisOptionsTests(SynchronousTestCase):
    def test_offByDefault(self) -> None:
        config = parse([])
        self.assertEqual((config.redisEndpoint, config.redisIdleTimeout), (None, 300))

    def test_port(self) -> None:
        """
        A port number is served on the bind address, as for --http-port.
        """
        config = parse(["--redis-port", "6380", "--redis-idle-timeout", "0"])
        self.assertEqual(config.redisEndpoint, "tcp:6380:interface=127.0.0.1")
        self.assertEqual(config.redisIdleTimeout, 0)
        config = parse(["--bind", "::1", "--redis-port", "6380"])
        self.assertEqual(config.redisEndpoint, "tcp:6380:interface=\\:\\:1")

    def test_endpoint(self) -> None:
        config = parse(["--redis-port", "tcp:0:interface=127.0.0.2"])
        self.assertEqual(config.redisEndpoint, "tcp:0:interface=127.0.0.2")

    def test_sameTLSAsHTTP(self) -> None:
        """
        When the HTTP API is served over TLS, a Redis port number is too,
        with the same certificate and settings.
        """
        for http in (
            "ssl:8443:privateKey=key.pem:certKey=cert.pem",
            "ssl:port=8443:interface=0.0.0.0:privateKey=key.pem:certKey=cert.pem",
            "ssl:8443:key.pem:cert.pem",
        ):
            config = parse(["--http-port", http, "--redis-port", "6380"])
            self.assertEqual(
                config.redisEndpoint,
                "ssl:6380:interface=127.0.0.1:privateKey=key.pem:certKey=cert.pem",
                http,
            )
        config = parse(
            [
                "--http-port",
                "ssl:8443:privateKey=C\\:\\\\k.pem:extraCertChain=chain.pem",
                "--redis-port",
                "6380",
            ]
        )
        self.assertEqual(
            config.redisEndpoint,
            "ssl:6380:interface=127.0.0.1:privateKey=C\\:\\\\k.pem"
            ":extraCertChain=chain.pem",
        )

    def test_bad(self) -> None:
        cases = [
            (["--redis-port", "fast"], "--redis-port: 'fast' is neither a port"),
            (["--redis-port", "70000"], "--redis-port: port 70000 is out of range"),
            (["--redis-idle-timeout", "soon"], "--redis-idle-timeout:"),
            (["--redis-idle-timeout", "-1"], "--redis-idle-timeout: '-1' is not"),
        ]
        for argv, message in cases:
            with self.assertRaises(usage.UsageError) as raised:
                parse(argv)
            self.assertTrue(
                str(raised.exception).startswith(message), (argv, str(raised.exception))
            )


class MakeServiceTests(SynchronousTestCase):
    def test_tree(self) -> None:
        """
        One node, with the HTTP service listening on the configured
        endpoint, and the node learning the port it got.
        """
        options = Options(environ={})
        options.parseOptions(
            [
                "--http-port",
                "tcp:8123:interface=127.0.0.1",
                "--bind",
                "127.0.0.1",
                "--port",
                "7001",
            ]
        )
        reactor = MemoryReactorWithUDP()
        node = makeService(options, reactor)
        assert isinstance(node, Node)
        [http, peer, membership] = list(node)
        assert isinstance(http, HTTPService)
        assert isinstance(peer, HTTPService)
        assert isinstance(membership, Membership)
        node.privilegedStartService()
        node.startService()
        # The HTTP API, the node-to-node API (on a port the OS picks) and
        # gossip's TCP side.
        self.assertEqual(
            [(port, interface) for port, _, _, interface in reactor.tcpServers],
            [(8123, "127.0.0.1"), (0, "127.0.0.1"), (7001, "127.0.0.1")],
        )
        [udp] = reactor.udpPorts
        self.assertEqual((udp.interface, udp.port), ("127.0.0.1", 7001))
        self.assertEqual(node.httpPort, 8123)
        # What the membership gossips about this node: both ports as bound.
        assert membership.swim is not None and peer.port is not None
        me = membership.swim.member(node.config.nodeName)
        assert me is not None
        peerPort = getattr(peer.port.getHost(), "port", None)
        self.assertEqual(
            json.loads(me.meta),
            {
                "http_addr": "127.0.0.1:8123",
                "http_port": 8123,
                "peer_addr": f"127.0.0.1:{peerPort}",
                "zone": "",
            },
        )
        self.successResultOf(node.stopService())
        self.assertFalse(udp.listening)


class RedisServiceTests(SynchronousTestCase):
    def test_redisPort(self) -> None:
        """
        With --redis-port the node listens for Redis clients, knows the
        port it got, gossips it, and counts what it serves in respStats.
        """
        options = Options(environ={})
        options.parseOptions(
            ["--http-port", "8123", "--port", "7001", "--redis-port", "6390"]
        )
        reactor = MemoryReactorWithUDP()
        node = makeService(options, reactor)
        assert isinstance(node, Node)
        [_, redis, _, membership] = list(node)
        assert isinstance(redis, HTTPService)
        assert isinstance(membership, Membership)
        node.privilegedStartService()
        node.startService()
        self.assertIn(
            (6390, "127.0.0.1"), [(p, i) for p, _, _, i in reactor.tcpServers]
        )
        factory = next(f for p, f, _, _ in reactor.tcpServers if p == 6390)
        assert isinstance(factory, RespFactory)
        self.assertEqual(node.redisPort, 6390)
        self.assertIs(node.respStats, factory.stats)
        assert membership.swim is not None
        me = membership.swim.member(node.config.nodeName)
        assert me is not None
        self.assertEqual(json.loads(me.meta)["redis_addr"], "127.0.0.1:6390")
        self.assertEqual(factory.idleTimeout, 300)
        self.assertIsNone(factory.tokens)
        self.successResultOf(node.stopService())

    def test_sharesTheGuard(self) -> None:
        """
        The Redis port reads the HTTP guard's tokens at each use, so a
        reload of the token file applies to both.
        """
        # A directory of the system's: under pytest, mktemp() would write
        # into the checkout.
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        tokens = os.path.join(directory, "tokens")
        with open(tokens, "w", encoding="utf-8") as f:
            f.write("a" * 32 + " read\n")
        options = Options(environ={})
        options.parseOptions(
            ["--port", "7001", "--redis-port", "6390", "--auth-tokens", tokens]
        )
        reactor = MemoryReactorWithUDP()
        node = makeService(options, reactor)
        assert isinstance(node, Node)
        node.privilegedStartService()
        node.startService()
        self.addCleanup(node.stopService)
        factory = next(f for p, f, _, _ in reactor.tcpServers if p == 6390)
        assert isinstance(factory, RespFactory)
        [guard] = [s._guard for s in node if isinstance(s, TokenReloader)]
        self.assertIs(factory.tokens, guard.tokens)
        guard.tokens = TokenTable()
        self.assertIs(factory.tokens, guard.tokens)

    def test_off(self) -> None:
        options = Options(environ={})
        options.parseOptions(["--port", "7001"])
        node = makeService(options, MemoryReactorWithUDP())
        assert isinstance(node, Node)
        self.assertIsNone(node.respStats)
        self.assertEqual(len(list(node)), 3)


class HTTPSchemeTests(SynchronousTestCase):
    def test_sslEndpointIsHTTPS(self) -> None:
        """
        Members learn whether a node's API is served over TLS from the
        endpoint it listens on.
        """
        self.assertTrue(NodeConfig("a", httpEndpoint="ssl:8443:privateKey=k").httpsAPI)
        self.assertTrue(NodeConfig("a", httpEndpoint="SSL:8443").httpsAPI)
        self.assertFalse(NodeConfig("a", httpEndpoint="tcp:8000").httpsAPI)


class ClockOffsetTests(SynchronousTestCase):
    def test_offsetFromEnvironment(self) -> None:
        """
        C{DISPERSE_CLOCK_OFFSET} shifts the store's wall clock, so versions
        and expiry times follow the offset; the reactor's time does not move.
        """
        options = Options(environ={"DISPERSE_CLOCK_OFFSET": "-2.5"})
        options.parseOptions(["--port", "7001", "--http-port", "8123"])
        self.assertEqual(options["clock-offset"], -2.5)
        reactor = MemoryReactorWithUDP()
        reactor.advance(100)
        node = makeService(options, reactor)
        assert isinstance(node, Node)
        self.assertEqual(node.store.nowMs(), 97_500)
        self.assertEqual(physicalMs(node.store.hlc.now()), 97_500)
        self.assertEqual(reactor.seconds(), 100)

    def test_noOffset(self) -> None:
        options = Options(environ={})
        options.parseOptions([])
        self.assertEqual(options["clock-offset"], 0.0)

    def test_badOffset(self) -> None:
        for bad in ("soon", "nan", "inf"):
            options = Options(environ={"DISPERSE_CLOCK_OFFSET": bad})
            with self.assertRaises(usage.UsageError):
                options.parseOptions([])


def test_badFlagRaisesOutsideTwistd() -> None:
    with pytest.raises(usage.UsageError, match="--max-memory: 'banana'"):
        Options(environ={}).parseOptions(["--max-memory", "banana"])
