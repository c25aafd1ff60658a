"""
Local storage: versioned entries with expiry and a byte budget, and the
hybrid logical clock that versions them. Pure: no I/O.
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
