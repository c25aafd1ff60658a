"""
Partitions: which of L{PARTITION_COUNT} partitions a key belongs to
(L{partitionOf}). The store keeps its entries and Merkle trees per
partition, and placement (L{disperse.cluster.placement}) assigns whole
partitions to members, so both read the partition of a key from here.

A key's partition is its Redis Cluster hash slot (L{slotOf}) divided by
L{SLOTS_PER_PARTITION}: partition M{p} is slots M{16p} to M{16p + 15}. So a
cluster-aware Redis client, which computes the slot of every key itself,
can be told which members own each slot (C{CLUSTER SLOTS},
L{disperse.resp.topology}) and send each key straight to one of its
replicas, and keys that share a hash tag (C{E{lb}tagE{rb}}) share a
partition, hence their replicas.

The partition count and the hash are part of the contract between nodes:
two nodes that split keys differently send the same key to different
replicas and compare different Merkle trees, so a change re-homes every key
and needs a new L{disperse.cluster.placement.PLACEMENT_VERSION}. They are
also a contract with Redis clients, which hash keys the same way.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

from binascii import crc_hqx

# 1024 partitions. Enough for the load bound to have room to work: at N=50,
# R=1 a member's fair share is 20.5 partitions and its cap 25. More would
# balance better by hashing alone and move a little less (bench/placement,
# N=3..30, R=1: a join streams up to 1.26 times the newcomer's fair share at
# 1024, 1.11 at 4096, 1.42 at 512), but every partition is a unit of
# bookkeeping on every node holding it: a Merkle tree, a hint queue, a
# handoff stream, a row in every anti-entropy exchange (8 KiB of roots per
# peer at 1024, 32 KiB at 4096), and a build takes time in proportion
# (N=50: about 20 ms at 1024, three to four times that at 4096). 1024 keeps
# that small and still gives each of 200 members 15 replicas at R=3. A power
# of two that divides Redis's 16384 slots, so that a partition is a run of
# whole slots.
PARTITION_COUNT = 1024

# Redis Cluster's hash slots: CRC16 of the key mod 16384.
SLOT_COUNT = 16384
SLOTS_PER_PARTITION = SLOT_COUNT // PARTITION_COUNT

# The slot is CRC16's low 14 bits and the partition the slot's high 10, so
# the partition is bits 4 to 13 of the CRC: (crc & 0x3FFF) >> 4 is
# crc >> 4 & 0x3FF.
_SLOT_MASK = SLOT_COUNT - 1
_PARTITION_SHIFT = SLOTS_PER_PARTITION.bit_length() - 1
_PARTITION_MASK = PARTITION_COUNT - 1


def hashedPart(encoded: bytes) -> bytes:
    """
    The bytes of a key that Redis hashes into its slot, as Redis's
    C{keyHashSlot} picks them: between the first C{E{lb}} and the first
    C{E{rb}} after it, when there are any; otherwise (no C{E{lb}}, no
    C{E{rb}} after it, or nothing between them) the whole key.

    @param encoded: the key's UTF-8 bytes (braces are ASCII, so never part
        of a longer character).
    """
    start = encoded.find(b"{")
    if start >= 0:
        end = encoded.find(b"}", start + 1)
        if end > start + 1:
            return encoded[start + 1 : end]
    return encoded


def keySlot(encoded: bytes) -> int:
    """
    The Redis Cluster hash slot of a key given as bytes: CRC-16/XMODEM
    (Redis's CRC16) of L{hashedPart}, mod 16384. What C{CLUSTER KEYSLOT}
    answers.
    """
    return crc_hqx(hashedPart(encoded), 0) & _SLOT_MASK


def slotOf(key: str) -> int:
    """
    The Redis Cluster hash slot of C{key}, from its UTF-8 bytes.
    """
    return keySlot(key.encode())


def partitionOf(key: str) -> int:
    """
    The partition of C{key}: its Redis Cluster slot divided by
    L{SLOTS_PER_PARTITION}. On every request's path: a key without a
    brace, hence without a hash tag, costs a search of the text, its
    encoding and one CRC, each a single call into C.
    """
    # Searched as text: CPython finds one character in a str far faster
    # than a one-byte bytes in bytes. Braces are ASCII, so the text between
    # them encodes to the bytes between them.
    if "{" in key:
        start = key.index("{")
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc_hqx(key.encode(), 0) >> _PARTITION_SHIFT & _PARTITION_MASK


def slotsOf(partition: int) -> range:
    """
    The slots of C{partition}.
    """
    first = partition * SLOTS_PER_PARTITION
    return range(first, first + SLOTS_PER_PARTITION)
