"""
The C{twistd disperse} command: options, environment fallbacks, and wiring
one L{Node} to its front ends. This is the only place that resolves the
global reactor.
"""

from __future__ import annotations

import base64
import binascii
import gc
import ipaddress
import json
import math
import os
import random
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, NoReturn

from twisted.application.service import IService
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ServerEndpoint,
    serverFromString,
)
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorCore,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.python import usage

from disperse.cluster.members import Advertisement, MemberDirectory
from disperse.cluster.peer.client import HTTPPeerClient
from disperse.cluster.peer.server import PeerAPI, PeerServerFactory
from disperse.cluster.peer.signatures import Signer, Verifier, deriveSecret
from disperse.cluster.placement import parseReplicas
from disperse.config import NodeConfig
from disperse.gossip.config import PROFILES, GossipSettings
from disperse.gossip.crypto import Keyring
from disperse.gossip.service import Membership
from disperse.logs import LEVELS, setLevel
from disperse.metrics import NodeMetrics
from disperse.node import Node
from disperse.persist.datadir import DataDir, DataDirError
from disperse.persist.log import FSYNC_MODES
from disperse.persist.service import Persistence, ThreadSyncer
from disperse.resp.dispatch import Dispatcher
from disperse.resp.server import RespFactory, wireLimits
from disperse.resp.stats import RespStats
from disperse.security.limits import HTTPLimits
from disperse.security.options import SECURITY_OPTIONS, SecurityConfig, parseSecurity
from disperse.security.tls import TLSConfigError, loadClusterTLS
from disperse.security.wiring import TokenReloader, makeLimits, warnIfOpen
from disperse.store.integrity import DEFAULT_SCRUB_RATE
from disperse.units import parseDuration, parseHostPort, parsePort, parseSize
from disperse.web.api import JSON_BODY_SLACK, CacheAPI
from disperse.web.auth import RequestGuard, makeGuard
from disperse.web.dashboard import HTTPStatsClient
from disperse.web.metrics import MeteredSite, MetricsPage
from disperse.web.service import HTTPService

DEFAULT_GOSSIP_PORT = 7946
DEFAULT_HTTP_PORT = 8000
DEFAULT_REDIS_IDLE_TIMEOUT = 300.0
DEFAULT_MAX_MEMORY = "256MB"
DEFAULT_MAX_VALUE_SIZE = "4MiB"
MAX_KEY_SIZE = 1024
# The cluster secret of nodes bound to loopback when none is given.
DEVELOPMENT_SECRET = "disperse development cluster on one host"  # noqa: S105

# Not a flag: the fault bed runs nodes with their wall clocks this many
# seconds off (nodes on one machine share the system clock).
CLOCK_OFFSET_VARIABLE = "DISPERSE_CLOCK_OFFSET"

# Flags that fall back to the environment variables the original used.
ENVIRONMENT = {"port": "PORT", "http-port": "HTTP_PORT", "node-name": "NODE_NAME"}


def _guessAdvertiseAddress(bind: str) -> str:
    """
    The address peers should use when we bind to a wildcard: the one the
    kernel would use to reach the outside, found without sending anything.
    """
    if bind not in ("0.0.0.0", "::", ""):
        return bind
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routing lookup only
        address: str = probe.getsockname()[0]
        return address
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


def _isLoopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _resolveAddress(host: str) -> str:
    """
    The IP address for C{host}: gossip carries addresses, not names.
    """
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        return socket.gethostbyname(host)
    except OSError as e:
        raise usage.UsageError(f"--advertise: cannot resolve {host!r}: {e}") from None


def _isSSL(endpoint: str) -> bool:
    return endpoint.split(":", 1)[0].strip().lower() == "ssl"


def _splitEndpoint(description: str) -> list[str]:
    """
    The fields of an endpoint description, split at the colons that are
    not escaped (escapes are kept).
    """
    fields = [""]
    escaped = False
    for char in description:
        if escaped:
            fields[-1] += char
            escaped = False
        elif char == "\\":
            fields[-1] += char
            escaped = True
        elif char == ":":
            fields.append("")
        else:
            fields[-1] += char
    return fields


# The positional arguments of Twisted's ssl: server endpoint, in order.
_SSL_POSITIONAL = ("port", "privateKey", "certKey", "sslmethod", "interface", "backlog")


def _sameTLS(httpEndpoint: str, port: int, interface: str) -> str:
    """
    An ssl: endpoint on C{port} and C{interface} with the certificate and
    every other TLS setting of C{httpEndpoint} (an ssl: endpoint).
    """
    settings: list[str] = []
    positional = 0
    for field in _splitEndpoint(httpEndpoint)[1:]:
        name, equals, value = field.partition("=")
        if not equals:
            if positional >= len(_SSL_POSITIONAL):
                raise usage.UsageError(
                    f"--http-port: {httpEndpoint!r} has too many fields"
                )
            name, value = _SSL_POSITIONAL[positional], field
            positional += 1
        if name not in ("port", "interface"):
            settings.append(f"{name}={value}")
    return ":".join(["ssl", str(port), f"interface={interface}", *settings])


# How a node is started, as messages about its flags name it.
COMMAND = "twistd disperse"


class Options(usage.Options):
    """
    Options of C{twistd disperse}. Flags win over the environment variables
    C{PORT}, C{HTTP_PORT}, C{PEER} and C{NODE_NAME}.
    """

    synopsis = "[options]"
    longdesc = (
        "Run one Disperse node: a gossip member on a UDP port and an HTTP "
        "cache API. Start more nodes with --peer pointing at any member."
    )

    optParameters = [
        [
            "port",
            "p",
            None,
            f"Gossip port, UDP (default {DEFAULT_GOSSIP_PORT}; env PORT).",
        ],
        [
            "http-port",
            None,
            None,
            "HTTP API: a port number or a Twisted endpoint such as "
            "tcp:8000:interface=127.0.0.1 "
            f"(default {DEFAULT_HTTP_PORT}; env HTTP_PORT).",
        ],
        [
            "redis-port",
            None,
            None,
            "Redis protocol port (RESP2/3), off unless given: a port number "
            "or a Twisted endpoint such as tcp:6380:interface=127.0.0.1. A "
            "port number is served over TLS, with the HTTP API's certificate, "
            "when --http-port is an ssl: endpoint.",
        ],
        [
            "redis-idle-timeout",
            None,
            f"{DEFAULT_REDIS_IDLE_TIMEOUT:g}s",
            "A Redis connection with no traffic for this long is closed (0: never).",
        ],
        [
            "node-name",
            "n",
            None,
            "Unique name of this node (default host-port; env NODE_NAME).",
        ],
        [
            "bind",
            "b",
            "127.0.0.1",
            "Address to listen on; serving other hosts needs --cluster-secret.",
        ],
        [
            "advertise",
            "a",
            None,
            "Address other nodes use to reach this one (default: the bind "
            "address, or this host's outbound address when binding to all).",
        ],
        [
            "max-memory",
            None,
            DEFAULT_MAX_MEMORY,
            "Byte budget of the store; least recently used keys are evicted "
            "beyond it (e.g. 512MB, 2GiB).",
        ],
        [
            "max-value-size",
            None,
            DEFAULT_MAX_VALUE_SIZE,
            "Largest value accepted; larger PUTs get 413.",
        ],
        [
            "data-dir",
            None,
            None,
            "Keep the store on disk in this directory (an append-only log and"
            " snapshots), loaded back at start; off unless given.",
        ],
        [
            "fsync",
            None,
            "everysec",
            "When the log is synced to disk: always (before each write is"
            " acknowledged), everysec, or no (when the kernel likes).",
        ],
        ["access-log", None, None, "Write an HTTP access log to this file."],
        ["zone", None, "", "Zone (rack, data centre) label of this node."],
        [
            "replicas",
            "r",
            "3",
            "Copies of each key (capped at the cluster size), or 'all'.",
        ],
        ["read-consistency", None, "quorum", "Default for reads: one, quorum, all."],
        ["write-consistency", None, "quorum", "Default for writes: one, quorum, all."],
        [
            "replica-timeout",
            None,
            "1s",
            "How long a coordinator waits for replicas.",
        ],
        [
            "read-retry-after",
            None,
            "100ms",
            "How long a read waits for a replica before it asks one more"
            " (at least --replica-timeout: never).",
        ],
        [
            "anti-entropy-interval",
            None,
            "30s",
            "Time between Merkle comparisons of each partition with a co-replica.",
        ],
        [
            "forget-departed",
            None,
            "10m",
            "How long a member that vanished without leaving still counts"
            " towards the cluster size that quorums need a majority of.",
        ],
        [
            "handoff-timeout",
            None,
            "30s",
            "How long a stopping node may spend handing its partitions to their"
            " next owners (0: leave at once).",
        ],
        [
            "scrub-rate",
            None,
            str(DEFAULT_SCRUB_RATE),
            "Stored entries re-checked against their content hashes a second"
            " (0: no scrub).",
        ],
        [
            "cluster-secret",
            None,
            None,
            "Secret (16+ characters) authenticating node-to-node traffic; the "
            "same on every node (env DISPERSE_CLUSTER_SECRET).",
        ],
        [
            "log-level",
            None,
            "info",
            "Log events at this level and above: debug, info, warn, error.",
        ],
        [
            "profile",
            None,
            "lan",
            "Gossip timing preset: local, lan or wan (memberlist's presets).",
        ],
        [
            "label",
            None,
            "",
            "Gossip label: nodes with different labels ignore each other.",
        ],
        [
            "gossip-key",
            None,
            None,
            "Encrypt gossip with this base64 AES key of 16, 24 or 32 bytes "
            "(env DISPERSE_GOSSIP_KEY).",
        ],
        [
            "keyring-file",
            None,
            None,
            "JSON file with a list of base64 gossip keys, the first used to "
            "encrypt, all tried to decrypt.",
        ],
    ]

    # Knobs that override the chosen --profile: (flag, GossipConfig field,
    # parser, help).
    gossipKnobs: list[tuple[str, str, Callable[[str], float], str]] = [
        (
            "gossip-interval",
            "gossipInterval",
            parseDuration,
            "Time between gossip rounds.",
        ),
        ("gossip-nodes", "gossipNodes", int, "Members each gossip round sends to."),
        (
            "probe-interval",
            "probeInterval",
            parseDuration,
            "Time between failure probes.",
        ),
        ("probe-timeout", "probeTimeout", parseDuration, "Wait for a direct ack."),
        (
            "indirect-checks",
            "indirectChecks",
            int,
            "Members asked to probe indirectly.",
        ),
        ("suspicion-mult", "suspicionMult", int, "Scales the suspicion timeout."),
        ("retransmit-mult", "retransmitMult", int, "Scales broadcast retransmits."),
        (
            "push-pull-interval",
            "pushPullInterval",
            parseDuration,
            "Time between full state exchanges (0 turns them off).",
        ),
    ]
    optParameters += [
        [flag, None, None, f"{text} (default: from --profile)"]
        for flag, _, _, text in gossipKnobs
    ]
    optParameters += SECURITY_OPTIONS

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._environ = os.environ if environ is None else environ
        self["peers"] = []

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """
        Parse C{options}. Under C{twistd}, which would print its whole usage
        (over a hundred lines) above the one that matters, a bad flag is
        said in one line with a hint to C{--help}, and the process exits
        with twistd's status for it, 1; called on its own (a parent-less
        Options, as in tests), it raises L{usage.UsageError}.
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            self.refuse(e)

    def refuse(self, error: usage.UsageError) -> NoReturn:
        """
        Say C{error} in one line and exit with status 1 under C{twistd};
        raise it when this Options has no parent (parsed on its own).
        """
        if self.parent is None:
            raise error
        sys.stderr.write(f"{COMMAND}: {error} (see {COMMAND} --help)\n")
        sys.stderr.flush()
        raise SystemExit(1) from None

    def opt_peer(self, peer: str) -> None:
        """
        host:port of a member's gossip port to join through; repeatable, and
        a comma-separated list is accepted (env PEER).
        """
        self["peers"].extend(self._parsePeers(peer))

    def _parsePeers(self, text: str) -> list[tuple[str, int]]:
        peers = []
        for item in text.split(","):
            if item.strip():
                try:
                    peers.append(parseHostPort(item, DEFAULT_GOSSIP_PORT))
                except ValueError as e:
                    raise usage.UsageError(f"--peer: {e}") from None
        return peers

    def postOptions(self) -> None:
        for flag, variable in ENVIRONMENT.items():
            if self[flag] is None and self._environ.get(variable):
                self[flag] = self._environ[variable]
        if not self["peers"] and self._environ.get("PEER"):
            self["peers"] = self._parsePeers(self._environ["PEER"])

        try:
            self["port"] = parsePort(self["port"] or str(DEFAULT_GOSSIP_PORT))
        except ValueError as e:
            raise usage.UsageError(f"--port: {e}") from None
        self["http-port"] = self._endpoint(
            "http-port", self["http-port"] or str(DEFAULT_HTTP_PORT)
        )
        self._redis()
        for flag in ("max-memory", "max-value-size"):
            try:
                self[flag] = parseSize(self[flag])
            except ValueError as e:
                raise usage.UsageError(f"--{flag}: {e}") from None
            if self[flag] <= 0:
                raise usage.UsageError(f"--{flag} must be positive")
        if self["max-value-size"] > self["max-memory"]:
            raise usage.UsageError("--max-value-size must not exceed --max-memory")
        if self["advertise"] is None:
            self["advertise"] = _guessAdvertiseAddress(self["bind"])
        self["advertise"] = _resolveAddress(self["advertise"])
        self["gossip"] = self._gossipSettings()
        self._replication()
        try:
            self["scrub-rate"] = int(self["scrub-rate"])
        except ValueError:
            raise usage.UsageError(
                f"--scrub-rate: {self['scrub-rate']!r} is not a whole number"
            ) from None
        if self["scrub-rate"] < 0:
            raise usage.UsageError("--scrub-rate must not be negative")
        offset = self._environ.get(CLOCK_OFFSET_VARIABLE, "0") or "0"
        try:
            self["clock-offset"] = float(offset)
            if not math.isfinite(self["clock-offset"]):
                raise ValueError(offset)
        except ValueError:
            raise usage.UsageError(
                f"{CLOCK_OFFSET_VARIABLE}: {offset!r} is not a number of seconds"
            ) from None
        if self["fsync"] not in FSYNC_MODES:
            raise usage.UsageError(
                f"--fsync: {self['fsync']!r} is not one of {', '.join(FSYNC_MODES)}"
            )
        if self["log-level"] not in LEVELS:
            raise usage.UsageError(
                f"--log-level: {self['log-level']!r} is not one of {', '.join(LEVELS)}"
            )
        self["security"] = parseSecurity(self, self._environ)
        if not self["node-name"]:
            # host-port is unique per host, unless the OS picks the port.
            suffix = self["port"] or f"pid{os.getpid()}"
            self["node-name"] = f"{socket.gethostname()}-{suffix}"

    def _replication(self) -> None:
        try:
            self["replicas"] = parseReplicas(self["replicas"])
        except ValueError as e:
            raise usage.UsageError(f"--replicas: {e}") from None
        for flag in ("read-consistency", "write-consistency"):
            if self[flag] not in ("one", "quorum", "all"):
                raise usage.UsageError(f"--{flag} must be one, quorum or all")
        for flag, positive in (
            ("replica-timeout", True),
            ("read-retry-after", True),
            ("anti-entropy-interval", True),
            ("forget-departed", False),
            ("handoff-timeout", False),
        ):
            try:
                self[flag] = parseDuration(self[flag])
            except ValueError as e:
                raise usage.UsageError(f"--{flag}: {e}") from None
            if positive and self[flag] <= 0:
                raise usage.UsageError(f"--{flag} must be positive")
        secret = self["cluster-secret"] or self._environ.get("DISPERSE_CLUSTER_SECRET")
        if secret:
            try:
                self["cluster-secret"] = deriveSecret(secret)
            except ValueError as e:
                raise usage.UsageError(f"--cluster-secret: {e}") from None
        elif _isLoopback(self["bind"]):
            # Nodes that only listen on this host can only be reached from
            # it: a well-known secret protects nothing less than a real one.
            self["cluster-secret"] = deriveSecret(DEVELOPMENT_SECRET)
        else:
            raise usage.UsageError(
                "nodes listening beyond loopback need --cluster-secret (or "
                "DISPERSE_CLUSTER_SECRET), the same on every node, so that "
                "only members can write to replicas"
            )

    def _gossipSettings(self) -> GossipSettings:
        profile = PROFILES.get(self["profile"])
        if profile is None:
            raise usage.UsageError(
                f"--profile: {self['profile']!r} is not one of {', '.join(PROFILES)}"
            )
        knobs: dict[str, Any] = {}
        for flag, name, parse, _ in self.gossipKnobs:
            if self[flag] is not None:
                try:
                    value = parse(self[flag])
                except ValueError as e:
                    raise usage.UsageError(f"--{flag}: {e}") from None
                if value < 0 or (value == 0 and name != "pushPullInterval"):
                    raise usage.UsageError(f"--{flag} must be positive")
                knobs[name] = value
        return GossipSettings(
            config=replace(profile(), **knobs),
            label=self["label"],
            keyring=self._keyring(),
        )

    def _keyring(self) -> Keyring | None:
        keys: list[str] = []
        if self["keyring-file"]:
            try:
                with open(self["keyring-file"], encoding="utf-8") as f:
                    loaded = json.load(f)
            except (OSError, ValueError) as e:
                raise usage.UsageError(f"--keyring-file: {e}") from None
            if not isinstance(loaded, list) or not all(
                isinstance(k, str) for k in loaded
            ):
                raise usage.UsageError("--keyring-file must hold a JSON list of keys")
            keys.extend(loaded)
        key = self["gossip-key"] or self._environ.get("DISPERSE_GOSSIP_KEY")
        if key:
            keys.insert(0, key)
        if not keys:
            return None
        try:
            decoded = [base64.b64decode(k, validate=True) for k in keys]
            return Keyring(decoded[0], decoded[1:])
        except (ValueError, binascii.Error) as e:
            raise usage.UsageError(
                f"gossip keys must be base64 of 16, 24 or 32 bytes ({e})"
            ) from None

    def _endpoint(self, flag: str, text: str) -> str:
        # A bare port number becomes a TCP endpoint on the bind address;
        # anything else must already be a Twisted endpoint description.
        if text.isdigit():
            try:
                port = parsePort(text)
            except ValueError as e:
                raise usage.UsageError(f"--{flag}: {e}") from None
            interface = self["bind"].replace(":", "\\:")
            return f"tcp:{port}:interface={interface}"
        if ":" not in text:
            raise usage.UsageError(
                f"--{flag}: {text!r} is neither a port number nor an endpoint"
                " such as tcp:8000:interface=127.0.0.1"
            )
        return text

    def _redis(self) -> None:
        text = self["redis-port"]
        if text:
            endpoint = self._endpoint("redis-port", text)
            if text.isdigit() and _isSSL(self["http-port"]):
                endpoint = _sameTLS(
                    self["http-port"], int(text), self["bind"].replace(":", "\\:")
                )
            self["redis-port"] = endpoint
        try:
            self["redis-idle-timeout"] = parseDuration(self["redis-idle-timeout"])
        except ValueError as e:
            raise usage.UsageError(f"--redis-idle-timeout: {e}") from None

    def nodeConfig(self) -> NodeConfig:
        return NodeConfig(
            nodeName=self["node-name"],
            bindAddress=self["bind"],
            advertiseAddress=self["advertise"],
            gossipPort=self["port"],
            httpEndpoint=self["http-port"],
            redisEndpoint=self["redis-port"],
            redisIdleTimeout=self["redis-idle-timeout"],
            peers=tuple(self["peers"]),
            maxMemory=self["max-memory"],
            maxValueSize=self["max-value-size"],
            maxKeySize=MAX_KEY_SIZE,
            accessLog=self["access-log"],
            zone=self["zone"],
            gossip=self["gossip"],
            replicas=self["replicas"],
            readConsistency=self["read-consistency"],
            writeConsistency=self["write-consistency"],
            replicaTimeout=self["replica-timeout"],
            readRetryAfter=self["read-retry-after"],
            clusterSecret=self["cluster-secret"],
            antiEntropyInterval=self["anti-entropy-interval"],
            forgetDeparted=self["forget-departed"],
            handoffTimeout=self["handoff-timeout"],
            dataDir=self["data-dir"],
            fsync=self["fsync"],
            scrubRate=self["scrub-rate"],
        )


def makeService(options: Options, reactor: Any = None) -> IService:
    """
    Build a node and its front ends from parsed options. Values that only
    building can check (an endpoint description, TLS files) are refused
    like bad flags: one line under C{twistd}, L{usage.UsageError} otherwise.
    """
    try:
        return _buildService(options, reactor)
    except usage.UsageError as e:
        options.refuse(e)


def _redisService(
    node: Node,
    endpoint: IStreamServerEndpoint,
    advertised: Advertisement,
    guard: RequestGuard | None,
    security: SecurityConfig,
    limits: HTTPLimits,
    clock: IReactorTime,
) -> HTTPService:
    """
    The Redis protocol port: the HTTP API's tokens (read through its guard,
    which a reload replaces them in), rate limits and connections per
    client, and its counters as C{node.respStats}.
    """
    stats = RespStats()
    node.respStats = stats
    dispatcher = Dispatcher(
        stats,
        clock.seconds,
        perClient=guard.perClient if guard is not None else None,
        overall=guard.overall if guard is not None else None,
    )
    factory = RespFactory(
        node,
        dispatcher,
        clock,
        wireLimits(node.config.maxValueSize),
        tokens=(lambda: guard.tokens) if guard is not None else (lambda: None),
        idleTimeout=node.config.redisIdleTimeout,
        maxConnectionsPerClient=limits.maxConnectionsPerClient,
    )

    def listening(port: IListeningPort) -> None:
        # Before membership starts: the metadata it gossips names this port.
        node.redisPort = factory.listeningPort = getattr(port.getHost(), "port", None)
        advertised.redisPort = node.redisPort
        host = str(getattr(port.getHost(), "host", ""))
        warnIfOpen(security, host, what="the Redis port")

    return HTTPService(
        endpoint, factory, clock, onListening=listening, what="Redis protocol port"
    )


def _buildService(options: Options, reactor: Any) -> IService:
    if reactor is None:
        from twisted.internet import reactor as globalReactor  # noqa: PLC0415

        reactor = globalReactor
    clock: IReactorTime = reactor
    setLevel(options["log-level"])
    config = options.nodeConfig()
    try:
        endpoint = serverFromString(reactor, config.httpEndpoint)
    except (ValueError, TypeError, KeyError) as e:
        raise usage.UsageError(f"--http-port: {config.httpEndpoint!r}: {e}") from None
    redisEndpoint = None
    if config.redisEndpoint is not None:
        try:
            redisEndpoint = serverFromString(reactor, config.redisEndpoint)
        except (ValueError, TypeError, KeyError) as e:
            raise usage.UsageError(
                f"--redis-port: {config.redisEndpoint!r}: {e}"
            ) from None
    security: SecurityConfig = options["security"]
    secret = config.clusterSecret or deriveSecret(DEVELOPMENT_SECRET)
    guard = makeGuard(security, clock)
    limits = makeLimits(security, config.maxValueSize + JSON_BODY_SLACK)
    # Node-to-node calls have a port of their own, served by a lean server
    # that knows only them (mutual TLS on it with a cluster CA): they never
    # queue behind client requests, and cost a fraction of a client request.
    peerEndpoint: IStreamServerEndpoint
    tlsOptions = None
    if security.clusterCA and security.nodeCert:
        try:
            tls = loadClusterTLS(
                security.clusterCA, security.nodeCert, security.nodeKey
            )
        except TLSConfigError as e:
            raise usage.UsageError(str(e)) from None
        tlsOptions = tls.options
        peerEndpoint = SSL4ServerEndpoint(
            reactor, security.peerPort, tls.options, interface=config.bindAddress
        )
    else:
        peerEndpoint = TCP4ServerEndpoint(
            reactor, security.peerPort, interface=config.bindAddress
        )

    # The node's parts, each built with the parts it works with: the
    # member directory (kept current by membership) tells the peer client
    # where members listen and the node's view which members hold data.
    directory = MemberDirectory()
    peers = HTTPPeerClient(
        reactor,
        directory.peerAddress,
        Signer(secret),
        config.replicaTimeout,
        tls=tlsOptions,
    )
    # What this node gossips about itself: its ports as bound (below).
    advertised = Advertisement(
        host=config.advertiseAddress, zone=config.zone, https=config.httpsAPI
    )
    membership = Membership(
        name=config.nodeName,
        bindAddress=config.bindAddress,
        advertiseAddress=config.advertiseAddress,
        port=config.gossipPort,
        seeds=config.peers,
        settings=config.gossip,
        reactor=reactor,
        meta=advertised.encode,
        listener=directory,
        rng=random.Random(),
    )
    node = Node.build(
        config, clock, peers=peers, directory=directory, membership=membership
    )
    if options.get("clock-offset"):
        node.store.setClockOffset(options["clock-offset"])
    if config.dataDir is not None:
        try:
            dataDir = DataDir.open(config.dataDir, config.nodeName)
        except DataDirError as e:
            raise usage.UsageError(f"--data-dir: {e}") from None
        node.persist(
            Persistence(dataDir, node.store, clock, ThreadSyncer(reactor), config.fsync)
        )

    # Front ends.
    peerAPI = PeerAPI(node.replica, Verifier(secret, clock))

    def peerListening(port: IListeningPort) -> None:
        advertised.peerPort = getattr(port.getHost(), "port", 0)

    peerService = HTTPService(
        peerEndpoint,
        PeerServerFactory(peerAPI, limits, clock),
        clock,
        onListening=peerListening,
        what="node-to-node API (TLS)" if tlsOptions else "node-to-node API",
    )
    metrics = NodeMetrics(node)
    metrics.collector.peerServed = lambda: (peerAPI.served, peerAPI.refused)
    if guard is not None:
        refused = guard.refused
        metrics.collector.rateLimited = lambda: refused[429]
    api = CacheAPI(
        node,
        peerStats=HTTPStatsClient(reactor),
        metrics=MetricsPage(metrics.registry),
        guard=guard,
    )
    site = MeteredSite(
        api.resource(),
        metrics.requests,
        logPath=config.accessLog,
        limits=limits,
        reactor=reactor,
    )

    def listening(port: IListeningPort) -> None:
        node.httpPort = getattr(port.getHost(), "port", None)
        advertised.httpPort = node.httpPort or 0
        warnIfOpen(security, str(getattr(port.getHost(), "host", "")))

    HTTPService(endpoint, site, clock, onListening=listening).setServiceParent(node)
    if redisEndpoint is not None:
        _redisService(
            node, redisEndpoint, advertised, guard, security, limits, clock
        ).setServiceParent(node)
    peerService.setServiceParent(node)
    if guard is not None and security.tokensPath:
        TokenReloader(guard, security.tokensPath, reactor).setServiceParent(node)
    # Started after the HTTP services, so that the metadata it gossips
    # carries the ports actually bound.
    membership.setServiceParent(node)

    # Objects made during start-up live as long as the process; moving them
    # out of the collector's reach keeps full collections (and the latency
    # spikes they cause under load) short.
    core: IReactorCore = reactor
    core.callWhenRunning(gc.freeze)
    return node
