"""
Damage, as memory, a network or a disk can do it: a byte of an encoded
record flipped (L{flipped}), in flight or in a store's memory
(L{damageEntry}), for testing what finds it and what repairs it.
"""

from __future__ import annotations

from disperse.store import Store
from disperse.store.record import HEADER_SIZE


def flipped(blob: bytes, at: int = -1) -> bytes:
    """
    C{blob} with every bit of its byte at C{at} flipped: by default the
    value's last byte (the content hash's last for an empty value).
    """
    damaged = bytearray(blob)
    damaged[at] ^= 0xFF
    return bytes(damaged)


def damageEntry(store: Store, key: str, at: int = -1) -> None:
    """
    Flip a byte of the entry of C{key} in C{store}'s memory, as bit rot
    would: behind the store's back, its Merkle tree and its byte count
    left as they were. C{at} is as for L{flipped}; the default damages
    the value (or, for an empty one, the hash).

    @raise KeyError: if C{store} has no entry for C{key}.
    """
    part = store._part(key)
    blob = part[key]
    if at == -1 and len(blob) == HEADER_SIZE:
        at = HEADER_SIZE - 2
    part[key] = flipped(blob, at)
