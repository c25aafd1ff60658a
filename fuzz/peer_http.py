"""
Coverage-guided fuzzing of the node-to-node port's server: raw bytes on a
connection to L{disperse.cluster.peer.server}, in memory. Nothing may raise out
of the protocol, no request may be answered with a 500, and what is
written must be whole responses.

The first byte picks how the bytes are split into reads.
"""

from __future__ import annotations

import sys

import atheris
import twisted.internet.testing  # noqa: F401

with atheris.instrument_imports():
    from disperse.cluster.peer import server  # noqa: F401
    from disperse.testing.peerserver import peerConnection, peerServer

_SERVER = peerServer()


def testOneInput(data: bytes) -> None:
    if not data:
        return
    protocol, transport = peerConnection(_SERVER)
    chunk = data[0] % 64 or len(data)
    body = data[1:]
    for start in range(0, len(body), chunk):
        protocol.dataReceived(body[start : start + chunk])
    protocol.connectionLost()
    written = transport.value()
    if b"HTTP/1.1 500 " in written:
        raise AssertionError(f"500 for {data!r}: {written!r}")
    while written:
        head, separator, rest = written.partition(b"\r\n\r\n")
        if not separator or not head.startswith(b"HTTP/1.1 "):
            raise AssertionError(f"not a response: {written!r}")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        written = rest[length:]


if __name__ == "__main__":
    atheris.Setup(sys.argv, testOneInput)
    atheris.Fuzz()
