"""
Tests for L{disperse.cluster.peer.server}: the node-to-node port's own
HTTP/1.1 server frames signed calls, answers them in order on one
connection, and closes connections that send what it cannot frame or that
take too long; only signed POSTs to known calls are served, each by the
handler of its kind, through the local replica's interface alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import RESPONSES

from disperse.cluster.peer.messages import (
    KINDS,
    ApplyRequest,
    ApplyResponse,
    CountsRequest,
    CountsResponse,
    DigestRequest,
    DigestResponse,
    FetchRequest,
    FetchResponse,
    RangeRequest,
    RangeResponse,
    RootsRequest,
    RootsResponse,
)
from disperse.cluster.peer.server import (
    HANDLERS,
    IDLE_TIMEOUT,
    MAX_CONNECTIONS,
    SWEEP_INTERVAL,
    LocalReplica,
    NotCaughtUp,
    PeerAPI,
    PeerServerFactory,
    PeerServerProtocol,
    _response,
)
from disperse.cluster.peer.signatures import (
    NONCE_SIZE,
    SIGNATURE_HEADER,
    Signer,
    Verifier,
)
from disperse.config import NodeConfig
from disperse.security.limits import REASONS, HTTPLimits
from disperse.store import Record
from disperse.store.merkle import Digests
from disperse.store.partition import partitionOf
from disperse.testing.damage import flipped
from disperse.testing.node import makeNode
from disperse.testing.peerserver import CLIENT, peerConnection, peerServer

SECRET = b"s" * 32
LIMITS = HTTPLimits(
    maxHeaderSize=1024,
    maxPeerBodySize=4096,
    headerTimeout=5.0,
    bodyTimeout=10.0,
    idleTimeout=60.0,
)


class _ServerTestCase(SynchronousTestCase):
    """
    A node's node-to-node server on a L{Clock}, and signed requests to it.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.node = makeNode(NodeConfig(nodeName="alpha"), self.clock)
        self.api = PeerAPI(self.node.replica, Verifier(SECRET, self.clock))
        self.factory = PeerServerFactory(self.api, LIMITS, self.clock)
        self.factory.startFactory()
        self.addCleanup(self.factory.stopFactory)
        self.signer = Signer(SECRET)

    def connect(self) -> tuple[PeerServerProtocol, StringTransport]:
        return peerConnection(self.factory)

    def request(
        self,
        body: bytes,
        path: bytes = b"/internal/v1/fetch",
        signed: bool = True,
        extra: bytes = b"",
        method: bytes = b"POST",
    ) -> bytes:
        headers = b"Host: alpha\r\nContent-Length: %d\r\n" % len(body) + extra
        if signed:
            signature = self.signer.sign(
                method,
                path,
                body,
                int(self.clock.seconds() * 1000),
                os.urandom(NONCE_SIZE),
            )
            headers += b"%s: %s\r\n" % (SIGNATURE_HEADER, signature)
        return b"%s %s HTTP/1.1\r\n%s\r\n%s" % (method, path, headers, body)

    def fetchBody(self, *keys: str) -> bytes:
        return FetchRequest(keys).encode()

    def responses(self, transport: StringTransport) -> list[tuple[int, bytes, bytes]]:
        """
        The responses written so far: status, head and body of each.
        """
        data = transport.value()
        found = []
        while data:
            head, _, rest = data.partition(b"\r\n\r\n")
            status = int(head.split(b" ")[1])
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            found.append((status, head, rest[:length]))
            data = rest[length:]
        return found

    def post(
        self, path: bytes, body: bytes, signed: bool = True, method: str = "POST"
    ) -> tuple[int, bytes]:
        """
        One request on a new connection: its answer's status and body.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(
            self.request(body, path=path, signed=signed, method=method.encode())
        )
        [(status, _, answer)] = self.responses(transport)
        return status, answer


class PeerServerTests(_ServerTestCase):
    def test_fetch(self) -> None:
        self.node.putLocal("k", b"v")
        protocol, transport = self.connect()
        protocol.dataReceived(self.request(self.fetchBody("k", "missing")))
        [(status, head, body)] = self.responses(transport)
        self.assertEqual(status, 200)
        self.assertIn(b"Content-Type: application/x-msgpack", head)
        blobs = FetchResponse.decode(body).records
        self.assertEqual(len(blobs), 2)
        first = blobs[0]
        assert first is not None
        self.assertEqual(Record.decode(first).value, b"v")
        self.assertIsNone(blobs[1])
        self.assertFalse(transport.disconnecting)

    def test_applyAndPipelining(self) -> None:
        """
        Requests that arrive together, or a byte at a time, are answered in
        order on the same connection.
        """
        record = self.node.store.newRecord(b"w", 0, False)
        apply = self.request(
            ApplyRequest((("k", record.encode()),)).encode(),
            path=b"/internal/v1/apply",
        )
        fetch = self.request(self.fetchBody("k"))
        protocol, transport = self.connect()
        protocol.dataReceived(apply + fetch)
        later = self.request(self.fetchBody("k"))
        for i in range(len(later)):
            protocol.dataReceived(later[i : i + 1])
        [applied, fetched, again] = self.responses(transport)
        self.assertEqual(ApplyResponse.decode(applied[2]).applied, (True,))
        for status, _, body in (fetched, again):
            self.assertEqual(status, 200)
            [blob] = FetchResponse.decode(body).records
            assert blob is not None
            self.assertEqual(Record.decode(blob).value, b"w")

    def test_unsignedIsRefusedButFramed(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(self.request(self.fetchBody("k"), signed=False))
        protocol.dataReceived(self.request(self.fetchBody("k")))
        [(refused, _, reason), (status, _, _)] = self.responses(transport)
        self.assertEqual((refused, reason), (401, b"missing signature"))
        self.assertEqual(status, 200)
        self.assertEqual((self.api.served, self.api.refused), (2, 1))

    def test_replayIsRefused(self) -> None:
        protocol, transport = self.connect()
        once = self.request(self.fetchBody("k"))
        protocol.dataReceived(once + once)
        self.assertEqual([r[0] for r in self.responses(transport)], [200, 401])

    def assertClosedWith(self, data: bytes, status: int) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(data)
        [(answered, head, _)] = self.responses(transport)
        self.assertEqual(answered, status)
        self.assertIn(b"Connection: close", head)
        self.assertTrue(transport.disconnecting)
        # Whatever follows is not read.
        protocol.dataReceived(self.request(self.fetchBody("k")))
        self.assertEqual(len(self.responses(transport)), 1)

    def test_unframeableRequests(self) -> None:
        body = self.fetchBody("k")
        cases = [
            (self.request(body, path=b"/cache/k"), 404),
            (self.request(body, path=b"/internal/v1/a/b"), 404),
            (self.request(body, method=b"PUT"), 405),
            (b"POST /internal/v1/fetch HTTP/1.1\r\nHost: a\r\n\r\n", 411),
            (
                b"POST /internal/v1/fetch HTTP/1.1\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n",
                501,
            ),
            (
                b"POST /internal/v1/fetch HTTP/1.1\r\nContent-Length: 4097\r\n\r\n",
                413,
            ),
            (
                b"POST /internal/v1/fetch HTTP/1.1\r\n"
                b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            (b"POST /internal/v1/fetch HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            (b"NONSENSE\r\n\r\n", 400),
            (b"POST /internal/v1/fetch HTTP/1.1\r\nno colon\r\n\r\n", 400),
            (b"POST /internal/v1/fetch HTTP/1.1\r\nX: " + b"x" * 2000, 431),
        ]
        for data, status in cases:
            self.assertClosedWith(data, status)

    def test_closeAsked(self) -> None:
        for extra, version in ((b"Connection: close\r\n", b"1.1"), (b"", b"1.0")):
            protocol, transport = self.connect()
            data = self.request(self.fetchBody("k"), extra=extra)
            protocol.dataReceived(data.replace(b"HTTP/1.1", b"HTTP/" + version, 1))
            [(status, head, _)] = self.responses(transport)
            self.assertEqual(status, 200)
            self.assertIn(b"Connection: close", head)
            self.assertTrue(transport.disconnecting)

    def test_slowHeadIsClosed(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(b"POST /internal/v1/fetch HTTP/1.1\r\n")
        self.clock.advance(LIMITS.headerTimeout)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(SWEEP_INTERVAL)
        [(status, _, _)] = self.responses(transport)
        self.assertEqual(status, 408)
        self.assertTrue(transport.disconnecting)

    def test_slowBodyIsClosed(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(self.request(self.fetchBody("k"))[:-2])
        self.clock.advance(LIMITS.headerTimeout + SWEEP_INTERVAL)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(LIMITS.bodyTimeout - LIMITS.headerTimeout)
        [(status, _, _)] = self.responses(transport)
        self.assertEqual(status, 408)

    def test_idleIsClosed(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(self.request(self.fetchBody("k")))
        self.clock.advance(IDLE_TIMEOUT)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(SWEEP_INTERVAL)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(self.responses(transport)), 1)

    def test_connectionsBounded(self) -> None:
        for _ in range(MAX_CONNECTIONS):
            self.connect()
        self.assertIsNone(self.factory.buildProtocol(CLIENT))
        protocol = next(iter(self.factory.connections))
        protocol.connectionLost()
        self.assertIsNotNone(self.factory.buildProtocol(CLIENT))


class DispatchTests(_ServerTestCase):
    def applyBody(self) -> bytes:
        record = self.node.store.newRecord(b"v", 0, False)
        return ApplyRequest((("k", record.encode()),)).encode()

    def test_signedApply(self) -> None:
        code, body = self.post(b"/internal/v1/apply", self.applyBody())
        self.assertEqual(code, 200)
        self.assertEqual(ApplyResponse.decode(body).applied, (True,))
        record = self.node.getLocal("k")
        self.assertIsNotNone(record)
        assert record is not None
        self.assertEqual(record.value, b"v")

    def test_damagedRecordRefused(self) -> None:
        """
        An apply whose record fails its content hash: the record is not
        merged, the call is answered 422 (the sender counts no
        acknowledgement), and the damage is counted; the intact records of
        the same call are merged.
        """
        good = self.node.store.newRecord(b"good").encode()
        bad = flipped(self.node.store.newRecord(b"bad").encode())
        body = ApplyRequest((("k1", good), ("k2", bad))).encode()
        code, reason = self.post(b"/internal/v1/apply", body)
        self.assertEqual((code, reason), (422, b"1 damaged records not applied"))
        self.assertIsNotNone(self.node.getLocal("k1"))
        self.assertIsNone(self.node.getLocal("k2"))
        self.assertEqual(self.node.store.integrity.peer, 1)
        self.assertEqual(self.api.refused, 1)

    def test_unsigned(self) -> None:
        code, _ = self.post(b"/internal/v1/apply", self.applyBody(), signed=False)
        self.assertEqual(code, 401)
        self.assertIsNone(self.node.getLocal("k"))
        self.assertEqual(self.api.refused, 1)

    def test_unknownCall(self) -> None:
        code, _ = self.post(b"/internal/v1/nothing", b"")
        self.assertEqual(code, 404)

    def test_nestedPath(self) -> None:
        code, _ = self.post(b"/internal/v1/apply/more", self.applyBody())
        self.assertEqual(code, 404)
        code, _ = self.post(b"/internal/v2/apply", self.applyBody())
        self.assertEqual(code, 404)

    def test_onlyPost(self) -> None:
        code, _ = self.post(b"/internal/v1/apply", b"", method="GET")
        self.assertEqual(code, 405)

    def test_malformedBody(self) -> None:
        code, _ = self.post(b"/internal/v1/apply", b"\xc1")
        self.assertEqual(code, 400)

    def test_fetchWhileCatchingUp(self) -> None:
        """
        A replica catching up on a key's partition answers 503, so the asker
        reads another replica.
        """
        self.node.store.put("k", b"v")
        self.node.replica.holdReads([partitionOf("k")])
        code, body = self.post(b"/internal/v1/fetch", FetchRequest(("k",)).encode())
        self.assertEqual((code, body), (503, b"catching up"))
        self.node.replica.releaseReads([partitionOf("k")])
        code, body = self.post(b"/internal/v1/fetch", FetchRequest(("k",)).encode())
        self.assertEqual(code, 200)
        self.assertEqual(len(FetchResponse.decode(body).records), 1)


class _Replica:
    """
    A L{LocalReplica} that is not a node: what each call was given, and
    answers or errors set by the test.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.senders: list[str] = []
        self.error: Exception | None = None
        # What applies wait on before they are answered (--fsync always).
        self.synced: Deferred[None] | None = None

    def whenSynced(self) -> Deferred[None] | None:
        return self.synced

    def _called(self, name: str, args: object) -> None:
        self.calls.append((name, args))
        if self.error is not None:
            raise self.error

    def applyLocal(
        self,
        records: Sequence[tuple[str, bytes]],
        evict: bool = True,
        sender: str = "a peer",
    ) -> list[bool]:
        self.senders.append(sender)
        self._called("apply", (records, evict))
        return [True] * len(records)

    def fetchLocal(self, keys: Sequence[str]) -> list[bytes | None]:
        self._called("fetch", keys)
        return [None] * len(keys)

    def rootsLocal(self, partitions: Sequence[int]) -> list[bytes]:
        self._called("roots", partitions)
        return [bytes(8)] * len(partitions)

    def countsLocal(self, partitions: Sequence[int]) -> list[int | None]:
        self._called("counts", partitions)
        return [7, None][: len(partitions)]

    def digestsLocal(self, partition: int, level: int, nodes: Sequence[int]) -> Digests:
        self._called("digest", (partition, level, nodes))
        return Digests(level, {node: bytes(8) for node in nodes})

    def rangeLocal(
        self, partition: int, leaves: Sequence[int]
    ) -> list[tuple[str, Record]]:
        self._called("range", (partition, leaves))
        return [("k", Record(b"v", 0, 1, 2))]


class LocalReplicaTests(SynchronousTestCase):
    """
    L{PeerAPI} dispatches each call by its kind to the replica's interface,
    and maps what the replica raises to a status.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.replica = _Replica()
        replica: LocalReplica = self.replica
        self.api = PeerAPI(replica, Verifier(SECRET, self.clock))
        self.signer = Signer(SECRET)

    def call(self, kind: str, body: bytes, query: bytes = b"") -> tuple[int, bytes]:
        target = b"/internal/v1/" + kind.encode() + (b"?" + query if query else b"")
        signature = self.signer.sign(
            b"POST",
            target,
            body,
            int(self.clock.seconds() * 1000),
            os.urandom(NONCE_SIZE),
        )
        answered = self.api.answer(kind, query, target, body, signature, "10.0.0.2")
        assert not isinstance(answered, Deferred), "answered later"
        code, _, answer = answered
        return code, answer

    def test_everyKindHasAHandler(self) -> None:
        self.assertEqual(set(HANDLERS), set(KINDS))

    def test_eachKind(self) -> None:
        record = Record(b"v", 0, 1, 2).encode()
        code, body = self.call("apply", ApplyRequest((("k", record),)).encode())
        self.assertEqual((code, ApplyResponse.decode(body).applied), (200, (True,)))
        code, body = self.call("fetch", FetchRequest(("a", "b")).encode())
        self.assertEqual(FetchResponse.decode(body).records, (None, None))
        code, body = self.call("roots", RootsRequest((3, 4)).encode())
        self.assertEqual(RootsResponse.decode(body).roots, (bytes(8), bytes(8)))
        code, body = self.call("digest", DigestRequest(5, 2, (1, 7)).encode())
        self.assertEqual(
            DigestResponse.decode(body).toDigests(),
            Digests(2, {1: bytes(8), 7: bytes(8)}),
        )
        code, body = self.call("range", RangeRequest(6, (0,)).encode())
        [(key, blob)] = RangeResponse.decode(body).records
        self.assertEqual((key, Record.decode(blob).value), ("k", b"v"))
        code, body = self.call("counts", CountsRequest((8, 9)).encode())
        self.assertEqual(CountsResponse.decode(body).counts, (7, None))
        self.assertEqual(
            self.replica.calls,
            [
                ("apply", ((("k", record),), True)),
                ("fetch", ("a", "b")),
                ("roots", (3, 4)),
                ("digest", (5, 2, (1, 7))),
                ("range", (6, (0,))),
                ("counts", (8, 9)),
            ],
        )
        self.assertEqual((self.api.served, self.api.refused), (6, 0))

    def test_repairDoesNotEvict(self) -> None:
        record = Record(b"v", 0, 1, 2).encode()
        body = ApplyRequest((("k", record),)).encode()
        code, _ = self.call("apply", body, query=b"repair=1")
        self.assertEqual(code, 200)
        self.assertEqual(self.replica.calls, [("apply", ((("k", record),), False))])

    def test_signatureCheckedFirst(self) -> None:
        """
        An unsigned call is refused before its kind is looked at or its
        body decoded.
        """
        code, _, reason = self.api.answer(
            "nothing", b"", b"/internal/v1/nothing", b"\xc1", None, "10.0.0.2"
        )
        self.assertEqual((code, reason), (401, b"missing signature"))
        self.assertEqual(self.replica.calls, [])

    def test_replicaErrors(self) -> None:
        """
        A replica that is catching up answers 503 (the asker reads another),
        a request it finds invalid 400, anything else 500.
        """
        body = FetchRequest(("k",)).encode()
        self.replica.error = NotCaughtUp("k")
        self.assertEqual(self.call("fetch", body), (503, b"catching up"))
        self.assertEqual(self.api.refused, 0)
        self.replica.error = ValueError("partition outside the table")
        self.assertEqual(
            self.call("fetch", body), (400, b"partition outside the table")
        )
        self.assertEqual(self.api.refused, 1)
        self.replica.error = RuntimeError("bug")
        self.assertEqual(self.call("fetch", body), (500, b"internal error"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_reasonPhrases(self) -> None:
        """
        The node-to-node port words each status as the public port does.
        """
        for code in range(100, 600):
            reason = REASONS.get(code) or RESPONSES.get(code, b"Error")
            self.assertTrue(
                _response(code, b"t", b"", False).startswith(
                    b"HTTP/1.1 %d %s\r\n" % (code, reason)
                )
            )


class PeerServerPropertyTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.one_of(
                st.binary(max_size=300),
                st.sampled_from(
                    [
                        b"POST /internal/v1/fetch HTTP/1.1\r\n",
                        b"Content-Length: 3\r\n",
                        b"Content-Length: 99999999\r\n",
                        b"Transfer-Encoding: chunked\r\n",
                        b"Connection: close\r\n",
                        b"\r\n",
                        b"\r\n\r\n",
                    ]
                ),
            ),
            max_size=20,
        )
    )
    def test_anyBytes(self, chunks: list[bytes]) -> None:
        """
        Whatever arrives, in whatever pieces: no exception escapes, what is
        written is whole responses, and the buffer stays within the limits.
        """
        protocol, transport = peerConnection(peerServer(LIMITS))
        for chunk in chunks:
            protocol.dataReceived(chunk)
            self.assertLessEqual(
                len(protocol._buffer),
                LIMITS.maxHeaderSize + LIMITS.maxPeerBodySize + len(chunk) + 4,
            )
        data = transport.value()
        while data:
            self.assertTrue(data.startswith(b"HTTP/1.1 "))
            head, _, rest = data.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            self.assertGreaterEqual(len(rest), length)
            data = rest[length:]
