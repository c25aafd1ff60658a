"""
Tests for L{disperse.resp.server}: the protocol over an in-memory
transport, on a L{Clock}.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from disperse.config import NodeConfig
from disperse.resp.dispatch import Dispatcher
from disperse.resp.server import (
    RespFactory,
    RespProtocol,
    formatAddress,
    wireLimits,
)
from disperse.resp.stats import RespStats
from disperse.resp.wire import WireLimits
from disperse.security.tokens import TokenTable, parseTokens
from disperse.testing.node import makeNode
from tests.resp.test_dispatch import DispatcherCase

TOKEN = "s" * 32


class CountingTransport(StringTransport):
    """
    A transport that counts its writes.
    """

    writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)


class ServerCase(DispatcherCase):
    def setUp(self) -> None:
        super().setUp()
        self.tokens: TokenTable | None = None
        self.factory = self.makeFactory()

    def makeFactory(self, **overrides: int) -> RespFactory:
        settings = {
            "idleTimeout": 300,
            "maxConnectionsPerClient": 2,
            "maxRunning": 4,
            "maxBacklog": 8,
        }
        settings.update(overrides)
        return RespFactory(
            self.node,
            self.dispatcher,
            self.clock,
            WireLimits(maxBulkLength=1024),
            tokens=lambda: self.tokens,
            idleTimeout=settings["idleTimeout"],
            maxConnectionsPerClient=settings["maxConnectionsPerClient"],
            maxRunning=settings["maxRunning"],
            maxBacklog=settings["maxBacklog"],
        )

    def connect(
        self, host: str = "10.0.0.1", port: int = 5000
    ) -> tuple[RespProtocol, CountingTransport]:
        address = IPv4Address("TCP", host, port)
        protocol = self.factory.buildProtocol(address)
        assert isinstance(protocol, RespProtocol)
        transport = CountingTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 6380), peerAddress=address
        )
        protocol.makeConnection(transport)
        return protocol, transport

    def exchange(
        self, protocol: RespProtocol, transport: StringTransport, data: bytes
    ) -> bytes:
        transport.clear()
        protocol.dataReceived(data)
        value: bytes = transport.value()
        return value


def command(*words: bytes) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(
        b"$%d\r\n%s\r\n" % (len(word), word) for word in words
    )


class BatchTests(ServerCase):
    def test_oneWritePerRead(self) -> None:
        """
        The replies to everything one read brought go out in one write.
        """
        protocol, transport = self.connect()
        data = command(b"SET", b"a", b"1") + command(b"GET", b"a") + command(b"PING")
        self.assertEqual(
            self.exchange(protocol, transport, data),
            b"+OK\r\n$1\r\n1\r\n+PONG\r\n",
        )
        self.assertEqual(transport.writes, 1)

    def test_piecesOfACommand(self) -> None:
        """
        A command cut anywhere is run once whole; nothing is written
        before.
        """
        protocol, transport = self.connect()
        data = command(b"SET", b"a", b"1")
        for piece in (data[:5], data[5:13]):
            self.assertEqual(self.exchange(protocol, transport, piece), b"")
        self.assertEqual(self.exchange(protocol, transport, data[13:]), b"+OK\r\n")
        self.assertEqual(transport.writes, 1)

    def test_asynchronousInOrder(self) -> None:
        """
        Replies that wait go out as they become ready, each batch in one
        write, in request order.
        """
        protocol, transport = self.connect()
        self.keys.slow.update((b"a", b"c"))
        self.keys.values.update({b"b": b"B"})
        data = command(b"GET", b"a") + command(b"GET", b"b") + command(b"GET", b"c")
        self.assertEqual(self.exchange(protocol, transport, data), b"")
        transport.clear()
        self.keys.fire(1, b"C")
        self.clock.advance(0)
        self.assertEqual(transport.value(), b"")
        self.keys.fire(0, b"A")
        self.clock.advance(0)
        self.assertEqual(transport.value(), b"$1\r\nA\r\n$1\r\nB\r\n$1\r\nC\r\n")
        self.assertEqual(transport.writes, 1)

    def test_readyTogetherOneWrite(self) -> None:
        """
        Replies that become ready in the same reactor turn (a peer's answer
        completing every command it carried) go out in one write at the end
        of the turn, not one write each.
        """
        protocol, transport = self.connect()
        self.keys.slow.update((b"a", b"b", b"c"))
        data = command(b"GET", b"a") + command(b"GET", b"b") + command(b"GET", b"c")
        self.assertEqual(self.exchange(protocol, transport, data), b"")
        transport.clear()
        transport.writes = 0
        self.keys.fire(0, b"A")
        self.keys.fire(0, b"B")
        self.keys.fire(0, b"C")
        self.assertEqual(transport.value(), b"")
        self.clock.advance(0)
        self.assertEqual(transport.value(), b"$1\r\nA\r\n$1\r\nB\r\n$1\r\nC\r\n")
        self.assertEqual(transport.writes, 1)

    def test_readyAfterCloseSendsNothing(self) -> None:
        """
        A connection lost before the end of the turn its replies became
        ready in leaves nothing scheduled to write to it.
        """
        protocol, transport = self.connect()
        self.keys.slow.add(b"a")
        self.exchange(protocol, transport, command(b"GET", b"a"))
        self.keys.fire(0, b"A")
        protocol.connectionLost()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_inline(self) -> None:
        """
        Commands typed into C{nc} are inline commands.
        """
        protocol, transport = self.connect()
        self.assertEqual(
            self.exchange(protocol, transport, b'PING\r\nSET a "x y"\nGET a\r\n'),
            b"+PONG\r\n+OK\r\n$3\r\nx y\r\n",
        )

    def test_unknownCommandKeepsConnection(self) -> None:
        protocol, transport = self.connect()
        self.assertEqual(
            self.exchange(protocol, transport, b"FOO\r\nPING\r\n"),
            b"-ERR unknown command 'FOO', with args beginning with: \r\n+PONG\r\n",
        )
        self.assertFalse(transport.disconnecting)

    def test_resp3(self) -> None:
        """
        After HELLO 3, replies are RESP3, HELLO's own included.
        """
        protocol, transport = self.connect()
        out = self.exchange(protocol, transport, command(b"HELLO", b"3"))
        self.assertTrue(out.startswith(b"%7\r\n$6\r\nserver\r\n"), out)
        self.assertEqual(
            self.exchange(protocol, transport, command(b"GET", b"nope")), b"_\r\n"
        )


class CloseTests(ServerCase):
    def test_protocolError(self) -> None:
        """
        A malformed frame is answered with a protocol error after the
        commands before it, and the connection closes.
        """
        protocol, transport = self.connect()
        out = self.exchange(
            protocol, transport, command(b"PING") + b"*1\r\n$x\r\nPING\r\n"
        )
        self.assertEqual(out, b"+PONG\r\n-ERR Protocol error: invalid bulk length\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.stats.protocolErrors, 1)
        self.assertEqual(self.exchange(protocol, transport, command(b"PING")), b"")

    def test_protocolErrorAfterPending(self) -> None:
        """
        The error waits for the replies still due before it.
        """
        protocol, transport = self.connect()
        self.keys.slow.add(b"a")
        self.exchange(protocol, transport, command(b"GET", b"a") + b"*x\r\n")
        self.assertFalse(transport.disconnecting)
        self.keys.fire(0, b"A")
        self.clock.advance(0)
        self.assertEqual(
            transport.value(),
            b"$1\r\nA\r\n-ERR Protocol error: invalid multibulk length\r\n",
        )
        self.assertTrue(transport.disconnecting)

    def test_oversizedBulkRefusedFromItsHeader(self) -> None:
        """
        A bulk longer than the limit is refused before its bytes arrive.
        """
        protocol, transport = self.connect()
        out = self.exchange(
            protocol, transport, b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$2000\r\n"
        )
        self.assertEqual(out, b"-ERR Protocol error: invalid bulk length\r\n")
        self.assertTrue(transport.disconnecting)

    def test_wireLimits(self) -> None:
        """
        The longest bulk accepted is a value of the largest size, with room
        for the value-size error to be the one a client sees.
        """
        self.assertEqual(wireLimits(1000).maxBulkLength, 1000 + 64 * 1024)

    def test_quit(self) -> None:
        protocol, transport = self.connect()
        out = self.exchange(protocol, transport, b"QUIT\r\nPING\r\n")
        self.assertEqual(out, b"+OK\r\n")
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost()
        self.assertEqual(self.stats.connections, 0)

    def test_httpRequest(self) -> None:
        """
        An HTTP request closes the connection without an answer.
        """
        protocol, transport = self.connect()
        out = self.exchange(
            protocol, transport, b"POST / HTTP/1.1\r\nHost: x\r\n\r\nSET a 1\r\n"
        )
        self.assertEqual(out, b"")
        self.assertTrue(transport.disconnecting)
        self.assertNotIn(b"a", self.keys.values)


class IdleTests(ServerCase):
    def test_idleClosed(self) -> None:
        """
        A connection without traffic for the idle timeout is closed; one
        with traffic is not.
        """
        self.factory.startFactory()
        self.addCleanup(self.factory.stopFactory)
        _, quietTransport = self.connect(port=1)
        busy, busyTransport = self.connect(port=2)
        for _ in range(40):
            self.clock.advance(10)
            busy.dataReceived(b"PING\r\n")
        self.assertTrue(quietTransport.disconnected)
        self.assertFalse(busyTransport.disconnected)
        self.assertEqual(self.stats.idleClosed, 1)
        self.assertEqual(self.stats.connections, 1)

    def test_idleWithin(self) -> None:
        """
        It closes between the timeout and a tenth more after the last
        traffic.
        """
        self.factory.startFactory()
        self.addCleanup(self.factory.stopFactory)
        protocol, transport = self.connect()
        self.clock.advance(5)
        protocol.dataReceived(b"PING\r\n")
        self.clock.pump([10] * 30)
        self.assertFalse(transport.disconnected)
        self.clock.pump([10] * 3)
        self.assertTrue(transport.disconnected)

    def test_never(self) -> None:
        self.factory = self.makeFactory(idleTimeout=0)
        self.factory.startFactory()
        self.addCleanup(self.factory.stopFactory)
        _, transport = self.connect()
        self.clock.advance(100_000)
        self.assertFalse(transport.disconnected)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class BackpressureTests(ServerCase):
    def test_producer(self) -> None:
        """
        The connection is its transport's streaming producer.
        """
        protocol, transport = self.connect()
        self.assertIs(transport.producer, protocol)
        self.assertTrue(transport.streaming)

    def test_fullTransport(self) -> None:
        """
        While the transport's buffer is full, no command starts and reading
        stops; once it drains, the waiting commands run and reading goes on.
        """
        protocol, transport = self.connect()
        protocol.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        out = self.exchange(protocol, transport, command(b"SET", b"a", b"1"))
        self.assertEqual(out, b"")
        self.assertEqual(self.keys.calls, [])
        protocol.resumeProducing()
        self.clock.advance(0)
        self.assertEqual(transport.value(), b"+OK\r\n")
        self.assertEqual(transport.producerState, "producing")

    def test_backlog(self) -> None:
        """
        Reading stops while too many of the connection's commands are
        unanswered, and resumes once they are down to half.
        """
        protocol, transport = self.connect()
        self.keys.slow.update(b"k%d" % index for index in range(12))
        data = b"".join(command(b"GET", b"k%d" % index) for index in range(12))
        self.exchange(protocol, transport, data)
        self.assertEqual(transport.producerState, "paused")
        # At most maxRunning run at once.
        self.assertEqual(len(self.keys.calls), 4)
        for _ in range(4):
            self.keys.fire(0, b"x")
        self.clock.advance(0)
        self.assertEqual(transport.producerState, "paused")
        for _ in range(4):
            self.keys.fire(0, b"x")
        self.clock.advance(0)
        self.assertEqual(transport.producerState, "producing")
        while self.keys.pending:
            self.keys.fire(0, b"x")
        self.clock.advance(0)
        self.assertEqual(transport.value().count(b"$1\r\nx\r\n"), 12)


class LimitTests(ServerCase):
    def test_connectionsPerClient(self) -> None:
        """
        Beyond its connections, an address is told so and closed; others
        are not affected, and a closed connection frees its place.
        """
        first, _ = self.connect(port=1)
        self.connect(port=2)
        _, refused = self.connect(port=3)
        self.assertEqual(refused.value(), b"-ERR max number of clients reached\r\n")
        self.assertTrue(refused.disconnecting)
        self.assertEqual(self.stats.rejected, 1)
        _, other = self.connect(host="10.0.0.2")
        self.assertFalse(other.disconnecting)
        first.connectionLost()
        _, again = self.connect(port=4)
        self.assertFalse(again.disconnecting)
        self.assertEqual((self.stats.accepted, self.stats.connections), (4, 3))

    def test_authentication(self) -> None:
        """
        With tokens, a connection starts unauthenticated; the table is read
        at each connection, so a reload applies to the next ones.
        """
        self.tokens = parseTokens(f"{TOKEN} read\n")
        protocol, transport = self.connect()
        self.assertEqual(
            self.exchange(protocol, transport, b"GET a\r\n"),
            b"-NOAUTH Authentication required.\r\n",
        )
        self.assertEqual(
            self.exchange(protocol, transport, f"AUTH {TOKEN}\r\nGET a\r\n".encode()),
            b"+OK\r\n$-1\r\n",
        )
        self.tokens = None
        protocol, transport = self.connect(port=2)
        self.assertEqual(self.exchange(protocol, transport, b"GET a\r\n"), b"$-1\r\n")


class StateTests(ServerCase):
    def test_sessions(self) -> None:
        """
        The factory is the server state handlers see: its sessions, each
        with its own id and addresses.
        """
        self.connect(port=1)
        second, transport = self.connect(port=2)
        self.assertEqual(
            sorted(session.clientId for session in self.factory.sessions()), [1, 2]
        )
        out = self.exchange(second, transport, b"CLIENT INFO\r\n")
        self.assertIn(b"id=2 addr=10.0.0.1:2 laddr=127.0.0.1:6380 fd=-1", out)
        self.assertEqual(self.factory.port, None)

    def test_commandStats(self) -> None:
        protocol, transport = self.connect()
        self.exchange(protocol, transport, b"PING\r\nPING\r\n")
        calls, _, failed = self.factory.commandStats()["ping"]
        self.assertEqual((calls, failed), (2, 0))

    def test_drained(self) -> None:
        protocol, transport = self.connect()
        self.assertTrue(self.factory.whenDrained().called)
        self.keys.slow.add(b"a")
        self.exchange(protocol, transport, b"GET a\r\n")
        self.assertEqual(self.factory.inFlight, 1)
        drained = self.factory.whenDrained()
        self.assertNoResult(drained)
        self.keys.fire(0, None)
        self.clock.advance(0)
        self.successResultOf(drained)

    def test_formatAddress(self) -> None:
        self.assertEqual(formatAddress(IPv4Address("TCP", "1.2.3.4", 5)), "1.2.3.4:5")
        self.assertEqual(formatAddress(IPv6Address("TCP", "::1", 5)), "[::1]:5")


class StatsTests(SynchronousTestCase):
    def test_sharedWithDispatcher(self) -> None:
        clock = Clock()
        stats = RespStats()
        factory = RespFactory(
            makeNode(NodeConfig(nodeName="a"), clock),
            Dispatcher(stats, clock.seconds),
            clock,
            wireLimits(1024),
        )
        self.assertIs(factory.stats, stats)
