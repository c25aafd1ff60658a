"""
Local storage: versioned entries with expiry and a byte budget
(L{disperse.store.store}), their encoding (L{disperse.store.record}), the
convergent counters whose copies merge (L{disperse.store.counter}), the
hybrid logical clock that versions them, the partition of a key
(L{disperse.store.partition}) and the Merkle tree of each partition's
entries that replicas compare (L{disperse.store.merkle}). Pure: no I/O.
The one part that schedules, the expiry sweeper
(L{disperse.store.sweeper}), does so on the clock it is given.
"""

from disperse.store.counter import renderedValue
from disperse.store.hlc import HybridLogicalClock
from disperse.store.record import Record
from disperse.store.store import (
    ENTRY_OVERHEAD,
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
    "renderedValue",
]
