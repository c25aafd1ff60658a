"""
Tests for L{disperse.send}: answers sent at once on plain TCP connections,
through the transport otherwise, in order either way.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.tcp import Connection
from twisted.trial.unittest import SynchronousTestCase

from disperse.send import sendNow, writeFirst, written


class _Collect(Protocol):
    def __init__(self, expected: int) -> None:
        self.received: list[bytes] = []
        self.size = 0
        self.expected = expected
        self.whole: Deferred[bytes] = Deferred()
        self.lost: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)
        self.size += len(data)
        if self.size >= self.expected and not self.whole.called:
            self.whole.callback(b"".join(self.received))

    def connectionLost(self, reason: object = None) -> None:
        self.lost.callback(None)


async def _connected(expected: int) -> tuple[_Collect, Any, Any]:
    """
    A server collecting C{expected} bytes, the client's transport, and how
    to close both.
    """
    server = _Collect(expected)
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(lambda: server)
    )
    client: Any = await TCP4ClientEndpoint(
        reactor, "127.0.0.1", port.getHost().port
    ).connect(Factory.forProtocol(Protocol))

    async def close() -> None:
        client.transport.loseConnection()
        await server.lost
        await port.stopListening()

    return server, client.transport, close


@pytest_twisted.ensureDeferred
async def test_sentWithoutWaitingForTheReactor() -> None:
    """
    On an idle plain TCP connection the data leaves at once: the transport
    is not registered for writing.
    """
    server, transport, close = await _connected(5)
    sendNow(transport, b"hello")
    assert transport not in reactor.getWriters()
    assert await server.whole == b"hello"
    await close()


@pytest_twisted.ensureDeferred
async def test_queuedDataGoesFirst() -> None:
    """
    Data the transport still holds is sent before what comes after it.
    """
    server, transport, close = await _connected(10)
    transport.write(b"first")
    sendNow(transport, b"after")
    assert await server.whole == b"firstafter"
    await close()


@pytest_twisted.ensureDeferred
async def test_whatTheKernelDoesNotTakeIsQueued() -> None:
    """
    More than the socket's buffers hold: the rest goes to the transport, and
    everything arrives, in order.
    """
    data = bytes(range(256)) * (32 * 1024)
    server, transport, close = await _connected(len(data) + 3)
    sendNow(transport, data)
    assert transport in reactor.getWriters()
    sendNow(transport, b"end")
    assert await server.whole == data + b"end"
    await close()


@pytest_twisted.ensureDeferred
async def test_writesQueuedForTheTurnGoFirst() -> None:
    """
    While writes an answer may acknowledge are queued for the end of the
    turn (L{writeFirst}), an idle connection's answer waits in the
    transport, which the reactor sends only after the end-of-turn calls:
    the queued writes are not made per answer. A connection with data
    buffered already may be written in this very poll: the queued writes
    are made first.
    """
    made: list[str] = []

    def flush() -> None:
        made.append("flushed")
        written(flush)

    server, transport, close = await _connected(15)
    writeFirst(flush)
    sendNow(transport, b"hello")
    assert made == []
    assert transport in reactor.getWriters()
    transport.write(b"first")
    sendNow(transport, b"after")
    assert made == ["flushed"]
    assert await server.whole == b"hellofirstafter"
    await close()


class _Wrapper:
    """
    A transport over a TCP connection that, like TLS, passes attribute
    lookups through to it.
    """

    def __init__(self, under: Any) -> None:
        self.written: list[bytes] = []
        self._under = under

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._under, name)


class WrappedTransportTests(SynchronousTestCase):
    def test_wrappedConnectionIsWrittenThroughItsWrapper(self) -> None:
        """
        A transport wrapping a TCP connection (TLS) is written through,
        never its socket: that would bypass the encryption.
        """
        under = Connection.__new__(Connection)
        under.socket = None  # type: ignore[assignment]  # sending on it fails
        wrapper = _Wrapper(under)
        sendNow(wrapper, b"secret")
        self.assertEqual(wrapper.written, [b"secret"])
