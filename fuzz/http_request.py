"""
Coverage-guided fuzzing of a node's HTTP front: raw bytes on a connection
to the whole public site (guarded channel, tokens and rate limits, API) in
memory (fuzz/peer_http.py fuzzes the node-to-node port). Nothing may raise
out of the channel, and no request may be answered with a 500.

The first byte picks how the bytes are split into reads.
"""

from __future__ import annotations

import sys

import atheris

# Twisted, Klein and Werkzeug are imported first, uninstrumented: coverage
# of the node's own code is what guides the search.
import klein  # noqa: F401
import twisted.web.server  # noqa: F401
import werkzeug.routing  # noqa: F401

with atheris.instrument_imports():
    from disperse.testing.site import inMemorySite
    from disperse.web import api, auth, limits  # noqa: F401

_SITE = inMemorySite()


def testOneInput(data: bytes) -> None:
    if not data:
        return
    answer = _SITE.exchange(data[1:], chunk=data[0] % 64)
    if b"HTTP/1.1 500 " in answer:
        raise AssertionError(f"500 for {data!r}: {answer!r}")


if __name__ == "__main__":
    atheris.Setup(sys.argv, testOneInput)
    atheris.Fuzz()
