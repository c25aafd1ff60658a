"""
The bytes of a data directory: log segments and snapshots, their headers and
their framed records. Pure: encoding and scanning only, no I/O.

Both kinds of file are a header followed by frames:

    crc        uint32  CRC32C of every byte of the frame after this field
    length     uint32  bytes after this field
    kind       uint8   what the frame holds (L{Kind})
    partition  uint16  the partition of the key (no hashing at load time)
    keyLength  uint16
    key        keyLength bytes, UTF-8
    payload    the rest: an entry as the store keeps it (its encoded record,
               local flags included), or a kind's own fields

A log holds one frame per change. A snapshot holds, for each partition,
frames of up to L{BATCH_ENTRIES} entries each (L{Kind.ENTRIES}: the payload
is the keys and entries, alternating, as one msgpack array), so that loading
one decodes thousands of entries in C rather than a frame at a time in
Python; then an end frame.

A reader trusts a frame only once its checksum matched, and stops at the
first frame that is cut short or does not match: what comes after a damaged
frame is not read, so what is loaded is always a prefix of what was written
(L{scanFrames}).

The file header names the format, the file's kind and its sequence number,
and is checked the same way; a file whose header does not match is not read
at all.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import NamedTuple

from crc32c import crc32c
from msgpack import packb, unpackb

from disperse.store.partition import PARTITION_COUNT
from disperse.store.record import (
    FLAG_COUNTER,
    FLAG_TOMBSTONE,
    FLAGS_AT,
    HEADER_SIZE,
    NO_EXPIRY,
)

# Entries in one batch frame of a snapshot: a few hundred KiB at most for
# small values, decoded in one call.
BATCH_ENTRIES = 1024

# Bumped whenever a reader of the previous version would misread a file;
# a data directory of another version is refused, not guessed at.
FORMAT_VERSION = 1

LOG_MAGIC = b"DSPLOG\r\n"
SNAPSHOT_MAGIC = b"DSPSNP\r\n"

# magic, version, sequence, logFrom (snapshots: the first log segment
# to replay after it; logs: FRESH or 0), then the CRC32C of those fields.
FILE_HEADER = struct.Struct(">8sHQQ")
FILE_HEADER_SIZE = FILE_HEADER.size + 4
_CRC = struct.Struct(">I")

FRAME_HEAD = struct.Struct(">IIBHH")
FRAME_HEAD_SIZE = FRAME_HEAD.size
# The bytes of a frame the length field counts before the key.
_COUNTED = FRAME_HEAD_SIZE - 8
# Where the key starts in a frame less its checksum.
_BODY_KEY = FRAME_HEAD_SIZE - 4
# No frame is larger: a length field beyond it is damage, not a record
# to wait for (values are bounded far below by --max-value-size).
MAX_FRAME = 1 << 31

_END = struct.Struct(">QQI")


class Kind(enum.IntEnum):
    """
    What a frame holds. The first four carry an entry, told apart by its
    flags (a reader checks that they agree); the rest are bookkeeping.
    """

    # A value.
    PUT = 1
    # A tombstone: a delete, or what an expired value leaves.
    DELETE = 2
    # A value with an expiry.
    EXPIRY = 3
    # A convergent counter's state.
    COUNTER = 4
    # Forget every entry of the frame's partition (no longer held here).
    DROP = 5
    # Snapshots: a batch of entries of one partition (payload: a msgpack
    # array of keys and entries, alternating).
    ENTRIES = 6
    # Snapshots: the last frame (payload: the clock, entries, batches).
    END = 7
    # Log segments: the last frame of a segment closed in order. A segment
    # without one is the last, or is followed by a FRESH one: anything
    # else lost its end.
    SEAL = 8


ENTRY_KINDS = frozenset({Kind.PUT, Kind.DELETE, Kind.EXPIRY, Kind.COUNTER})
_ENTRY_KIND_VALUES = frozenset(int(kind) for kind in ENTRY_KINDS)
_KIND_VALUES = frozenset(int(kind) for kind in Kind)


def entryKind(blob: bytes) -> Kind:
    """
    The kind of frame that carries C{blob}, an entry as the store keeps it.
    """
    flags = blob[FLAGS_AT]
    if flags & FLAG_TOMBSTONE:
        return Kind.DELETE
    if flags & FLAG_COUNTER:
        return Kind.COUNTER
    if blob[:8] != NO_EXPIRY:
        return Kind.EXPIRY
    return Kind.PUT


class FormatError(ValueError):
    """
    A file's header is not one this version writes.
    """


# In a log segment's header: the segment before it may end without a seal
# (this one was opened by a node starting, or by a log whose disk failed).
FRESH = 1


def fileHeader(magic: bytes, sequence: int, logFrom: int = 0) -> bytes:
    head = FILE_HEADER.pack(magic, FORMAT_VERSION, sequence, logFrom)
    return head + _CRC.pack(crc32c(head))


@dataclass(frozen=True)
class FileHeader:
    magic: bytes
    version: int
    sequence: int
    logFrom: int


def readFileHeader(data: bytes, magic: bytes) -> FileHeader:
    """
    The header at the start of C{data}, a file that should start with
    C{magic}.

    @raise FormatError: if it is cut short, damaged, of another kind or of
        another format version.
    """
    if len(data) < FILE_HEADER_SIZE:
        raise FormatError(f"a header needs {FILE_HEADER_SIZE} bytes, got {len(data)}")
    (crc,) = _CRC.unpack_from(data, FILE_HEADER.size)
    if crc32c(data[: FILE_HEADER.size]) != crc:
        raise FormatError("the header's checksum does not match")
    found, version, sequence, logFrom = FILE_HEADER.unpack_from(data)
    if found != magic:
        raise FormatError(f"not a {magic[:6].decode()} file")
    if version != FORMAT_VERSION:
        raise FormatError(
            f"format version {version}; this version of Disperse reads {FORMAT_VERSION}"
        )
    return FileHeader(found, version, sequence, logFrom)


def frame(kind: int, partition: int, key: bytes, payload: bytes) -> bytes:
    """
    One framed record.
    """
    head = FRAME_HEAD.pack(
        0, _COUNTED + len(key) + len(payload), kind, partition, len(key)
    )[4:]
    crc = crc32c(payload, crc32c(key, crc32c(head)))
    return _CRC.pack(crc) + head + key + payload


def entryFrame(partition: int, key: bytes, blob: bytes) -> bytes:
    return frame(entryKind(blob), partition, key, blob)


_packCountedHead = struct.Struct(">IBHH").pack
_packCrc = _CRC.pack


def changeFrames(changes: Sequence[tuple[int, str | None, bytes | None]]) -> bytes:
    """
    The frames of C{changes} in order, as the log writes them at the end of
    a turn: (partition, key, entry) for an entry kept, as L{entryFrame};
    (partition, None, None) for a partition dropped, as L{dropFrame}. The
    entry's frame built inline, with one checksum call: this runs once per
    write the node makes.
    """
    parts: list[bytes] = []
    append = parts.append
    noExpiry = NO_EXPIRY
    for partition, key, blob in changes:
        if key is None or blob is None:
            append(dropFrame(partition))
            continue
        encoded = key.encode()
        flags = blob[FLAGS_AT]
        if flags & FLAG_TOMBSTONE:
            kind = Kind.DELETE
        elif flags & FLAG_COUNTER:
            kind = Kind.COUNTER
        elif blob.startswith(noExpiry):
            kind = Kind.PUT
        else:
            kind = Kind.EXPIRY
        size = len(encoded)
        body = (
            _packCountedHead(_COUNTED + size + len(blob), kind, partition, size)
            + encoded
            + blob
        )
        append(_packCrc(crc32c(body)))
        append(body)
    return b"".join(parts)


def dropFrame(partition: int) -> bytes:
    return frame(Kind.DROP, partition, b"", b"")


def sealFrame() -> bytes:
    return frame(Kind.SEAL, 0, b"", b"")


def entriesFrame(partition: int, entries: Sequence[tuple[str, bytes]]) -> bytes:
    """
    A L{Kind.ENTRIES} frame of C{entries}, keys of C{partition} and their
    entries as the store keeps them.
    """
    flat = list(chain.from_iterable(entries))
    return frame(Kind.ENTRIES, partition, b"", packb(flat, use_bin_type=True))


def entriesOf(payload: bytes) -> tuple[list[str], list[bytes]]:
    """
    The keys and entries of a L{Kind.ENTRIES} frame's payload.

    @raise ValueError: if it is not an array of key and entry pairs, each
        entry at least a record's header long.
    """
    try:
        flat = unpackb(payload, raw=False, use_list=True)
    except Exception as e:  # msgpack raises several kinds
        raise ValueError(f"a batch of entries that does not decode: {e}") from None
    if not isinstance(flat, list) or len(flat) % 2:
        raise ValueError("a batch of entries that is not key and entry pairs")
    keys = flat[0::2]
    entries = flat[1::2]
    if not all(map(str.__instancecheck__, keys)) or not all(
        map(bytes.__instancecheck__, entries)
    ):
        raise ValueError("a batch of entries with a key or entry of another type")
    if entries and min(map(len, entries)) < HEADER_SIZE:
        raise ValueError("a batch with an entry shorter than a record's header")
    return keys, entries


def endFrame(clock: int, entries: int, batches: int) -> bytes:
    return frame(Kind.END, 0, b"", _END.pack(clock, entries, batches))


class Frame(NamedTuple):
    """
    One frame read back: its kind, partition, key bytes, payload, and where
    it ends in the data scanned.
    """

    kind: int
    partition: int
    key: bytes
    payload: bytes
    end: int


@dataclass
class Damage:
    """
    Where and why a scan stopped before the end of its data.

    @ivar offset: where the first frame not read starts.
    @ivar reason: why it was not read.
    @ivar torn: the data ends inside the frame (a write cut short), rather
        than a frame whose bytes do not check.
    """

    offset: int
    reason: str
    torn: bool


def checkFrame(kind: int, partition: int, payload: bytes) -> str | None:
    """
    What is wrong with a frame whose checksum matched, or L{None}: what a
    writer of this version cannot have written.
    """
    if kind not in _KIND_VALUES:
        return f"unknown kind {kind}"
    if partition >= PARTITION_COUNT:
        return f"partition {partition} outside the table"
    if kind in _ENTRY_KIND_VALUES:
        if len(payload) < HEADER_SIZE or entryKind(payload) != kind:
            return "an entry whose kind does not match its record"
    elif kind == Kind.ENTRIES and not payload:
        return "an empty batch of entries"
    elif kind == Kind.END and len(payload) != _END.size:
        return "an end frame of the wrong size"
    elif kind in (Kind.DROP, Kind.SEAL) and payload:
        return "a drop or seal with a payload"
    return None


def scanFrames(
    data: bytes, offset: int = 0, final: bool = True, most: int = -1
) -> tuple[list[Frame], int, Damage | None]:
    """
    The frames of C{data} from C{offset}, up to the first that is cut short
    or damaged.

    @param final: C{data} is all there is: a frame cut short at its end is
        damage (a torn write). Otherwise the caller has more to read, and a
        frame cut short is where the next scan starts.
    @param most: stop after this many frames (-1: no limit).
    @return: the frames, where reading stopped, and the damage found there
        (L{None} when it stopped at the end, or before a frame the next
        chunk completes).
    """
    size = len(data)
    frames: list[Frame] = []
    append = frames.append
    unpack = FRAME_HEAD.unpack_from
    newFrame = tuple.__new__
    # Module constants as locals: this loop runs once per record loaded.
    headSize, counted, maxFrame, bodyKey = (
        FRAME_HEAD_SIZE,
        _COUNTED,
        MAX_FRAME,
        _BODY_KEY,
    )
    entryKinds, entryHeader, partitions = (
        _ENTRY_KIND_VALUES,
        HEADER_SIZE,
        PARTITION_COUNT,
    )
    while offset < size:
        if size - offset < headSize:
            if not final:
                break
            return frames, offset, Damage(offset, "a frame cut short", True)
        crc, length, kind, partition, keyLength = unpack(data, offset)
        end = offset + 8 + length
        if length < counted + keyLength or length > maxFrame:
            return frames, offset, Damage(offset, "a frame of impossible length", False)
        if end > size:
            if not final:
                break
            return frames, offset, Damage(offset, "a frame cut short", True)
        # A copy of the frame costs less than a view of it, for the
        # checksum and for the key and payload cut from it.
        body = data[offset + 4 : end]
        if crc32c(body) != crc:
            return frames, offset, Damage(offset, "a checksum mismatch", False)
        payload = body[bodyKey + keyLength :]
        # An entry needs no more than a record's header and a partition in
        # the table (its kind and flags were written together); the other
        # kinds, rare, are checked in full.
        if (
            kind not in entryKinds
            or len(payload) < entryHeader
            or partition >= partitions
        ):
            wrong = checkFrame(kind, partition, payload)
            if wrong is not None:
                return frames, offset, Damage(offset, wrong, False)
        key = body[bodyKey : bodyKey + keyLength]
        append(newFrame(Frame, (kind, partition, key, payload, end)))
        offset = end
        if len(frames) == most:
            break
    return frames, offset, None
