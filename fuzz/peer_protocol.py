"""
Coverage-guided fuzzing of the node-to-node message decoders (msgpack
requests and responses under /internal/v1/) and of the signature header
parser: bad input must raise L{ProtocolError} or L{SignatureError}.

The first byte picks the message kind (its low seven bits, an index in
L{messages.KINDS}) and whether the request or the response is decoded
(its high bit).
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from disperse.cluster.peer import messages, signatures
    from disperse.store import Record


class _Clock:
    def seconds(self) -> float:
        return 1_000_000.0


_VERIFIER = signatures.Verifier(
    signatures.deriveSecret("fuzzing cluster secret"), _Clock()
)


def testOneInput(data: bytes) -> None:
    if not data:
        return
    choice, body = data[0], data[1:]
    kinds = messages.KINDS
    kind = kinds[(choice & 0x7F) % len(kinds)]
    try:
        if choice & 0x80:
            messages.decodeResponse(kind, body)
        else:
            messages.decodeRequest(kind, body)
    except messages.ProtocolError:
        pass
    with contextlib.suppress(ValueError):
        Record.decode(body)
    with contextlib.suppress(signatures.SignatureError):
        _VERIFIER.verify(b"POST", b"/internal/v1/apply", b"", body)


if __name__ == "__main__":
    atheris.Setup(sys.argv, testOneInput)
    atheris.Fuzz()
