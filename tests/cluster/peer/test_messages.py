"""
Tests for L{disperse.cluster.peer.messages}: every message survives a round
trip, and the decoders turn any input into a message or a L{ProtocolError}
and nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from disperse.cluster.peer.messages import (
    KINDS,
    MAX_BATCH,
    MAX_BLOB_SIZE,
    MAX_COUNT,
    MAX_KEY_SIZE,
    MAX_LEVEL,
    MAX_NODE,
    MAX_PARTITION,
    MIN_BLOB_SIZE,
    ApplyRequest,
    ApplyResponse,
    CountsRequest,
    CountsResponse,
    DigestRequest,
    DigestResponse,
    FetchRequest,
    FetchResponse,
    ProtocolError,
    RangeRequest,
    RangeResponse,
    Request,
    Response,
    RootsRequest,
    RootsResponse,
    decodeRequest,
    decodeResponse,
    encodeRequest,
    encodeResponse,
)
from disperse.store import Record
from disperse.store.merkle import DigestQuery, MerkleTree

keys = st.text(st.characters(codec="utf-8"), max_size=16) | st.text(
    st.characters(codec="utf-8"), min_size=250, max_size=256
)
blobs = st.binary(min_size=MIN_BLOB_SIZE, max_size=64) | st.builds(
    Record.encode,
    st.builds(
        Record,
        contentHash=st.none(),
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
    st.builds(RootsRequest, indexes),
    st.builds(CountsRequest, indexes),
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
    st.builds(RootsResponse, st.lists(digests, max_size=20).map(tuple)),
    st.builds(
        CountsResponse,
        st.lists(st.none() | st.integers(0, MAX_COUNT), max_size=20).map(tuple),
    ),
)

Message = Request | Response
REQUEST_TYPES: list[type[Message]] = [
    ApplyRequest,
    FetchRequest,
    DigestRequest,
    RangeRequest,
    RootsRequest,
    CountsRequest,
]
RESPONSE_TYPES: list[type[Message]] = [
    ApplyResponse,
    FetchResponse,
    DigestResponse,
    RangeResponse,
    RootsResponse,
    CountsResponse,
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
    message = ApplyRequest.decode(ApplyRequest((("k", bytes(29)),)).encode())
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
    asked = DigestQuery(1, (0, 1, 2, 3))
    answer = tree.digests(*asked)
    response = DigestResponse.decode(DigestResponse.fromDigests(answer).encode())
    assert response.toDigests() == answer
    assert tree.compare(asked, response.toDigests()) == []


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
        (ApplyRequest, packed([["k", bytes(28)]]), "outside 29"),
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
        (CountsRequest, packed(), "expected 1 items"),
        (CountsRequest, packed([-1]), "outside"),
        (CountsRequest, packed([1, 1]), "duplicate"),
        (CountsRequest, packed(["1"]), "expected an integer"),
        (CountsResponse, packed([-1]), "outside"),
        (CountsResponse, packed([1.0]), "expected an integer"),
        (CountsResponse, packed([False]), "expected an integer"),
        (CountsResponse, packed([None, "2"]), "expected an integer"),
        (CountsResponse, packed(None), "expected an array"),
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
        CountsRequest(tuple(range(MAX_BATCH))),
        CountsResponse((MAX_COUNT, 0, None)),
        CountsResponse((None,) * MAX_BATCH),
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
        CountsRequest(tuple(range(MAX_BATCH + 1))),
        CountsRequest((MAX_NODE + 1,)),
        CountsResponse((MAX_COUNT + 1,)),
        CountsResponse((-1,)),
        CountsResponse((True,)),
        CountsResponse((0,) * (MAX_BATCH + 1)),
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


def test_encodingIsTheContract() -> None:
    """
    A message is a msgpack array of its fields; keys are str, records bin.
    """
    data = ApplyRequest((("k", bytes(29)),)).encode()
    assert data == bytes.fromhex("919192a16bc41d") + bytes(29)


def test_countsOnTheWire() -> None:
    """
    A counts request is an array of partitions; its answer an array of
    counts, nil for a partition not counted there.
    """
    assert CountsRequest((3, 1023)).encode() == bytes.fromhex("919203cd03ff")
    answer = CountsResponse((0, None, 2**32))
    assert answer.encode() == bytes.fromhex("919300c0cf0000000100000000")
    assert decodeResponse("counts", answer.encode()) == answer
    assert "counts" in KINDS
