"""
Limits on what one HTTP connection may cost a node, enforced while the
request is still being read, before any route sees it:

  - the request line and headers together: 431 beyond C{maxHeaderSize};
  - the body: 413 as soon as its declared length, or the bytes actually
    received, exceed C{maxBodySize}, so an oversized upload is never stored;
  - time: a request's headers must arrive within C{headerTimeout} of its
    first byte, and its body within C{bodyTimeout} after them (408, then
    the connection closes), so a client trickling bytes (slowloris) holds
    a connection for seconds, not for ever; an idle connection closes
    after C{idleTimeout};
  - connections: at most C{maxConnectionsPerClient} open from one address
    (beyond it, a 429 and the connection closes).

  - refusals: the answer goes out, our side closes, and whatever the
    client still sends is read and thrown away for up to
    C{lingerTimeout} seconds and C{lingerBytes} bytes (a lingering
    close), so that a client that writes its whole body before reading
    sees the answer rather than a reset connection;
  - answers: a client that stops reading gets no further answer (pipelined
    requests wait) until it reads, so it holds at most one answer's worth
    of memory until the idle timeout closes it.

Requests in flight are bounded by the site (L{disperse.web.service}).
All timers run on the reactor given to the site, so they are tested on a
L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel

from disperse.logs import logger
from disperse.security.limits import REASONS, HTTPLimits
from disperse.send import sendNow

# Chunked bodies are counted as received, framing included.
_CHUNK_SLACK = 64 * 1024
# An answer is sent when complete, or once this much of it is gathered.
_GATHER_LIMIT = 64 * 1024


def rawResponse(code: int, message: str, retryAfter: int | None = None) -> bytes:
    """
    A complete HTTP/1.1 response that closes the connection, for refusals
    made before a request object exists.
    """
    body = json.dumps({"error": message}).encode("utf-8")
    head = [
        b"HTTP/1.1 %d %s" % (code, REASONS.get(code, b"Error")),
        b"Content-Type: application/json",
        b"Content-Length: %d" % len(body),
        b"Connection: close",
    ]
    if retryAfter is not None:
        head.append(b"Retry-After: %d" % retryAfter)
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class GuardedChannel(HTTPChannel):
    """
    An L{HTTPChannel} that enforces L{HTTPLimits}. Its site provides
    C{limits} (an L{HTTPLimits}), C{connections} (a
    L{disperse.security.limits.ConnectionCounter})
    and C{timedOut} (a counter).
    """

    log = logger()

    # Twisted's own limits answer 400; ours, applied first, answer 431.
    totalHeadersSize = 1 << 30
    _host = ""
    _counted = False
    # One timer per connection, not one per request: it fires at the
    # earliest moment the request being read could be late, and looks.
    _deadline: IDelayedCall | None = None
    _inHeaders = False
    _phaseStart = 0.0
    _headerBytes = 0
    _bodyBytes = 0
    _bodyLimit = 0
    _readingBody = False
    _refused = False
    # Bytes a refused client may still send before the connection is
    # dropped; None when not lingering.
    _lingerLeft: int | None = None
    _transportFull = False
    _doneWhileFull: Any = None

    _hostAddress: Any = None
    # The answer being written: Twisted writes an answer's head and body
    # separately, each deferred to the reactor's next turn; gathered here,
    # they go out together, at once, when the answer is done.
    _gathered: list[bytes] | None = None
    _gatheredSize = 0

    def getHost(self) -> Any:
        # Twisted asks the socket for the local address (a getsockname call)
        # for every request; it does not change for a connection's life.
        if self._hostAddress is None:
            self._hostAddress = super().getHost()
        return self._hostAddress

    def connectionMade(self) -> None:
        site: Any = self.site  # type: ignore[attr-defined]
        limits: HTTPLimits = site.limits
        self.timeOut = limits.idleTimeout  # type: ignore[assignment]
        self.MAX_LENGTH = limits.maxHeaderSize
        super().connectionMade()
        assert self.transport is not None
        self._host = str(getattr(self.transport.getPeer(), "host", ""))
        if not site.connections.opened(self._host):
            self._refuse(
                429,
                "too many connections from this client",
                retryAfter=1,
            )
            return
        self._counted = True
        # A new connection owes us a request promptly.
        self._startPhase(headers=True)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self._gathered = None
        self._cancelDeadline()
        if self._counted:
            self._counted = False
            self.site.connections.closed(self._host)  # type: ignore[attr-defined]
        super().connectionLost(reason)

    # Reading a request

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            self._discard(len(data))
            return
        # The first bytes of a request start its clock; between requests on
        # a kept-alive connection only the idle timeout runs.
        if not self._inHeaders and not self._readingBody:
            self._startPhase(headers=True)
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            # The rest of what arrived with the refused request.
            self._discard(len(line) + 2)
            return
        limits: HTTPLimits = self.site.limits  # type: ignore[attr-defined]
        first = self._headerBytes == 0
        self._headerBytes += len(line) + 2
        if self._headerBytes > limits.maxHeaderSize:
            self._refuse(431, "request headers are too large")
            return
        if first and line:
            self._bodyLimit = limits.maxBodySize
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        # A line longer than all headers may be: a request line means an
        # overlong URI.
        if self._headerBytes == 0:
            self._refuse(414, "request line is too long")
        else:
            self._refuse(431, "request headers are too large")

    def allHeadersReceived(self) -> None:
        # Before Twisted's own handling, so that a client that asked
        # "Expect: 100-continue" for an oversized body is told 413, not
        # told to send it.
        length = self.length
        if length is not None and length > self._bodyLimit:
            self._refuse(413, f"body is larger than {self._bodyLimit} bytes")
            return
        self._inHeaders = False
        super().allHeadersReceived()
        if length != 0:
            self._readingBody = True
            self._bodyBytes = 0
            self._startPhase(headers=False)

    def rawDataReceived(self, data: bytes) -> None:
        if self._refused:
            self._discard(len(data))
            return
        if self._readingBody:
            self._bodyBytes += len(data)
            if self._bodyBytes > self._bodyLimit + _CHUNK_SLACK:
                self._refuse(413, f"body is larger than {self._bodyLimit} bytes")
                return
        super().rawDataReceived(data)

    def allContentReceived(self) -> None:
        self._readingBody = False
        self._inHeaders = False
        self._headerBytes = 0
        super().allContentReceived()

    # Answers to clients that do not read

    def pauseProducing(self) -> None:
        # The transport's buffer is full: the client is not reading.
        self._transportFull = True
        super().pauseProducing()

    def resumeProducing(self) -> None:
        self._transportFull = False
        super().resumeProducing()
        done, self._doneWhileFull = self._doneWhileFull, None
        if done is not None:
            super().requestDone(done)

    # Writing answers

    def writeHeaders(
        self, version: bytes, code: bytes, reason: bytes, headers: Any
    ) -> None:
        # Twisted writes the head straight to the transport: lend it this
        # channel, whose writes gather, instead.
        transport = self.transport
        self.transport = self
        try:
            super().writeHeaders(version, code, reason, headers)
        finally:
            self.transport = transport

    def write(self, data: bytes) -> None:
        self._gather((data,))

    def writeSequence(self, iovec: Any) -> None:
        self._gather(iovec)

    def _gather(self, parts: Any) -> None:
        if self._gathered is None:
            self._gathered = []
        for part in parts:
            self._gathered.append(part)
            self._gatheredSize += len(part)
        if self._gatheredSize >= _GATHER_LIMIT:
            self._send()

    def _send(self) -> None:
        gathered, self._gathered = self._gathered, None
        self._gatheredSize = 0
        if gathered and self.transport is not None:
            sendNow(
                self.transport,
                gathered[0] if len(gathered) == 1 else b"".join(gathered),
            )

    def loseConnection(self) -> None:
        self._send()
        super().loseConnection()

    def requestDone(self, request: Any) -> None:
        # The answer is whole: out with it, before anything else is written
        # or the connection closes.
        self._send()
        # Twisted stops reading from a client whose answers pile up, but
        # still serves the requests it had already read, pipelined, each
        # answer added to the pile: a few kilobytes of GETs for a large
        # value held hundreds of megabytes. The next request waits until
        # the client has read.
        if self._transportFull and self.persistent:
            self._doneWhileFull = request
            return
        super().requestDone(request)

    # Deadlines and refusals

    def _startPhase(self, headers: bool) -> None:
        site: Any = self.site  # type: ignore[attr-defined]
        limits: HTTPLimits = site.limits
        self._inHeaders = headers
        self._phaseStart = now = site.reactor.seconds()
        due = now + (limits.headerTimeout if headers else limits.bodyTimeout)
        deadline = self._deadline
        if deadline is None:
            self._deadline = self.callLater(due - now, self._check)
        elif deadline.getTime() > due:
            deadline.reset(due - now)

    def _check(self) -> None:
        """
        The timer fired: refuse the request being read if it is late, else
        wait for the moment it would be (nothing, between requests).
        """
        self._deadline = None
        if not (self._inHeaders or self._readingBody):
            return
        site: Any = self.site  # type: ignore[attr-defined]
        limits: HTTPLimits = site.limits
        allowed = limits.headerTimeout if self._inHeaders else limits.bodyTimeout
        now = site.reactor.seconds()
        late = self._phaseStart + allowed - now
        if late <= 0:
            self._tooSlow()
        else:
            self._deadline = self.callLater(late, self._check)

    def _cancelDeadline(self) -> None:
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _tooSlow(self) -> None:
        self._deadline = None
        self.site.timedOut += 1  # type: ignore[attr-defined]
        self.log.debug(
            "closing a connection from {client}: too slow", client=self._host
        )
        self._refuse(408, "request not received in time")

    def _refuse(self, code: int, message: str, retryAfter: int | None = None) -> None:
        """
        Answer C{code} and close, whatever state the parser is in.
        """
        if self._refused:
            return
        self._refused = True
        self._send()
        self._cancelDeadline()
        self.setTimeout(None)
        transport = self.transport
        assert transport is not None
        transport.write(rawResponse(code, message, retryAfter))
        # A client too slow to send its request gets no more time.
        if code != 408 and self._linger(transport):
            return
        transport.loseConnection()
        # A client that does not read its answer cannot hold the socket.
        self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)

    # Lingering close

    def _linger(self, transport: Any) -> bool:
        """
        Close our side once the answer is out, but go on reading (and
        throwing away) what the client still sends, for a while: closing a
        socket with unread bytes resets the connection, and a client that
        writes its whole body before reading (Python's urllib, requests)
        would see the reset, not the answer. C{False} if this transport
        cannot half-close, or the limits allow no lingering.
        """
        limits: HTTPLimits = self.site.limits  # type: ignore[attr-defined]
        loseWriteConnection = getattr(transport, "loseWriteConnection", None)
        if loseWriteConnection is None or limits.lingerTimeout <= 0:
            return False
        self._lingerLeft = limits.lingerBytes
        loseWriteConnection()
        self._abortingCall = self.callLater(limits.lingerTimeout, self._endLinger)
        return True

    def _discard(self, size: int) -> None:
        if self._lingerLeft is None:
            return
        self._lingerLeft -= size
        if self._lingerLeft < 0:
            self._endLinger()

    def _endLinger(self) -> None:
        """
        The client sent more, or for longer, than lingering allows: drop it.
        """
        self._lingerLeft = None
        aborting, self._abortingCall = self._abortingCall, None
        if aborting is not None and aborting.active():
            aborting.cancel()
        transport: Any = self.transport
        if transport is not None:
            self.log.debug(
                "closing a refused connection from {client}: still sending",
                client=self._host,
            )
            transport.abortConnection()
