"""
Local storage: versioned entries with expiry and a byte budget, the hybrid
logical clock that versions them, the partition of a key
(L{disperse.store.partition}) and the Merkle tree of each partition's
entries that replicas compare (L{disperse.store.merkle}). Pure: no I/O.
The one part that schedules, the expiry sweeper
(L{disperse.store.sweeper}), does so on the clock it is given.
"""

from disperse.store.hlc import HybridLogicalClock
from disperse.store.store import (
    ENTRY_OVERHEAD,
    Record,
    Store,
    StoreStats,
    ValueTooLarge,
)

__all__ = [
    "ENTRY_OVERHEAD",
    "HybridLogicalClock",
    "Record",
    "Store",
    "StoreStats",
    "ValueTooLarge",
]
