"""
Partitions: which of L{PARTITION_COUNT} partitions a key belongs to
(L{partitionOf}). The store keeps its entries and Merkle trees per
partition, and placement (L{disperse.cluster.placement}) assigns whole
partitions to members, so both read the partition of a key from here.

Pure: no I/O, no clock, no randomness beyond the fixed-seed hash.
"""

from __future__ import annotations

import xxhash

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
# of two, so that the partition is the hash's low bits. Changing it re-homes
# every key: it is part of the contract between nodes.
PARTITION_COUNT = 1024
_PARTITION_MASK = PARTITION_COUNT - 1

# The xxh64 seed of key hashing; fixed for ever, like PARTITION_COUNT.
KEY_SEED = 0x6469_7370_6572_7365  # "disperse"

_xxh64 = xxhash.xxh64_intdigest


def partitionOf(key: str) -> int:
    """
    The partition of C{key}: the low bits of the xxh64 of its UTF-8 bytes.
    On every request's path, so kept to one hash call.
    """
    return _xxh64(key.encode(), KEY_SEED) & _PARTITION_MASK
