"""
The messages nodes send each other: replica writes and reads, the
Merkle roots, digests and leaf ranges of anti-entropy, and the key counts
of partitions.

This module owns:

  - the messages (L{ApplyRequest}, L{FetchRequest}, L{DigestRequest},
    L{RangeRequest}, L{RootsRequest}, L{CountsRequest} and their
    responses), their msgpack
    encoding, and a strict decoder that turns any malformed input into
    L{ProtocolError} and nothing else;
  - where each is sent: a POST of the request to L{PATH_PREFIX} followed by
    its kind (L{KINDS}), answered by the response of the same kind.

Pure: no I/O, no reactor.

Everything here is part of the wire contract between nodes of different
versions: a change to an encoding or a limit needs a new version (a new
path). A new kind is a new path of the same version: a node that does not
know it answers 404, which the asker takes as a failed call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, Self, TypeAlias, overload

import msgpack

from disperse.store.merkle import DIGEST_SIZE, Digests
from disperse.store.record import HEADER_SIZE

# Every call is a POST to this prefix followed by its kind.
PATH_PREFIX = b"/internal/v1/"
# Repairs go to the apply call with this query: the receiver takes a key it
# has no entry for only if that evicts nothing. The query is signed with the
# path; a node that does not know it ignores it and simply applies.
REPAIR_QUERY = b"repair=1"

# Limits of the codec. Keys match the public API's (disperse.tap
# MAX_KEY_SIZE); a blob is a Record.encode(), so at least its header, and at
# most the largest value the API accepts (4 MiB by default) plus room for a
# larger configured limit. Note that a batch at every limit would be 50 GiB:
# the HTTP layer must cap request bodies itself, and batchers by bytes.
MAX_KEY_SIZE = 1024
# (The header grew by the value's content hash without a new version:
# nodes from before and after that change cannot be mixed; see
# docs/operations.md, Integrity.)
MIN_BLOB_SIZE = HEADER_SIZE
MAX_BLOB_SIZE = 5 * 1024 * 1024
MAX_BATCH = 10_000
MAX_PARTITION = 2**32 - 1
# A Merkle tree has at most 2**24 leaves (MerkleTree checks depth * log2
# fanout <= 24), so at most 24 levels below the root and node indexes below
# 2**24 on any level. Whether an index exists in the receiver's tree is its
# tree's to check (MerkleTree.compare, MerkleTree.children).
MAX_LEVEL = 24
MAX_NODE = 2**24 - 1
# A key count: msgpack's largest unsigned integer.
MAX_COUNT = 2**64 - 1


class ProtocolError(ValueError):
    """
    A message that is not valid: bad msgpack, wrong shape or types, a value
    out of range. Raised by every decoder whatever its input, and by
    L{encode} for a message that a peer would refuse.
    """


# Validation, shared by decoding (lists from msgpack) and encoding (tuples
# built locally): one set of rules, so that nothing we send is refused and
# nothing we accept could not have been sent. Types are checked exactly
# (type() is, not isinstance) because bool is an int and a NamedTuple is a
# tuple, and neither belongs on the wire where they would stand.


def _array(value: object, what: str, size: int | None = None) -> Sequence[object]:
    if type(value) is not list and type(value) is not tuple:
        raise ProtocolError(f"{what}: expected an array")
    if size is not None:
        if len(value) != size:
            raise ProtocolError(f"{what}: expected {size} items, not {len(value)}")
    elif len(value) > MAX_BATCH:
        raise ProtocolError(f"{what}: more than {MAX_BATCH} items")
    return value


def _key(value: object) -> str:
    if type(value) is not str:
        raise ProtocolError("key: expected a string")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        # Lone surrogates: a Python str that no UTF-8 peer could read.
        raise ProtocolError("key: not valid UTF-8") from None
    if size > MAX_KEY_SIZE:
        raise ProtocolError(f"key: longer than {MAX_KEY_SIZE} bytes")
    return value


def _blob(value: object) -> bytes:
    if type(value) is not bytes:
        raise ProtocolError("record: expected bytes")
    if not MIN_BLOB_SIZE <= len(value) <= MAX_BLOB_SIZE:
        raise ProtocolError(
            f"record: {len(value)} bytes, outside {MIN_BLOB_SIZE}..{MAX_BLOB_SIZE}"
        )
    return value


def _int(value: object, what: str, high: int) -> int:
    if type(value) is not int:
        raise ProtocolError(f"{what}: expected an integer")
    if not 0 <= value <= high:
        raise ProtocolError(f"{what}: {value} outside 0..{high}")
    return value


def _indexes(value: object, what: str) -> tuple[int, ...]:
    out = tuple(_int(item, what, MAX_NODE) for item in _array(value, what))
    # Duplicates would be answered twice, or (in digests) be ambiguous.
    if len(set(out)) != len(out):
        raise ProtocolError(f"{what}: duplicate index")
    return out


def _keys(value: object) -> tuple[str, ...]:
    # _key inlined for an ASCII key, as in _records.
    maxKey = MAX_KEY_SIZE
    return tuple(
        key if type(key) is str and len(key) <= maxKey and key.isascii() else _key(key)
        for key in _array(value, "keys")
    )


def _records(value: object) -> tuple[tuple[str, bytes], ...]:
    # _array, _key and _blob inlined for the common record (an ASCII key,
    # which is its own UTF-8 and can hold no surrogate, and a blob of a
    # valid size): every replicated write is checked here twice, when it
    # is sent and when it is received. Anything else takes the calls, for
    # their checks and their errors.
    out: list[tuple[str, bytes]] = []
    maxKey = MAX_KEY_SIZE
    for item in _array(value, "records"):
        if (type(item) is list or type(item) is tuple) and len(item) == 2:
            key: object = item[0]
            blob: object = item[1]
            if (
                type(key) is str
                and type(blob) is bytes
                and len(key) <= maxKey
                and key.isascii()
                and MIN_BLOB_SIZE <= len(blob) <= MAX_BLOB_SIZE
            ):
                out.append((key, blob))
                continue
        pair = _array(item, "record", 2)
        out.append((_key(pair[0]), _blob(pair[1])))
    return tuple(out)


def _unpack(data: bytes) -> object:
    try:
        # The limits stop a few bytes from claiming huge sizes; maps and
        # extension types never appear in our messages. unpackb refuses
        # trailing bytes, so a message has exactly one encoding.
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            max_str_len=MAX_KEY_SIZE,
            max_bin_len=MAX_BLOB_SIZE,
            max_array_len=MAX_BATCH,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as e:
        # msgpack reports bad input through many types (ExtraData,
        # FormatError, StackError, ValueError, UnicodeDecodeError,
        # TypeError for a non-buffer...); callers catch one.
        raise ProtocolError(f"invalid msgpack: {type(e).__name__}") from e


class _Message:
    """
    A message is a msgpack array of its fields in declaration order.
    """

    __slots__ = ()
    kind: ClassVar[str]

    def _toWire(self) -> tuple[object, ...]:
        raise NotImplementedError

    @classmethod
    def _fromWire(cls, value: object) -> Self:
        raise NotImplementedError

    def encode(self) -> bytes:
        """
        This message as bytes.

        @raise ProtocolError: if a field breaks a limit of the codec.
        """
        wire = self._toWire()
        # Validated on the way out too, so a bad message fails here, with
        # its sender's stack, rather than as a 400 from the peer.
        self._fromWire(wire)
        packed: bytes = msgpack.packb(wire, use_bin_type=True)
        return packed

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """
        The message encoded in C{data}.

        @raise ProtocolError: for anything that L{encode} would not produce.
        """
        return cls._fromWire(_unpack(data))


@dataclass(frozen=True, slots=True)
class ApplyRequest(_Message):
    """
    Merge these records into the replica (last writer wins), in order.

    @ivar records: (key, L{Record.encode} bytes) pairs.
    """

    kind: ClassVar[str] = "apply"
    records: tuple[tuple[str, bytes], ...]

    def _toWire(self) -> tuple[object, ...]:
        return (self.records,)

    @classmethod
    def _fromWire(cls, value: object) -> Self:
        (records,) = _array(value, cls.kind, 1)
        return cls(_records(records))


@dataclass(frozen=True, slots=True)
class ApplyResponse(_Message):
    """
    Every record of the request is acknowledged (stored, or the replica
    already had it or something newer).

    @ivar applied: per record of the request, whether it changed the
        replica; for counters only.
    """

    kind: ClassVar[str] = "apply"
    applied: tuple[bool, ...]

    def _toWire(self) -> tuple[object, ...]:
        return (self.applied,)

    @classmethod
    def _fromWire(cls, value: object) -> Self:
        (applied,) = _array(value, cls.kind, 1)
        out = []
        for item in _array(applied, "applied"):
            if type(item) is not bool:
                raise ProtocolError("applied: expected a boolean")
            out.append(item)
        return cls(tuple(out))


@dataclass(frozen=True, slots=True)
class FetchRequest(_Message):
    """
    Send the records of these keys.
    """

    kind: ClassVar[str] = "fetch"
    keys: tuple[str, ...]

    def _toWire(self) -> tuple[object, ...]:
        return (self.keys,)

    @classmethod
    def _fromWire(cls, value: object) -> Self:
        (keys,) = _array(value, cls.kind, 1)
        return cls(_keys(keys))


@dataclass(frozen=True, slots=True)
class FetchResponse(_Message):
    """
    @ivar records: per key of the request, its encoded record (a tombstone
        is a record), or C{None} for no record.
    """

    kind: ClassVar[str] = "fetch"
    records: tuple[bytes | None, ...]

    def _toWire(self) -> tuple[object, ...]:
        return (self.records,)

    @classmethod
    def _fromWire(cls, value: object) -> Self:
        (records,) = _array(value, cls.kind, 1)
        low, high = MIN_BLOB_SIZE, MAX_BLOB_SIZE
        return cls(
            tuple(
                # _blob inlined for the blobs of a valid size.
                blob
                if blob is None or (type(blob) is bytes and low <= len(blob) <= high)
                else _blob(blob)
                for blob in _array(records, "records")
            )
        )


@dataclass(frozen=True, slots=True)
class DigestRequest(_Message):
    """
    One round of a Merkle exchange over one partition
    (L{disperse.store.merkle}): the nodes of C{level} the asker wants
    digests for, or expanded.
    """

    kind: ClassVar[str] = "digest"
    partition: int
    level: int
    nodes: tuple[int, ...]

    def _toWire(self) -> tuple[object, ...]:
        return (self.partition, self.level, self.nodes)

    @classmethod
    def _fromWire(cls, value: object) -> Self:
        partition, level, nodes = _array(value, cls.kind, 3)
        return cls(
            _int(partition, "partition", MAX_PARTITION),
            _int(level, "level", MAX_LEVEL),
            _indexes(nodes, "nodes"),
        )


@dataclass(frozen=True, slots=True)
class DigestResponse(_Message):
    """
    The responder's digests of some nodes of one level: a L{Digests} on
    the wire.

    @ivar digests: (node index, L{DIGEST_SIZE}-byte digest) pairs, each
        index once.
    """

    kind: ClassVar[str] = "digest"
    level: int
    digests: tuple[tuple[int, bytes], ...]

    @classmethod
    def fromDigests(cls, digests: Digests) -> DigestResponse:
        return cls(digests.level, tuple(sorted(digests.nodes.items())))

    def toDigests(self) -> Digests:
        return Digests(self.level, dict(self.digests))

    def _toWire(self) -> tuple[object, ...]:
        return (self.level, self.digests)

    @classmethod
    def _fromWire(cls, value: object) -> Self:
        level, digests = _array(value, cls.kind, 2)
        pairs = []
        for item in _array(digests, "digests"):
            index, digest = _array(item, "digest", 2)
            if type(digest) is not bytes or len(digest) != DIGEST_SIZE:
                raise ProtocolError(f"digest: expected {DIGEST_SIZE} bytes")
            pairs.append((_int(index, "node", MAX_NODE), digest))
        if len({index for index, _ in pairs}) != len(pairs):
            raise ProtocolError("digests: duplicate index")
        return cls(_int(level, "level", MAX_LEVEL), tuple(pairs))


@dataclass(frozen=True, slots=True)
class RangeRequest(_Message):
    """
    Send every record of these Merkle leaves of C{partition}: what a repair
    asks for once an exchange has named the differing leaves.
    """

    kind: ClassVar[str] = "range"
    partition: int
    leaves: tuple[int, ...]

    def _toWire(self) -> tuple[object, ...]:
        return (self.partition, self.leaves)

    @classmethod
    def _fromWire(cls, value: object) -> Self:
        partition, leaves = _array(value, cls.kind, 2)
        return cls(
            _int(partition, "partition", MAX_PARTITION), _indexes(leaves, "leaves")
        )


@dataclass(frozen=True, slots=True)
class RangeResponse(_Message):
    """
    @ivar records: (key, encoded record) of every record, tombstones
        included, in the leaves asked for.
    """

    kind: ClassVar[str] = "range"
    records: tuple[tuple[str, bytes], ...]

    def _toWire(self) -> tuple[object, ...]:
        return (self.records,)

    @classmethod
    def _fromWire(cls, value: object) -> Self:
        (records,) = _array(value, cls.kind, 1)
        return cls(_records(records))


@dataclass(frozen=True, slots=True)
class _PartitionsRequest(_Message):
    """
    A question about each of a list of partitions, answered in their order.
    """

    partitions: tuple[int, ...]

    def _toWire(self) -> tuple[object, ...]:
        return (self.partitions,)

    @classmethod
    def _fromWire(cls, value: object) -> Self:
        (partitions,) = _array(value, cls.kind, 1)
        return cls(_indexes(partitions, "partitions"))


@dataclass(frozen=True, slots=True)
class RootsRequest(_PartitionsRequest):
    """
    The Merkle roots of these partitions: how a round of anti-entropy finds,
    in one request per peer, the few partitions worth an exchange.
    """

    kind: ClassVar[str] = "roots"


@dataclass(frozen=True, slots=True)
class RootsResponse(_Message):
    """
    @ivar roots: per partition of the request, its L{DIGEST_SIZE}-byte root.
    """

    kind: ClassVar[str] = "roots"
    roots: tuple[bytes, ...]

    def _toWire(self) -> tuple[object, ...]:
        return (self.roots,)

    @classmethod
    def _fromWire(cls, value: object) -> Self:
        (roots,) = _array(value, cls.kind, 1)
        out = []
        for root in _array(roots, "roots"):
            if type(root) is not bytes or len(root) != DIGEST_SIZE:
                raise ProtocolError(f"root: expected {DIGEST_SIZE} bytes")
            out.append(root)
        return cls(tuple(out))


@dataclass(frozen=True, slots=True)
class CountsRequest(_PartitionsRequest):
    """
    The key counts of these partitions: how a node counts the keys of the
    whole cluster (C{DBSIZE}) in one request per member.
    """

    kind: ClassVar[str] = "counts"


@dataclass(frozen=True, slots=True)
class CountsResponse(_Message):
    """
    @ivar counts: per partition of the request, how many keys the
        responder's replica holds of it, or C{None} when it is not to be
        counted there (it is still catching up on it): the asker counts
        another owner's.
    """

    kind: ClassVar[str] = "counts"
    counts: tuple[int | None, ...]

    def _toWire(self) -> tuple[object, ...]:
        return (self.counts,)

    @classmethod
    def _fromWire(cls, value: object) -> Self:
        (counts,) = _array(value, cls.kind, 1)
        return cls(
            tuple(
                None if count is None else _int(count, "count", MAX_COUNT)
                for count in _array(counts, "counts")
            )
        )


Request: TypeAlias = (
    ApplyRequest
    | FetchRequest
    | DigestRequest
    | RangeRequest
    | RootsRequest
    | CountsRequest
)
Response: TypeAlias = (
    ApplyResponse
    | FetchResponse
    | DigestResponse
    | RangeResponse
    | RootsResponse
    | CountsResponse
)

# New kinds go last: fuzz seeds name a kind by its index in KINDS.
_REQUESTS: dict[str, type[Request]] = {
    cls.kind: cls
    for cls in (
        ApplyRequest,
        FetchRequest,
        DigestRequest,
        RangeRequest,
        RootsRequest,
        CountsRequest,
    )
}
_RESPONSES: dict[str, type[Response]] = {
    cls.kind: cls
    for cls in (
        ApplyResponse,
        FetchResponse,
        DigestResponse,
        RangeResponse,
        RootsResponse,
        CountsResponse,
    )
}

# The kinds, for routing: one endpoint per kind, each request answered by
# the response of the same kind.
KINDS: tuple[str, ...] = tuple(_REQUESTS)


def encodeRequest(message: Request) -> bytes:
    return message.encode()


def encodeResponse(message: Response) -> bytes:
    return message.encode()


@overload
def decodeRequest(kind: Literal["apply"], data: bytes) -> ApplyRequest: ...
@overload
def decodeRequest(kind: Literal["fetch"], data: bytes) -> FetchRequest: ...
@overload
def decodeRequest(kind: Literal["digest"], data: bytes) -> DigestRequest: ...
@overload
def decodeRequest(kind: Literal["range"], data: bytes) -> RangeRequest: ...
@overload
def decodeRequest(kind: str, data: bytes) -> Request: ...
def decodeRequest(kind: str, data: bytes) -> Request:
    """
    The request of C{kind} (one of L{KINDS}) encoded in C{data}.

    @raise ProtocolError: for an unknown kind or an invalid message.
    """
    cls = _REQUESTS.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown kind {kind[:32]!r}")
    return cls.decode(data)


@overload
def decodeResponse(kind: Literal["apply"], data: bytes) -> ApplyResponse: ...
@overload
def decodeResponse(kind: Literal["fetch"], data: bytes) -> FetchResponse: ...
@overload
def decodeResponse(kind: Literal["digest"], data: bytes) -> DigestResponse: ...
@overload
def decodeResponse(kind: Literal["range"], data: bytes) -> RangeResponse: ...
@overload
def decodeResponse(kind: str, data: bytes) -> Response: ...
def decodeResponse(kind: str, data: bytes) -> Response:
    """
    The response to a request of C{kind} encoded in C{data}.

    @raise ProtocolError: for an unknown kind or an invalid message.
    """
    cls = _RESPONSES.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown kind {kind[:32]!r}")
    return cls.decode(data)
