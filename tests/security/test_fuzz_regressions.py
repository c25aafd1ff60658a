"""
Every input a fuzzer (fuzz/, make fuzz) found crashing, kept as a test.
"""

from __future__ import annotations

import pytest

from disperse.store import Record
from disperse.testing.peerserver import peerConnection, peerServer
from disperse.testing.site import inMemorySite


@pytest.mark.parametrize("blob", [b"", b"\n", bytes(20), bytes(28)])
def test_shortRecordBlob(blob: bytes) -> None:
    """
    A record blob shorter than its header (a peer's apply, fetch or range
    answer) raises ValueError, which the peer API answers with 400, not
    struct.error, which it answered with 500 (fuzz/peer_protocol.py).
    """
    with pytest.raises(ValueError, match="a record needs"):
        Record.decode(blob)


def test_recordHeaderOnly() -> None:
    assert Record.decode(Record(b"", 1, 2, 3).encode()) == Record(b"", 1, 2, 3)


@pytest.mark.parametrize(
    "request_",
    [
        b"OST /internal/v1/apply HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        b"GET /internal/v1/apply HTTP/1.1\r\n\r\n",
        b"POST /internal/v2/anything HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    ],
)
def test_unknownPeerRouteIsNot500(request_: bytes) -> None:
    """
    A method or path the node-to-node API does not know is a 400, 404 or
    405, not an internal error with a logged traceback (fuzz/http_request.py
    found the 500 while that API was a Klein app); on the public port, such
    a path is just not found.
    """
    protocol, transport = peerConnection(peerServer())
    protocol.dataReceived(request_)
    answer = transport.value()
    assert answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 404 ", b"HTTP/1.1 405 ")), (
        answer
    )
    public = inMemorySite(withTokens=False).exchange(request_)
    assert public.startswith((b"HTTP/1.1 404 ", b"HTTP/1.1 405 ")), public
