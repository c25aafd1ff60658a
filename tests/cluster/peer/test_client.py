"""
Tests for L{disperse.cluster.peer.client}: response framing, timeouts and the
connection pool, against string transports and a real twisted.web site.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.error import ConnectError, TimeoutError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from disperse.cluster.peer import server
from disperse.cluster.peer.client import (
    MAX_IDLE,
    BadResponse,
    ConnectionPool,
    HTTPPeerClient,
    PeerConnection,
    PeerUnreachable,
    Response,
    UnknownCall,
    requestHead,
)
from disperse.cluster.peer.messages import PATH_PREFIX, FetchRequest, FetchResponse
from disperse.cluster.peer.server import PeerAPI
from disperse.cluster.peer.signatures import SIGNATURE_HEADER, Signer, Verifier
from disperse.config import NodeConfig
from disperse.store import Record
from disperse.store.partition import PARTITION_COUNT, partitionOf
from disperse.testing.node import makeNode

reactor: Any = _reactor
HEAD = requestHead(b"POST", b"/internal/v1/apply", b"10.0.0.1:80", b"X-A: b\r\n")


class ConnectionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.idle: list[PeerConnection] = []
        self.lost: list[PeerConnection] = []
        self.connection = PeerConnection(self.clock, self.idle.append, self.lost.append)
        self.transport = StringTransport()
        self.connection.makeConnection(self.transport)

    def ask(self) -> tuple[list[Response], list[Exception]]:
        answers: list[Response] = []
        errors: list[Exception] = []
        self.connection.request(HEAD, b"body", 1.0).addCallbacks(
            answers.append, lambda f: errors.append(f.value)
        )
        return answers, errors

    def test_requestInOneWrite(self) -> None:
        """
        Head, length and body go out together, so the peer wakes up once.
        """
        self.ask()
        self.assertEqual(
            self.transport.value(),
            b"POST /internal/v1/apply HTTP/1.1\r\nHost: 10.0.0.1:80\r\n"
            b"X-A: b\r\nContent-Length: 4\r\n\r\nbody",
        )
        self.assertEqual(self.idle, [self.connection])  # from connectionMade

    def test_contentLengthInPieces(self) -> None:
        """
        A response split anywhere is put back together; the connection is
        then idle again and stays open.
        """
        answers, _ = self.ask()
        wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello"
        for i in range(len(wire)):
            self.connection.dataReceived(wire[i : i + 1])
        self.assertEqual(answers, [Response(200, b"hello")])
        self.assertEqual(self.idle, [self.connection, self.connection])
        self.assertFalse(self.transport.disconnecting)
        # And a second request on the same connection.
        answers, _ = self.ask()
        self.connection.dataReceived(b"HTTP/1.1 401 No\r\nContent-Length: 2\r\n\r\nno")
        self.assertEqual(answers, [Response(401, b"no")])

    def test_chunked(self) -> None:
        answers, _ = self.ask()
        self.connection.dataReceived(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
        )
        self.assertEqual(answers, [Response(200, b"abcde")])
        self.assertFalse(self.transport.disconnecting)

    def test_bodyToEndOfConnection(self) -> None:
        """
        A response without a length ends with its connection.
        """
        answers, _ = self.ask()
        self.connection.dataReceived(b"HTTP/1.0 200 OK\r\n\r\npart")
        self.connection.dataReceived(b"s")
        self.assertEqual(answers, [])
        self.connection.connectionLost()
        self.assertEqual(answers, [Response(200, b"parts")])
        self.assertEqual(self.lost, [self.connection])

    def test_connectionClose(self) -> None:
        """
        C{Connection: close} is honoured after the response.
        """
        answers, _ = self.ask()
        self.connection.dataReceived(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        self.assertEqual(answers, [Response(200, b"")])
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.idle, [self.connection])

    def test_garbage(self) -> None:
        _, errors = self.ask()
        self.connection.dataReceived(b"SSH-2.0-OpenSSH\r\n\r\n")
        self.assertIsInstance(errors[0], BadResponse)
        self.assertTrue(self.transport.disconnecting)

    def test_unaskedData(self) -> None:
        """
        Bytes nobody asked for close the connection.
        """
        self.connection.dataReceived(b"HTTP/1.1 200 OK\r\n")
        self.assertTrue(self.transport.disconnecting)

    def test_timeout(self) -> None:
        _, errors = self.ask()
        self.clock.advance(0.99)
        self.assertEqual(errors, [])
        self.clock.advance(0.02)
        self.assertIsInstance(errors[0], TimeoutError)
        self.assertTrue(self.transport.disconnecting)

    def test_lostMidResponse(self) -> None:
        _, errors = self.ask()
        self.connection.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab")
        self.connection.connectionLost()
        self.assertEqual(len(errors), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class _Slow(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Request] = []

    def render_POST(self, request: Request) -> bytes | int:
        body = request.content.read() if request.content else b""
        if body == b"hold":
            self.held.append(request)
            return NOT_DONE_YET
        return b"echo:" + body


async def _serve(resource: Resource) -> tuple[Any, str]:
    port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
    return port, f"127.0.0.1:{port.getHost().port}"


def _head(address: str) -> bytes:
    return requestHead(b"POST", b"/x", address.encode(), b"")


async def _failure(d: Deferred[Any]) -> BaseException:
    try:
        await d
    except Exception as e:
        return e
    raise AssertionError("the request succeeded")


@pytest_twisted.ensureDeferred
async def test_poolRoundTrips() -> None:
    """
    Many requests at once share at most a few connections and all get their
    own answers.
    """
    port, address = await _serve(_Slow())
    pool = ConnectionPool(reactor, timeout=5.0)
    try:
        responses = await gatherResults(
            [pool.request(address, _head(address), b"%d" % i) for i in range(20)]
        )
        assert [r.body for r in responses] == [b"echo:%d" % i for i in range(20)]
    finally:
        pool.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_poolWaitersTimeOut() -> None:
    """
    With every connection held by a request the peer does not answer, a
    further request fails after the timeout instead of waiting forever.
    """
    resource = _Slow()
    port, address = await _serve(resource)
    pool = ConnectionPool(reactor, timeout=0.3)
    try:
        held = [pool.request(address, _head(address), b"hold") for _ in range(8)]
        extra = pool.request(address, _head(address), b"more")
        assert isinstance(await _failure(extra), TimeoutError)
        for d in held:
            assert isinstance(await _failure(d), TimeoutError)
        assert len(resource.held) == 8
    finally:
        pool.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_poolRefused() -> None:
    port, address = await _serve(_Slow())
    await port.stopListening()
    pool = ConnectionPool(reactor, timeout=5.0)
    try:
        failure = await _failure(pool.request(address, _head(address), b"x"))
        assert isinstance(failure, ConnectError)
    finally:
        pool.close()


class _HeldPool:
    """
    A connection pool whose requests are answered by the test.
    """

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, Deferred[Response]]] = []

    def request(self, address: str, head: bytes, body: bytes) -> Deferred[Response]:
        d: Deferred[Response] = Deferred()
        self.sent.append((address, head, body, d))
        return d

    def close(self) -> None:
        pass


class BatchingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.client = HTTPPeerClient(
            self.clock, lambda name: "10.0.0.9:7000", Signer(b"s" * 32)
        )
        self.pool = _HeldPool()
        self.client._pool = self.pool  # type: ignore[assignment]

    def answer(self, index: int) -> None:
        _, _, body, d = self.pool.sent[index]
        keys = FetchRequest.decode(body).keys
        records = tuple(Record(k.encode(), 0, 1, 1).encode() for k in keys)
        d.callback(Response(200, FetchResponse(records).encode()))

    def keysOf(self, index: int) -> tuple[str, ...]:
        return FetchRequest.decode(self.pool.sent[index][2]).keys

    def test_askedMeanwhileGoesInTheNextCall(self) -> None:
        """
        Fetches asked in one reactor turn travel in one call; those asked
        while it is in flight wait for its answer and travel together in
        the next. Each caller gets its own records.
        """
        results: list[list[Record | None]] = []
        for key in ("a", "b"):
            self.client.fetch("peer", [key]).addCallback(results.append)
        self.clock.advance(0)
        self.assertEqual([self.keysOf(0)], [("a", "b")])
        for key in ("c", "d", "e"):
            self.client.fetch("peer", [key]).addCallback(results.append)
        self.clock.advance(0)
        self.assertEqual(len(self.pool.sent), 1)
        self.answer(0)
        self.clock.advance(0)
        self.assertEqual(self.keysOf(1), ("c", "d", "e"))
        self.answer(1)
        self.assertEqual(
            [[r.value if r else None for r in found] for found in results],
            [[b"a"], [b"b"], [b"c"], [b"d"], [b"e"]],
        )
        self.assertEqual(
            (self.client.counters.calls, self.client.counters.items), (2, 5)
        )


class IdleConnectionTests(SynchronousTestCase):
    """
    The pool closes a connection that sat idle for longer than
    L{MAX_IDLE} instead of sending into it: the peer may be closing it.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.pool = ConnectionPool(self.reactor, timeout=5.0)
        self.transports: list[StringTransport] = []

    def ask(self) -> Deferred[Response]:
        return self.pool.request("10.0.0.1:7000", _head("10.0.0.1:7000"), b"x")

    def accept(self) -> Any:
        """
        Complete the newest connection attempt; its protocol.
        """
        _, _, factory, _, _ = self.reactor.tcpClients[-1]
        protocol = factory.buildProtocol(None)
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.transports.append(transport)
        return protocol

    def test_staleIdleConnectionIsReplaced(self) -> None:
        first = self.ask()
        protocol = self.accept()
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(self.successResultOf(first).body, b"ok")
        # Reused while fresh.
        self.reactor.advance(MAX_IDLE - 1)
        second = self.ask()
        self.assertEqual(len(self.reactor.tcpClients), 1)
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.successResultOf(second)
        # Not once stale: closed, and a new connection carries the request.
        self.reactor.advance(MAX_IDLE + 1)
        third = self.ask()
        self.assertTrue(self.transports[0].disconnecting)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        fresh = self.accept()
        self.assertIn(b"POST /x ", self.transports[1].value())
        fresh.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(self.successResultOf(third).body, b"ok")


class _ServedPool:
    """
    A connection pool that hands each request to a node-to-node server's
    L{PeerAPI}, as its port would: the signed call, in and out.
    """

    def __init__(self, api: PeerAPI) -> None:
        self._api = api

    def request(self, address: str, head: bytes, body: bytes) -> Deferred[Response]:
        lines = head.split(b"\r\n")
        target = lines[0].split(b" ")[1]
        path, _, query = target.partition(b"?")
        signature = next(
            line.partition(b":")[2].strip()
            for line in lines
            if line.lower().startswith(SIGNATURE_HEADER.lower() + b":")
        )
        answered = self._api.answer(
            path[len(PATH_PREFIX) :].decode(), query, target, body, signature, "peer"
        )
        if not isinstance(answered, Deferred):
            answered = succeed(answered)
        return answered.addCallback(lambda answer: Response(answer[0], answer[2]))

    def close(self) -> None:
        pass


class CountsTests(SynchronousTestCase):
    """
    The counts call from the client to a node's server and back: each
    partition's keys, nil for one the replica is catching up on, and a
    clear failure from a node of an older version.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.node = makeNode(NodeConfig(nodeName="b"), self.clock)
        secret = b"s" * 32
        api = PeerAPI(self.node.replica, Verifier(secret, self.clock))
        self.client = HTTPPeerClient(
            self.clock, lambda name: "10.0.0.9:7000", Signer(secret)
        )
        self.client._pool = _ServedPool(api)  # type: ignore[assignment]
        for key in ("{t}a", "{t}b", "{t}c", "other"):
            self.node.store.put(key, b"v")
        self.node.store.delete("{t}c")
        self.partitions = [partitionOf("{t}"), partitionOf("other"), partitionOf("x")]

    def test_counts(self) -> None:
        asked = self.client.counts("b", self.partitions)
        self.assertEqual(self.successResultOf(asked), [2, 1, 0])
        self.node.replica.holdReads([partitionOf("other")])
        asked = self.client.counts("b", self.partitions)
        self.assertEqual(self.successResultOf(asked), [2, None, 0])

    def test_partitionOutsideTheTable(self) -> None:
        failure = self.failureResultOf(self.client.counts("b", [PARTITION_COUNT]))
        self.assertIn("b answered 400", str(failure.value))

    def test_olderPeer(self) -> None:
        """
        A node that does not know the call answers 404: the call fails
        as one it does not know, rather than with a count.
        """
        older = {kind: h for kind, h in server.HANDLERS.items() if kind != "counts"}
        self.patch(server, "HANDLERS", older)
        failure = self.failureResultOf(self.client.counts("b", self.partitions))
        failure.trap(UnknownCall)
        self.assertIsInstance(failure.value, PeerUnreachable)
        self.assertIn("b answered 404", str(failure.value))
        self.assertEqual(self.client.counters.failures, 1)
