"""
What nodes say to each other over their internal HTTP endpoints, and how
they prove it is one of them speaking.

This module owns:

  - the messages of replication, reads and anti-entropy
    (L{ApplyRequest}, L{FetchRequest}, L{DigestRequest}, L{RangeRequest} and
    their responses), their msgpack encoding and a strict decoder that turns
    any malformed input into L{ProtocolError} and nothing else;
  - request signatures (L{Signer}, L{Verifier}): HMAC-SHA256 with a cluster
    secret over the method, path, a hash of the body, a timestamp and a
    nonce, checked in constant time, with a bounded replay cache;
  - turning a C{--cluster-secret} given as text into a key (L{deriveSecret}).

Pure: no I/O, no reactor; time only through an injected L{TimeSource}, and
nonces are made by the caller (C{os.urandom(NONCE_SIZE)}).

Everything here is part of the wire contract between nodes of different
versions: a change to an encoding, a limit or the signed string needs a new
version (a new path, or C{v2} in the signature header).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import struct
import unicodedata
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, Self, TypeAlias, overload

import msgpack

from disperse.cluster.merkle import DIGEST_SIZE, Digests
from disperse.store.store import HEADER_SIZE
from disperse.timesource import TimeSource

# Limits of the codec. Keys match the public API's (disperse.tap
# MAX_KEY_SIZE); a blob is a Record.encode(), so at least its header, and at
# most the largest value the API accepts (4 MiB by default) plus room for a
# larger configured limit. Note that a batch at every limit would be 50 GiB:
# the HTTP layer must cap request bodies itself, and batchers by bytes.
MAX_KEY_SIZE = 1024
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


def _records(value: object) -> tuple[tuple[str, bytes], ...]:
    out = []
    for item in _array(value, "records"):
        key, blob = _array(item, "record", 2)
        out.append((_key(key), _blob(blob)))
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
        return cls(tuple(_key(key) for key in _array(keys, "keys")))


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
        return cls(
            tuple(
                None if blob is None else _blob(blob)
                for blob in _array(records, "records")
            )
        )


@dataclass(frozen=True, slots=True)
class DigestRequest(_Message):
    """
    One round of a Merkle exchange over one partition
    (L{disperse.cluster.merkle}): the nodes of C{level} the asker wants
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
class RootsRequest(_Message):
    """
    The Merkle roots of these partitions: how a round of anti-entropy finds,
    in one request per peer, the few partitions worth an exchange.
    """

    kind: ClassVar[str] = "roots"
    partitions: tuple[int, ...]

    def _toWire(self) -> tuple[object, ...]:
        return (self.partitions,)

    @classmethod
    def _fromWire(cls, value: object) -> Self:
        (partitions,) = _array(value, cls.kind, 1)
        return cls(_indexes(partitions, "partitions"))


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


Request: TypeAlias = (
    ApplyRequest | FetchRequest | DigestRequest | RangeRequest | RootsRequest
)
Response: TypeAlias = (
    ApplyResponse | FetchResponse | DigestResponse | RangeResponse | RootsResponse
)

_REQUESTS: dict[str, type[Request]] = {
    cls.kind: cls
    for cls in (ApplyRequest, FetchRequest, DigestRequest, RangeRequest, RootsRequest)
}
_RESPONSES: dict[str, type[Response]] = {
    cls.kind: cls
    for cls in (
        ApplyResponse,
        FetchResponse,
        DigestResponse,
        RangeResponse,
        RootsResponse,
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


# Signatures

SIGNATURE_HEADER = b"X-Disperse-Signature"
NONCE_SIZE = 16
MIN_SECRET_SIZE = 16
DEFAULT_WINDOW = 30.0
DEFAULT_MAX_NONCES = 100_000

# Domain separation: a MAC made for anything else with the same secret
# (responses, some later version) can never pass for a request's.
_LABEL = b"disperse request signature"
_VERSION = b"v1"
# The one accepted spelling: lowercase hex, no leading zeros. A second
# spelling of the same nonce would otherwise be a fresh entry in a cache
# keyed on text; the cache is keyed on the decoded nonce anyway.
_HEADER_RE = re.compile(rb"v1 t=(0|[1-9][0-9]{0,15}) n=([0-9a-f]{32}) s=([0-9a-f]{64})")
_MAX_HEADER = 160
_MAX_TIMESTAMP = 10**16 - 1


class SignatureError(ValueError):
    """
    A request that does not prove it comes from the cluster; the message is
    a short reason fit for a log line and a 401.
    """


_LENGTH = struct.Struct(">I").pack


def _field(value: bytes) -> bytes:
    return _LENGTH(len(value)) + value


_PREFIX = _field(_LABEL) + _field(_VERSION)


def _canonical(
    method: bytes, path: bytes, body: bytes, timestampMs: int, nonce: bytes
) -> bytes:
    # Every field length-prefixed, so no two different requests share a
    # string (a newline in a path could otherwise move text between fields).
    timestamp = b"%d" % timestampMs
    bodyHash = hashlib.sha256(body).digest()
    return b"".join(
        (
            _PREFIX,
            _LENGTH(len(method)),
            method,
            _LENGTH(len(path)),
            path,
            _LENGTH(len(timestamp)),
            timestamp,
            _LENGTH(len(nonce)),
            nonce,
            _LENGTH(len(bodyHash)),
            bodyHash,
        )
    )


def _keyed(secret: bytes) -> hmac.HMAC:
    """
    An HMAC keyed with C{secret} and fed nothing, to copy for each message:
    half the cost of keying one afresh each time (about 2 us instead of 4).
    """
    if type(secret) is not bytes:
        raise TypeError("a cluster secret is bytes (see deriveSecret)")
    if len(secret) < MIN_SECRET_SIZE:
        raise ValueError(f"a cluster secret needs at least {MIN_SECRET_SIZE} bytes")
    return hmac.new(secret, digestmod=hashlib.sha256)


def _mac(keyed: hmac.HMAC, canonical: bytes) -> bytes:
    mac = keyed.copy()
    mac.update(canonical)
    return mac.digest()


class Signer:
    """
    Signs the requests this node sends, with one secret.
    """

    __slots__ = ("_keyed",)

    def __init__(self, secret: bytes) -> None:
        self._keyed = _keyed(secret)

    def sign(
        self, method: bytes, path: bytes, body: bytes, nowMs: int, nonce: bytes
    ) -> bytes:
        """
        The L{SIGNATURE_HEADER} value of a request.

        @param method: the HTTP method as sent, e.g. C{b"POST"}.
        @param path: the request target as sent: path and query (what
            Twisted's C{request.uri} gives the receiver).
        @param body: the exact body bytes.
        @param nowMs: now, in ms since the epoch.
        @param nonce: L{NONCE_SIZE} random bytes, never reused:
            C{os.urandom(NONCE_SIZE)}.
        """
        if type(nowMs) is not int or not 0 <= nowMs <= _MAX_TIMESTAMP:
            raise ValueError(f"timestamp out of range: {nowMs!r}")
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"a nonce is {NONCE_SIZE} bytes")
        mac = _mac(self._keyed, _canonical(method, path, body, nowMs, nonce))
        return b"v1 t=%d n=%s s=%s" % (nowMs, nonce.hex().encode(), mac.hex().encode())


class Verifier:
    """
    Checks the signatures of requests this node receives, and refuses each
    signed request after its first use.

    Replay protection: a signed request is valid within C{window} seconds
    either side of its timestamp (clocks across the cluster disagree a
    little), and its nonce is remembered until that validity has passed, in
    arrival order (a deque) beside a set for lookups. Each request purges
    the expired nonces at the old end: every nonce enters and leaves once,
    so amortised O(1). A nonce is remembered only once its signature has
    checked out, so only holders of the secret can fill the cache.

    Bounded memory: at C{maxNonces} entries the oldest nonce is forgotten to
    make room, and the I{horizon} rises to its timestamp: from then on every
    request timestamped at or before the horizon is refused, so the
    forgotten nonce can never be replayed. Refusing new requests when full
    would be just as safe but would turn a burst of honest traffic (or one
    peer gone mad) into every replica write to this node failing for up to
    a window; raising the horizon only narrows the window for old
    timestamps, to how long the cache took to fill, and fresh requests
    still pass (those of a peer whose clock runs behind the one forgotten
    can fail, by at most that skew). The horizon also rises past every
    expired nonce, so a wall clock set back cannot make a purged nonce valid
    again: set back by more than the window, it refuses every request until
    it has caught up with the horizon, an outage of the step less the
    window, rather than a replay hole.

    About 140 bytes a remembered nonce on 64-bit CPython (tracemalloc): 14
    MiB at the default bound, reached only above a few thousand signed
    requests a second.
    """

    __slots__ = (
        "_clock",
        "_horizon",
        "_maxNonces",
        "_nonces",
        "_secrets",
        "_seen",
        "_times",
        "_windowMs",
    )

    def __init__(
        self,
        secret: bytes | None,
        clock: TimeSource,
        window: float = DEFAULT_WINDOW,
        maxNonces: int = DEFAULT_MAX_NONCES,
        *,
        secrets: Iterable[bytes] = (),
    ) -> None:
        """
        @param secret: the secret this node signs with, or C{None} to name
            them all in C{secrets}.
        @param secrets: further secrets accepted, for rotation: add the new
            secret everywhere, then sign with it everywhere, then drop the
            old one.
        """
        accepted = [] if secret is None else [secret]
        accepted.extend(secrets)
        if not accepted:
            raise ValueError("a verifier needs at least one secret")
        if not window > 0:
            raise ValueError(f"window must be positive, not {window}")
        if maxNonces < 1:
            raise ValueError(f"maxNonces must be at least 1, not {maxNonces}")
        self._secrets = tuple(_keyed(secret) for secret in accepted)
        self._clock = clock
        self._windowMs = int(window * 1000)
        self._maxNonces = maxNonces
        # Parallel deques (no tuple per entry): timestamps and nonces in
        # arrival order; _nonces for membership.
        self._times: deque[int] = deque()
        self._seen: deque[bytes] = deque()
        self._nonces: set[bytes] = set()
        self._horizon = -1

    @property
    def remembered(self) -> int:
        """
        How many nonces the replay cache holds now.
        """
        return len(self._nonces)

    @property
    def horizon(self) -> int:
        """
        Requests timestamped at or before this (ms) are refused.
        """
        return self._horizon

    def verify(
        self, method: bytes, path: bytes, body: bytes, header: bytes | None
    ) -> None:
        """
        Accept a request (once) or say why not.

        @param header: the L{SIGNATURE_HEADER} value, C{None} when absent.
        @raise SignatureError: missing, malformed, bad signature, expired or
            future timestamp, before the replay horizon, replayed nonce.
        """
        if not header:
            raise SignatureError("missing signature")
        match = _HEADER_RE.fullmatch(header) if len(header) <= _MAX_HEADER else None
        if match is None:
            raise SignatureError("malformed signature")
        timestampMs = int(match[1])
        nonce = bytes.fromhex(match[2].decode())
        mac = bytes.fromhex(match[3].decode())

        nowMs = int(self._clock.seconds() * 1000)
        if timestampMs < nowMs - self._windowMs:
            raise SignatureError("expired timestamp")
        if timestampMs > nowMs + self._windowMs:
            raise SignatureError("future timestamp")

        canonical = _canonical(method, path, body, timestampMs, nonce)
        # Every secret is tried, so the time taken does not tell which one
        # matched; compare_digest keeps each comparison constant-time.
        valid = False
        for secret in self._secrets:
            valid |= hmac.compare_digest(_mac(secret, canonical), mac)
        if not valid:
            raise SignatureError("bad signature")

        self._purge(nowMs)
        if timestampMs <= self._horizon:
            raise SignatureError("timestamp before replay horizon")
        if nonce in self._nonces:
            raise SignatureError("replayed nonce")
        if len(self._nonces) >= self._maxNonces:
            self._forgetOldest()
        self._times.append(timestampMs)
        self._seen.append(nonce)
        self._nonces.add(nonce)

    def _purge(self, nowMs: int) -> None:
        # Arrival order is timestamp order but for skew between peers: an
        # entry from a peer ahead of us holds the ones behind it a little
        # longer (at most two windows), which costs memory, never safety.
        times = self._times
        expiredBefore = nowMs - self._windowMs
        while times and times[0] < expiredBefore:
            self._forgetOldest()

    def _forgetOldest(self) -> None:
        timestampMs = self._times.popleft()
        self._nonces.discard(self._seen.popleft())
        self._horizon = max(self._horizon, timestampMs)


# Secrets given as text


MIN_SECRET_LENGTH = 16
# Fixed for ever: every node must derive the same key from the same text.
_SECRET_SALT = b"disperse cluster secret v1"


def checkSecretText(text: str) -> None:
    """
    Refuse a C{--cluster-secret} too short to be one.

    @raise ValueError: with a message for the operator.
    """
    if len(text) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"the cluster secret must be at least {MIN_SECRET_LENGTH} characters"
            f" long (this one has {len(text)}); generate one with"
            " `openssl rand -hex 32`"
        )


def deriveSecret(text: str) -> bytes:
    """
    The 32-byte key of a C{--cluster-secret} given as text, the same on
    every node: scrypt of its NFC form (so the same passphrase typed on two
    systems is the same key) with a fixed salt naming its purpose.

    A memory-hard function rather than a plain hash or HKDF because
    operators pick memorable secrets and internal traffic is plain HTTP:
    anyone who sees one signed request can test guesses offline, and scrypt
    makes each guess cost about 50 ms and 16 MiB instead of a microsecond.
    Run at startup; repeated calls with the same text are cached.

    @raise ValueError: for a secret shorter than L{MIN_SECRET_LENGTH}.
    """
    checkSecretText(text)
    return _derive(text)


# Cached because it is slow by design and callers (option parsing, tests
# that build many configurations) may derive the same text many times; the
# process holds both the text and the key anyway.
@functools.lru_cache(maxsize=4)
def _derive(text: str) -> bytes:
    # surrogateescape: on POSIX, argv bytes that are not UTF-8 arrive as
    # lone surrogates; this gives back those very bytes.
    normalized = unicodedata.normalize("NFC", text).encode("utf-8", "surrogateescape")
    return hashlib.scrypt(normalized, salt=_SECRET_SALT, n=2**14, r=8, p=1, dklen=32)
