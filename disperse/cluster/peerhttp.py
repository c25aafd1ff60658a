"""
A lean HTTP/1.1 client for node-to-node calls.

Replication sends thousands of small POSTs a second to a handful of peers,
always to the same few addresses, always with a body already in memory.
A general client (an C{Agent} under C{treq}) pays on every call for URL
parsing and IDNA checks, header objects, a pool lookup, a body producer
that writes the body in a later reactor turn (a second system call, and a
second wake-up of the peer), and a chain of Deferreds; measured on a
loopback pair that came to about 1.2 ms of the caller's CPU per call, more
than the work the call carries.

This module does only what those calls need: a persistent connection per
in-flight request, the request head and body written in one C{write}, a
response read by C{Content-Length} (or chunked, or to the end of the
connection, which a peer of another version might send), and a timeout
that closes the connection. Nothing here knows about replication.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionClosed, TimeoutError
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from disperse.send import sendNow

# A response head longer than this is not from a Disperse peer.
MAX_HEAD = 64 * 1024


class BadResponse(ConnectionClosed):
    """
    The peer's answer was not HTTP/1.1 this client can read.
    """


@dataclass(frozen=True)
class Response:
    code: int
    body: bytes


def requestHead(method: bytes, path: bytes, host: bytes, headers: bytes) -> bytes:
    """
    The head of a request, up to where its C{Content-Length} goes.
    C{headers} is zero or more complete C{Name: value\\r\\n} lines.
    """
    return b"%s %s HTTP/1.1\r\nHost: %s\r\n%s" % (method, path, host, headers)


class PeerConnection(Protocol):
    """
    One persistent connection, one request at a time.

    @ivar idle: called with this connection whenever it can take a request.
    @ivar lost: called once when the connection is gone.
    """

    def __init__(
        self,
        clock: IReactorTime,
        idle: Callable[[PeerConnection], None],
        lost: Callable[[PeerConnection], None],
    ) -> None:
        self._clock = clock
        self._idle = idle
        # When this connection last became free (set by its pool).
        self.idleSince = 0.0
        self._lost = lost
        self._waiting: Deferred[Response] | None = None
        self._timeout: IDelayedCall | None = None
        self._buffer = b""
        self._code = 0
        self._length: int | None = None
        self._chunked = False
        self._closeAfter = False
        self._inBody = False
        self._body: list[bytes] = []
        self._received = 0
        self.connected = False
        self._gone = False

    @property
    def busy(self) -> bool:
        return self._waiting is not None

    def request(self, head: bytes, body: bytes, timeout: float) -> Deferred[Response]:
        """
        Send a request: C{head} from L{requestHead}, then C{body}.
        """
        assert self._waiting is None, "one request at a time"
        assert self.transport is not None
        done: Deferred[Response] = Deferred()
        self._waiting = done
        self._timeout = self._clock.callLater(timeout, self._timedOut)
        sendNow(
            self.transport, b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)
        )
        return done

    # Protocol

    def connectionMade(self) -> None:
        self.connected = True
        self._idle(self)

    def dataReceived(self, data: bytes) -> None:
        if self._waiting is None:
            # Nothing was asked: a peer speaking out of turn is not one to
            # keep a connection to.
            self._abort()
            return
        self._buffer += data
        try:
            self._parse()
        except BadResponse as e:
            self._fail(Failure(e))
            self._abort()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.connected = False
        self._gone = True
        if self._waiting is not None:
            if self._inBody and self._length is None and not self._chunked:
                # A body delimited by the end of the connection.
                self._finish()
            else:
                self._fail(reason)
        self._lost(self)

    # Parsing

    def _parse(self) -> None:
        while self._waiting is not None:
            if not self._inBody:
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buffer) > MAX_HEAD:
                        raise BadResponse("response head too long")
                    return
                self._readHead(self._buffer[:end])
                self._buffer = self._buffer[end + 4 :]
                self._inBody = True
            if self._chunked:
                if not self._readChunks():
                    return
            elif self._length is None:
                self._received += len(self._buffer)
                self._body.append(self._buffer)
                self._buffer = b""
                return
            else:
                wanted = self._length - self._received
                if len(self._buffer) < wanted:
                    self._body.append(self._buffer)
                    self._received += len(self._buffer)
                    self._buffer = b""
                    return
                self._body.append(self._buffer[:wanted])
                self._buffer = self._buffer[wanted:]
            self._finish()

    def _readHead(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        status = lines[0].split(b" ", 2)
        if len(status) < 2 or not status[0].startswith(b"HTTP/1."):
            raise BadResponse(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        try:
            self._code = int(status[1])
        except ValueError:
            raise BadResponse(f"bad status code: {status[1][:10]!r}") from None
        self._length = None
        self._chunked = False
        self._closeAfter = status[0] == b"HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip()
            if name == b"content-length":
                try:
                    self._length = int(value)
                except ValueError:
                    raise BadResponse("bad Content-Length") from None
                if self._length < 0:
                    raise BadResponse("bad Content-Length")
            elif name == b"transfer-encoding":
                self._chunked = value.lower() == b"chunked"
            elif name == b"connection":
                self._closeAfter = value.lower() == b"close"
        if self._chunked:
            self._length = None

    def _readChunks(self) -> bool:
        """
        Consume whole chunks from the buffer; C{True} once the last one
        (and the trailer) is in.
        """
        while True:
            end = self._buffer.find(b"\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD:
                    raise BadResponse("chunk size line too long")
                return False
            sizeText = self._buffer[:end].split(b";", 1)[0].strip()
            try:
                size = int(sizeText, 16)
            except ValueError:
                raise BadResponse("bad chunk size") from None
            if size == 0:
                # No trailers from a Disperse peer: the last chunk is
                # followed by an empty line.
                if len(self._buffer) < end + 4:
                    return False
                self._buffer = self._buffer[end + 4 :]
                return True
            if len(self._buffer) < end + 2 + size + 2:
                return False
            self._body.append(self._buffer[end + 2 : end + 2 + size])
            self._buffer = self._buffer[end + 2 + size + 2 :]

    def _finish(self) -> None:
        response = Response(self._code, b"".join(self._body))
        done = self._take()
        self._inBody = False
        self._body = []
        self._received = 0
        if self._closeAfter or (self._length is None and not self._chunked):
            self._abort()
        elif self._buffer:
            # Bytes after a complete response that nobody asked for.
            self._abort()
        if done is not None:
            done.callback(response)
        if self.connected and self._waiting is None:
            self._idle(self)

    def _take(self) -> Deferred[Response] | None:
        done, self._waiting = self._waiting, None
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None
        return done

    def _fail(self, reason: Failure) -> None:
        done = self._take()
        if done is not None:
            done.errback(reason)

    def _timedOut(self) -> None:
        self._timeout = None
        self._fail(Failure(TimeoutError("peer did not answer in time")))
        self._abort()

    def _abort(self) -> None:
        self.connected = False
        if self.transport is not None and not self._gone:
            self._gone = True
            self.transport.abortConnection()  # type: ignore[attr-defined]
