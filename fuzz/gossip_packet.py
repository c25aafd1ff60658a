"""
Coverage-guided fuzzing of the gossip packet decoder (UDP): any bytes must
either decode or raise L{WireError}; anything else is a crash.

The first byte of each input picks the receiver's settings (label,
keyring, whether plaintext is accepted), so one corpus covers them all.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from disperse.gossip import wire
    from disperse.gossip.crypto import Keyring

_KEYRING = Keyring(bytes(range(16)))
_LABELS = ("", "fuzz")


def testOneInput(data: bytes) -> None:
    if not data:
        return
    settings, body = data[0], data[1:]
    with contextlib.suppress(wire.WireError):
        wire.decodePacket(
            body,
            label=_LABELS[settings & 1],
            keyring=_KEYRING if settings & 2 else None,
            verifyIncoming=not settings & 4,
        )


if __name__ == "__main__":
    atheris.Setup(sys.argv, testOneInput)
    atheris.Fuzz()
