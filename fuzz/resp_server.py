"""
Coverage-guided fuzzing of a node's Redis port: raw bytes on a connection
to the whole RESP front end (reader, dispatcher with tokens and rate
limits, every command's handler) over a node in memory
(L{disperse.testing.respserver}).

A crash is an exception out of the protocol, an C{ERR internal error}
reply (a handler failed in a way nobody meant), or output that is not
whole RESP replies.

The first byte picks the size of the reads (its low six bits; 0: all at
once) and, with its top bit, a node without tokens, so that commands run
without an C{AUTH} first.
"""

from __future__ import annotations

import sys

import atheris

# Twisted and hiredis are imported first, uninstrumented: coverage of the
# node's own code is what guides the search.
import hiredis
import twisted.internet.testing  # noqa: F401

with atheris.instrument_imports():
    from disperse.resp import admin, dispatch, server  # noqa: F401
    from disperse.testing.respserver import inMemoryRespPort

_WITH_TOKENS = inMemoryRespPort(withTokens=True)
_WITHOUT_TOKENS = inMemoryRespPort(withTokens=False)


def testOneInput(data: bytes) -> None:
    if not data:
        return
    port = _WITHOUT_TOKENS if data[0] & 0x80 else _WITH_TOKENS
    written = port.exchange(data[1:], chunk=data[0] & 0x3F)
    if b"-ERR internal error\r\n" in written:
        raise AssertionError(f"internal error for {data!r}: {written!r}")
    reader = hiredis.Reader()
    reader.feed(written)
    try:
        while reader.gets() is not False:
            pass
    except hiredis.ProtocolError as error:
        raise AssertionError(f"not RESP ({error}): {written!r}") from None
    if reader.has_data():
        raise AssertionError(f"a reply cut short: {written!r}")


if __name__ == "__main__":
    atheris.Setup(sys.argv, testOneInput)
    atheris.Fuzz()
