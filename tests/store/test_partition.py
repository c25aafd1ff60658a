"""
Tests for L{disperse.store.partition}: the partition of a key.
"""

from __future__ import annotations

from collections import Counter

import xxhash

from disperse.store.partition import KEY_SEED, PARTITION_COUNT, partitionOf


def test_partitionOfIsPinned() -> None:
    """
    The partition of a key is xxh64 of its UTF-8 bytes, seed fixed, low 10
    bits: part of the contract between nodes, so pinned.
    """
    assert PARTITION_COUNT == 1024
    keys = ("", "a", "user:42", "ключ", "🔑")
    assert [partitionOf(k) for k in keys] == [372, 877, 900, 201, 143]
    assert (
        partitionOf("ключ")
        == xxhash.xxh64_intdigest("ключ".encode(), KEY_SEED) % PARTITION_COUNT
    )


def test_partitionOfSpreadsKeys() -> None:
    """
    100 keys per partition on average: none gets fewer than half or more
    than one and a half times that (five standard deviations out).
    """
    counts = Counter(partitionOf(f"key-{i}") for i in range(100 * PARTITION_COUNT))
    assert len(counts) == PARTITION_COUNT
    assert min(counts.values()) >= 50
    assert max(counts.values()) <= 150
