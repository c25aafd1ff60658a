"""
Tests for the node-to-node API's dispatch, through the node-to-node port's
server: only signed POSTs to known calls are served, whatever else arrives.
"""

from __future__ import annotations

import os

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from disperse.cluster.placement import partitionOf
from disperse.cluster.protocol import (
    NONCE_SIZE,
    SIGNATURE_HEADER,
    ApplyRequest,
    ApplyResponse,
    FetchRequest,
    FetchResponse,
    Signer,
    Verifier,
)
from disperse.config import NodeConfig
from disperse.node import Node
from disperse.web.limits import HTTPLimits
from disperse.web.peer import PeerAPI
from disperse.web.peerserver import PeerServerFactory

SECRET = b"s" * 32
CLIENT = IPv4Address("TCP", "10.0.0.2", 40000)


class PeerAPITests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.node = Node(NodeConfig(nodeName="alpha"), self.clock)
        self.peer = PeerAPI(self.node, Verifier(SECRET, self.clock))
        self.factory = PeerServerFactory(self.peer, HTTPLimits(), self.clock)
        self.signer = Signer(SECRET)

    def post(
        self, path: bytes, body: bytes, signed: bool = True, method: str = "POST"
    ) -> tuple[int, bytes]:
        headers = b"Host: alpha\r\nContent-Length: %d\r\n" % len(body)
        if signed:
            signature = self.signer.sign(
                method.encode(),
                path,
                body,
                int(self.clock.seconds() * 1000),
                os.urandom(NONCE_SIZE),
            )
            headers += b"%s: %s\r\n" % (SIGNATURE_HEADER, signature)
        protocol = self.factory.buildProtocol(CLIENT)
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(
            b"%s %s HTTP/1.1\r\n%s\r\n%s" % (method.encode(), path, headers, body)
        )
        head, _, answer = transport.value().partition(b"\r\n\r\n")
        return int(head.split(b" ")[1]), answer

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

    def test_unsigned(self) -> None:
        code, _ = self.post(b"/internal/v1/apply", self.applyBody(), signed=False)
        self.assertEqual(code, 401)
        self.assertIsNone(self.node.getLocal("k"))
        self.assertEqual(self.peer.refused, 1)

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
        self.node.replicator.holdReads([partitionOf("k")])
        code, body = self.post(b"/internal/v1/fetch", FetchRequest(("k",)).encode())
        self.assertEqual((code, body), (503, b"catching up"))
        self.node.replicator.releaseReads([partitionOf("k")])
        code, body = self.post(b"/internal/v1/fetch", FetchRequest(("k",)).encode())
        self.assertEqual(code, 200)
        self.assertEqual(len(FetchResponse.decode(body).records), 1)
