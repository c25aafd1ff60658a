"""
One stored entry, L{Record}, and its encoding: what the store keeps for a
key, what replicas send each other and what their Merkle trees hash. Pure.

A record is encoded as a fixed header followed by the value:

    expiresAtMs  int64   absolute expiry in ms since the epoch, 0 = never
    timestamp    uint64  hybrid logical clock of the write (the version)
    nodeId       uint32  the writer, breaking ties between equal timestamps
    contentHash  uint64  xxh3_64 of the value (L{contentHashOf})
    flags        uint8   tombstone, binary, counter

The content hash is computed once, where a value is accepted (the
coordinator's L{disperse.store.Store.newRecord}, a counter's new state),
and then travels with the record: into the store, to every replica, to
disk and back. Each copy read back from a peer or a disk is checked
against it (L{intact}), and so is each stored entry now and then (the
scrub, L{disperse.store.integrity}): a value that no longer matches its
hash is damaged, and is discarded rather than served. The hash covers the
value only; the other header fields change where a record is copied (a
replica marks its flags, an expired value leaves a tombstone of its
version) and are checked for their length and known flags.

The flags are part of the contract between nodes, like the layout: a node
stores only the flags it knows (L{KNOWN_FLAGS}) so that replicas hold, and
hash, identical bytes.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple, Self

import xxhash

# The flags last, so that they stay at HEADER_SIZE - 1 whatever else the
# header holds.
HEADER = struct.Struct(">qQIQB")
HEADER_SIZE = HEADER.size
FLAGS_AT = HEADER_SIZE - 1
HASH_AT = FLAGS_AT - 8
# The expiry field of a record that never expires: its first bytes.
NO_EXPIRY = bytes(8)
_hashIn = struct.Struct(">Q").unpack_from
_COPY_BELOW = 4096

contentHashOf = xxhash.xxh3_64_intdigest
"""
The content hash of a value: xxh3, 64 bits, unseeded. Part of the wire
and disk contract, like the header.
"""

# A tombstone's value is empty: its hash is this constant.
EMPTY_HASH: int = contentHashOf(b"")

FLAG_TOMBSTONE = 0x01
FLAG_BINARY = 0x02
# The value is a convergent counter's state (L{disperse.store.counter}),
# merged with other copies rather than replaced by the newer one.
FLAG_COUNTER = 0x04
KNOWN_FLAGS = FLAG_TOMBSTONE | FLAG_BINARY | FLAG_COUNTER


class _Fields(NamedTuple):
    value: bytes
    expiresAtMs: int
    timestamp: int
    nodeId: int
    tombstone: bool
    binary: bool
    counter: bool
    contentHash: int


class Record(_Fields):
    """
    One stored entry as seen from outside: a value or a tombstone.

    @ivar expiresAtMs: absolute expiry in ms since the epoch, 0 for never;
        for a tombstone, when it may be forgotten.
    @ivar timestamp: hybrid logical clock timestamp of the write.
    @ivar nodeId: the node that coordinated the write.
    @ivar counter: C{value} is a counter's encoded state, not the bytes a
        client reads (L{disperse.store.counter.renderedValue} gives those).
    @ivar contentHash: L{contentHashOf} the value when it was accepted, not
        necessarily of C{value} now: L{intact} tells.

    Built with C{Record(value, expiresAtMs, timestamp, nodeId, ...)}, the
    hash is computed from C{value} unless given. Hot paths build one from a
    tuple of all eight fields instead (C{tuple.__new__(Record, fields)}),
    the hash read from a header or carried over.
    """

    __slots__ = ()

    def __new__(
        cls,
        value: bytes,
        expiresAtMs: int,
        timestamp: int,
        nodeId: int,
        tombstone: bool = False,
        binary: bool = False,
        counter: bool = False,
        contentHash: int | None = None,
    ) -> Self:
        if contentHash is None:
            contentHash = contentHashOf(value) if value else EMPTY_HASH
        return tuple.__new__(
            cls,
            (
                value,
                expiresAtMs,
                timestamp,
                nodeId,
                tombstone,
                binary,
                counter,
                contentHash,
            ),
        )

    def _replace(self, **changes: Any) -> Self:
        """
        This record with C{changes}; a new value gets its own hash unless
        one is given.
        """
        if "value" in changes and "contentHash" not in changes:
            value = changes["value"]
            changes["contentHash"] = contentHashOf(value) if value else EMPTY_HASH
        return super()._replace(**changes)

    def intact(self) -> bool:
        """
        Whether C{value} still matches the hash it was accepted with: what
        a record decoded from a peer's answer is checked with.
        """
        return self.contentHash == contentHashOf(self.value)

    @property
    def version(self) -> tuple[int, int]:
        """
        What last-writer-wins compares: the timestamp, then the writer.
        """
        return (self.timestamp, self.nodeId)

    @property
    def precedence(self) -> tuple[int, int, bool, int, bool, bool, bytes]:
        """
        A total order over records, the version first. Two different
        records with equal versions should not exist, but a node restarted
        with its clock set back could make them; ordering on the content as
        well keeps replicas identical even then. (Counters are merged, not
        ordered: see L{disperse.store.counter.joinRecords}.)
        """
        return (
            self.timestamp,
            self.nodeId,
            self.tombstone,
            self.expiresAtMs,
            self.binary,
            self.counter,
            self.value,
        )

    def encode(self) -> bytes:
        flags = (
            (FLAG_TOMBSTONE if self.tombstone else 0)
            | (FLAG_BINARY if self.binary else 0)
            | (FLAG_COUNTER if self.counter else 0)
        )
        return (
            HEADER.pack(
                self.expiresAtMs, self.timestamp, self.nodeId, self.contentHash, flags
            )
            + self.value
        )

    @classmethod
    def decode(cls, blob: bytes) -> Record:
        """
        The record encoded in C{blob}.

        @raise ValueError: if C{blob} is shorter than a record's header (peers
            send blobs, so this is input, not an invariant).
        """
        if len(blob) < HEADER_SIZE:
            raise ValueError(f"a record needs {HEADER_SIZE} bytes, got {len(blob)}")
        expiresAtMs, timestamp, nodeId, contentHash, flags = HEADER.unpack_from(blob)
        return tuple.__new__(
            cls,
            (
                blob[HEADER_SIZE:],
                expiresAtMs,
                timestamp,
                nodeId,
                bool(flags & FLAG_TOMBSTONE),
                bool(flags & FLAG_BINARY),
                bool(flags & FLAG_COUNTER),
                contentHash,
            ),
        )


def intact(blob: bytes) -> bool:
    """
    Whether encoded record C{blob} is whole and its value matches the
    content hash in its header: what every copy read back from a disk or a
    peer is checked with before it is used.
    """
    size = len(blob)
    if size < HEADER_SIZE:
        return False
    # A small value is cheaper to copy out than to view; a large one is
    # hashed where it lies.
    value = blob[HEADER_SIZE:] if size < _COPY_BELOW else memoryview(blob)[HEADER_SIZE:]
    return bool(_hashIn(blob, HASH_AT)[0] == contentHashOf(value))
