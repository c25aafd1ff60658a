"""
The HashiCorp memberlist wire format (protocol versions 2 to 5), as bytes in
and values out, with no I/O.

This module owns every byte layout Disperse shares with Go memberlist peers:

  - a message is one type byte followed by a msgpack map keyed by the Go
    struct's field names, encoded as Go's C{go-msgpack} codec does (strings
    and byte slices both as msgpack "raw"/str, never bin);
  - packets (UDP) may be a compound of several messages, compressed (LZW),
    checksummed (CRC-32), encrypted (AES-GCM) and labelled, in that order
    from the inside out; L{encodePacket} and L{decodePacket} apply and peel
    those layers, L{packMessages} fills packets up to a size budget;
  - streams (TCP) carry one message each way: push/pull state exchange,
    ping/ack, user messages or an error; L{encodeStream} frames one and
    L{StreamDecoder} parses one incrementally as bytes arrive.

Nonces are parameters: the caller draws them from C{os.urandom} or similar,
so this module reads neither randomness nor time.

Every decoding failure, whatever the input, raises L{WireError}.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

import msgpack

from disperse.gossip import crypto, lzw
from disperse.gossip.crypto import ENCRYPTION_VERSION_UNPADDED, Keyring
from disperse.gossip.messages import (
    Ack,
    Alive,
    CompressionAlgorithm,
    Dead,
    ErrorResponse,
    IndirectPing,
    MessageType,
    Nack,
    NodeState,
    PacketMessage,
    Ping,
    PushNodeState,
    PushPull,
    PushPullHeader,
    Suspect,
    UserMessage,
)

__all__ = [
    "LABEL_MAX_SIZE",
    "MAX_PACKET_SIZE",
    "MAX_STREAM_SIZE",
    "DecryptError",
    "Keyring",
    "Packet",
    "StreamDecoder",
    "StreamMessage",
    "WireError",
    "addLabel",
    "compressMessage",
    "decodeCompound",
    "decodeMessage",
    "decodePacket",
    "decodePushNodeState",
    "decodePushPullHeader",
    "decodeStream",
    "decompressMessage",
    "encodeCompound",
    "encodeMessage",
    "encodePacket",
    "encodePushNodeState",
    "encodePushPullHeader",
    "encodeStream",
    "encodeStreamBody",
    "packMessages",
    "packetOverhead",
    "removeLabel",
]

# memberlist's default UDPBufferSize: the largest packet it sends.
MAX_PACKET_SIZE: Final = 1400
# memberlist refuses encrypted stream state above this (maxPushStateBytes);
# we apply it to every stream, encrypted or not, and to decompression.
MAX_STREAM_SIZE: Final = 20 * 1024 * 1024
# A label's length travels in one byte.
LABEL_MAX_SIZE: Final = 255
# A packet compresses a payload of at most a UDP datagram; anything expanding
# far beyond that is hostile.
_MAX_PACKET_EXPANSION: Final = 1024 * 1024
# Compound and compressed messages nest; Go recurses without limit, we stop
# well before Python's stack does.
_MAX_NESTING: Final = 8
# A push/pull can list at most this many nodes (each costs at least a few
# bytes anyway, so MAX_STREAM_SIZE also bounds it).
_MAX_PUSH_NODES: Final = 1 << 20

_COMPOUND_MAX_PARTS: Final = 255
_COMPOUND_MAX_PART_SIZE: Final = 0xFFFF
_CRC_HEADER: Final = struct.Struct(">BI")
_STREAM_ENCRYPT_HEADER: Final = struct.Struct(">BI")

_UINT8: Final = 0xFF
_UINT16: Final = 0xFFFF
_UINT32: Final = 0xFFFF_FFFF
_INT64_MAX: Final = (1 << 63) - 1
_IP_LENGTHS: Final = frozenset((0, 4, 16))


class WireError(ValueError):
    """
    Bytes that are not a valid memberlist message (truncated, corrupt,
    oversized, wrongly typed, failing authentication or a label check).
    """


class DecryptError(WireError):
    """
    No installed key could decrypt a packet or stream: usually a node
    configured with another key.
    """


StreamMessage: TypeAlias = Ping | Ack | PushPull | UserMessage | ErrorResponse


# msgpack, the way go-msgpack speaks it


def _pack(fields: Mapping[str, object]) -> bytes:
    # use_bin_type=False makes bytes and str both msgpack raw with no str8,
    # which is exactly what go-msgpack's default MsgpackHandle writes and
    # what every Go memberlist can read.  go-msgpack also writes struct
    # fields sorted by name; we do too, so our bytes equal Go's.
    ordered = dict(sorted(fields.items()))
    packed: bytes = msgpack.packb(ordered, use_bin_type=False)
    return packed


def _newUnpacker(maxSize: int) -> msgpack.Unpacker:
    # raw=True: every string arrives as bytes; we decide per field whether
    # it is text.  The limits stop a tiny header from claiming huge sizes.
    return msgpack.Unpacker(
        raw=True,
        strict_map_key=False,
        max_buffer_size=maxSize,
        max_str_len=maxSize,
        max_bin_len=maxSize,
        max_array_len=maxSize,
        max_map_len=maxSize,
        max_ext_len=maxSize,
    )


def _unpackOne(data: bytes) -> object:
    """
    Decode the first msgpack object of a complete buffer; like Go, ignore
    anything after it.
    """
    unpacker = _newUnpacker(max(len(data), 1))
    try:
        unpacker.feed(data)
        return unpacker.unpack()
    except msgpack.OutOfData:
        raise WireError("truncated msgpack value") from None
    except Exception as e:
        # msgpack reports corrupt input with several exception types
        # (FormatError, StackError, ValueError, ...); callers see one.
        raise WireError(f"invalid msgpack: {e}") from e


_Fields: TypeAlias = Mapping[bytes, object]


def _asFields(value: object, what: str) -> _Fields:
    if not isinstance(value, dict):
        raise WireError(f"{what}: expected a msgpack map")
    for key in value:
        if not isinstance(key, bytes):
            raise WireError(f"{what}: map key {key!r} is not a string")
    return value


def _uint(fields: _Fields, name: bytes, maximum: int) -> int:
    # A missing field or nil decodes to Go's zero value, as go-msgpack does.
    value = fields.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise WireError(f"{name.decode()}: expected an integer")
    if value < 0 or value > maximum:
        raise WireError(f"{name.decode()}: {value} out of range")
    return value


def _bool(fields: _Fields, name: bytes) -> bool:
    value = fields.get(name)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    # go-msgpack also reads the integers 0 and 1 as booleans.
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise WireError(f"{name.decode()}: expected a boolean")


def _bytes(fields: _Fields, name: bytes) -> bytes:
    value = fields.get(name)
    if value is None:
        return b""
    if not isinstance(value, bytes):
        raise WireError(f"{name.decode()}: expected bytes")
    return value


def _text(fields: _Fields, name: bytes) -> str:
    raw = _bytes(fields, name)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError(f"{name.decode()}: not UTF-8") from None


def _ip(fields: _Fields, name: bytes) -> bytes:
    value = _bytes(fields, name)
    if len(value) not in _IP_LENGTHS:
        raise WireError(f"{name.decode()}: {len(value)} bytes is not an IP")
    return value


def _vsn(fields: _Fields) -> tuple[int, ...]:
    # Go's []uint8 travels as raw bytes, but an array of small integers is
    # an equally valid msgpack rendering and Go reads it too.
    value = fields.get(b"Vsn")
    if value is None:
        return ()
    if isinstance(value, bytes):
        vsn = tuple(value)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int):
                raise WireError("Vsn: expected small integers")
            if not 0 <= item <= _UINT8:
                raise WireError("Vsn: entry out of range")
        vsn = tuple(value)
    else:
        raise WireError("Vsn: expected bytes")
    # memberlist reads six entries whenever any are present.
    if 0 < len(vsn) < 6:
        raise WireError(f"Vsn: {len(vsn)} entries, expected 6")
    return vsn


def _checkUint(value: int, maximum: int, what: str) -> int:
    if isinstance(value, bool) or not 0 <= value <= maximum:
        raise ValueError(f"{what} {value!r} does not fit the wire format")
    return value


def _checkIp(value: bytes, what: str) -> bytes:
    if len(value) not in _IP_LENGTHS:
        raise ValueError(f"{what} must be 4 or 16 bytes (or empty)")
    return value


def _orNil(value: bytes) -> bytes | None:
    # Go leaves unset byte slices nil and go-msgpack writes nil for them;
    # doing the same keeps our bytes identical to Go's.
    return value or None


def _vsnBytes(vsn: tuple[int, ...]) -> bytes | None:
    if 0 < len(vsn) < 6:
        raise ValueError("vsn must be empty or have 6 entries")
    for item in vsn:
        _checkUint(item, _UINT8, "vsn entry")
    return bytes(vsn) or None


# Message bodies: field names and omitempty follow the Go structs.


def _pingFields(message: Ping) -> dict[str, object]:
    fields: dict[str, object] = {
        "SeqNo": _checkUint(message.seqNo, _UINT32, "seqNo"),
        "Node": message.node,
    }
    if message.sourceAddr:
        fields["SourceAddr"] = _checkIp(message.sourceAddr, "sourceAddr")
    if message.sourcePort:
        fields["SourcePort"] = _checkUint(message.sourcePort, _UINT16, "sourcePort")
    if message.sourceNode:
        fields["SourceNode"] = message.sourceNode
    return fields


def _decodePing(fields: _Fields) -> Ping:
    return Ping(
        seqNo=_uint(fields, b"SeqNo", _UINT32),
        node=_text(fields, b"Node"),
        sourceAddr=_ip(fields, b"SourceAddr"),
        sourcePort=_uint(fields, b"SourcePort", _UINT16),
        sourceNode=_text(fields, b"SourceNode"),
    )


def _indirectPingFields(message: IndirectPing) -> dict[str, object]:
    fields: dict[str, object] = {
        "SeqNo": _checkUint(message.seqNo, _UINT32, "seqNo"),
        "Target": _orNil(_checkIp(message.target, "target")),
        "Port": _checkUint(message.port, _UINT16, "port"),
        "Node": message.node,
        "Nack": bool(message.nack),
    }
    if message.sourceAddr:
        fields["SourceAddr"] = _checkIp(message.sourceAddr, "sourceAddr")
    if message.sourcePort:
        fields["SourcePort"] = _checkUint(message.sourcePort, _UINT16, "sourcePort")
    if message.sourceNode:
        fields["SourceNode"] = message.sourceNode
    return fields


def _decodeIndirectPing(fields: _Fields) -> IndirectPing:
    return IndirectPing(
        seqNo=_uint(fields, b"SeqNo", _UINT32),
        target=_ip(fields, b"Target"),
        port=_uint(fields, b"Port", _UINT16),
        node=_text(fields, b"Node"),
        nack=_bool(fields, b"Nack"),
        sourceAddr=_ip(fields, b"SourceAddr"),
        sourcePort=_uint(fields, b"SourcePort", _UINT16),
        sourceNode=_text(fields, b"SourceNode"),
    )


def _ackFields(message: Ack) -> dict[str, object]:
    return {
        "SeqNo": _checkUint(message.seqNo, _UINT32, "seqNo"),
        "Payload": _orNil(message.payload),
    }


def _decodeAck(fields: _Fields) -> Ack:
    return Ack(
        seqNo=_uint(fields, b"SeqNo", _UINT32), payload=_bytes(fields, b"Payload")
    )


def _nackFields(message: Nack) -> dict[str, object]:
    return {"SeqNo": _checkUint(message.seqNo, _UINT32, "seqNo")}


def _decodeNack(fields: _Fields) -> Nack:
    return Nack(seqNo=_uint(fields, b"SeqNo", _UINT32))


def _suspectFields(message: Suspect) -> dict[str, object]:
    return {
        "Incarnation": _checkUint(message.incarnation, _UINT32, "incarnation"),
        "Node": message.node,
        "From": message.fromNode,
    }


def _decodeSuspect(fields: _Fields) -> Suspect:
    return Suspect(
        incarnation=_uint(fields, b"Incarnation", _UINT32),
        node=_text(fields, b"Node"),
        fromNode=_text(fields, b"From"),
    )


def _aliveFields(message: Alive) -> dict[str, object]:
    return {
        "Incarnation": _checkUint(message.incarnation, _UINT32, "incarnation"),
        "Node": message.node,
        "Addr": _orNil(_checkIp(message.addr, "addr")),
        "Port": _checkUint(message.port, _UINT16, "port"),
        "Meta": _orNil(message.meta),
        "Vsn": _vsnBytes(message.vsn),
    }


def _decodeAlive(fields: _Fields) -> Alive:
    return Alive(
        incarnation=_uint(fields, b"Incarnation", _UINT32),
        node=_text(fields, b"Node"),
        addr=_ip(fields, b"Addr"),
        port=_uint(fields, b"Port", _UINT16),
        meta=_bytes(fields, b"Meta"),
        vsn=_vsn(fields),
    )


def _deadFields(message: Dead) -> dict[str, object]:
    return {
        "Incarnation": _checkUint(message.incarnation, _UINT32, "incarnation"),
        "Node": message.node,
        "From": message.fromNode,
    }


def _decodeDead(fields: _Fields) -> Dead:
    return Dead(
        incarnation=_uint(fields, b"Incarnation", _UINT32),
        node=_text(fields, b"Node"),
        fromNode=_text(fields, b"From"),
    )


def _errorFields(message: ErrorResponse) -> dict[str, object]:
    return {"Error": message.error}


def _decodeError(fields: _Fields) -> ErrorResponse:
    return ErrorResponse(error=_text(fields, b"Error"))


def _headerFields(header: PushPullHeader) -> dict[str, object]:
    return {
        "Nodes": _checkUint(header.nodes, _INT64_MAX, "nodes"),
        "UserStateLen": _checkUint(header.userStateLen, _INT64_MAX, "userStateLen"),
        "Join": bool(header.join),
    }


def _decodeHeader(fields: _Fields) -> PushPullHeader:
    # Go's fields are signed ints; negative counts are nonsense, and we cap
    # both at what a stream may carry.
    return PushPullHeader(
        nodes=_uint(fields, b"Nodes", _MAX_PUSH_NODES),
        userStateLen=_uint(fields, b"UserStateLen", MAX_STREAM_SIZE),
        join=_bool(fields, b"Join"),
    )


def _nodeStateFields(state: PushNodeState) -> dict[str, object]:
    return {
        "Name": state.name,
        "Addr": _orNil(_checkIp(state.addr, "addr")),
        "Port": _checkUint(state.port, _UINT16, "port"),
        "Meta": _orNil(state.meta),
        "Incarnation": _checkUint(state.incarnation, _UINT32, "incarnation"),
        "State": int(NodeState(state.state)),
        "Vsn": _vsnBytes(state.vsn),
    }


def _decodeNodeState(fields: _Fields) -> PushNodeState:
    rawState = fields.get(b"State")
    if rawState is None:
        rawState = 0
    if isinstance(rawState, bool) or not isinstance(rawState, int):
        raise WireError("State: expected an integer")
    try:
        state = NodeState(rawState)
    except ValueError:
        raise WireError(f"State: unknown node state {rawState}") from None
    return PushNodeState(
        name=_text(fields, b"Name"),
        addr=_ip(fields, b"Addr"),
        port=_uint(fields, b"Port", _UINT16),
        meta=_bytes(fields, b"Meta"),
        incarnation=_uint(fields, b"Incarnation", _UINT32),
        state=state,
        vsn=_vsn(fields),
    )


_PACKET_DECODERS: Final[Mapping[int, Callable[[_Fields], PacketMessage]]] = {
    MessageType.ping: _decodePing,
    MessageType.indirectPing: _decodeIndirectPing,
    MessageType.ack: _decodeAck,
    MessageType.nack: _decodeNack,
    MessageType.suspect: _decodeSuspect,
    MessageType.alive: _decodeAlive,
    MessageType.dead: _decodeDead,
}


# Single messages


def encodeMessage(message: PacketMessage) -> bytes:
    """
    Encode one gossip message as memberlist does: type byte, msgpack map.

    A user message is its type byte followed by the payload, unframed.

    @raise ValueError: if a field does not fit its Go type.
    """
    match message:
        case Ping():
            return bytes((MessageType.ping,)) + _pack(_pingFields(message))
        case IndirectPing():
            return bytes((MessageType.indirectPing,)) + _pack(
                _indirectPingFields(message)
            )
        case Ack():
            return bytes((MessageType.ack,)) + _pack(_ackFields(message))
        case Nack():
            return bytes((MessageType.nack,)) + _pack(_nackFields(message))
        case Suspect():
            return bytes((MessageType.suspect,)) + _pack(_suspectFields(message))
        case Alive():
            return bytes((MessageType.alive,)) + _pack(_aliveFields(message))
        case Dead():
            return bytes((MessageType.dead,)) + _pack(_deadFields(message))
        case UserMessage():
            return bytes((MessageType.user,)) + message.payload
    raise TypeError(f"not a packet message: {message!r}")


def decodeMessage(data: bytes) -> PacketMessage:
    """
    Decode one plain gossip message (not a compound, compressed, checksummed
    or encrypted wrapper).  Like Go, trailing bytes after the map are ignored.
    """
    if not data:
        raise WireError("empty message")
    kind = data[0]
    if kind == MessageType.user:
        return UserMessage(payload=bytes(data[1:]))
    decoder = _PACKET_DECODERS.get(kind)
    if decoder is None:
        raise WireError(f"message type {kind} is not a plain gossip message")
    return decoder(_asFields(_unpackOne(bytes(data[1:])), MessageType(kind).name))


def encodePushPullHeader(header: PushPullHeader) -> bytes:
    """
    The msgpack map of a push/pull header (no type byte: on a stream it
    follows the push/pull type byte directly).
    """
    return _pack(_headerFields(header))


def decodePushPullHeader(data: bytes) -> PushPullHeader:
    return _decodeHeader(_asFields(_unpackOne(data), "push/pull header"))


def encodePushNodeState(state: PushNodeState) -> bytes:
    """
    The msgpack map of one node's state in a push/pull exchange.
    """
    return _pack(_nodeStateFields(state))


def decodePushNodeState(data: bytes) -> PushNodeState:
    return _decodeNodeState(_asFields(_unpackOne(data), "push node state"))


# Compound messages and packing


def encodeCompound(messages: Sequence[bytes]) -> bytes:
    """
    Bundle encoded messages into one compound message: type byte, part
    count, a big-endian uint16 length per part, then the parts.
    """
    if len(messages) > _COMPOUND_MAX_PARTS:
        raise ValueError(f"a compound holds at most {_COMPOUND_MAX_PARTS} parts")
    out = bytearray((MessageType.compound, len(messages)))
    for part in messages:
        if len(part) > _COMPOUND_MAX_PART_SIZE:
            raise ValueError("a compound part is at most 65535 bytes")
        out += struct.pack(">H", len(part))
    for part in messages:
        out += part
    return bytes(out)


def decodeCompound(data: bytes) -> tuple[tuple[bytes, ...], int]:
    """
    Split a compound message (including its type byte) into its parts.

    @return: the complete parts, and how many parts the sender announced
        but were cut off; like Go, truncation loses only the tail.
    """
    if not data or data[0] != MessageType.compound:
        raise WireError("not a compound message")
    if len(data) < 2:
        raise WireError("compound message without a part count")
    count = data[1]
    lengthsEnd = 2 + 2 * count
    if len(data) < lengthsEnd:
        raise WireError("compound message with truncated lengths")
    lengths = struct.unpack(f">{count}H", data[2:lengthsEnd])
    parts: list[bytes] = []
    offset = lengthsEnd
    for index, length in enumerate(lengths):
        if len(data) - offset < length:
            return tuple(parts), count - index
        parts.append(bytes(data[offset : offset + length]))
        offset += length
    return tuple(parts), 0


def packetOverhead(
    label: str = "",
    encrypted: bool = False,
    encryptionVersion: int = ENCRYPTION_VERSION_UNPADDED,
    crc: bool = False,
) -> int:
    """
    The bytes L{encodePacket} may add around a payload with these options;
    subtract it from L{MAX_PACKET_SIZE} to get the budget for
    L{packMessages}.  (Compression is only used when it shrinks.)
    """
    overhead = 0
    if label:
        overhead += 2 + len(label.encode("utf-8"))
    if encrypted:
        overhead += crypto.encryptionOverhead(encryptionVersion)
    if crc:
        overhead += _CRC_HEADER.size
    return overhead


def packMessages(
    messages: Sequence[bytes], limit: int = MAX_PACKET_SIZE
) -> list[bytes]:
    """
    Group encoded messages, in order, into as few payloads of at most
    C{limit} bytes as a greedy fill allows.  A group of one is the message
    itself; larger groups become compound messages.

    @raise ValueError: if one message alone exceeds C{limit}.
    """
    payloads: list[bytes] = []
    group: list[bytes] = []
    size = 2  # compound type byte and part count

    def flush() -> None:
        if len(group) == 1:
            payloads.append(group[0])
        elif group:
            payloads.append(encodeCompound(group))

    for message in messages:
        if len(message) > limit:
            raise ValueError(f"message of {len(message)} bytes exceeds {limit}")
        cost = 2 + len(message)
        if group and (size + cost > limit or len(group) == _COMPOUND_MAX_PARTS):
            flush()
            group = []
            size = 2
        group.append(message)
        size += cost
    flush()
    return payloads


# Compression


def compressMessage(payload: bytes) -> bytes:
    """
    Wrap an encoded message (or compound) in memberlist's compress envelope.
    """
    return bytes((MessageType.compress,)) + _pack(
        {"Algo": int(CompressionAlgorithm.lzw), "Buf": lzw.compress(payload)}
    )


def _decompressFields(fields: _Fields, maxLength: int) -> bytes:
    algorithm = _uint(fields, b"Algo", _UINT8)
    if algorithm != CompressionAlgorithm.lzw:
        raise WireError(f"unknown compression algorithm {algorithm}")
    try:
        return lzw.decompress(_bytes(fields, b"Buf"), maxLength)
    except lzw.LzwError as e:
        raise WireError(str(e)) from e


def decompressMessage(data: bytes, maxLength: int = _MAX_PACKET_EXPANSION) -> bytes:
    """
    Unwrap a compress envelope (including its type byte) to the payload.
    """
    if not data or data[0] != MessageType.compress:
        raise WireError("not a compressed message")
    fields = _asFields(_unpackOne(bytes(data[1:])), "compress")
    return _decompressFields(fields, maxLength)


# Labels


def _labelBytes(label: str) -> bytes:
    encoded = label.encode("utf-8")
    if len(encoded) > LABEL_MAX_SIZE:
        raise ValueError(f"label is longer than {LABEL_MAX_SIZE} bytes")
    return encoded


def addLabel(data: bytes, label: str) -> bytes:
    """
    Prefix a packet or stream with a label header; no label, no header.
    """
    encoded = _labelBytes(label)
    if not encoded:
        return data
    return bytes((MessageType.hasLabel, len(encoded))) + encoded + data


def removeLabel(data: bytes) -> tuple[bytes, str]:
    """
    Split a packet into its remainder and its label ("" when unlabelled).
    """
    if not data or data[0] != MessageType.hasLabel:
        return data, ""
    # memberlist wants the type, the size and at least one label byte.
    if len(data) < 3:
        raise WireError("truncated label header")
    size = data[1]
    if size < 1:
        raise WireError("empty label header")
    if len(data) < 2 + size:
        raise WireError("truncated label header")
    try:
        label = bytes(data[2 : 2 + size]).decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("label is not UTF-8") from None
    return data[2 + size :], label


# Packets


@dataclass(frozen=True, slots=True)
class Packet:
    """
    What one received packet held.

    @ivar messages: the decoded messages, compounds and compression
        flattened, in order.
    @ivar label: the packet's label ("" when unlabelled).
    @ivar truncated: compound parts announced but cut off.
    @ivar malformed: compound parts that could not be decoded; like Go, a
        bad part does not spoil its siblings.
    @ivar encrypted: whether the packet was encrypted (a node that does not
        verify incoming packets also accepts plaintext ones).
    """

    messages: tuple[PacketMessage, ...]
    label: str = ""
    truncated: int = 0
    malformed: int = 0
    encrypted: bool = False


def encodePacket(
    payload: bytes,
    *,
    label: str = "",
    keyring: Keyring | None = None,
    nonce: bytes | None = None,
    encryptionVersion: int = ENCRYPTION_VERSION_UNPADDED,
    crc: bool = False,
    compress: bool = False,
) -> bytes:
    """
    Wrap an encoded message (or compound) for sending as one packet.

    Layers go on in memberlist's order: compression (kept only if smaller),
    a CRC-32 header (for peers whose protocol max is at least 5), AES-GCM
    encryption with the label as additional data, then the label header.

    @param nonce: 12 fresh random bytes; required with a keyring.
    """
    labelBytes = _labelBytes(label)
    if compress:
        compressed = compressMessage(payload)
        if len(compressed) < len(payload):
            payload = compressed
    if crc:
        payload = _CRC_HEADER.pack(MessageType.hasCrc, zlib.crc32(payload)) + payload
    if keyring is not None:
        if nonce is None:
            raise ValueError("encryption needs a nonce")
        payload = crypto.encrypt(
            encryptionVersion, keyring.primaryKey, nonce, payload, labelBytes
        )
    return addLabel(payload, label)


def decodePacket(
    data: bytes,
    *,
    label: str = "",
    keyring: Keyring | None = None,
    verifyIncoming: bool = True,
    maxDecompressed: int = _MAX_PACKET_EXPANSION,
) -> Packet:
    """
    Peel a received packet down to its messages, as memberlist ingests it.

    @param label: the label this node is configured with; a packet with any
        other label (or none, when we have one) is refused.
    @param keyring: decrypt with these keys; C{None} when encryption is off.
    @param verifyIncoming: with a keyring, whether a packet that does not
        decrypt is refused (C{True}) or read as plaintext, as memberlist's
        GossipVerifyIncoming allows during a rollout of encryption.
    @raise WireError: if the packet, or its only message, is invalid.
    """
    data = bytes(data)
    data, packetLabel = removeLabel(data)
    if packetLabel != label:
        raise WireError(f"packet label {packetLabel!r} does not match {label!r}")
    encrypted = False
    if keyring is not None:
        try:
            data = crypto.decrypt(keyring.keys, data, packetLabel.encode("utf-8"))
            encrypted = True
        except crypto.DecryptionError as e:
            if verifyIncoming:
                raise DecryptError(f"cannot decrypt packet: {e}") from e
    if len(data) >= _CRC_HEADER.size and data[0] == MessageType.hasCrc:
        _, expected = _CRC_HEADER.unpack_from(data)
        data = data[_CRC_HEADER.size :]
        if zlib.crc32(data) != expected:
            raise WireError("packet checksum mismatch")
    collector = _PacketCollector(maxDecompressed)
    collector.visit(data, 0, topLevel=True)
    return Packet(
        messages=tuple(collector.messages),
        label=packetLabel,
        truncated=collector.truncated,
        malformed=collector.malformed,
        encrypted=encrypted,
    )


class _PacketCollector:
    """
    Walks nested compound and compressed messages, collecting the rest.
    """

    def __init__(self, maxDecompressed: int) -> None:
        self.messages: list[PacketMessage] = []
        self.truncated = 0
        self.malformed = 0
        self._budget = maxDecompressed

    def visit(self, data: bytes, depth: int, topLevel: bool) -> None:
        try:
            self._visit(data, depth)
        except WireError:
            if topLevel:
                raise
            self.malformed += 1

    def _visit(self, data: bytes, depth: int) -> None:
        if depth > _MAX_NESTING:
            raise WireError("messages nested too deeply")
        if not data:
            raise WireError("empty message")
        kind = data[0]
        if kind == MessageType.compound:
            parts, truncated = decodeCompound(data)
            self.truncated += truncated
            for part in parts:
                self.visit(part, depth + 1, topLevel=False)
        elif kind == MessageType.compress:
            # All expansions of one packet share one budget, so nesting
            # cannot multiply it.
            inner = decompressMessage(data, self._budget)
            self._budget -= len(inner)
            self._visit(inner, depth + 1)
        else:
            self.messages.append(decodeMessage(data))


# Streams


def encodeStreamBody(message: StreamMessage) -> bytes:
    """
    The plain stream form of a message: type byte and body, before any
    compression, encryption or label.
    """
    match message:
        case PushPull():
            out = bytearray((MessageType.pushPull,))
            out += encodePushPullHeader(message.header)
            for state in message.nodes:
                out += encodePushNodeState(state)
            out += message.userState
            return bytes(out)
        case Ping() | Ack():
            return encodeMessage(message)
        case ErrorResponse():
            return bytes((MessageType.err,)) + _pack(_errorFields(message))
        case UserMessage():
            return (
                bytes((MessageType.user,))
                + _pack({"UserMsgLen": len(message.payload)})
                + message.payload
            )
    raise TypeError(f"not a stream message: {message!r}")


def encodeStream(
    message: StreamMessage,
    *,
    label: str = "",
    keyring: Keyring | None = None,
    nonce: bytes | None = None,
    encryptionVersion: int = ENCRYPTION_VERSION_UNPADDED,
    compress: bool = False,
    labelHeader: bool = True,
) -> bytes:
    """
    Everything one side writes on a stream for C{message}: the label
    header, then the message, compressed and encrypted if asked.

    Encryption frames the ciphertext with its own type byte and a 32-bit
    length, and authenticates those five bytes plus the label.

    @param labelHeader: whether to write the label header.  Only the side
        that opens a stream does; the answer on an accepted stream carries
        no header, though its encryption still authenticates the label.
    """
    labelBytes = _labelBytes(label)
    body = encodeStreamBody(message)
    if compress:
        body = compressMessage(body)
    if keyring is not None:
        if nonce is None:
            raise ValueError("encryption needs a nonce")
        header = _STREAM_ENCRYPT_HEADER.pack(
            MessageType.encrypt, crypto.encryptedLength(encryptionVersion, len(body))
        )
        body = header + crypto.encrypt(
            encryptionVersion, keyring.primaryKey, nonce, body, header + labelBytes
        )
    return addLabel(body, label) if labelHeader else body


class _BodyParser:
    """
    Incrementally parses one plain stream message (type byte already read).
    """

    def __init__(self, kind: int, maxSize: int, allowCompressed: bool) -> None:
        if kind not in _STREAM_KINDS or (
            kind == MessageType.compress and not allowCompressed
        ):
            raise WireError(f"unexpected stream message type {kind}")
        self._kind = kind
        self._maxSize = maxSize
        self._unpacker = _newUnpacker(maxSize)
        self._fed = 0
        self._steps = self._parse()
        self._result: StreamMessage | None = None

    def feed(self, data: bytes) -> StreamMessage | None:
        """
        Add bytes; return the message once it is complete, else C{None}.
        """
        if self._result is not None:
            return self._result
        self._fed += len(data)
        if self._fed > self._maxSize:
            raise WireError(f"stream message exceeds {self._maxSize} bytes")
        try:
            self._unpacker.feed(data)
        except Exception as e:
            raise WireError(f"stream message too large: {e}") from e
        self._result = next(self._steps)
        return self._result

    def _parse(self) -> Generator[StreamMessage | None, None, None]:
        # A generator, so parsing resumes where it stopped when more bytes
        # arrive: it yields None while starved and the message at the end.
        fields = yield from self._fieldsOf(MessageType(self._kind).name)
        if self._kind == MessageType.ping:
            yield _decodePing(fields)
        elif self._kind == MessageType.ack:
            yield _decodeAck(fields)
        elif self._kind == MessageType.err:
            yield _decodeError(fields)
        elif self._kind == MessageType.compress:
            plain = _decompressFields(fields, self._maxSize)
            yield _parseCompleteStream(plain, self._maxSize, allowCompressed=False)
        elif self._kind == MessageType.user:
            length = _uint(fields, b"UserMsgLen", self._maxSize)
            payload = yield from self._rawBytes(length)
            yield UserMessage(payload=payload)
        else:
            header = _decodeHeader(fields)
            states: list[PushNodeState] = []
            for _ in range(header.nodes):
                stateFields = yield from self._fieldsOf("push node state")
                states.append(_decodeNodeState(stateFields))
            userState = yield from self._rawBytes(header.userStateLen)
            yield PushPull(join=header.join, nodes=tuple(states), userState=userState)

    def _fieldsOf(self, what: str) -> Generator[None, None, _Fields]:
        while True:
            try:
                value = self._unpacker.unpack()
            except msgpack.OutOfData:
                # The unpacker rewinds to the object's start on starvation.
                yield None
                continue
            except Exception as e:
                raise WireError(f"invalid msgpack: {e}") from e
            return _asFields(value, what)

    def _rawBytes(self, length: int) -> Generator[None, None, bytes]:
        collected = bytearray()
        while len(collected) < length:
            chunk = self._unpacker.read_bytes(length - len(collected))
            if not chunk:
                yield None
                continue
            collected += chunk
        return bytes(collected)


_STREAM_KINDS: Final = frozenset(
    (
        MessageType.ping,
        MessageType.ack,
        MessageType.pushPull,
        MessageType.user,
        MessageType.err,
        MessageType.compress,
    )
)


def _parseCompleteStream(
    data: bytes, maxSize: int, allowCompressed: bool
) -> StreamMessage:
    if not data:
        raise WireError("empty stream message")
    parser = _BodyParser(data[0], maxSize, allowCompressed)
    message = parser.feed(bytes(data[1:]))
    if message is None:
        raise WireError("truncated stream message")
    return message


class StreamDecoder:
    """
    Parses what a peer writes on one stream, as bytes arrive.

    Feed it every chunk received; L{feed} returns the message once all of it
    is in (later bytes are ignored: memberlist sends one message per stream
    direction).  Any error is final.  The caller owns timeouts: if
    L{complete} is still false when its deadline passes, the exchange failed.

    @ivar label: the label the stream carried, known once its header is in.
    @ivar encrypted: whether the message was encrypted.
    """

    def __init__(
        self,
        *,
        label: str = "",
        keyring: Keyring | None = None,
        verifyIncoming: bool = True,
        maxSize: int = MAX_STREAM_SIZE,
        labelHeader: bool = True,
    ) -> None:
        """
        @param label: the label this node is configured with; a stream with
            another label (or none, when we have one) is refused.
        @param keyring: expect encrypted streams, decrypt with these keys.
        @param verifyIncoming: with a keyring, whether a plaintext stream is
            refused (memberlist's GossipVerifyIncoming).
        @param maxSize: the most bytes one message may take.
        @param labelHeader: whether the stream starts with a label header:
            true for streams peers open to us, false for the answer on a
            stream we opened (which memberlist sends without one; C{label}
            then only authenticates encryption).
        """
        self._expectedLabel = label
        self._keyring = keyring
        self._verifyIncoming = verifyIncoming
        self._maxSize = maxSize
        self._buffer = bytearray()
        self._labelDone = not labelHeader
        self._body: _BodyParser | None = None
        self._message: StreamMessage | None = None
        self._error: WireError | None = None
        self.label = "" if labelHeader else label
        self.encrypted = False

    @property
    def complete(self) -> bool:
        return self._message is not None

    @property
    def message(self) -> StreamMessage | None:
        return self._message

    def feed(self, data: bytes) -> StreamMessage | None:
        """
        Add received bytes; return the message when complete, else C{None}.

        @raise WireError: if the stream is invalid (then and on every later
            call).
        """
        if self._error is not None:
            raise self._error
        if self._message is not None:
            return None
        try:
            self._message = self._advance(bytes(data))
        except WireError as e:
            self._error = e
            raise
        return self._message

    def endOfStream(self) -> StreamMessage:
        """
        The peer closed its side: return the message, or raise if the
        stream ended before one was complete.
        """
        if self._error is not None:
            raise self._error
        if self._message is None:
            self._error = WireError("stream ended before a complete message")
            raise self._error
        return self._message

    def _advance(self, data: bytes) -> StreamMessage | None:
        if self._body is not None:
            return self._body.feed(data)
        self._buffer += data
        if len(self._buffer) > self._maxSize + 5 + 2 + LABEL_MAX_SIZE:
            raise WireError(f"stream message exceeds {self._maxSize} bytes")
        if not self._labelDone and not self._takeLabel():
            return None
        if not self._buffer:
            return None
        kind = self._buffer[0]
        if kind == MessageType.encrypt:
            return self._takeEncrypted()
        if self._keyring is not None and self._verifyIncoming:
            raise WireError("encryption is configured but the stream is plaintext")
        rest = bytes(self._buffer[1:])
        self._buffer.clear()
        self._body = _BodyParser(kind, self._maxSize, allowCompressed=True)
        return self._body.feed(rest)

    def _takeLabel(self) -> bool:
        buffer = self._buffer
        if not buffer:
            return False
        if buffer[0] == MessageType.hasLabel:
            if len(buffer) < 2:
                return False
            size = buffer[1]
            if size < 1:
                raise WireError("empty label header")
            if len(buffer) < 2 + size:
                return False
            try:
                self.label = bytes(buffer[2 : 2 + size]).decode("utf-8")
            except UnicodeDecodeError:
                raise WireError("label is not UTF-8") from None
            del buffer[: 2 + size]
        if self.label != self._expectedLabel:
            raise WireError(
                f"stream label {self.label!r} does not match {self._expectedLabel!r}"
            )
        self._labelDone = True
        return True

    def _takeEncrypted(self) -> StreamMessage | None:
        if self._keyring is None:
            raise WireError("the stream is encrypted but encryption is not configured")
        buffer = self._buffer
        if len(buffer) < _STREAM_ENCRYPT_HEADER.size:
            return None
        _, length = _STREAM_ENCRYPT_HEADER.unpack_from(buffer)
        if length > self._maxSize:
            raise WireError(f"encrypted stream of {length} bytes exceeds the limit")
        end = _STREAM_ENCRYPT_HEADER.size + length
        if len(buffer) < end:
            return None
        header = bytes(buffer[: _STREAM_ENCRYPT_HEADER.size])
        payload = bytes(buffer[_STREAM_ENCRYPT_HEADER.size : end])
        buffer.clear()
        try:
            plain = crypto.decrypt(
                self._keyring.keys, payload, header + self.label.encode("utf-8")
            )
        except crypto.DecryptionError as e:
            raise DecryptError(f"cannot decrypt stream: {e}") from e
        self.encrypted = True
        return _parseCompleteStream(plain, self._maxSize, allowCompressed=True)


def decodeStream(
    data: bytes,
    *,
    label: str = "",
    keyring: Keyring | None = None,
    verifyIncoming: bool = True,
    maxSize: int = MAX_STREAM_SIZE,
    labelHeader: bool = True,
) -> StreamMessage:
    """
    Decode everything one side wrote on a stream, all at once.
    """
    decoder = StreamDecoder(
        label=label,
        keyring=keyring,
        verifyIncoming=verifyIncoming,
        maxSize=maxSize,
        labelHeader=labelHeader,
    )
    decoder.feed(data)
    return decoder.endOfStream()
