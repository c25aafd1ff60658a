"""
Tests for L{disperse.cluster.protocol}: every message survives a round trip,
the decoders turn any input into a message or a L{ProtocolError} and nothing
else, signatures bind every part of a request, and the replay cache refuses
replays while staying bounded.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import os
from collections.abc import Callable

import msgpack
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from disperse.cluster.merkle import MerkleTree
from disperse.cluster.protocol import (
    KINDS,
    MAX_BATCH,
    MAX_BLOB_SIZE,
    MAX_KEY_SIZE,
    MAX_LEVEL,
    MAX_NODE,
    MAX_PARTITION,
    MIN_BLOB_SIZE,
    NONCE_SIZE,
    ApplyRequest,
    ApplyResponse,
    DigestRequest,
    DigestResponse,
    FetchRequest,
    FetchResponse,
    ProtocolError,
    RangeRequest,
    RangeResponse,
    Request,
    Response,
    SignatureError,
    Signer,
    Verifier,
    checkSecretText,
    decodeRequest,
    decodeResponse,
    deriveSecret,
    encodeRequest,
    encodeResponse,
)
from disperse.store import Record

# Messages


keys = st.text(st.characters(codec="utf-8"), max_size=16) | st.text(
    st.characters(codec="utf-8"), min_size=250, max_size=256
)
blobs = st.binary(min_size=MIN_BLOB_SIZE, max_size=64) | st.builds(
    Record.encode,
    st.builds(
        Record,
        value=st.binary(max_size=32),
        expiresAtMs=st.integers(0, 2**62),
        timestamp=st.integers(0, 2**64 - 1),
        nodeId=st.integers(0, 2**32 - 1),
        tombstone=st.booleans(),
        binary=st.booleans(),
    ),
)
pairs = st.lists(st.tuples(keys, blobs), max_size=20).map(tuple)
indexes = st.lists(st.integers(0, MAX_NODE), max_size=20, unique=True).map(tuple)
partitions = st.integers(0, MAX_PARTITION)
levels = st.integers(0, MAX_LEVEL)
digests = st.binary(min_size=8, max_size=8)

requests = st.one_of(
    st.builds(ApplyRequest, pairs),
    st.builds(FetchRequest, st.lists(keys, max_size=20).map(tuple)),
    st.builds(DigestRequest, partitions, levels, indexes),
    st.builds(RangeRequest, partitions, indexes),
)
responses = st.one_of(
    st.builds(ApplyResponse, st.lists(st.booleans(), max_size=20).map(tuple)),
    st.builds(FetchResponse, st.lists(st.none() | blobs, max_size=20).map(tuple)),
    st.builds(
        DigestResponse,
        levels,
        st.dictionaries(st.integers(0, MAX_NODE), digests, max_size=20).map(
            lambda d: tuple(d.items())
        ),
    ),
    st.builds(RangeResponse, pairs),
)

Message = Request | Response
REQUEST_TYPES: list[type[Message]] = [
    ApplyRequest,
    FetchRequest,
    DigestRequest,
    RangeRequest,
]
RESPONSE_TYPES: list[type[Message]] = [
    ApplyResponse,
    FetchResponse,
    DigestResponse,
    RangeResponse,
]
DECODERS: list[Callable[[bytes], object]] = [
    *(cls.decode for cls in REQUEST_TYPES + RESPONSE_TYPES),
    *(lambda data, k=kind: decodeRequest(k, data) for kind in KINDS),
    *(lambda data, k=kind: decodeResponse(k, data) for kind in KINDS),
]


def anyDecodes(data: bytes) -> None:
    """
    Feed C{data} to every decoder: each returns a message that encodes back
    to an equal message, or raises L{ProtocolError}; nothing else.
    """
    for cls in REQUEST_TYPES + RESPONSE_TYPES:
        try:
            message = cls.decode(data)
        except ProtocolError:
            continue
        assert type(message).decode(message.encode()) == message
    for kind in KINDS:
        for decode in (decodeRequest, decodeResponse):
            with contextlib.suppress(ProtocolError):
                decode(kind, data)


@settings(max_examples=150, deadline=None)
@given(message=requests)
def test_requestRoundTrip(message: Request) -> None:
    data = encodeRequest(message)
    assert decodeRequest(message.kind, data) == message
    assert type(message).decode(data) == message


@settings(max_examples=150, deadline=None)
@given(message=responses)
def test_responseRoundTrip(message: Response) -> None:
    data = encodeResponse(message)
    assert decodeResponse(message.kind, data) == message
    assert type(message).decode(data) == message


def test_decodedTypesAreExact() -> None:
    """
    Decoded messages hold tuples, str and bytes, as built locally, so they
    compare, hash and pattern-match the same.
    """
    message = ApplyRequest.decode(ApplyRequest((("k", bytes(21)),)).encode())
    assert type(message.records) is tuple
    assert type(message.records[0]) is tuple
    hash(message)


def test_typedDispatch() -> None:
    data = FetchRequest(("a",)).encode()
    request = decodeRequest("fetch", data)
    assert request.keys == ("a",)
    with pytest.raises(ProtocolError, match="unknown kind"):
        decodeRequest("nope", data)
    with pytest.raises(ProtocolError, match="unknown kind"):
        decodeResponse("x" * 1000, data)
    # A request is not its response: fields differ in number or type.
    with pytest.raises(ProtocolError):
        decodeResponse("fetch", data)


def test_digestsRoundTripThroughMerkle() -> None:
    tree = MerkleTree.fromRecords(
        [(f"k{i}", Record(b"v", 0, i + 1, 1)) for i in range(50)], 2, 4
    )
    opening = tree.opening(1)
    response = DigestResponse.decode(DigestResponse.fromDigests(opening).encode())
    assert response.toDigests() == opening
    assert tree.compare(response.toDigests()) == []


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_arbitraryBytes(data: bytes) -> None:
    anyDecodes(data)


# Any msgpack value, including every type our messages never use.
msgpackValues = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=30)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4)),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=msgpackValues)
def test_arbitraryMsgpack(value: object) -> None:
    anyDecodes(msgpack.packb(value, use_bin_type=True))


@settings(max_examples=150, deadline=None)
@given(
    message=requests | responses,
    position=st.integers(0, 10_000),
    byte=st.integers(0, 255),
    cut=st.booleans(),
)
def test_corruptedMessages(
    message: Message, position: int, byte: int, cut: bool
) -> None:
    data = bytearray(message.encode())
    position %= len(data)
    if cut:
        del data[position:]
    else:
        data[position] = byte
    anyDecodes(bytes(data))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never used
        b"\x91\x90\x00",  # trailing byte
        b"\x91" * 5000,  # deeper than the unpacker's stack
        b"\xdd\xff\xff\xff\xff",  # a 4-billion-item array, no items
        b"\xdb\xff\xff\xff\xff",  # a 4 GiB string, no bytes
        b"\xc6\x7f\xff\xff\xff",  # a 2 GiB blob, no bytes
        b"\x91\x91\x92\xa1\xff" + bytes(22),  # key not UTF-8
        b"\xd6\xff\x00\x00\x00\x00",  # a msgpack Timestamp
        b"\xc7\x00\x05",  # an empty ext
    ],
)
def test_hostileBytes(data: bytes) -> None:
    for decode in DECODERS:
        with pytest.raises(ProtocolError):
            decode(data)


def test_nonBytesInput() -> None:
    with pytest.raises(ProtocolError):
        ApplyRequest.decode("text")  # type: ignore[arg-type]


blob = bytes(MIN_BLOB_SIZE)


def packed(*fields: object) -> bytes:
    data: bytes = msgpack.packb(list(fields), use_bin_type=True)
    return data


@pytest.mark.parametrize(
    ("cls", "data", "reason"),
    [
        (ApplyRequest, packed(), "expected 1 items"),
        (ApplyRequest, packed([], []), "expected 1 items"),
        (ApplyRequest, packed({}), "expected an array"),
        (ApplyRequest, packed([["k", "not bytes" * 5]]), "expected bytes"),
        (ApplyRequest, packed([[b"k", blob]]), "expected a string"),
        (ApplyRequest, packed([["k", blob, 1]]), "expected 2 items"),
        (ApplyRequest, packed([["k", bytes(20)]]), "outside 21"),
        (ApplyRequest, packed(["k"]), "expected an array"),
        (ApplyResponse, packed([1, 0]), "expected a boolean"),
        (ApplyResponse, packed([None]), "expected a boolean"),
        (FetchRequest, packed([1]), "expected a string"),
        (FetchResponse, packed([False]), "expected bytes"),
        (DigestRequest, packed(-1, 0, []), "outside"),
        (DigestRequest, packed(2**32, 0, []), "outside"),
        (DigestRequest, packed(True, 0, []), "expected an integer"),
        (DigestRequest, packed(0, 1.0, []), "expected an integer"),
        (DigestRequest, packed(0, MAX_LEVEL + 1, []), "outside"),
        (DigestRequest, packed(0, 0, [MAX_NODE + 1]), "outside"),
        (DigestRequest, packed(0, 0, [1, 1]), "duplicate"),
        (DigestResponse, packed(0, [[0, bytes(7)]]), "expected 8 bytes"),
        (DigestResponse, packed(0, [[0, "x" * 8]]), "expected 8 bytes"),
        (DigestResponse, packed(0, [[0, bytes(8)], [0, bytes(8)]]), "duplicate"),
        (RangeRequest, packed(0, [-1]), "outside"),
        (RangeResponse, packed([[None, blob]]), "expected a string"),
    ],
)
def test_invalidFields(cls: type[Message], data: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        cls.decode(data)


def test_limits() -> None:
    """
    Each limit admits its bound and refuses one more, on both sides.
    """
    ok: list[Message] = [
        FetchRequest(("k" * MAX_KEY_SIZE,)),
        FetchRequest(("é" * (MAX_KEY_SIZE // 2),)),
        FetchRequest(("",)),
        FetchResponse((bytes(MIN_BLOB_SIZE), bytes(MAX_BLOB_SIZE))),
        FetchRequest(("k",) * MAX_BATCH),
        DigestRequest(MAX_PARTITION, MAX_LEVEL, (MAX_NODE,)),
    ]
    for message in ok:
        assert type(message).decode(message.encode()) == message
    bad: list[Message] = [
        FetchRequest(("k" * (MAX_KEY_SIZE + 1),)),
        FetchRequest(("é" * (MAX_KEY_SIZE // 2) + "k",)),
        FetchRequest(("\udc80",)),  # a lone surrogate
        FetchResponse((bytes(MIN_BLOB_SIZE - 1),)),
        FetchResponse((bytes(MAX_BLOB_SIZE + 1),)),
        FetchResponse((bytearray(MIN_BLOB_SIZE),)),  # type: ignore[arg-type]
        FetchRequest(("k",) * (MAX_BATCH + 1)),
        ApplyResponse((1,)),  # type: ignore[arg-type]
        ApplyRequest(([("k", blob)],)),  # type: ignore[arg-type]
        ApplyRequest((Record(b"", 0, 1, 1),)),  # type: ignore[arg-type]
        DigestRequest(MAX_PARTITION + 1, 0, ()),
        DigestResponse(0, ((0, bytes(9)),)),
    ]
    for message in bad:
        with pytest.raises(ProtocolError):
            message.encode()


def test_limitsOnTheWire() -> None:
    """
    The decoder refuses what a careless or hostile encoder sends past the
    limits, before building anything big.
    """
    tooMany = packed(["k"] * (MAX_BATCH + 1))
    tooLong = packed(["k" * (MAX_KEY_SIZE + 1)])
    tooBig = packed([bytes(MAX_BLOB_SIZE + 1)])
    with pytest.raises(ProtocolError):
        FetchRequest.decode(tooMany)
    with pytest.raises(ProtocolError):
        FetchRequest.decode(tooLong)
    with pytest.raises(ProtocolError):
        FetchResponse.decode(tooBig)


def test_tombstonesTravel() -> None:
    tombstone = Record(b"", 5000, 7, 3, tombstone=True).encode()
    response = FetchResponse.decode(FetchResponse((tombstone, None)).encode())
    assert response.records[1] is None
    assert response.records[0] is not None
    assert Record.decode(response.records[0]).tombstone


# Signatures

SECRET = b"s" * 32
OTHER = b"o" * 32
NOW = 1_700_000_000.0
NOW_MS = int(NOW * 1000)


def clockAt(seconds: float = NOW) -> Clock:
    clock = Clock()
    clock.advance(seconds)
    return clock


_nonces = itertools.count(1)


class Requests:
    """
    Signs requests with fresh nonces, as a peer would (counting rather than
    random, for speed and reproducibility).
    """

    def __init__(self, secret: bytes = SECRET) -> None:
        self.signer = Signer(secret)

    def sign(
        self,
        nowMs: int,
        method: bytes = b"POST",
        path: bytes = b"/internal/apply",
        body: bytes = b"body",
    ) -> tuple[bytes, bytes, bytes, bytes]:
        nonce = next(_nonces).to_bytes(NONCE_SIZE, "big")
        return method, path, body, self.signer.sign(method, path, body, nowMs, nonce)


def test_validPasses() -> None:
    verifier = Verifier(SECRET, clockAt())
    header = Signer(SECRET).sign(b"POST", b"/a?b=c", b"", NOW_MS, os.urandom(16))
    verifier.verify(b"POST", b"/a?b=c", b"", header)
    assert verifier.remembered == 1


def test_headerShape() -> None:
    header = Signer(SECRET).sign(b"GET", b"/", b"", 123, bytes(range(16)))
    version, t, n, s = header.split(b" ")
    assert (version, t) == (b"v1", b"t=123")
    assert n == b"n=" + bytes(range(16)).hex().encode()
    assert len(s) == 2 + 64


def test_signedStringIsTheContract() -> None:
    """
    The signature is HMAC-SHA256 over length-prefixed fields, as spelled
    out here: a change is a new version of the wire protocol.
    """
    nonce = bytes(range(16))

    def field(value: bytes) -> bytes:
        return len(value).to_bytes(4, "big") + value

    canonical = b"".join(
        map(
            field,
            [
                b"disperse request signature",
                b"v1",
                b"POST",
                b"/internal/apply",
                b"1700000000000",
                nonce,
                hashlib.sha256(b"body").digest(),
            ],
        )
    )
    mac = hmac.new(SECRET, canonical, hashlib.sha256).hexdigest().encode()
    header = Signer(SECRET).sign(
        b"POST", b"/internal/apply", b"body", 1_700_000_000_000, nonce
    )
    assert header == b"v1 t=1700000000000 n=%s s=%s" % (nonce.hex().encode(), mac)


def test_encodingIsTheContract() -> None:
    """
    A message is a msgpack array of its fields; keys are str, records bin.
    """
    data = ApplyRequest((("k", bytes(21)),)).encode()
    assert data == bytes.fromhex("919192a16bc415") + bytes(21)


fields = st.sampled_from(["method", "path", "body", "timestamp", "nonce", "mac"])


@settings(max_examples=300, deadline=None)
@given(
    method=st.binary(min_size=1, max_size=8),
    path=st.binary(max_size=40),
    body=st.binary(max_size=100),
    nonce=st.binary(min_size=NONCE_SIZE, max_size=NONCE_SIZE),
    skew=st.integers(-30_000, 30_000),
    field=fields,
    data=st.data(),
)
def test_anyChangeFails(
    method: bytes,
    path: bytes,
    body: bytes,
    nonce: bytes,
    skew: int,
    field: str,
    data: st.DataObject,
) -> None:
    """
    A signed request passes as signed; a change to any one part of it, the
    header's included, is a bad signature.
    """
    signer = Signer(SECRET)
    timestampMs = NOW_MS + skew
    header = signer.sign(method, path, body, timestampMs, nonce)
    Verifier(SECRET, clockAt()).verify(method, path, body, header)

    other = data.draw(st.binary(max_size=100), label="other")
    if field == "method":
        assume(other != method)
        method = other
    elif field == "path":
        assume(other != path)
        path = other
    elif field == "body":
        assume(other != body)
        body = other
    else:
        t, n, s = header.split(b" ")[1:]
        if field == "timestamp":
            newMs = timestampMs + data.draw(
                st.integers(-1000, 1000).filter(bool), label="delta"
            )
            assume(abs(newMs - NOW_MS) <= 30_000)
            t = b"t=%d" % newMs
        elif field == "nonce":
            newNonce = data.draw(
                st.binary(min_size=NONCE_SIZE, max_size=NONCE_SIZE), label="nonce"
            )
            assume(newNonce != nonce)
            n = b"n=" + newNonce.hex().encode()
        else:
            position = data.draw(st.integers(2, len(s) - 1), label="position")
            digit = b"%x" % ((int(s[position : position + 1], 16) + 1) % 16)
            s = s[:position] + digit + s[position + 1 :]
        header = b" ".join((b"v1", t, n, s))
    with pytest.raises(SignatureError, match="bad signature"):
        Verifier(SECRET, clockAt()).verify(method, path, body, header)


def test_wrongSecret() -> None:
    method, path, body, header = Requests(OTHER).sign(NOW_MS)
    with pytest.raises(SignatureError, match="bad signature"):
        Verifier(SECRET, clockAt()).verify(method, path, body, header)


def test_fieldsDoNotRunTogether() -> None:
    """
    Moving bytes between method and path, or path and body, changes the
    signature.
    """
    signer = Signer(SECRET)
    nonce = bytes(16)
    a = signer.sign(b"POST", b"/x", b"y", NOW_MS, nonce)
    assert a != signer.sign(b"POS", b"T/x", b"y", NOW_MS, nonce)
    assert a != signer.sign(b"POST", b"/xy", b"", NOW_MS, nonce)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        (b"", "missing"),
        (b"v1", "malformed"),
        (b"v2 t=1 n=%s s=%s" % (b"0" * 32, b"0" * 64), "malformed"),
        (b"v1 t=01 n=%s s=%s" % (b"0" * 32, b"0" * 64), "malformed"),
        (b"v1 t=-1 n=%s s=%s" % (b"0" * 32, b"0" * 64), "malformed"),
        (b"v1 t=1 n=%s s=%s" % (b"0" * 30, b"0" * 64), "malformed"),
        (b"v1 t=1 n=%s s=%s" % (b"A" * 32, b"0" * 64), "malformed"),
        (b"v1 t=1 n=%s s=%s" % (b"0" * 32, b"0" * 63), "malformed"),
        (b"v1 t=1 n=%s s=%s " % (b"0" * 32, b"0" * 64), "malformed"),
        (b"v1 t=1  n=%s s=%s" % (b"0" * 32, b"0" * 64), "malformed"),
        (b"v1 t=%s n=%s s=%s" % (b"1" * 17, b"0" * 32, b"0" * 64), "malformed"),
        (b"\xff" * 100_000, "malformed"),
    ],
)
def test_malformed(header: bytes | None, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        Verifier(SECRET, clockAt()).verify(b"POST", b"/", b"", header)


def test_uppercaseSpellingIsNotAFreshNonce() -> None:
    """
    The nonce and signature have one spelling; the same request in capitals
    cannot slip past the replay cache.
    """
    verifier = Verifier(SECRET, clockAt())
    method, path, body, header = Requests().sign(NOW_MS)
    verifier.verify(method, path, body, header)
    t, n, s = header.split(b" ")[1:]
    for variant in (
        b" ".join((b"v1", t, n.upper().replace(b"N=", b"n="), s)),
        b" ".join((b"v1", t, n, s.upper().replace(b"S=", b"s="))),
    ):
        with pytest.raises(SignatureError):
            verifier.verify(method, path, body, variant)


@pytest.mark.parametrize(
    ("offsetMs", "reason"),
    [
        (-30_001, "expired"),
        (-3_600_000, "expired"),
        (30_001, "future"),
        (10**9, "future"),
    ],
)
def test_timestampOutsideWindow(offsetMs: int, reason: str) -> None:
    method, path, body, header = Requests().sign(NOW_MS + offsetMs)
    with pytest.raises(SignatureError, match=reason):
        Verifier(SECRET, clockAt()).verify(method, path, body, header)


@pytest.mark.parametrize("offsetMs", [-30_000, 0, 30_000])
def test_timestampAtWindowEdges(offsetMs: int) -> None:
    method, path, body, header = Requests().sign(NOW_MS + offsetMs)
    Verifier(SECRET, clockAt()).verify(method, path, body, header)


def test_windowIsConfigurable() -> None:
    requests = Requests()
    verifier = Verifier(SECRET, clockAt(), window=1.0)
    verifier.verify(*requests.sign(NOW_MS - 1000))
    with pytest.raises(SignatureError, match="expired"):
        verifier.verify(*requests.sign(NOW_MS - 1001))


def test_replayRefused() -> None:
    clock = clockAt()
    verifier = Verifier(SECRET, clock)
    request = Requests().sign(NOW_MS)
    verifier.verify(*request)
    with pytest.raises(SignatureError, match="replayed nonce"):
        verifier.verify(*request)
    # Still refused at the last moment of its validity...
    clock.advance(30.0)
    with pytest.raises(SignatureError, match="replayed nonce"):
        verifier.verify(*request)
    # ...and for being too old after that, once forgotten.
    clock.advance(0.01)
    with pytest.raises(SignatureError, match="expired"):
        verifier.verify(*request)


def test_forgedRequestsAreNotRemembered() -> None:
    """
    Only requests with a good signature take room in the replay cache, so
    nobody without the secret can fill it.
    """
    verifier = Verifier(SECRET, clockAt(), maxNonces=10)
    forger = Requests(OTHER)
    for _ in range(100):
        with pytest.raises(SignatureError, match="bad signature"):
            verifier.verify(*forger.sign(NOW_MS))
    assert verifier.remembered == 0
    assert verifier.horizon == -1


def test_nonceCacheBoundedOnAMovingClock() -> None:
    """
    120,000 requests at 2,000 a second: expired nonces are purged as time
    moves, so the cache holds one window's worth, never more.
    """
    clock = clockAt()
    verifier = Verifier(SECRET, clock)
    requests = Requests()
    largest = 0
    for i in range(120_000):
        if i % 10 == 0:
            clock.advance(0.005)
        nowMs = int(clock.seconds() * 1000)
        # Peers' clocks disagree a little with ours, either way.
        verifier.verify(*requests.sign(nowMs + (i % 7 - 3) * 1000))
        largest = max(largest, verifier.remembered)
    # 30 s (plus the skew) at 2,000 a second.
    assert 60_000 <= largest <= 68_000
    assert largest < 100_000
    # No nonce was forgotten early: the horizon is an expired timestamp.
    assert verifier.horizon < int(clock.seconds() * 1000) - 30_000


def test_fullCacheForgetsSafely() -> None:
    """
    At its bound the cache forgets its oldest nonce and refuses everything
    at or before that nonce's timestamp: fresh requests still pass, and the
    forgotten one cannot be replayed.
    """
    clock = clockAt()
    verifier = Verifier(SECRET, clock, maxNonces=100)
    requests = Requests()
    sent = []
    for _ in range(300):
        clock.advance(0.01)
        sent.append(requests.sign(int(clock.seconds() * 1000)))
        verifier.verify(*sent[-1])
        assert verifier.remembered <= 100
    assert verifier.remembered == 100
    for request in sent[:200]:
        with pytest.raises(SignatureError, match="replay horizon"):
            verifier.verify(*request)
    for request in sent[200:]:
        with pytest.raises(SignatureError, match="replayed nonce"):
            verifier.verify(*request)
    verifier.verify(*requests.sign(int(clock.seconds() * 1000)))


class SteppingTime:
    """
    A wall clock that an operator (or NTP) can set back, which a Clock
    cannot do.
    """

    def __init__(self, now: float) -> None:
        self.now = now

    def seconds(self) -> float:
        return self.now


def test_clockSteppedBackDoesNotReviveNonces() -> None:
    time = SteppingTime(NOW)
    verifier = Verifier(SECRET, time)
    requests = Requests()
    old = requests.sign(NOW_MS)
    verifier.verify(*old)
    # A minute later a request purges the old nonce...
    time.now = NOW + 60
    verifier.verify(*requests.sign(NOW_MS + 60_000))
    assert verifier.remembered == 1
    # ...then the clock is set back: the forgotten request is in its window
    # again, and refused all the same.
    time.now = NOW
    with pytest.raises(SignatureError, match="replay horizon"):
        verifier.verify(*old)


def test_rotation() -> None:
    """
    During a rotation a verifier accepts both secrets; a signer uses one.
    """
    new, old, stranger = b"n" * 32, b"o" * 32, b"x" * 32
    for verifier in (
        Verifier(new, clockAt(), secrets=[old]),
        Verifier(None, clockAt(), secrets=[old, new]),
    ):
        nonce = os.urandom(NONCE_SIZE)
        header = Signer(old).sign(b"POST", b"/", b"", NOW_MS, nonce)
        verifier.verify(b"POST", b"/", b"", header)
        verifier.verify(*Requests(new).sign(NOW_MS))
        with pytest.raises(SignatureError, match="bad signature"):
            verifier.verify(*Requests(stranger).sign(NOW_MS))
        # One replay cache whatever the secret.
        header = Signer(new).sign(b"POST", b"/", b"", NOW_MS, nonce)
        with pytest.raises(SignatureError, match="replayed"):
            verifier.verify(b"POST", b"/", b"", header)
    # The old secret dropped, its requests fail.
    with pytest.raises(SignatureError, match="bad signature"):
        Verifier(new, clockAt()).verify(*Requests(old).sign(NOW_MS))


def test_badConfiguration() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        Verifier(None, clockAt())
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Verifier(b"short", clockAt())
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Verifier(SECRET, clockAt(), secrets=[b"short"])
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Signer(b"x" * 15)
    with pytest.raises(ValueError, match="window"):
        Verifier(SECRET, clockAt(), window=0)
    with pytest.raises(ValueError, match="maxNonces"):
        Verifier(SECRET, clockAt(), maxNonces=0)
    with pytest.raises(ValueError, match="nonce"):
        Signer(SECRET).sign(b"GET", b"/", b"", NOW_MS, b"short")
    with pytest.raises(ValueError, match="timestamp"):
        Signer(SECRET).sign(b"GET", b"/", b"", -1, bytes(16))


# Secrets as text


def test_deriveSecret() -> None:
    key = deriveSecret("correct horse battery staple")
    assert len(key) == 32
    assert key == deriveSecret("correct horse battery staple")
    assert key != deriveSecret("correct horse battery stapler")
    # Not a bare hash of the text: derived with a label of its own.
    assert key != hashlib.sha256(b"correct horse battery staple").digest()
    # The same text typed composed or decomposed is the same secret.
    assert deriveSecret("caf\u00e9 caf\u00e9 caf\u00e9 !") == deriveSecret(
        "cafe\u0301 cafe\u0301 cafe\u0301 !"
    )
    # Usable as it comes.
    Signer(key)


def test_derivedSecretIsTheContract() -> None:
    """
    Every node, of every version, derives the same key from the same text.
    """
    assert deriveSecret("disperse known answer secret") == bytes.fromhex(
        "18bc2ea44d1f35cb6d1848a2f6fcc29a388c1b8cbcc1412dad4581e3d75d9b10"
    )
    # Text that came from bytes that are not UTF-8 (argv on POSIX) works.
    assert len(deriveSecret("sixteen chars \udcff!")) == 32


def test_shortSecretRefused() -> None:
    checkSecretText("x" * 16)
    with pytest.raises(ValueError, match="at least 16 characters") as info:
        deriveSecret("x" * 15)
    assert "has 15" in str(info.value)
    with pytest.raises(ValueError, match="at least 16 characters"):
        checkSecretText("")
