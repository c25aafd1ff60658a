"""
Tests for L{disperse.web.limits} and the shedding of L{DisperseSite}:
oversized headers and bodies, slow clients, too many connections, too many
requests in flight; all on a L{Clock}, over L{StringTransport}s.
"""

from __future__ import annotations

import json

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from disperse.security.limits import HTTPLimits
from disperse.web.limits import GuardedChannel
from disperse.web.service import DisperseSite

LIMITS = HTTPLimits(
    maxHeaderSize=1024,
    maxBodySize=2048,
    maxPeerBodySize=8192,
    headerTimeout=5.0,
    bodyTimeout=20.0,
    idleTimeout=60.0,
    maxConnectionsPerClient=3,
    maxInFlight=2,
    maxInFlightBytes=3000,
    lingerTimeout=2.0,
    lingerBytes=4096,
)


class _HalfClosingTransport(StringTransport):
    """
    A L{StringTransport} that can close its writing side alone, as TCP
    transports can.
    """

    writeClosed = False

    def loseWriteConnection(self) -> None:
        self.writeClosed = True


class _Echo(Resource):
    """
    Answers with the body's length, now or when told to.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list[tuple[Request, Deferred[None]]] = []
        self.hold = False

    def render(self, request: Request) -> bytes | int:
        assert request.content is not None
        body = b"%d" % len(request.content.read())
        if not self.hold:
            return body
        d: Deferred[None] = Deferred()
        d.addCallback(lambda _: (request.write(body), request.finish()))
        self.held.append((request, d))
        return NOT_DONE_YET


class LimitsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.resource = _Echo()
        self.site = DisperseSite(self.resource, limits=LIMITS, reactor=self.clock)

    def connect(
        self, host: str = "10.0.0.1", transport: StringTransport | None = None
    ) -> tuple[GuardedChannel, StringTransport]:
        address = IPv4Address("TCP", host, 40000)
        channel = self.site.buildProtocol(address)
        assert isinstance(channel, GuardedChannel)
        transport = transport or StringTransport(peerAddress=address)
        channel.makeConnection(transport)
        return channel, transport

    def assertAnswer(self, transport: StringTransport, code: int) -> bytes:
        value: bytes = transport.value()
        self.assertTrue(
            value.startswith(b"HTTP/1.1 %d " % code), f"expected {code}: {value!r}"
        )
        return value

    def assertClosedWith(self, transport: StringTransport, code: int) -> dict[str, str]:
        value = self.assertAnswer(transport, code)
        self.assertTrue(transport.disconnecting)
        body: dict[str, str] = json.loads(value.split(b"\r\n\r\n", 1)[1])
        return body

    def test_servesNormally(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"PUT /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
        self.assertIn(b"\r\n\r\n3", self.assertAnswer(transport, 200))
        self.assertFalse(transport.disconnecting)

    def test_oversizedHeadersAre431(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"GET /x HTTP/1.1\r\n")
        for index in range(40):
            channel.dataReceived(b"X-Filler-%d: %s\r\n" % (index, b"y" * 30))
        self.assertEqual(
            self.assertClosedWith(transport, 431),
            {"error": "request headers are too large"},
        )

    def test_oneOverlongHeaderLineIs431(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"GET /x HTTP/1.1\r\nX-Big: " + b"y" * 2000)
        self.assertClosedWith(transport, 431)

    def test_overlongRequestLineIs414(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"GET /" + b"k" * 2000)
        self.assertClosedWith(transport, 414)

    def test_declaredOversizedBodyIs413(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"PUT /x HTTP/1.1\r\nContent-Length: 2049\r\n\r\n")
        self.assertEqual(
            self.assertClosedWith(transport, 413),
            {"error": "body is larger than 2048 bytes"},
        )

    def test_internalPathsGetNoLargerBodies(self) -> None:
        """
        Node-to-node batches have their own port: on this one, an
        C{/internal/} path is held to the same body limit as any other.
        """
        channel, transport = self.connect()
        channel.dataReceived(
            b"POST /internal/v1/apply HTTP/1.1\r\nContent-Length: 2049\r\n\r\n"
        )
        self.assertClosedWith(transport, 413)

    def test_chunkedOversizedBodyIs413(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"400\r\n" + b"c" * 0x400 + b"\r\n"
        for _ in range(200):
            if transport.disconnecting:
                break
            channel.dataReceived(chunk)
        self.assertClosedWith(transport, 413)

    def test_slowlorisHeadersAreCutOff(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"GET /x HTTP/1.1\r\n")
        # One header byte a second keeps the idle timer from firing; the
        # header deadline does not move.
        for _ in range(4):
            self.clock.advance(1)
            channel.dataReceived(b"X")
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertEqual(
            self.assertClosedWith(transport, 408),
            {"error": "request not received in time"},
        )
        self.assertEqual(self.site.timedOut, 1)

    def test_silentConnectionIsCutOff(self) -> None:
        _, transport = self.connect()
        self.clock.advance(5)
        self.assertClosedWith(transport, 408)

    def test_slowBodyIsCutOff(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"PUT /x HTTP/1.1\r\nContent-Length: 100\r\n\r\n")
        for _ in range(19):
            self.clock.advance(1)
            channel.dataReceived(b"b")
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertClosedWith(transport, 408)

    def test_keepAliveWaitsForTheIdleTimeout(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"GET /x HTTP/1.1\r\n\r\n")
        self.assertAnswer(transport, 200)
        # Between requests only the idle timeout runs.
        self.clock.advance(30)
        self.assertFalse(transport.disconnecting)
        transport.clear()
        channel.dataReceived(b"GET /x HTTP/1.1\r\n\r\n")
        self.assertAnswer(transport, 200)
        self.clock.advance(60)
        self.assertTrue(transport.disconnecting)

    def test_refusalLingers(self) -> None:
        """
        Refused with a body still coming, the node closes its side after
        the answer and reads what the client still sends, so that a client
        sending all of its body before reading sees the answer.
        """
        transport = _HalfClosingTransport()
        channel, _ = self.connect(transport=transport)
        channel.dataReceived(
            b"PUT /x HTTP/1.1\r\nContent-Length: 3000\r\n\r\n" + b"a" * 1000
        )
        self.assertAnswer(transport, 413)
        self.assertTrue(transport.writeClosed)
        for _ in range(3):
            channel.dataReceived(b"b" * 1000)
        self.clock.advance(1.9)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.resource.held, [])
        # The client has read its answer and closes.
        channel.connectionLost()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_lingeringEndsAfterItsTime(self) -> None:
        transport = _HalfClosingTransport()
        channel, _ = self.connect(transport=transport)
        channel.dataReceived(b"PUT /x HTTP/1.1\r\nContent-Length: 3000\r\n\r\n")
        self.clock.advance(2.0)
        self.assertTrue(transport.disconnected)

    def test_lingeringEndsAfterItsBytes(self) -> None:
        transport = _HalfClosingTransport()
        channel, _ = self.connect(transport=transport)
        channel.dataReceived(b"PUT /x HTTP/1.1\r\nContent-Length: 9999\r\n\r\n")
        channel.dataReceived(b"c" * 4096)
        self.assertFalse(transport.disconnecting)
        channel.dataReceived(b"c")
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_lingeringCountsWhatCameWithTheHeaders(self) -> None:
        transport = _HalfClosingTransport()
        channel, _ = self.connect(transport=transport)
        channel.dataReceived(
            b"PUT /x HTTP/1.1\r\nContent-Length: 9999\r\n\r\n" + b"d" * 5000
        )
        self.assertAnswer(transport, 413)
        self.assertTrue(transport.disconnected)

    def test_tooSlowClientsDoNotLinger(self) -> None:
        transport = _HalfClosingTransport()
        channel, _ = self.connect(transport=transport)
        channel.dataReceived(b"GET /x HTTP/1.1\r\n")
        self.clock.advance(5)
        self.assertAnswer(transport, 408)
        self.assertFalse(transport.writeClosed)
        self.assertTrue(transport.disconnecting)

    def test_refusedClientCannotHoldTheSocket(self) -> None:
        channel, transport = self.connect()
        self.clock.advance(5)
        self.assertTrue(transport.disconnecting)
        self.clock.advance(channel.abortTimeout)
        self.assertTrue(transport.disconnected)

    def test_connectionsPerClient(self) -> None:
        connections = [self.connect("10.0.0.1") for _ in range(3)]
        for _, transport in connections:
            self.assertFalse(transport.disconnecting)
        _, fourth = self.connect("10.0.0.1")
        self.assertEqual(
            self.assertClosedWith(fourth, 429),
            {"error": "too many connections from this client"},
        )
        self.assertIn(b"Retry-After: 1", fourth.value())
        # Others are not affected, and a closed connection frees its slot.
        _, other = self.connect("10.0.0.2")
        self.assertFalse(other.disconnecting)
        channel, _ = connections[0]
        channel.connectionLost()
        _, again = self.connect("10.0.0.1")
        self.assertFalse(again.disconnecting)
        self.assertEqual(self.site.connections.count("10.0.0.1"), 3)

    def test_inFlightBeyondTheLimitIs503(self) -> None:
        self.resource.hold = True
        transports = []
        for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            channel, transport = self.connect(host)
            channel.dataReceived(b"GET /x HTTP/1.1\r\n\r\n")
            transports.append(transport)
        self.assertEqual(self.site.inFlight, 2)
        self.assertEqual(transports[0].value(), b"")
        self.assertIn(
            b"too many requests in flight", self.assertAnswer(transports[2], 503)
        )
        # An /internal/ path is shed like any other on this port.
        channel, transport = self.connect("10.0.0.4")
        channel.dataReceived(b"POST /internal/v1/apply HTTP/1.1\r\n\r\n")
        self.assertAnswer(transport, 503)
        self.assertEqual(self.site.inFlight, 2)
        for _, d in self.resource.held:
            d.callback(None)
        self.assertEqual(self.site.inFlight, 0)
        self.assertAnswer(transports[0], 200)

    def test_inFlightBytesBeyondTheBudgetIs503(self) -> None:
        self.resource.hold = True
        first, one = self.connect("10.0.0.1")
        first.dataReceived(
            b"PUT /x HTTP/1.1\r\nContent-Length: 2000\r\n\r\n" + b"a" * 2000
        )
        second, two = self.connect("10.0.0.2")
        second.dataReceived(
            b"PUT /x HTTP/1.1\r\nContent-Length: 2000\r\n\r\n" + b"a" * 2000
        )
        self.assertAnswer(two, 503)
        self.assertEqual(self.site.bytesInFlight, 2000)
        self.assertEqual(one.value(), b"")

    def test_oversizedBodyIsRefusedBeforeContinue(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(
            b"PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"
        )
        self.assertClosedWith(transport, 413)

    def test_clientNotReadingGetsNoFurtherAnswers(self) -> None:
        channel, transport = self.connect()
        # The transport's buffer fills (the client is not reading) during
        # the first answer; the pipelined second request waits.
        channel.dataReceived(b"GET /a HTTP/1.1\r\n\r\n")
        transport.clear()
        channel.pauseProducing()
        # Bytes already read are parsed: /b is answered, /c waits for the
        # client to read.
        channel.dataReceived(b"GET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n")
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 "), 1)
        self.assertEqual(self.site.inFlight, 0)
        channel.resumeProducing()
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 "), 2)

    def test_notReadingThenGone(self) -> None:
        channel, _ = self.connect()
        channel.dataReceived(b"GET /a HTTP/1.1\r\n\r\n")
        channel.pauseProducing()
        channel.dataReceived(b"GET /b HTTP/1.1\r\n\r\n")
        channel.connectionLost()
        self.assertEqual(self.site.connections.count("10.0.0.1"), 0)
