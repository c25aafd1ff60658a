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
while writes an answer may acknowledge are queued for the end of the turn
(the persistence log's group commit, L{disperse.persist.log.Log}; a writer
says so with L{writeFirst}), an answer on a plain TCP connection with
nothing buffered goes into the transport's buffer instead. The reactor
sends it only once the socket polls writable, and it starts watching for
that now, so the earliest is the next poll, which comes after the
end-of-turn calls have run: the log's write reaches the kernel first.
Anywhere that cannot be known (TLS, data buffered already, whose socket
may be written in this very poll), the queued writes are made first.
Making them for every answer would cost a write of the log per answer and
lose group commit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import tcp

# Exactly these types: a subclass may write differently.
_PLAIN_TCP = frozenset({tcp.Server, tcp.Client})

# Writes queued for the end of the turn: while there are any, nothing is
# sent at once.
_writeFirst: set[Callable[[], object]] = set()


def writeFirst(write: Callable[[], object]) -> None:
    """
    Send nothing at once (see L{sendNow}) until C{write}, which makes writes
    queued for the end of this reactor turn that an answer about to be sent
    may acknowledge, has run and said so (L{written}). Registering it again
    changes nothing.
    """
    _writeFirst.add(write)


def written(write: Callable[[], object]) -> None:
    """
    C{write} made its queued writes (at the end of the turn): nothing to
    make before sending any more.
    """
    _writeFirst.discard(write)


def writeQueued() -> None:
    """
    Make every write queued for the end of the turn now: for whoever must
    not leave them behind (a test that ends before its turn does).
    """
    while _writeFirst:
        _writeFirst.pop()()


def sendNow(transport: Any, data: bytes) -> None:
    """
    Write C{data} to C{transport}, sending it from here when the transport
    is a plain TCP connection with nothing waiting to be sent.

    Anything else (TLS, a connection closing or closed, data already
    queued, writes queued for the end of the turn: L{writeFirst}) goes
    through C{transport.write} unchanged.
    """
    # A TCP connection itself, not anything wrapping one: a TLS transport
    # (TLSMemoryBIOProtocol) passes attribute lookups through to the TCP
    # connection under it, socket included, and that must never be written
    # to directly.
    plain = type(transport) in _PLAIN_TCP
    if _writeFirst:
        # _nothingBuffered inlined: this runs for every answer.
        if plain and not (transport.dataBuffer or transport._tempDataBuffer):
            transport.write(data)
            return
        writeQueued()
    if not plain:
        transport.write(data)
        return
    sock = transport.socket
    if (
        not data
        or getattr(transport, "TLS", False)
        or not getattr(transport, "connected", False)
        or getattr(transport, "disconnecting", True)
        or getattr(transport, "_writeDisconnected", True)
        or not _nothingBuffered(transport)
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


def _nothingBuffered(transport: Any) -> bool:
    return not (
        getattr(transport, "dataBuffer", True)
        or getattr(transport, "_tempDataBuffer", True)
    )
