"""
Sending an answer at once.

Twisted buffers every write to a TCP transport until the reactor's next
turn: the write registers the socket for writability (an C{epoll_ctl}), the
next poll reports it writable, the transport sends, then unregisters the
socket (another C{epoll_ctl}). A server that answers small requests as it
reads them pays two system calls and one more reactor event per answer for
nothing, since the socket's send buffer is nearly always empty then.
L{sendNow} sends at once when nothing is buffered ahead of the data, and
leaves to the transport whatever the kernel did not take, so ordering, flow
control and error handling stay the transport's.

Sending at once must not overtake what the reactor would have done first:
writes queued for the end of the turn that an answer may acknowledge (the
persistence log's group commit, L{disperse.persist.log.Log}) are made
before it, as they would be before a buffered write went out. A writer
registers with L{writeFirst} while it has such writes queued.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import tcp

# Exactly these types: a subclass may write differently.
_PLAIN_TCP = frozenset({tcp.Server, tcp.Client})

# The writes to make before anything is sent at once.
_writeFirst: set[Callable[[], object]] = set()


def writeFirst(write: Callable[[], object]) -> None:
    """
    Have the next L{sendNow} call C{write} before it sends: C{write} makes
    writes queued for the end of this reactor turn, which an answer about
    to be sent may acknowledge. Registering it again changes nothing.
    """
    _writeFirst.add(write)


def written(write: Callable[[], object]) -> None:
    """
    C{write} made its queued writes (at the end of the turn): nothing to
    make before sending any more.
    """
    _writeFirst.discard(write)


def sendNow(transport: Any, data: bytes) -> None:
    """
    Write C{data} to C{transport}, sending it from here when the transport
    is a plain TCP connection with nothing waiting to be sent.

    Anything else (TLS, a connection closing or closed, data already
    queued) goes through C{transport.write} unchanged.
    """
    while _writeFirst:
        _writeFirst.pop()()
    # A TCP connection itself, not anything wrapping one: a TLS transport
    # (TLSMemoryBIOProtocol) passes attribute lookups through to the TCP
    # connection under it, socket included, and that must never be written
    # to directly.
    if type(transport) not in _PLAIN_TCP:
        transport.write(data)
        return
    sock = transport.socket
    if (
        not data
        or getattr(transport, "TLS", False)
        or not getattr(transport, "connected", False)
        or getattr(transport, "disconnecting", True)
        or getattr(transport, "_writeDisconnected", True)
        or getattr(transport, "dataBuffer", True)
        or getattr(transport, "_tempDataBuffer", True)
    ):
        transport.write(data)
        return
    try:
        sent: int = sock.send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        # The connection failed; the transport finds out on its own write
        # and closes as usual.
        transport.write(data)
        return
    if sent < len(data):
        transport.write(data[sent:])
