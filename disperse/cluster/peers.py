"""
Node-to-node calls over HTTP: the production L{PeerClient}.

Each call is signed with the cluster secret (L{disperse.cluster.protocol})
and carried by treq over a persistent connection pool. Calls to the same
peer that arrive while a request to it is in flight are gathered into the
next request, so a burst of small writes costs a few round trips, not one
each. Anti-entropy calls (digests, ranges, repairs) are rare and already
sized by their caller, so they go one request each. Every call fails after
the timeout rather than hanging.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError
from twisted.web.client import Agent, HTTPConnectionPool, _HTTP11ClientFactory
from twisted.web.http_headers import Headers

from disperse.cluster.merkle import Digests
from disperse.cluster.protocol import (
    NONCE_SIZE,
    SIGNATURE_HEADER,
    ApplyRequest,
    ApplyResponse,
    DigestRequest,
    DigestResponse,
    FetchRequest,
    FetchResponse,
    RangeRequest,
    RangeResponse,
    RootsRequest,
    RootsResponse,
    Signer,
)
from disperse.logs import logger
from disperse.store import Record

PEER_PATH = b"/internal/v1/"
# At most this many requests in flight to one peer, per kind.
MAX_IN_FLIGHT = 2
# A request carries at most this many items, and roughly this many bytes.
MAX_ITEMS = 1000
MAX_BYTES = 8 * 1024 * 1024
# Repairs go to the apply endpoint with this query: the receiver takes a key
# it has no entry for only if that evicts nothing. The query is signed with
# the path; a node that does not know it ignores it and simply applies.
REPAIR_QUERY = b"?repair=1"


class _QuietClientFactory(_HTTP11ClientFactory):
    noisy = False


class PeerUnreachable(ConnectError):
    """
    No address is known for the member, or it answered with an error.
    """


@dataclass
class _Queue:
    items: list[Any] = field(default_factory=list)
    waiters: list[tuple[int, int, Deferred[Any]]] = field(default_factory=list)
    inFlight: int = 0
    scheduled: bool = False


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
    ) -> None:
        self._reactor = reactor
        self._addressOf = addressOf
        self._signer = signer
        self._timeout = timeout
        pool = HTTPConnectionPool(reactor, persistent=True)
        # One log line per connection opened and closed is noise at the
        # rate peers talk; the pool has no public switch for it.
        pool._factory = _QuietClientFactory
        pool.maxPersistentPerHost = MAX_IN_FLIGHT * 2
        pool.retryAutomatically = False
        self._http = HTTPClient(Agent(reactor, pool=pool, connectTimeout=timeout))
        self._pool = pool
        self._queues: dict[tuple[str, str], _Queue] = {}

    def close(self) -> Deferred[None]:
        closed: Deferred[None] = self._pool.closeCachedConnections()
        return closed

    # PeerClient

    def apply(
        self, member: str, records: Sequence[tuple[str, Record]]
    ) -> Deferred[Any]:
        return self._enqueue(member, "apply", [(k, r.encode()) for k, r in records])

    def fetch(self, member: str, keys: Sequence[str]) -> Deferred[list[Record | None]]:
        d: Deferred[list[bytes | None]] = self._enqueue(member, "fetch", list(keys))
        return d.addCallback(
            lambda blobs: [None if b is None else Record.decode(b) for b in blobs]
        )

    # RepairClient: one request per call

    def roots(self, member: str, partitions: Sequence[int]) -> Deferred[list[bytes]]:
        body = RootsRequest(tuple(partitions)).encode()
        return Deferred.fromCoroutine(
            self._post(member, PEER_PATH + b"roots", body)
        ).addCallback(lambda data: list(RootsResponse.decode(data).roots))

    def digests(
        self, member: str, partition: int, level: int, nodes: Sequence[int]
    ) -> Deferred[Digests]:
        body = DigestRequest(partition, level, tuple(nodes)).encode()
        return Deferred.fromCoroutine(
            self._post(member, PEER_PATH + b"digest", body)
        ).addCallback(lambda data: DigestResponse.decode(data).toDigests())

    def range(
        self, member: str, partition: int, leaves: Sequence[int]
    ) -> Deferred[list[tuple[str, Record]]]:
        body = RangeRequest(partition, tuple(leaves)).encode()
        return Deferred.fromCoroutine(
            self._post(member, PEER_PATH + b"range", body)
        ).addCallback(
            lambda data: [
                (key, Record.decode(blob))
                for key, blob in RangeResponse.decode(data).records
            ]
        )

    def repair(
        self, member: str, records: Sequence[tuple[str, Record]]
    ) -> Deferred[Any]:
        body = ApplyRequest(tuple((k, r.encode()) for k, r in records)).encode()
        return Deferred.fromCoroutine(
            self._post(member, PEER_PATH + b"apply" + REPAIR_QUERY, body)
        ).addCallback(lambda data: list(ApplyResponse.decode(data).applied))

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
        queue.items = queue.items[count:]
        queue.waiters = [(s - count, n, d) for s, n, d in queue.waiters[taken:]]
        queue.inFlight += 1
        Deferred.fromCoroutine(self._send(member, kind, items)).addBoth(
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

    async def _send(self, member: str, kind: str, items: list[Any]) -> list[Any]:
        if kind == "apply":
            body = ApplyRequest(tuple(items)).encode()
        else:
            body = FetchRequest(tuple(items)).encode()
        data = await self._post(member, PEER_PATH + kind.encode("ascii"), body)
        if kind == "apply":
            return list(ApplyResponse.decode(data).applied)
        return list(FetchResponse.decode(data).records)

    async def _post(self, member: str, path: bytes, body: bytes) -> bytes:
        """
        POST a signed C{body} to C{path} (and query) on C{member}; the
        answer's body.
        """
        address = self._addressOf(member)
        if address is None:
            raise PeerUnreachable(f"no HTTP address known for {member}")
        signature = self._signer.sign(
            b"POST",
            path,
            body,
            int(self._reactor.seconds() * 1000),
            os.urandom(NONCE_SIZE),
        )
        request = self._http.post(
            f"http://{address}{path.decode('ascii')}",
            data=body,
            headers=Headers(
                {
                    b"content-type": [b"application/x-msgpack"],
                    SIGNATURE_HEADER: [signature],
                }
            ),
        )
        request.addTimeout(self._timeout, self._reactor)
        response = await request
        content: Deferred[bytes] = response.content()
        content.addTimeout(self._timeout, self._reactor)
        data = await content
        if response.code != 200:
            raise PeerUnreachable(f"{member} answered {response.code}")
        return data


def _itemSize(item: Any) -> int:
    if isinstance(item, tuple):
        return len(item[0]) + len(item[1])
    return len(item)
