"""
Coverage-guided fuzzing of the gossip stream decoder (TCP push/pull,
pings, user messages), fed in chunks as a socket would deliver them: any
bytes must decode or raise L{WireError}.

The first byte picks the settings and the chunk size.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from disperse.gossip import wire
    from disperse.gossip.crypto import Keyring

_KEYRING = Keyring(bytes(range(16)))


def testOneInput(data: bytes) -> None:
    if not data:
        return
    settings, body = data[0], data[1:]
    chunk = (settings >> 3) + 1
    decoder = wire.StreamDecoder(
        label="fuzz" if settings & 1 else "",
        keyring=_KEYRING if settings & 2 else None,
        verifyIncoming=not settings & 4,
        maxSize=64 * 1024,
    )
    try:
        for start in range(0, len(body), chunk):
            decoder.feed(body[start : start + chunk])
        decoder.endOfStream()
    except wire.WireError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, testOneInput)
    atheris.Fuzz()
