"""
Tests for L{disperse.store.partition}: the Redis Cluster slot of a key and
its partition.
"""

from __future__ import annotations

import random
from collections import Counter

from disperse.store.partition import (
    PARTITION_COUNT,
    SLOT_COUNT,
    SLOTS_PER_PARTITION,
    hashedPart,
    keySlot,
    partitionOf,
    slotOf,
    slotsOf,
)


def crc16Xmodem(data: bytes) -> int:
    """
    CRC-16/XMODEM bit by bit (polynomial 0x1021, initial value 0, no
    reflection): the CRC16 of Redis's cluster.c, written out here so that
    the table-driven C one the module uses is checked against it.
    """
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = (crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1
        crc &= 0xFFFF
    return crc


def test_counts() -> None:
    """
    1024 partitions of 16 slots each cover Redis's 16384 slots.
    """
    assert (PARTITION_COUNT, SLOT_COUNT, SLOTS_PER_PARTITION) == (1024, 16384, 16)
    assert slotsOf(0) == range(0, 16)
    assert slotsOf(1023) == range(16368, 16384)


def test_slotsAreRedis() -> None:
    """
    Slots Redis answers to C{CLUSTER KEYSLOT}: the CRC-16/XMODEM check
    value for C{123456789} (0x31C3), and keys from Redis's documentation.
    """
    assert slotOf("123456789") == 0x31C3
    assert slotOf("foo") == 12182
    assert slotOf("somekey") == 11058
    assert slotOf("foo{hash_tag}") == 2515
    assert slotOf("") == 0


def test_hashTags() -> None:
    """
    Only the text between the first C{{} and the first C{}} after it is
    hashed, when it is not empty; otherwise the whole key.
    """
    assert slotOf("{user1000}.following") == slotOf("{user1000}.followers")
    assert slotOf("{user1000}.following") == slotOf("user1000")
    assert partitionOf("{user1000}.following") == partitionOf("{user1000}.followers")
    # An empty tag: the whole key.
    assert hashedPart(b"foo{}{bar}") == b"foo{}{bar}"
    assert slotOf("foo{}{bar}") == keySlot(b"foo{}{bar}") != slotOf("bar")
    assert hashedPart(b"{}") == b"{}"
    # The first '}' after the first '{'.
    assert hashedPart(b"foo{{bar}}zap") == b"{bar"
    assert slotOf("foo{{bar}}zap") == keySlot(b"{bar")
    assert hashedPart(b"foo{bar}{zap}") == b"bar"
    assert slotOf("foo{bar}{zap}") == slotOf("bar")
    # No '}' after the '{', or none at all: the whole key.
    assert hashedPart(b"foo}{bar") == b"foo}{bar"
    assert hashedPart(b"{bar") == b"{bar"
    assert hashedPart(b"plain") == b"plain"
    # Tags are bytes between braces, whatever they encode.
    assert slotOf("x{ключ}y") == slotOf("ключ")


def test_slotIsCrc16OfHashedPart() -> None:
    """
    Over random keys with braces, slots and partitions agree with the
    bit-by-bit CRC and with each other (the fast path of L{partitionOf}
    searches the text, L{keySlot} the bytes).
    """
    rng = random.Random(15)
    alphabet = "ab{}{}é🔑"
    for _ in range(5000):
        key = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9)))
        encoded = key.encode()
        assert slotOf(key) == crc16Xmodem(hashedPart(encoded)) % SLOT_COUNT, key
        assert partitionOf(key) == slotOf(key) // SLOTS_PER_PARTITION, key
        assert slotOf(key) in slotsOf(partitionOf(key)), key


def test_partitionOfIsPinned() -> None:
    """
    The partition of a key is part of the contract between nodes, so
    pinned: UTF-8 bytes, CRC16, slot divided by 16.
    """
    keys = ("", "a", "user:42", "ключ", "🔑", "{ключ}x")
    assert [partitionOf(k) for k in keys] == [0, 968, 992, 643, 207, 643]


def test_partitionOfSpreadsKeys() -> None:
    """
    100 keys per partition on average: none gets fewer than half or more
    than one and a half times that (five standard deviations out).
    """
    counts = Counter(partitionOf(f"key-{i}") for i in range(100 * PARTITION_COUNT))
    assert len(counts) == PARTITION_COUNT
    assert min(counts.values()) >= 50
    assert max(counts.values()) <= 150
