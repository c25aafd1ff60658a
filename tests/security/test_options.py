"""
Tests for the security flags (L{disperse.security.options}) and their
wiring by L{disperse.tap.makeService}: guard, limits, token reloads, the
start-up warning, and node-to-node TLS.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python import usage
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import provider

from disperse.cluster.peer.server import PeerServerFactory
from disperse.node import Node
from disperse.security.limits import HTTPLimits
from disperse.security.options import SecurityConfig
from disperse.security.tokens import parseTokens
from disperse.security.wiring import TokenReloader, warnIfOpen
from disperse.tap import Options, makeService
from disperse.testing import MemoryReactorWithUDP
from disperse.web.auth import makeGuard
from disperse.web.service import HTTPService
from tests.security.certs import makeAuthority, makeNode

TOKEN = "options-token-0123456789abcdef"


def parse(argv: list[str], environ: dict[str, str] | None = None) -> Options:
    options = Options(environ=environ or {})
    options.parseOptions(argv)
    return options


class _Captured:
    def __init__(self) -> None:
        self.events: list[LogEvent] = []

    def __enter__(self) -> list[LogEvent]:
        @provider(ILogObserver)
        def observe(event: LogEvent) -> None:
            self.events.append(event)

        self._observer = observe
        globalLogPublisher.addObserver(observe)
        return self.events

    def __exit__(self, *args: object) -> None:
        globalLogPublisher.removeObserver(self._observer)


class _Threads:
    """
    A reactor's callFromThread, run at once.
    """

    def callFromThread(self, f: Any, *args: object) -> None:
        f(*args)


def test_defaults() -> None:
    assert parse([])["security"] == SecurityConfig()


def test_everyFlag(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN} read\n")
    security: SecurityConfig = parse(
        [
            f"--auth-tokens={tokens}",
            "--rate-limit=100",
            "--global-rate-limit=5000",
            "--max-header-size=8KiB",
            "--header-timeout=5s",
            "--body-timeout=30s",
            "--idle-timeout=2m",
            "--max-connections-per-client=16",
            "--max-in-flight=100",
            "--max-in-flight-bytes=16MiB",
        ]
    )["security"]
    assert security.tokens is not None and len(security.tokens) == 1
    assert security == SecurityConfig(
        tokensPath=str(tokens),
        tokens=security.tokens,
        rateLimit=100,
        globalRateLimit=5000,
        limits=HTTPLimits(
            maxHeaderSize=8192,
            headerTimeout=5,
            bodyTimeout=30,
            idleTimeout=120,
            maxConnectionsPerClient=16,
            maxInFlight=100,
            maxInFlightBytes=16 * 1024 * 1024,
        ),
    )


def test_tokensFromEnvironment(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN} admin\n")
    security = parse([], {"DISPERSE_AUTH_TOKENS": str(tokens)})["security"]
    assert security.tokensPath == str(tokens)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rate-limit=-1"], "--rate-limit must be at least 0"),
        (["--rate-limit=lots"], "--rate-limit: 'lots' is not a number"),
        (["--header-timeout=0"], "--header-timeout must be positive"),
        (["--idle-timeout=soon"], "--idle-timeout: 'soon' is not a duration"),
        (["--max-header-size=0"], "--max-header-size must be positive"),
        (["--max-connections-per-client=0"], "must be at least 1"),
        (["--auth-tokens=/nonexistent/tokens"], "--auth-tokens: cannot read"),
        (["--cluster-ca=ca.pem"], "--cluster-ca and --node-cert go together"),
        (["--peer-port=70000"], "--peer-port"),
    ],
)
def test_badValues(argv: list[str], message: str) -> None:
    with pytest.raises(usage.UsageError, match=message):
        parse(argv)


def test_badTokenFile(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN} superuser\n")
    with pytest.raises(usage.UsageError, match="line 1: scopes") as error:
        parse([f"--auth-tokens={tokens}"])
    assert TOKEN not in str(error.value)


def test_noGuardWithoutTokensOrLimits() -> None:
    # Nothing to check: the front end does not even call a guard.
    assert makeGuard(SecurityConfig(), None) is None
    assert makeGuard(SecurityConfig(rateLimit=1), MemoryReactorWithUDP()) is not None


def test_warningBeyondLoopbackWithoutTokens() -> None:
    with _Captured() as events:
        warnIfOpen(SecurityConfig(), "127.0.0.1")
        warnIfOpen(SecurityConfig(tokens=parseTokens(f"{TOKEN} read")), "0.0.0.0")
        assert events == []
        warnIfOpen(SecurityConfig(), "0.0.0.0")
    [event] = events
    assert "SECURITY WARNING" in formatEvent(event)
    assert event["log_level"].name == "warn"


def test_tokenReloaderOnSIGHUP(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN} read\n")
    options = parse(["--http-port=tcp:0", f"--auth-tokens={tokens}"])
    node = makeService(options, MemoryReactorWithUDP())
    assert isinstance(node, Node)
    assert [s for s in node if isinstance(s, TokenReloader)]
    guard = makeGuard(options["security"], None)
    assert guard is not None
    reloader = TokenReloader(guard, str(tokens), _Threads())
    previous = signal.getsignal(signal.SIGHUP)
    reloader.startService()
    try:
        other = "other-token-0123456789abcdef"
        tokens.write_text(f"{other} write\n")
        assert guard.tokens is not None
        with _Captured() as events:
            os.kill(os.getpid(), signal.SIGHUP)
            assert guard.tokens.lookup(other.encode()) is not None
            assert guard.tokens.lookup(TOKEN.encode()) is None
            tokens.write_text("broken\n")
            reloader.reload()
            assert guard.tokens.lookup(other.encode()) is not None
        text = [formatEvent(e) for e in events]
        assert any("reloaded 1 client tokens" in t for t in text)
        assert any("previous ones stay" in t for t in text)
        assert not any(other in t for t in text)
    finally:
        reloader.stopService()
    assert signal.getsignal(signal.SIGHUP) == previous


def test_clusterTLSTree(tmp_path: Path) -> None:
    authority = makeAuthority(tmp_path, "ca")
    cert, key = makeNode(tmp_path, authority, "n")
    options = parse(
        [
            "--http-port=tcp:8123:interface=127.0.0.1",
            "--port=7001",
            f"--cluster-ca={authority.path}",
            f"--node-cert={cert}",
            f"--node-key={key}",
            "--peer-port=9443",
        ]
    )
    reactor = MemoryReactorWithUDP()
    node = makeService(options, reactor)
    assert isinstance(node, Node)
    services = [s for s in node if isinstance(s, HTTPService)]
    assert len(services) == 2
    node.privilegedStartService()
    node.startService()
    try:
        assert [(port, interface) for port, _, _, interface in reactor.tcpServers][
            :1
        ] == [(8123, "127.0.0.1")]
        assert [
            (port, interface) for port, _, _, _, interface in reactor.sslServers
        ] == [(9443, "127.0.0.1")]
        assert node.membership is not None
        # What the membership gossips about this node.
        meta = json.loads(node.membership._meta())
        assert meta["peer_addr"] == "127.0.0.1:9443"
    finally:
        node.stopService()


def test_clusterTLSRefusesForeignCertificate(tmp_path: Path) -> None:
    cluster = makeAuthority(tmp_path, "cluster")
    other = makeAuthority(tmp_path, "other")
    cert, key = makeNode(tmp_path, other, "n")
    options = parse(
        [f"--cluster-ca={cluster.path}", f"--node-cert={cert}", f"--node-key={key}"]
    )
    with pytest.raises(usage.UsageError, match="not signed by --cluster-ca"):
        makeService(options, MemoryReactorWithUDP())


def test_rateLimitedMetric(tmp_path: Path) -> None:
    options = parse(["--http-port=tcp:0", "--rate-limit=1"])
    node = makeService(options, MemoryReactorWithUDP())
    assert isinstance(node, Node)
    [http] = [
        s
        for s in node
        if isinstance(s, HTTPService) and not isinstance(s._site, PeerServerFactory)
    ]
    site: Any = http._site
    guard = site.resource._guard
    request: Any = DummyRequest([b"cache", b"k"])
    for _ in range(3):
        guard.admit(request, [b"cache", b"k"])
    page = site.resource._metrics.render(DummyRequest([b"metrics"]))
    assert b"disperse_rate_limited_total 1.0" in page
