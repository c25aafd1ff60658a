"""
The node-to-node API: replica writes and reads that other nodes send while
coordinating requests, and the Merkle digests and leaf ranges of
anti-entropy exchanges. Every request must carry a valid signature made
with the cluster secret; anything else is refused before its body is
decoded, so a client can never forge a replica write.
L{disperse.web.peerserver} carries the calls on the node-to-node port.
"""

from __future__ import annotations

from disperse.cluster.peer.messages import (
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
)
from disperse.cluster.peer.signatures import SignatureError, Verifier
from disperse.cluster.replica import NotCaughtUp
from disperse.logs import logger
from disperse.node import Node

PREFIX = b"/internal/v1/"
TEXT = b"text/plain; charset=utf-8"
MSGPACK = b"application/x-msgpack"


class PeerAPI:
    """
    The internal routes, under C{/internal/v1/}.
    """

    log = logger()

    def __init__(self, node: Node, verifier: Verifier) -> None:
        self._node = node
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
    ) -> tuple[int, bytes, bytes]:
        """
        Serve one call, whichever server carried it: its status, content
        type and body.

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
        try:
            replica = self._node.replica
            if kind == "apply":
                records = ApplyRequest.decode(body).records
                # A repair (anti-entropy) must not evict to take a key.
                repair = query == b"repair=1"
                applied = replica.applyLocal(records, evict=not repair)
                answer = ApplyResponse(tuple(applied)).encode()
            elif kind == "fetch":
                keys = FetchRequest.decode(body).keys
                try:
                    found = replica.fetchLocal(keys)
                except NotCaughtUp:
                    # Not an error of the asker's: it reads another replica.
                    return 503, TEXT, b"catching up"
                answer = FetchResponse(tuple(found)).encode()
            elif kind == "roots":
                partitions = RootsRequest.decode(body).partitions
                answer = RootsResponse(tuple(replica.rootsLocal(partitions))).encode()
            elif kind == "digest":
                asked = DigestRequest.decode(body)
                digests = replica.digestsLocal(
                    asked.partition, asked.level, asked.nodes
                )
                answer = DigestResponse.fromDigests(digests).encode()
            elif kind == "range":
                wanted = RangeRequest.decode(body)
                inRange = replica.rangeLocal(wanted.partition, wanted.leaves)
                answer = RangeResponse(
                    tuple((key, r.encode()) for key, r in inRange)
                ).encode()
            else:
                return self.refusal(client, 404, "no such call")
        except ValueError as e:
            # ProtocolError, and a partition, level or node outside the
            # tree.
            return self.refusal(client, 400, str(e))
        except Exception:
            self.log.failure("internal error serving a peer request")
            return 500, TEXT, b"internal error"
        return 200, MSGPACK, answer

    def refusal(self, client: str, code: int, reason: str) -> tuple[int, bytes, bytes]:
        self.refused += 1
        self.log.warn(
            "refused a peer request from {client}: {reason}",
            client=client,
            reason=reason,
        )
        return code, TEXT, reason.encode("utf-8")
