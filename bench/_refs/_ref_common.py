"""
What the reference servers share: the dictionary behind C{/cache/<key>},
the JSON PUT body parsing, and a start-up that matches Disperse's (same
default reactor as C{twistd}, no per-request access log, C{gc.freeze()} once
listening).

The references are deliberately minimal so that the benchmark measures what
Disperse adds on top of the framework, not the framework itself.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twisted.internet.interfaces import IProtocolFactory
    from twisted.web.resource import IResource


def install_reactor() -> None:
    """
    Install the platform's default reactor (epoll on Linux), the one
    C{twistd} picks when given no C{--reactor}; call this before anything
    imports C{twisted.internet.reactor}.
    """
    from twisted.internet import default

    default.install()


class MemoryCache:
    """
    C{key -> (value, expiry)}; expiry 0.0 means never. Expired entries are
    dropped lazily on read.
    """

    def __init__(self) -> None:
        self._data: dict[str, tuple[bytes, float]] = {}

    def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires and expires <= time.monotonic():
            del self._data[key]
            return None
        return value

    def put_json(self, key: str, body: bytes) -> bool:
        """
        Store C{{"value": "...", "duration": "<ns>"}}; duration is a string or
        a number of nanoseconds, 0 or missing for no expiry. False when the
        body is not that.
        """
        try:
            doc: Any = json.loads(body)
            value = doc["value"]
            duration = int(doc.get("duration") or 0)
        except (ValueError, KeyError, TypeError, AttributeError):
            return False
        if not isinstance(value, str):
            return False
        expires = time.monotonic() + duration / 1e9 if duration > 0 else 0.0
        self._data[key] = (value.encode("utf-8"), expires)
        return True


def serve(name: str, resource: IResource, argv: Sequence[str] | None = None) -> None:
    """
    Serve C{resource} over HTTP with no access log (Disperse writes none
    per request either), as L{listen} describes.
    """
    from twisted.web.http import Request
    from twisted.web.server import Site

    class QuietSite(Site):
        noisy = False

        def log(self, request: Request) -> None:
            pass

    listen(name, QuietSite(resource), argv)


def listen(
    name: str, factory: IProtocolFactory, argv: Sequence[str] | None = None
) -> None:
    """
    Listen with C{factory} on 127.0.0.1 (C{--port}, 0 lets the OS choose),
    print the port, freeze the start-up heap once running (as Disperse
    does) and run the reactor until SIGTERM/SIGINT.
    """
    parser = argparse.ArgumentParser(description=f"{name} reference server")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    from twisted.internet import reactor
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.interfaces import IListeningPort
    from twisted.python.failure import Failure

    description = f"tcp:{args.port}:interface=127.0.0.1"
    endpoint = serverFromString(reactor, description)

    def listening(port: IListeningPort) -> None:
        host: Any = port.getHost()
        print(f"{name} ({type(reactor).__name__}) listening on port {host.port}")

    def failed(failure: Failure) -> None:
        print(f"{name}: cannot listen: {failure.getErrorMessage()}")
        reactor.stop()

    endpoint.listen(factory).addCallbacks(listening, failed)
    # As disperse.tap does: start-up objects leave the collector's reach.
    reactor.callWhenRunning(gc.freeze)
    reactor.run()
