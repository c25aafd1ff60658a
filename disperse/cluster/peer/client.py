"""
The client side of the node-to-node protocol: the production L{PeerClient}
(L{HTTPPeerClient}), its connection pool, and the HTTP/1.1 framing of its
calls (L{PeerConnection}).

Each call is signed with the cluster secret
(L{disperse.cluster.peer.signatures}) and carried over persistent
connections. Calls to the same peer that arrive while a request to it is in
flight are gathered into the next request, so a burst of small writes costs
a few round trips, not one each. Anti-entropy calls (digests, ranges,
repairs) are rare and already sized by their caller, so they go one request
each. Every call fails after the timeout rather than hanging.

Why a client of its own rather than an C{Agent} under C{treq}: replication
sends thousands of small POSTs a second to a handful of peers, always to the
same few addresses, always with a body already in memory. A general client
pays on every call for URL parsing and IDNA checks, header objects, a pool
lookup, a body producer that writes the body in a later reactor turn (a
second system call, and a second wake-up of the peer), and a chain of
Deferreds; measured on a loopback pair that came to about 1.2 ms of the
caller's CPU per call, more than the work the call carries.
L{PeerConnection} does only what these calls need: a persistent connection
per in-flight request, the request head and body written in one C{write}, a
response read by C{Content-Length} (or chunked, or to the end of the
connection, which a peer of another version might send), and a timeout that
closes the connection.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.error import ConnectError, ConnectionClosed, TimeoutError
from twisted.internet.interfaces import (
    IDelayedCall,
    IOpenSSLClientConnectionCreator,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

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
from disperse.cluster.peer.signatures import NONCE_SIZE, SIGNATURE_HEADER, Signer
from disperse.logs import logger
from disperse.send import sendNow
from disperse.store import Record
from disperse.store.merkle import Digests

# One connection: the HTTP/1.1 framing of a call

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


# Calls: the pool and the client

# At most this many requests in flight to one peer, per kind. One: whatever
# is asked meanwhile waits for its answer and goes in the next request, so
# under load each call carries more items. Each call costs far more (two
# processes' HTTP framing, syscalls and wake-ups) than an item in it; two in
# flight made a third more calls per GET and cost about a tenth more CPU
# per GET on a loaded 3-node cluster.
MAX_IN_FLIGHT = 1
# Connections kept to one peer: room for the batched kinds and a few
# anti-entropy calls at once.
MAX_CONNECTIONS = 8
# A connection idle for longer is closed rather than reused: well under the
# node-to-node server's idle timeout (disperse.cluster.peer.server.IDLE_TIMEOUT),
# so a request never races the server closing it.
MAX_IDLE = 50.0
# A request carries at most this many items, and roughly this many bytes.
MAX_ITEMS = 1000
MAX_BYTES = 8 * 1024 * 1024
# The request target of each call (a repair is an apply with a query).
_APPLY = PATH_PREFIX + b"apply"
_REPAIR = _APPLY + b"?" + REPAIR_QUERY
_FETCH = PATH_PREFIX + b"fetch"
_ROOTS = PATH_PREFIX + b"roots"
_DIGEST = PATH_PREFIX + b"digest"
_RANGE = PATH_PREFIX + b"range"
_COUNTS = PATH_PREFIX + b"counts"


class PeerUnreachable(ConnectError):
    """
    No address is known for the member, or it answered with an error.
    """


class UnknownCall(PeerUnreachable):
    """
    The member answered 404: it does not serve this call, being of a
    version older than the call.
    """


@dataclass
class PeerCallCounters:
    """
    Requests sent to peers and the items (records or keys) they carried:
    their ratio is how well batching works.
    """

    calls: int = 0
    items: int = 0
    failures: int = 0


@dataclass
class _Queue:
    items: list[Any] = field(default_factory=list)
    waiters: list[tuple[int, int, Deferred[Any]]] = field(default_factory=list)
    inFlight: int = 0
    scheduled: bool = False


@dataclass
class _Pending:
    head: bytes
    body: bytes
    done: Deferred[Response]
    timer: IDelayedCall | None = None


class _Address:
    """
    The connections to one peer address and the requests waiting for one.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self.idle: list[PeerConnection] = []
        self.connections = 0
        self.pending: list[_Pending] = []


class ConnectionPool:
    """
    Persistent L{PeerConnection}s to peer addresses (C{host:port}), at most
    L{MAX_CONNECTIONS} to each; a request waits for a free one, and fails
    after the timeout whether it was waiting, connecting or sent.
    """

    def __init__(
        self,
        reactor: Any,
        timeout: float,
        tls: IOpenSSLClientConnectionCreator | None = None,
    ) -> None:
        self._reactor = reactor
        self._clock: IReactorTime = reactor
        self._timeout = timeout
        self._tls = tls
        self._addresses: dict[str, _Address] = {}
        self._closing = False

    def request(self, address: str, head: bytes, body: bytes) -> Deferred[Response]:
        state = self._addresses.get(address)
        if state is None:
            state = self._addresses[address] = _Address(address)
        now = self._clock.seconds()
        while state.idle:
            connection = state.idle.pop()
            if not connection.connected:
                continue
            if now - connection.idleSince > MAX_IDLE:
                # The peer may be closing it this very moment, and a request
                # sent into that close fails: a fresh connection instead.
                connection.transport.loseConnection()  # type: ignore[union-attr]
                continue
            return connection.request(head, body, self._timeout)
        done: Deferred[Response] = Deferred()
        pending = _Pending(head, body, done)
        pending.timer = self._clock.callLater(
            self._timeout, self._waitedTooLong, state, pending
        )
        state.pending.append(pending)
        if state.connections < MAX_CONNECTIONS:
            self._connect(address, state)
        return done

    def close(self) -> None:
        """
        Drop every connection and fail every waiting request.
        """
        self._closing = True
        for state in self._addresses.values():
            for connection in state.idle:
                connection.transport.loseConnection()  # type: ignore[union-attr]
            state.idle.clear()
            self._failPending(state, Failure(ConnectError("client closed")))

    def _connect(self, address: str, state: _Address) -> None:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        try:
            portNumber = int(port)
        except ValueError:
            self._failPending(state, Failure(PeerUnreachable(f"bad address {address}")))
            return
        state.connections += 1
        endpoint = _endpoint(self._reactor, host, portNumber, self._timeout)
        if self._tls is not None:
            endpoint = wrapClientTLS(self._tls, endpoint)
        factory = Factory.forProtocol(
            lambda: PeerConnection(
                self._clock,
                lambda c: self._idle(state, c),
                lambda c: self._lost(state, c),
            )
        )
        factory.noisy = False
        endpoint.connect(factory).addErrback(self._connectFailed, state)

    def _idle(self, state: _Address, connection: PeerConnection) -> None:
        if self._closing:
            connection.transport.loseConnection()  # type: ignore[union-attr]
            return
        if state.pending:
            pending = state.pending.pop(0)
            if pending.timer is not None and pending.timer.active():
                pending.timer.cancel()
            connection.request(pending.head, pending.body, self._timeout).chainDeferred(
                pending.done
            )
        else:
            connection.idleSince = self._clock.seconds()
            state.idle.append(connection)

    def _lost(self, state: _Address, connection: PeerConnection) -> None:
        state.connections -= 1
        if connection in state.idle:
            state.idle.remove(connection)
        if state.pending and not self._closing and state.connections < MAX_CONNECTIONS:
            # Requests waited while every connection was taken; one just
            # went away.
            self._connect(state.address, state)

    def _connectFailed(self, failure: Failure, state: _Address) -> None:
        state.connections -= 1
        if state.connections == 0:
            self._failPending(state, failure)

    def _waitedTooLong(self, state: _Address, pending: _Pending) -> None:
        if pending in state.pending:
            state.pending.remove(pending)
            pending.done.errback(TimeoutError("no connection to the peer in time"))

    @staticmethod
    def _failPending(state: _Address, failure: Failure) -> None:
        waiting, state.pending = state.pending, []
        for pending in waiting:
            if pending.timer is not None and pending.timer.active():
                pending.timer.cancel()
            pending.done.errback(failure)


class HTTPPeerClient:
    """
    Signed, batched HTTP calls to other members.
    """

    log = logger()

    def __init__(
        self,
        reactor: Any,
        addressOf: Callable[[str], str | None],
        signer: Signer,
        timeout: float = 1.0,
        tls: IOpenSSLClientConnectionCreator | None = None,
    ) -> None:
        """
        @param tls: call peers over TLS with these settings (the cluster's
            mutual TLS), rather than over plain TCP.
        """
        self._reactor = reactor
        self._addressOf = addressOf
        self._signer = signer
        self._timeout = timeout
        self._pool = ConnectionPool(reactor, timeout, tls)
        self._queues: dict[tuple[str, str], _Queue] = {}
        self.counters = PeerCallCounters()
        self._headers = b"Content-Type: application/x-msgpack\r\n"

    def close(self) -> None:
        """
        Close every connection; calls after this fail.
        """
        self._pool.close()

    # PeerClient

    def apply(
        self, member: str, records: Sequence[tuple[str, Record]]
    ) -> Deferred[Any]:
        return self._enqueue(member, "apply", [(k, r.encode()) for k, r in records])

    def fetch(self, member: str, keys: Sequence[str]) -> Deferred[list[Record | None]]:
        # The answer's records are decoded once for the whole batch
        # (_recordsOf), not by a callback on each caller's share of it.
        return self._enqueue(member, "fetch", list(keys))

    # RepairClient: one request per call

    def roots(self, member: str, partitions: Sequence[int]) -> Deferred[list[bytes]]:
        body = RootsRequest(tuple(partitions)).encode()
        return self._post(member, _ROOTS, body).addCallback(
            lambda data: list(RootsResponse.decode(data).roots)
        )

    def digests(
        self, member: str, partition: int, level: int, nodes: Sequence[int]
    ) -> Deferred[Digests]:
        body = DigestRequest(partition, level, tuple(nodes)).encode()
        return self._post(member, _DIGEST, body).addCallback(
            lambda data: DigestResponse.decode(data).toDigests()
        )

    def range(
        self, member: str, partition: int, leaves: Sequence[int]
    ) -> Deferred[list[tuple[str, Record]]]:
        body = RangeRequest(partition, tuple(leaves)).encode()
        return self._post(member, _RANGE, body).addCallback(
            lambda data: [
                (key, Record.decode(blob))
                for key, blob in RangeResponse.decode(data).records
            ]
        )

    def counts(
        self, member: str, partitions: Sequence[int]
    ) -> Deferred[list[int | None]]:
        body = CountsRequest(tuple(partitions)).encode()
        return self._post(member, _COUNTS, body).addCallback(
            lambda data: list(CountsResponse.decode(data).counts)
        )

    def repair(
        self, member: str, records: Sequence[tuple[str, Record]]
    ) -> Deferred[Any]:
        body = ApplyRequest(tuple((k, r.encode()) for k, r in records)).encode()
        return self._post(member, _REPAIR, body).addCallback(
            lambda data: list(ApplyResponse.decode(data).applied)
        )

    # Batching

    def _enqueue(self, member: str, kind: str, items: list[Any]) -> Deferred[Any]:
        queue = self._queues.setdefault((member, kind), _Queue())
        done: Deferred[Any] = Deferred()
        start = len(queue.items)
        queue.items.extend(items)
        queue.waiters.append((start, len(items), done))
        self._schedule(member, kind, queue)
        return done

    def _schedule(self, member: str, kind: str, queue: _Queue) -> None:
        # Flush at the end of this reactor turn, so that everything asked
        # for in the same turn travels together.
        if not queue.scheduled and queue.items and queue.inFlight < MAX_IN_FLIGHT:
            queue.scheduled = True
            self._reactor.callLater(0, self._flush, member, kind, queue)

    def _flush(self, member: str, kind: str, queue: _Queue) -> None:
        queue.scheduled = False
        if not queue.items or queue.inFlight >= MAX_IN_FLIGHT:
            return
        # Take whole waiters only, up to the batch limits.
        count = size = taken = 0
        for start, length, _ in queue.waiters:
            if taken and (count + length > MAX_ITEMS or size > MAX_BYTES):
                break
            count += length
            size += sum(_itemSize(item) for item in queue.items[start : start + length])
            taken += 1
        items = queue.items[:count]
        waiters = queue.waiters[:taken]
        self.counters.items += count
        queue.items = queue.items[count:]
        queue.waiters = [(s - count, n, d) for s, n, d in queue.waiters[taken:]]
        queue.inFlight += 1
        self._send(member, kind, items).addBoth(
            self._answered, member, kind, queue, waiters
        )

    def _answered(
        self,
        result: Any,
        member: str,
        kind: str,
        queue: _Queue,
        waiters: list[tuple[int, int, Deferred[Any]]],
    ) -> None:
        queue.inFlight -= 1
        for start, length, done in waiters:
            if isinstance(result, list):
                done.callback(result[start : start + length])
            else:
                done.errback(result)
        self._schedule(member, kind, queue)
        if not queue.items and not queue.inFlight and not queue.scheduled:
            self._queues.pop((member, kind), None)

    # The call path below runs for every batch, thousands of times a second:
    # plain Deferred callbacks, not coroutines, whose machinery cost more
    # than the rest of a call's client side.

    def _send(self, member: str, kind: str, items: list[Any]) -> Deferred[list[Any]]:
        if kind == "apply":
            body = ApplyRequest(tuple(items)).encode()
            return self._post(member, _APPLY, body).addCallback(_appliedOf)
        body = FetchRequest(tuple(items)).encode()
        return self._post(member, _FETCH, body).addCallback(_recordsOf)

    def _post(self, member: str, path: bytes, body: bytes) -> Deferred[bytes]:
        """
        POST a signed C{body} to C{path} (and query) on C{member}; the
        answer's body.
        """
        self.counters.calls += 1
        address = self._addressOf(member)
        if address is None:
            self.counters.failures += 1
            return fail(PeerUnreachable(f"no HTTP address known for {member}"))
        try:
            signature = self._signer.sign(
                b"POST",
                path,
                body,
                int(self._reactor.seconds() * 1000),
                os.urandom(NONCE_SIZE),
            )
            head = requestHead(
                b"POST",
                path,
                address.encode("ascii"),
                b"%s%s: %s\r\n" % (self._headers, SIGNATURE_HEADER, signature),
            )
        except Exception:
            # A batch's waiters must hear of it, whatever went wrong.
            self.counters.failures += 1
            return fail()
        return self._pool.request(address, head, body).addCallbacks(
            self._answer, self._callFailed, callbackArgs=(member,)
        )

    def _answer(self, response: Response, member: str) -> bytes:
        if response.code != 200:
            self.counters.failures += 1
            if response.code == 404:
                raise UnknownCall(
                    f"{member} answered 404: it does not know the call"
                    " (an older version?)"
                )
            raise PeerUnreachable(f"{member} answered {response.code}")
        return response.body

    def _callFailed(self, failure: Failure) -> Failure:
        self.counters.failures += 1
        return failure


def _appliedOf(data: bytes) -> list[Any]:
    return list(ApplyResponse.decode(data).applied)


def _recordsOf(data: bytes) -> list[Any]:
    # FetchResponse checked every blob is at least a header long: decoding
    # cannot fail.
    decode = Record.decode
    return [
        None if blob is None else decode(blob)
        for blob in FetchResponse.decode(data).records
    ]


def _endpoint(
    reactor: Any, host: str, port: int, timeout: float
) -> IStreamClientEndpoint:
    # Members advertise IP addresses; a name (from an operator's
    # --advertise) is resolved on each new connection.
    if isIPAddress(host):
        return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    if isIPv6Address(host):
        return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return HostnameEndpoint(reactor, host.encode("idna"), port, timeout=timeout)


def _itemSize(item: Any) -> int:
    if isinstance(item, tuple):
        return len(item[0]) + len(item[1])
    return len(item)
