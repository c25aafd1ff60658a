"""
One stored entry, L{Record}, and its encoding: what the store keeps for a
key, what replicas send each other and what their Merkle trees hash. Pure.

A record is encoded as a fixed header followed by the value:

    expiresAtMs  int64   absolute expiry in ms since the epoch, 0 = never
    timestamp    uint64  hybrid logical clock of the write (the version)
    nodeId       uint32  the writer, breaking ties between equal timestamps
    flags        uint8   tombstone, binary, counter

The flags are part of the contract between nodes, like the layout: a node
stores only the flags it knows (L{KNOWN_FLAGS}) so that replicas hold, and
hash, identical bytes.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

HEADER = struct.Struct(">qQIB")
HEADER_SIZE = HEADER.size
FLAGS_AT = HEADER_SIZE - 1

FLAG_TOMBSTONE = 0x01
FLAG_BINARY = 0x02
# The value is a convergent counter's state (L{disperse.store.counter}),
# merged with other copies rather than replaced by the newer one.
FLAG_COUNTER = 0x04
KNOWN_FLAGS = FLAG_TOMBSTONE | FLAG_BINARY | FLAG_COUNTER


class Record(NamedTuple):
    """
    One stored entry as seen from outside: a value or a tombstone.

    @ivar expiresAtMs: absolute expiry in ms since the epoch, 0 for never;
        for a tombstone, when it may be forgotten.
    @ivar timestamp: hybrid logical clock timestamp of the write.
    @ivar nodeId: the node that coordinated the write.
    @ivar counter: C{value} is a counter's encoded state, not the bytes a
        client reads (L{disperse.store.counter.renderedValue} gives those).
    """

    value: bytes
    expiresAtMs: int
    timestamp: int
    nodeId: int
    tombstone: bool = False
    binary: bool = False
    counter: bool = False

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
            HEADER.pack(self.expiresAtMs, self.timestamp, self.nodeId, flags)
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
        expiresAtMs, timestamp, nodeId, flags = HEADER.unpack_from(blob)
        return cls(
            blob[HEADER_SIZE:],
            expiresAtMs,
            timestamp,
            nodeId,
            bool(flags & FLAG_TOMBSTONE),
            bool(flags & FLAG_BINARY),
            bool(flags & FLAG_COUNTER),
        )


def intact(blob: bytes) -> bool:
    """
    Whether encoded record C{blob} is whole: what every copy read back
    from a disk or a peer is checked with before it is used.
    """
    return len(blob) >= HEADER_SIZE
