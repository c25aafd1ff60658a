"""
The server side of the node-to-node protocol: the port other nodes call.

Two layers:

  - L{PeerAPI} answers one call: it checks the signature before anything
    else (so a client can never forge a replica write), decodes the request,
    hands it to the local replica (L{LocalReplica}, all this module knows of
    the node) through a table of kind to handler, and encodes the answer.
    No I/O.
  - L{PeerServerProtocol} and L{PeerServerFactory}: a small HTTP/1.1 server
    that knows only these calls (C{POST /internal/v1/<kind>} with a
    C{Content-Length} body) and hands each to L{PeerAPI.answer}.

Peer calls come by the thousand a second under load. Through twisted.web
each one cost about 0.15 ms of request machinery (header objects, request
bookkeeping, metrics, routing) around 0.04 ms of work; here a request is
one split of its head and one write of its answer. The framing bounds what
an unsigned stranger can make the node hold: a head of at most
C{maxHeaderSize} bytes, a body of at most C{maxPeerBodySize}, each received
in time, and idle connections closed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Factory
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES

from disperse.cluster.peer.messages import (
    PATH_PREFIX,
    REPAIR_QUERY,
    ApplyRequest,
    ApplyResponse,
    CountsRequest,
    CountsResponse,
    DigestRequest,
    DigestResponse,
    FetchRequest,
    FetchResponse,
    RangeRequest,
    RangeResponse,
    RootsRequest,
    RootsResponse,
)
from disperse.cluster.peer.signatures import SIGNATURE_HEADER, SignatureError, Verifier
from disperse.logs import logger
from disperse.persist.log import DiskUnavailable
from disperse.security.limits import REASONS
from disperse.send import sendNow
from disperse.store import Record
from disperse.store.merkle import Digests

TEXT = b"text/plain; charset=utf-8"
MSGPACK = b"application/x-msgpack"


class NotCaughtUp(Exception):
    """
    This replica is still catching up on the partition of a key asked for;
    the asker should read another replica.
    """


class DamagedRecords(ValueError):
    """
    Some records of a call did not match their content hashes: they were
    not merged (the others were), and the call fails so that the sender
    sends them again.
    """

    def __init__(self, count: int) -> None:
        super().__init__(f"{count} damaged records not applied")
        self.count = count


class LocalReplica(Protocol):
    """
    What the server asks of this node's replica (in a node,
    L{disperse.cluster.replica.Replica}): the local half of each call.
    Records travel encoded (L{Record.encode}).
    """

    def applyLocal(
        self,
        records: Sequence[tuple[str, bytes]],
        evict: bool = True,
        sender: str = "a peer",
    ) -> Sequence[bool]:
        """
        Merge C{records}; whether each changed the replica.

        @param evict: C{False} for a repair: a key with no entry here is
            taken only if that evicts nothing.
        @param sender: the caller, for logs.
        @raise DamagedRecords: for records that did not match their content
            hashes (not merged; the others were).
        @raise ValueError: for a record that is not one.
        """

    def whenSynced(self) -> Deferred[None] | None:
        """
        What to wait on before acknowledging records applied (the node
        syncs its log before every acknowledgement), or L{None}.
        """

    def fetchLocal(self, keys: Sequence[str]) -> Sequence[bytes | None]:
        """
        The record of each of C{keys}, tombstones and expired ones included.

        @raise NotCaughtUp: if a key's partition is still being caught up
            on; the asker reads another replica.
        """

    def rootsLocal(self, partitions: Sequence[int]) -> Sequence[bytes]:
        """
        The Merkle root of each of C{partitions}.

        @raise ValueError: for a partition outside the table.
        """

    def countsLocal(self, partitions: Sequence[int]) -> Sequence[int | None]:
        """
        How many keys this replica holds of each of C{partitions}, or
        L{None} for one it is still catching up on.

        @raise ValueError: for a partition outside the table.
        """

    def digestsLocal(self, partition: int, level: int, nodes: Sequence[int]) -> Digests:
        """
        The digests of C{nodes} of C{level} of C{partition}'s Merkle tree.

        @raise ValueError: for a partition, level or node outside the tree.
        """

    def rangeLocal(
        self, partition: int, leaves: Sequence[int]
    ) -> Sequence[tuple[str, Record]]:
        """
        The records of C{leaves} of C{partition}'s Merkle tree.

        @raise ValueError: for a partition or leaf outside the tree.
        """


# One handler per kind of call: the request body (and the query, and the
# caller's address for logs) in, the response body out. Each raises
# ValueError (ProtocolError among them) for a request that is not valid.


def _apply(
    replica: LocalReplica, body: bytes, query: bytes, client: str
) -> bytes | Deferred[bytes]:
    records = ApplyRequest.decode(body).records
    # A repair (anti-entropy) must not evict to take a key.
    applied = replica.applyLocal(records, evict=query != REPAIR_QUERY, sender=client)
    answer = ApplyResponse(tuple(applied)).encode()
    synced = replica.whenSynced()
    if synced is None:
        return answer
    return synced.addCallback(lambda _: answer)


def _fetch(replica: LocalReplica, body: bytes, query: bytes, client: str) -> bytes:
    keys = FetchRequest.decode(body).keys
    return FetchResponse(tuple(replica.fetchLocal(keys))).encode()


def _roots(replica: LocalReplica, body: bytes, query: bytes, client: str) -> bytes:
    partitions = RootsRequest.decode(body).partitions
    return RootsResponse(tuple(replica.rootsLocal(partitions))).encode()


def _counts(replica: LocalReplica, body: bytes, query: bytes, client: str) -> bytes:
    partitions = CountsRequest.decode(body).partitions
    return CountsResponse(tuple(replica.countsLocal(partitions))).encode()


def _digest(replica: LocalReplica, body: bytes, query: bytes, client: str) -> bytes:
    asked = DigestRequest.decode(body)
    digests = replica.digestsLocal(asked.partition, asked.level, asked.nodes)
    return DigestResponse.fromDigests(digests).encode()


def _range(replica: LocalReplica, body: bytes, query: bytes, client: str) -> bytes:
    wanted = RangeRequest.decode(body)
    inRange = replica.rangeLocal(wanted.partition, wanted.leaves)
    return RangeResponse(tuple((key, r.encode()) for key, r in inRange)).encode()


Handler = Callable[[LocalReplica, bytes, bytes, str], bytes | Deferred[bytes]]

HANDLERS: dict[str, Handler] = {
    "apply": _apply,
    "fetch": _fetch,
    "roots": _roots,
    "digest": _digest,
    "range": _range,
    "counts": _counts,
}


class PeerAPI:
    """
    Answers the calls under L{PATH_PREFIX}, and counts them.

    @ivar served: calls received, framed or not.
    @ivar refused: calls refused (unsigned, unframeable, unknown, invalid).
    """

    log = logger()

    def __init__(self, replica: LocalReplica, verifier: Verifier) -> None:
        self._replica = replica
        self._verifier = verifier
        self.served = 0
        self.refused = 0

    def answer(
        self,
        kind: str,
        query: bytes,
        target: bytes,
        body: bytes,
        signature: bytes | None,
        client: str,
    ) -> tuple[int, bytes, bytes] | Deferred[tuple[int, bytes, bytes]]:
        """
        Serve one call, whichever server carried it: its status, content
        type and body, at once or (a write the node must sync first) later.

        @param kind: the call, the path's last segment (C{apply}, ...).
        @param target: the request target as sent (path and query), which
            the signature covers.
        @param client: the caller's address, for logs.
        """
        self.served += 1
        try:
            self._verifier.verify(b"POST", target, body, signature)
        except SignatureError as e:
            return self.refusal(client, 401, str(e))
        handler = HANDLERS.get(kind)
        if handler is None:
            return self.refusal(client, 404, "no such call")
        try:
            answer = handler(self._replica, body, query, client)
        except Exception as e:
            return self._failed(e, client)
        if isinstance(answer, Deferred):
            return answer.addCallbacks(
                lambda body: (200, MSGPACK, body),
                lambda failure: self._failed(failure.value, client),
            )
        return 200, MSGPACK, answer

    def _failed(self, error: BaseException, client: str) -> tuple[int, bytes, bytes]:
        if isinstance(error, NotCaughtUp):
            # Not an error of the asker's: it reads another replica.
            return 503, TEXT, b"catching up"
        if isinstance(error, DiskUnavailable):
            return 507, TEXT, str(error).encode("utf-8")
        if isinstance(error, DamagedRecords):
            # Each record was logged and counted already.
            self.refused += 1
            return 422, TEXT, str(error).encode("utf-8")
        if isinstance(error, ValueError):
            # ProtocolError, and a partition, level or node outside the
            # tree.
            return self.refusal(client, 400, str(error))
        self.log.failure("internal error serving a peer request", Failure(error))
        return 500, TEXT, b"internal error"

    def refusal(self, client: str, code: int, reason: str) -> tuple[int, bytes, bytes]:
        self.refused += 1
        self.log.warn(
            "refused a peer request from {client}: {reason}",
            client=client,
            reason=reason,
        )
        return code, TEXT, reason.encode("utf-8")


# The HTTP/1.1 framing


class ServerLimits(Protocol):
    """
    The limits the server enforces (those of the node's
    L{disperse.security.limits.HTTPLimits}).
    """

    @property
    def maxHeaderSize(self) -> int: ...
    @property
    def maxPeerBodySize(self) -> int: ...
    @property
    def headerTimeout(self) -> float: ...
    @property
    def bodyTimeout(self) -> float: ...


# Reason phrases: Twisted's, but those the public port words otherwise
# (disperse.security.limits.REASONS), so that both ports say the same.
_REASONS: dict[int, bytes] = {**RESPONSES, **REASONS}

# How often connections are checked against their deadlines: timeouts are
# seconds long, so a second's slack costs nothing and saves a timer per
# request.
SWEEP_INTERVAL = 1.0
# More connections than any cluster's peers keep open (eight per peer).
MAX_CONNECTIONS = 4096
# Idle connections are closed after this long: longer than peers keep them
# idle (disperse.cluster.peer.client.MAX_IDLE), so that they, not this server,
# close them, and no request is sent into a closing connection.
IDLE_TIMEOUT = 120.0

_SIGNATURE = SIGNATURE_HEADER.lower()

# What a connection is doing, for its deadline.
_IDLE, _HEAD, _BODY = 0, 1, 2


def _response(code: int, contentType: bytes, body: bytes, close: bool) -> bytes:
    return b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n%s" % (
        code,
        _REASONS.get(code, b"Error"),
        contentType,
        len(body),
        b"Connection: close\r\n" if close else b"",
        body,
    )


class _BadRequest(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class PeerServerProtocol(TwistedProtocol):
    """
    One connection from a peer: requests in order, each answered before the
    next is read.
    """

    def __init__(self, factory: PeerServerFactory, client: str) -> None:
        self._factory = factory
        self._client = client
        self._buffer = b""
        # The part of a body received so far, while it is incomplete.
        self._parts: list[bytes] = []
        self._have = 0
        # The head of the request whose body is awaited.
        self._kind = ""
        self._target = b""
        self._signature: bytes | None = None
        self._length = 0
        self._closeAfter = False
        self._state = _IDLE
        self._since = factory.clock.seconds()
        self._closing = False
        # An answer is awaited (see _step): requests wait in the buffer.
        self._waiting = False

    def connectionMade(self) -> None:
        self._factory.connections.add(self)

    def connectionLost(self, reason: object = None) -> None:
        self._factory.connections.discard(self)

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        if self._parts:
            # Collecting a body: joined once, when whole (adding each chunk
            # to one bytes object would copy a 16 MiB repair batch hundreds
            # of times).
            self._parts.append(data)
            self._have += len(data)
            if self._have < self._length:
                return
            data = b"".join(self._parts)
            self._parts = []
        self._buffer += data
        if self._waiting:
            return
        try:
            while not self._closing and self._step():
                pass
        except _BadRequest as e:
            self._refuse(e.code, e.reason)

    def _step(self) -> bool:
        """
        Take one head or one body off the buffer; whether to go on.
        """
        buffer = self._buffer
        limits = self._factory.limits
        if self._state != _BODY:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > limits.maxHeaderSize:
                    raise _BadRequest(431, "request head too large")
                if buffer and self._state == _IDLE:
                    self._state = _HEAD
                    self._since = self._factory.clock.seconds()
                return False
            if end > limits.maxHeaderSize:
                raise _BadRequest(431, "request head too large")
            self._parseHead(buffer[:end])
            self._buffer = buffer = buffer[end + 4 :]
            self._state = _BODY
            self._since = self._factory.clock.seconds()
        if len(buffer) < self._length:
            if buffer:
                self._parts = [buffer]
                self._have = len(buffer)
                self._buffer = b""
            return False
        body = buffer[: self._length]
        self._buffer = buffer[self._length :]
        self._state = _HEAD if self._buffer else _IDLE
        self._since = self._factory.clock.seconds()
        answered = self._factory.api.answer(
            self._kind,
            self._target.partition(b"?")[2],
            self._target,
            body,
            self._signature,
            self._client,
        )
        if isinstance(answered, Deferred):
            # Answers go out in order: nothing more is read until this one
            # is sent.
            self._waiting = True
            answered.addCallback(self._answeredLater)
            return False
        return self._send(answered)

    def _send(self, answered: tuple[int, bytes, bytes]) -> bool:
        code, contentType, answer = answered
        transport = self.transport
        assert transport is not None
        sendNow(transport, _response(code, contentType, answer, self._closeAfter))
        if self._closeAfter:
            self._close()
            return False
        return True

    def _answeredLater(self, answered: tuple[int, bytes, bytes]) -> None:
        self._waiting = False
        if self._closing or self.transport is None:
            return
        try:
            if self._send(answered):
                while not self._closing and not self._waiting and self._step():
                    pass
        except _BadRequest as e:
            self._refuse(e.code, e.reason)

    def _parseHead(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            raise _BadRequest(400, "malformed request line")
        method, target, version = parts
        length: int | None = None
        signature: bytes | None = None
        close = version != b"HTTP/1.1"
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise _BadRequest(400, "malformed header")
            name = name.strip().lower()
            value = value.strip()
            if name == b"content-length":
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise _BadRequest(400, "bad Content-Length")
                length = int(value)
            elif name == _SIGNATURE:
                signature = value
            elif name == b"transfer-encoding":
                raise _BadRequest(501, "only Content-Length bodies are taken")
            elif name == b"connection":
                close = close or value.lower() == b"close"
        path = target.partition(b"?")[0]
        if not path.startswith(PATH_PREFIX) or b"/" in path[len(PATH_PREFIX) :]:
            raise _BadRequest(404, "no such call")
        if method != b"POST":
            raise _BadRequest(405, "method not allowed")
        if length is None:
            raise _BadRequest(411, "Content-Length required")
        if length > self._factory.limits.maxPeerBodySize:
            raise _BadRequest(413, "body too large")
        self._kind = path[len(PATH_PREFIX) :].decode("ascii", "replace")
        self._target = target
        self._signature = signature
        self._length = length
        self._closeAfter = close

    def _refuse(self, code: int, reason: str) -> None:
        # A request that cannot be framed leaves the stream unreadable
        # after it: answer and close.
        api = self._factory.api
        api.served += 1
        code, contentType, body = api.refusal(self._client, code, reason)
        transport = self.transport
        assert transport is not None
        transport.write(_response(code, contentType, body, True))
        self._close()

    def _close(self) -> None:
        self._closing = True
        self._buffer = b""
        self._parts = []
        transport = self.transport
        assert transport is not None
        transport.loseConnection()

    def checkDeadline(self, now: float) -> None:
        """
        Close the connection if it has been idle, or on one request, for
        too long.
        """
        limits = self._factory.limits
        if self._state == _IDLE:
            if now - self._since > IDLE_TIMEOUT:
                self._close()
        elif self._state == _HEAD:
            if now - self._since > limits.headerTimeout:
                self._refuse(408, "request head not received in time")
        elif now - self._since > limits.bodyTimeout:
            self._refuse(408, "request body not received in time")


class PeerServerFactory(Factory):
    """
    Builds L{PeerServerProtocol}s for the node-to-node port, and closes
    the connections past their deadlines. Looks like a L{DisperseSite} to
    L{disperse.web.service.HTTPService}: nothing is ever left in flight,
    each call being answered in the turn its body arrives.
    """

    log = logger()
    noisy = False
    inFlight = 0

    def __init__(self, api: PeerAPI, limits: ServerLimits, clock: IReactorTime) -> None:
        self.api = api
        self.limits = limits
        self.clock = clock
        self.connections: set[PeerServerProtocol] = set()
        self._sweep = LoopingCall(self._checkDeadlines)
        self._sweep.clock = clock

    def startFactory(self) -> None:
        self._sweep.start(SWEEP_INTERVAL, now=False)

    def stopFactory(self) -> None:
        if self._sweep.running:
            self._sweep.stop()

    def buildProtocol(self, addr: IAddress | None) -> TwistedProtocol | None:
        if len(self.connections) >= MAX_CONNECTIONS:
            self.log.warn(
                "refused a node-to-node connection: {count} open already",
                count=len(self.connections),
            )
            return None
        return PeerServerProtocol(self, str(getattr(addr, "host", "?")))

    def whenDrained(self) -> Deferred[None]:
        return succeed(None)

    def _checkDeadlines(self) -> None:
        now = self.clock.seconds()
        for connection in list(self.connections):
            connection.checkDeadline(now)
