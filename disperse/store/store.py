"""
The local key-value store of one node: values, versions, expiry, tombstones
and a byte budget. Pure: no I/O, time only through an injected L{TimeSource}.

Memory is the product here, so each entry is kept as a single immutable
C{bytes} object, its L{Record} encoded (L{disperse.store.record}): a fixed
header (expiry, version, writer, content hash, flags) followed by the value.

Copies of a key merge by last writer wins (L{Record.precedence}), except
convergent counters (C{INCR}), whose copies merge into one that counts
every increment of each (L{disperse.store.counter}).

One bytes object per entry costs about a third of what a small object with
fields would, and C{bytes} are not tracked by the cyclic garbage collector,
so a store of millions of entries adds nothing to collection pauses.

Eviction is approximate LRU with the CLOCK (second chance) policy, the choice
memcached and Redis make for the same reason: exact LRU needs a linked list
node per entry, about 50 bytes more per key. Keys sit on a ring in insertion
order; a read or overwrite marks the key referenced; the eviction hand skips
(and clears) referenced keys once and evicts the first unreferenced one.

Expiry is lazy on read and active through a timing wheel: each entry with an
expiry is listed in the bucket of its expiry second, and L{Store.sweep}
empties buckets whose second has passed, a bounded number of keys per call.

Entries are kept in one dictionary per partition
(L{disperse.store.partition.partitionOf}) rather than one for the whole
store, and each partition has a Merkle tree (L{disperse.store.merkle}) that
every change of an entry updates: write, merge, delete, expiry, eviction,
tombstone purge all go through L{Store._store} or L{Store._remove} (an
entry found damaged, L{Store._removeDamaged}). Anti-entropy compares the
trees and then needs the records of a few leaves of one partition; sharding
the dictionary lets it list them by walking one partition instead of the
whole store, at no memory cost per entry (a separate index of keys per
partition would cost 30 to 100 bytes a key), for one extra key hash on
every lookup. A tree counts an entry until it is removed, expired or not:
readers of the tree treat expired records as absent and the sweep removes
them within seconds.
"""

from __future__ import annotations

import heapq
import struct
from binascii import crc_hqx
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import compress
from operator import itemgetter
from typing import Protocol

from disperse.store.counter import canonicalValue, joinRecords
from disperse.store.hlc import HybridLogicalClock
from disperse.store.integrity import IntegrityCounters
from disperse.store.merkle import MerkleTree, blobDigest, leafHash
from disperse.store.partition import PARTITION_COUNT, SLOTS_PER_PARTITION, partitionOf
from disperse.store.record import (
    EMPTY_HASH,
    FLAG_BINARY,
    FLAG_COUNTER,
    FLAG_TOMBSTONE,
    FLAGS_AT,
    HEADER,
    HEADER_SIZE,
    KNOWN_FLAGS,
    NO_EXPIRY,
    Record,
    contentHashOf,
    intact,
)
from disperse.timesource import OffsetTime, TimeSource

_HEADER = HEADER
# The version in a record's header (timestamp, writer), without the rest.
_VERSION = struct.Struct(">8xQI")
_KNOWN_FLAGS = KNOWN_FLAGS
_contentHashOf = contentHashOf
# Replica-local, never sent nor hashed: this value, which expires, replaced
# an older entry here. When it expires it leaves a tombstone of its own
# version rather than nothing, so that the older value, still held by a
# replica that missed this one, cannot come back through a repair. A value
# that replaced nothing leaves nothing: keys written once with a time to
# live cost no memory after they expire.
_FLAG_REPLACED = 0x80
_FLAGS_AT = FLAGS_AT
# Each flags byte as a bytes object, for rewriting it without a tuple.
_FLAG_BYTES = [bytes((flags,)) for flags in range(256)]

# What one entry costs beyond its key and value bytes: the header above, the
# bytes and str object headers, its dict slot, its ring slot and its wheel
# slot, rounded up from measurement (bench/memory) on 64-bit CPython 3.11.
# The header's content hash made it 8 bytes more: the allocator rounds a
# blob up to 16 bytes, so the hash's 8 cost 0 or 16 by the value's length
# (measured with bench/memory's in-process run at several value sizes).
ENTRY_OVERHEAD = 176

# How long a delete is remembered, so that an older write arriving late (from
# a replica, a hint, a repair) cannot bring the value back.
DEFAULT_TOMBSTONE_TTL = 3600.0
# How long an expired value that replaced an older one is remembered (see
# _FLAG_REPLACED), at most the tombstone time to live. Shorter than a
# delete's: caches rewrite keys with a time to live all the time (sessions,
# counters), and each such key leaves one of these when it finally expires,
# so an hour of them could take a good part of the memory budget. A replica
# that missed the write and lost its hint is repaired by anti-entropy as
# soon as it is back; this covers it being away for up to ten minutes after
# the expiry.
DEFAULT_EXPIRY_TOMBSTONE_TTL = 600.0

_WHEEL_SLACK = 65536
# For Store.install: an entry's flags byte and expiry field, and each flags
# byte mapped to 1 for a tombstone, 0 otherwise.
_flagsOf = itemgetter(FLAGS_AT)
_expiryBytesOf = itemgetter(slice(0, 8))
_TOMBSTONE_BYTES = bytes(int(bool(flags & FLAG_TOMBSTONE)) for flags in range(256))

# A Record from a tuple of its fields, without the generated constructor's
# argument handling: a third of the cost of Record(...) where every read
# makes one.
_newRecord = tuple.__new__

# partitionOf inlined on the lookup path, where a function call would cost
# as much as the hash: the partition of a key without a brace (so without a
# hash tag) is bits 4 to 13 of its CRC16 (its slot over 16); one with a
# brace goes the long way.
_crc = crc_hqx
_PARTITION_SHIFT = SLOTS_PER_PARTITION.bit_length() - 1
_PARTITION_MASK = PARTITION_COUNT - 1

# The shape of every partition's Merkle tree: part of the contract between
# nodes, like the digests (both sides of an exchange must agree). 256
# leaves: a few keys a leaf at a thousand keys a partition.
TREE_DEPTH = 2
TREE_FANOUT = 16
# The leaves of a partition's tree, numbered 0..LEAF_COUNT - 1.
LEAF_COUNT: int = TREE_FANOUT**TREE_DEPTH
_LEAF_SHIFT = 64 - TREE_DEPTH * (TREE_FANOUT.bit_length() - 1)
# The Merkle root of a partition without entries.
EMPTY_ROOT = bytes(8)


def _withFlags(blob: bytes, flags: int) -> bytes:
    """
    Encoded record C{blob} with its flags byte set to C{flags}.
    """
    return blob[:_FLAGS_AT] + _FLAG_BYTES[flags] + blob[HEADER_SIZE:]


def _shared(blob: bytes) -> bytes:
    """
    C{blob} as replicas compare it and peers receive it: without the flags
    that are this replica's own.
    """
    flags = blob[_FLAGS_AT]
    if flags & _FLAG_REPLACED:
        return _withFlags(blob, flags & _KNOWN_FLAGS)
    return blob


def _replacing(blob: bytes) -> bytes:
    """
    C{blob}, a value with an expiry stored over an older entry, marked to
    leave a tombstone when it expires.
    """
    return _withFlags(blob, blob[_FLAGS_AT] | _FLAG_REPLACED)


def _newer(blob: bytes, than: bytes) -> bool:
    """
    Whether encoded record C{blob} outranks encoded record C{than} in
    L{Record.precedence} order, decoding no more than it needs: versions
    nearly always differ.
    """
    _, timestamp, nodeId, _, _ = _HEADER.unpack_from(blob)
    _, otherTimestamp, otherNodeId, _, _ = _HEADER.unpack_from(than)
    if (timestamp, nodeId) != (otherTimestamp, otherNodeId):
        return (timestamp, nodeId) > (otherTimestamp, otherNodeId)
    return Record.decode(blob).precedence > Record.decode(than).precedence


def _canonicalCounter(blob: bytes) -> bytes:
    """
    C{blob}, a counter from elsewhere, in the one encoding of its state and
    without the binary flag (a counter is text), so that replicas holding
    the same counter hold the same bytes.

    @raise ValueError: if its value is not a counter's state.
    """
    value = blob[HEADER_SIZE:]
    canonical = canonicalValue(value)
    expiresAtMs, timestamp, nodeId, contentHash, flags = _HEADER.unpack_from(blob)
    if canonical == value and not flags & FLAG_BINARY:
        return blob
    if canonical != value:
        # The same state in other bytes: its own hash. (The copy it came
        # from was checked against its hash on the way in.)
        contentHash = contentHashOf(canonical)
    return (
        _HEADER.pack(expiresAtMs, timestamp, nodeId, contentHash, flags & ~FLAG_BINARY)
        + canonical
    )


def _joined(blob: bytes, other: bytes) -> bytes:
    """
    The merge of encoded records C{blob} and C{other}, one of them a
    counter (L{disperse.store.counter.joinRecords}).
    """
    joined = joinRecords(Record.decode(blob), Record.decode(other))
    return joined.encode()


@dataclass(frozen=True, slots=True)
class StoreStats:
    """
    A snapshot of the store's counters.
    """

    keys: int
    tombstones: int
    bytes: int
    maxBytes: int | None
    hits: int
    misses: int
    sets: int
    deletes: int
    evictions: int
    expirations: int


class Journal(Protocol):
    """
    What hears of every entry the store keeps, and of every partition it
    drops: a log on disk (L{disperse.persist.log.Log}). Expiry, eviction
    and purges are not told: an entry that comes back from a log after
    one of those has a valid version, expires by its own absolute time,
    and is evicted again if the budget says so.
    """

    def stored(self, partition: int, key: str, blob: bytes) -> None:
        """
        C{key} of C{partition} now holds C{blob}, as the store keeps it.
        """

    def dropped(self, partition: int) -> None:
        """
        Every entry of C{partition} was forgotten (L{Store.dropPartition}).
        """


class ValueTooLarge(ValueError):
    """
    A single entry would not fit in the store's whole byte budget.
    """


class Store:
    """
    Keys (C{str}) to versioned values (C{bytes}) with expiry, tombstones and a
    byte budget, with a Merkle tree per partition.

    @ivar hlc: the clock that versions local writes.
    """

    def __init__(
        self,
        clock: TimeSource,
        nodeId: int,
        maxBytes: int | None = None,
        tombstoneTtl: float = DEFAULT_TOMBSTONE_TTL,
        expiryTombstoneTtl: float = DEFAULT_EXPIRY_TOMBSTONE_TTL,
    ) -> None:
        self._clock = clock
        self.nodeId = nodeId
        self.maxBytes = maxBytes
        self._tombstoneTtlMs = int(tombstoneTtl * 1000)
        self._expiryTombstoneTtlMs = int(min(expiryTombstoneTtl, tombstoneTtl) * 1000)
        self.hlc = HybridLogicalClock(clock)

        # One dictionary per partition (64 bytes each while empty).
        self._parts: list[dict[str, bytes]] = [{} for _ in range(PARTITION_COUNT)]
        self._trees: list[MerkleTree | None] = [None] * PARTITION_COUNT
        self._count = 0
        self._ring: deque[str] = deque()
        self._referenced: set[str] = set()
        self._buckets: dict[int, list[str]] = {}
        self._bucketHeap: list[int] = []
        self._wheelRefs = 0
        self._expiryObservers: list[Callable[[], object]] = []
        # What hears of each change, when the node keeps a log.
        self.journal: Journal | None = None

        self._bytes = 0
        self._tombstones = 0
        # Tombstones by partition: a partition's live keys are its entries
        # less these (L{partitionKeys}). Kept rather than a count of values
        # so that writing a value, the common case, updates nothing more.
        self._partTombstones = [0] * PARTITION_COUNT
        self.hits = 0
        self.misses = 0
        self.sets = 0
        self.deletes = 0
        self.evictions = 0
        self.expirations = 0
        # Damaged records found on this node, wherever (the scrub, peers'
        # copies, the disk).
        self.integrity = IntegrityCounters()

    def setClockOffset(self, seconds: float) -> None:
        """
        Run this store's wall clock C{seconds} ahead (behind, if negative)
        of the clock it was given: expiry and versions both follow it, as
        they would on a host whose clock is off.
        """
        clock = OffsetTime(self._clock, seconds)
        self._clock = clock
        self.hlc.setClock(clock)

    # Reading

    def nowMs(self) -> int:
        return int(self._clock.seconds() * 1000)

    def __len__(self) -> int:
        """
        The number of keys: entries other than tombstones. A value that
        expired counts until it is dropped, by a read of it or by the sweep
        (within a second or so of its expiry second), as Redis counts the
        keys its expiry cycle has not reached yet.
        """
        return self._count - self._tombstones

    def _part(self, key: str) -> dict[str, bytes]:
        return self._parts[
            _crc(key.encode(), 0) >> _PARTITION_SHIFT & _PARTITION_MASK
            if "{" not in key
            else partitionOf(key)
        ]

    def occupies(self, key: str) -> bool:
        """
        Whether an entry for C{key} still takes up memory: a live value, a
        tombstone, or an expired entry that has not been dropped yet.
        """
        return key in self._part(key)

    def get(self, key: str) -> Record | None:
        """
        The live value of C{key}, or C{None} when it is missing, expired or
        deleted. Counts a hit or a miss and marks the key recently used.
        """
        blob = self._parts[
            _crc(key.encode(), 0) >> _PARTITION_SHIFT & _PARTITION_MASK
            if "{" not in key
            else partitionOf(key)
        ].get(key)
        if blob is not None:
            expiresAtMs, timestamp, nodeId, contentHash, flags = _HEADER.unpack_from(
                blob
            )
            if expiresAtMs and expiresAtMs <= self.nowMs():
                self._lapse(key, blob, blob)
                if not flags & FLAG_TOMBSTONE:
                    self.expirations += 1
            elif not flags & FLAG_TOMBSTONE:
                self.hits += 1
                self._referenced.add(key)
                return _newRecord(
                    Record,
                    (
                        blob[HEADER_SIZE:],
                        expiresAtMs,
                        timestamp,
                        nodeId,
                        False,
                        bool(flags & FLAG_BINARY),
                        bool(flags & FLAG_COUNTER),
                        contentHash,
                    ),
                )
        self.misses += 1
        return None

    def record(
        self,
        key: str,
        touch: bool = False,
        expired: bool = False,
        partition: int | None = None,
    ) -> Record | None:
        """
        The current record of C{key}, tombstones included, without counting
        a hit: what replication compares against.

        @param touch: mark the key recently used (a client read it).
        @param expired: return an expired record not dropped yet, rather
            than C{None}: its version still outranks older copies elsewhere.
        @param partition: the partition of C{key}
            (L{disperse.store.partition.partitionOf}), when the caller has
            it already: a coordinator's read computed it to find the owners.
        """
        if partition is None:
            partition = (
                _crc(key.encode(), 0) >> _PARTITION_SHIFT & _PARTITION_MASK
                if "{" not in key
                else partitionOf(key)
            )
        blob = self._parts[partition].get(key)
        if blob is None:
            return None
        # Record.decode inlined, and only once the expiry is known to let
        # the record through: this runs on every read.
        expiresAtMs, timestamp, nodeId, contentHash, flags = _HEADER.unpack_from(blob)
        if not expired and expiresAtMs and expiresAtMs <= self.nowMs():
            return None
        if touch:
            self._referenced.add(key)
        return _newRecord(
            Record,
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

    def countLookup(self, found: bool) -> None:
        """
        Count a client read answered elsewhere (by a replica set) as a hit
        or a miss.
        """
        if found:
            self.hits += 1
        else:
            self.misses += 1

    def fits(self, key: str, value: bytes) -> bool:
        """
        Whether an entry of this size can be stored at all.
        """
        return self.maxBytes is None or (
            len(key) + len(value) + ENTRY_OVERHEAD <= self.maxBytes
        )

    def _hasRoom(self, key: str, blob: bytes) -> bool:
        """
        Whether encoded record C{blob} could be stored under C{key} without
        evicting anything.
        """
        if self.maxBytes is None:
            return True
        old = self._part(key).get(key)
        grows = self._size(key, blob)
        if old is not None:
            grows -= self._size(key, old)
        return self._bytes + grows <= self.maxBytes

    def records(self, expired: bool = False) -> Iterator[tuple[str, Record]]:
        """
        Every record, tombstones included, in no particular order.
        The store must not be changed while this is being iterated.

        @param expired: include the expired entries not dropped yet (what
            the Merkle trees still count).
        """
        now = self.nowMs()
        for part in self._parts:
            for key, blob in part.items():
                record = Record.decode(blob)
                if expired or not record.expiresAtMs or record.expiresAtMs > now:
                    yield key, record

    def stats(self) -> StoreStats:
        return StoreStats(
            keys=len(self),
            tombstones=self._tombstones,
            bytes=self._bytes,
            maxBytes=self.maxBytes,
            hits=self.hits,
            misses=self.misses,
            sets=self.sets,
            deletes=self.deletes,
            evictions=self.evictions,
            expirations=self.expirations,
        )

    # Partitions, for anti-entropy

    def partitionTree(self, partition: int) -> MerkleTree:
        """
        The Merkle tree of C{partition}'s entries, made (empty) on first
        use. Callers read and compare it; only the store updates it.
        """
        tree = self._trees[partition]
        if tree is None:
            tree = self._buildTree(partition)
        return tree

    def partitionRoot(self, partition: int) -> bytes:
        """
        The root digest of C{partition}'s tree: equal on two replicas that
        hold the same entries.
        """
        tree = self._trees[partition]
        if tree is None:
            if not self._parts[partition]:
                return EMPTY_ROOT
            tree = self._buildTree(partition)
        return tree.root()

    def partitionEntries(self, partition: int) -> int:
        """
        How many entries C{partition} holds: values and tombstones, and
        expired entries not dropped yet.
        """
        return len(self._parts[partition])

    def partitionRecords(
        self, partition: int, leaves: Iterable[int]
    ) -> list[tuple[str, Record]]:
        """
        The unexpired records, tombstones included, of the keys of
        C{partition} that fall in C{leaves} of its tree: what a repair
        compares once an exchange has named the differing leaves. One hash
        per entry of the partition.

        @raise ValueError: for a partition or leaf outside the tree.
        """
        if not 0 <= partition < PARTITION_COUNT:
            raise ValueError(f"partition {partition} outside 0..{PARTITION_COUNT - 1}")
        wanted = set(leaves)
        if any(not 0 <= leaf < LEAF_COUNT for leaf in wanted):
            raise ValueError(f"leaf outside 0..{LEAF_COUNT - 1}")
        now = self.nowMs()
        out = []
        for key, blob in self._parts[partition].items():
            if leafHash(key) >> _LEAF_SHIFT not in wanted:
                continue
            record = Record.decode(blob)
            if not record.expiresAtMs or record.expiresAtMs > now:
                out.append((key, record))
        return out

    def partitionKeys(self, partition: int) -> int:
        """
        How many keys C{partition} holds, as C{len(store)} counts them over
        the whole store: its entries less its tombstones, so expired values
        count until they are dropped (by a read, or by the sweep within a
        second or so of their expiry second). Constant time: what
        C{DBSIZE} sums.
        """
        return len(self._parts[partition]) - self._partTombstones[partition]

    def partitionKeysByLeaf(self, partition: int) -> list[list[str]]:
        """
        The keys with an entry in C{partition} (values, tombstones, expired
        entries not dropped yet), by the leaf of its tree they fall in:
        what a keyspace scan walks a few leaves at a time. One hash per
        entry of the partition.
        """
        byLeaf: list[list[str]] = [[] for _ in range(LEAF_COUNT)]
        for key in self._parts[partition]:
            byLeaf[leafHash(key) >> _LEAF_SHIFT].append(key)
        return byLeaf

    def partitionContents(self, partition: int) -> list[tuple[str, Record]]:
        """
        Every unexpired record of C{partition}, tombstones included: what a
        leaving replica hands to the partition's next owner.
        """
        now = self.nowMs()
        out = []
        for key, blob in self._parts[partition].items():
            record = Record.decode(blob)
            if not record.expiresAtMs or record.expiresAtMs > now:
                out.append((key, record))
        return out

    # Writing

    def dropPartition(self, partition: int) -> int:
        """
        Forget every entry of C{partition}, tombstones included, leaving no
        tombstone: for a partition this node no longer owns, once its owners
        hold everything it held. Not a delete; nothing else learns of it.

        @return: how many entries were dropped.
        """
        part = self._parts[partition]
        entries = list(part.items())
        for key, blob in entries:
            self._remove(key, blob)
        if self.journal is not None:
            self.journal.dropped(partition)
        return len(entries)

    @property
    def shortestTombstoneTtl(self) -> float:
        """
        The shortest time any tombstone here lives, in seconds.
        """
        return min(self._tombstoneTtlMs, self._expiryTombstoneTtlMs) / 1000

    def newRecord(
        self,
        value: bytes,
        ttlMs: int = 0,
        binary: bool = False,
        tombstone: bool = False,
        *,
        expiresAtMs: int | None = None,
    ) -> Record:
        """
        A record versioned by this store's clock, not stored: what a
        coordinator sends to every replica.

        @param ttlMs: time to live in milliseconds from now; 0 for no expiry
            (a tombstone always expires after the tombstone time to live).
        @param expiresAtMs: instead of C{ttlMs}, the absolute expiry in ms
            since the epoch on this store's clock (0 for none), for a
            client that names the time (Redis's C{PXAT}) or keeps a value's
            expiry while it rewrites the value.
        """
        if ttlMs < 0:
            raise ValueError("ttlMs must not be negative")
        if expiresAtMs is not None and (ttlMs or expiresAtMs < 0):
            raise ValueError("expiresAtMs: not negative, and not with ttlMs")
        if tombstone:
            ttl = self._tombstoneTtlMs
            expiresAtMs = self.nowMs() + ttl if ttl else 0
        elif expiresAtMs is None:
            expiresAtMs = self.nowMs() + ttlMs if ttlMs else 0
        # The content hash is computed here, once, where the value is
        # accepted: it travels with the record from now on.
        return _newRecord(
            Record,
            (
                value,
                expiresAtMs,
                self.hlc.now(),
                self.nodeId,
                tombstone,
                binary,
                False,
                _contentHashOf(value) if value else EMPTY_HASH,
            ),
        )

    def put(
        self, key: str, value: bytes, ttlMs: int = 0, binary: bool = False
    ) -> Record:
        """
        Write C{value} under C{key} as a new local version.

        @param ttlMs: time to live in milliseconds from now; 0 for no expiry.
        @raise ValueTooLarge: if the entry alone exceeds the byte budget.
        """
        record = self.newRecord(value, ttlMs, binary)
        blob = record.encode()
        if ttlMs and self.occupies(key):
            blob = _replacing(blob)
        self._store(key, blob)
        self.sets += 1
        return record

    def delete(self, key: str) -> bool:
        """
        Delete C{key} by writing a tombstone as a new local version.

        @return: whether a live value was deleted.
        """
        current = self.record(key)
        existed = current is not None and not current.tombstone
        self._store(key, self.newRecord(b"", tombstone=True).encode())
        self.deletes += 1
        return existed

    def merge(
        self,
        key: str,
        record: Record,
        evict: bool = True,
        partition: int | None = None,
    ) -> bool:
        """
        Apply a record made elsewhere (a replica write, a hint, a repair) if
        it is newer than what is stored: last writer wins by
        L{Record.precedence}, so every replica ends with the same record
        whatever order copies arrive in. A counter, or a record meeting one,
        is merged instead (L{disperse.store.counter.joinRecords}): what is
        stored becomes the join of both.

        @param evict: whether to make room by evicting when C{key} has no
            entry here. A repair passes C{False}: a full replica lacks keys
            because it evicted them, and taking them back would only evict
            others, which the next repair would bring back in turn. A newer
            version of a key held here is always taken.
        @param partition: the partition of C{key}, when the caller has it
            already (see L{record}).
        @return: whether the record was applied.
        """
        (
            value,
            expiresAtMs,
            timestamp,
            nodeId,
            tombstone,
            binary,
            counter,
            contentHash,
        ) = record
        if counter:
            # A counter's state is made canonical on the way in: that is
            # mergeEncoded's.
            return self.mergeEncoded(key, record.encode(), evict, partition)
        # Record.encode inlined, and no header to read back or flags to
        # clean: a record's flags are all known ones.
        flags = (FLAG_TOMBSTONE if tombstone else 0) | (FLAG_BINARY if binary else 0)
        hlc = self.hlc
        if timestamp > hlc.last:
            # Skipped for what this node just stamped (most merges: every
            # local write), which the clock has seen.
            hlc.observe(timestamp)
        return self._mergeBlob(
            key,
            _HEADER.pack(expiresAtMs, timestamp, nodeId, contentHash, flags) + value,
            expiresAtMs,
            timestamp,
            nodeId,
            flags,
            evict,
            partition,
        )

    def writeNew(
        self,
        key: str,
        value: bytes,
        expiresAtMs: int,
        binary: bool,
        partition: int,
    ) -> bool:
        """
        L{merge} a new version of C{key} stamped now: what
        C{merge(key, newRecord(value, binary=binary,
        expiresAtMs=expiresAtMs), partition=partition)} does, without the
        L{Record} in between, for a coordinator whose own replica is the
        only one to write (L{disperse.cluster.coordinator.Coordinator.writeLocal}).

        @return: whether the record was applied.
        """
        timestamp = self.hlc.now()
        flags = FLAG_BINARY if binary else 0
        nodeId = self.nodeId
        return self._mergeBlob(
            key,
            _HEADER.pack(
                expiresAtMs,
                timestamp,
                nodeId,
                _contentHashOf(value) if value else EMPTY_HASH,
                flags,
            )
            + value,
            expiresAtMs,
            timestamp,
            nodeId,
            flags,
            True,
            partition,
        )

    def mergeEncoded(
        self,
        key: str,
        blob: bytes,
        evict: bool = True,
        partition: int | None = None,
    ) -> bool:
        """
        L{merge} a record in its encoded form (L{Record.encode}), as peers
        send it: stored as it came, without decoding it into a L{Record}.

        @raise ValueError: if C{blob} is shorter than a record's header, or
            a counter whose value is not a counter's state.
        """
        if len(blob) < HEADER_SIZE:
            raise ValueError(f"a record needs {HEADER_SIZE} bytes, got {len(blob)}")
        expiresAtMs, timestamp, nodeId, _, flags = _HEADER.unpack_from(blob)
        if flags & ~_KNOWN_FLAGS:
            # Replicas must hold identical bytes (their Merkle trees hash
            # them): keep only the flags a record has.
            flags &= _KNOWN_FLAGS
            blob = _withFlags(blob, flags)
        if flags & FLAG_COUNTER:
            blob = _canonicalCounter(blob)
            flags = blob[_FLAGS_AT]
        self.hlc.observe(timestamp)
        return self._mergeBlob(
            key, blob, expiresAtMs, timestamp, nodeId, flags, evict, partition
        )

    def _mergeBlob(
        self,
        key: str,
        blob: bytes,
        expiresAtMs: int,
        timestamp: int,
        nodeId: int,
        flags: int,
        evict: bool,
        partition: int | None,
    ) -> bool:
        """
        L{mergeEncoded} once C{blob} is a record's canonical encoding, its
        header read into the other arguments and its timestamp observed.
        """
        # Compared with what is stored even if it expired: an expired write
        # still supersedes every older version of the key, which must not
        # come back because the newer one ran out.
        if partition is None:
            partition = (
                _crc(key.encode(), 0) >> _PARTITION_SHIFT & _PARTITION_MASK
                if "{" not in key
                else partitionOf(key)
            )
        part = self._parts[partition]
        current = part.get(key)
        shared = blob
        counters = False
        if current is not None:
            counters = (flags | current[_FLAGS_AT]) & FLAG_COUNTER != 0
            if counters and not intact(current):
                # A damaged counter cannot be joined with: the intact copy
                # takes its place.
                self._replaceDamaged(partition, key, current)
                current = None
        if current is not None:
            if counters:
                # Counters merge: what is stored becomes the join of both
                # copies, which may be neither.
                held = _shared(current)
                blob = shared = _joined(blob, held)
                if blob == held:
                    return False
                expiresAtMs, _, _, _, flags = _HEADER.unpack_from(blob)
            else:
                # _newer inlined for the common case, versions that differ.
                heldTimestamp, heldNodeId = _VERSION.unpack_from(current)
                if timestamp != heldTimestamp or nodeId != heldNodeId:
                    stale = (timestamp, nodeId) < (heldTimestamp, heldNodeId)
                else:
                    stale = not _newer(blob, current)
                # Checked only for a copy that would be refused, a rare
                # case (a late hint, a repair of this very entry): a
                # damaged entry is worth nothing, whatever its version, so
                # an intact copy takes its place. That is how a read that
                # found it damaged repairs it.
                if stale:
                    if blob == current or intact(current):
                        return False
                    self._replaceDamaged(partition, key, current)
                    current = None
            if expiresAtMs and not flags & FLAG_TOMBSTONE:
                blob = _replacing(blob)
        if expiresAtMs and expiresAtMs <= self.nowMs():
            # What it supersedes goes; a tombstone of it stays.
            if current is None:
                return False
            self._lapse(key, blob, current)
            return True
        if not evict and current is None and not self._hasRoom(key, blob):
            return False
        self._storeIn(partition, part, key, blob, current, shared, expiresAtMs)
        if flags & FLAG_TOMBSTONE:
            self.deletes += 1
        else:
            self.sets += 1
        return True

    def _replaceDamaged(self, partition: int, key: str, blob: bytes) -> None:
        """
        Remove C{blob}, the damaged entry of C{key}, for an intact copy to
        take its place; counted as replaced.
        """
        self._removeDamaged(partition, key, blob)
        self.integrity.replaced += 1

    def encoded(self, key: str) -> bytes | None:
        """
        The stored record of C{key} in its encoded form, tombstones and
        expired records not dropped yet included: what a replica answers a
        coordinator's read with.
        """
        blob = self._part(key).get(key)
        return None if blob is None else _shared(blob)

    def nextSweepMs(self) -> int | None:
        """
        When the earliest second of the timing wheel will have passed, in ms
        since the epoch on this store's clock: the next time L{sweep} has
        anything to do. C{None} while no entry waits to expire.
        """
        heap = self._bucketHeap
        return (heap[0] + 1) * 1000 if heap else None

    def observeExpiry(self, observer: Callable[[], object]) -> None:
        """
        Call C{observer} whenever L{nextSweepMs} moves earlier (an entry got
        an expiry sooner than any before it), so that whoever sweeps may
        sleep until then instead of polling.
        """
        self._expiryObservers.append(observer)

    def sweep(self, budget: int) -> int:
        """
        Drop entries whose expiry second has passed, looking at no more than
        C{budget} candidates.

        @return: how many candidates were looked at.
        """
        now = self.nowMs()
        looked = 0
        heap = self._bucketHeap
        while heap and looked < budget and (heap[0] + 1) * 1000 <= now:
            second = heap[0]
            bucket = self._buckets[second]
            while bucket and looked < budget:
                key = bucket.pop()
                looked += 1
                self._wheelRefs -= 1
                blob = self._part(key).get(key)
                if blob is not None:
                    expiresAtMs = _HEADER.unpack_from(blob)[0]
                    if expiresAtMs and expiresAtMs <= now:
                        self._lapse(key, blob, blob)
                        if not blob[_FLAGS_AT] & FLAG_TOMBSTONE:
                            self.expirations += 1
                        if self._bucketHeap is not heap:
                            # Scheduling a tombstone rebuilt the wheel:
                            # every entry left is in the new one.
                            break
            if self._bucketHeap is not heap:
                heap = self._bucketHeap
            elif not bucket:
                heapq.heappop(heap)
                del self._buckets[second]
        return looked

    # Integrity

    def partitionKeyList(self, partition: int) -> list[str]:
        """
        The keys with an entry in C{partition} now: what the scrub walks.
        """
        return list(self._parts[partition])

    def dropDamaged(self, partition: int, keys: Iterable[str]) -> list[str]:
        """
        Check the entries of C{keys} of C{partition} against their content
        hashes, and remove those that are damaged (not counted: the caller
        reports them). A key without an entry is skipped.

        @return: the keys whose entries were removed.
        """
        part = self._parts[partition]
        damaged = []
        for key in keys:
            blob = part.get(key)
            if blob is not None and not intact(blob):
                self._removeDamaged(partition, key, blob)
                damaged.append(key)
        return damaged

    def resumLeaves(self, partition: int, leaves: Iterable[int]) -> int:
        """
        Sum the digests of C{leaves} of C{partition}'s tree again from the
        entries they hold: for a caller that found a leaf differing from a
        peer's while their records did not. One pass over the partition.

        @return: how many leaves held another digest.
        """
        wanted = set(leaves)
        sums = dict.fromkeys(wanted, 0)
        for key, blob in self._parts[partition].items():
            leaf = leafHash(key) >> _LEAF_SHIFT
            if leaf in wanted:
                sums[leaf] += blobDigest(key, _shared(blob))
        tree = self.partitionTree(partition)
        return sum(tree.setLeaf(leaf, digest) for leaf, digest in sums.items())

    def _removeDamaged(self, partition: int, key: str, blob: bytes) -> None:
        """
        Remove C{blob}, the entry of C{key} in C{partition}, found damaged.
        Its digest in the partition's tree is that of the bytes it was
        stored with, which are gone: the tree cannot subtract it, so its
        leaf is summed again from the entries left in it (one pass over
        the partition, for an event that should never happen).
        """
        part = self._parts[partition]
        # Before the entry goes: a tree not built yet is built with it.
        tree = self.partitionTree(partition)
        del part[key]
        self._count -= 1
        self._referenced.discard(key)
        self._bytes -= self._size(key, blob)
        if blob[_FLAGS_AT] & FLAG_TOMBSTONE:
            self._tombstones -= 1
            self._partTombstones[partition] -= 1
        leaf = leafHash(key) >> _LEAF_SHIFT
        tree.entries -= 1
        tree.setLeaf(
            leaf,
            sum(
                blobDigest(other, _shared(held))
                for other, held in part.items()
                if leafHash(other) >> _LEAF_SHIFT == leaf
            ),
        )

    # Persistence

    def partitionItems(self, partition: int) -> list[tuple[str, bytes]]:
        """
        Every entry of C{partition} as the store keeps it (its encoded
        record with this replica's own flags), expired ones not dropped yet
        included: a copy, so a snapshot may write it out over many reactor
        turns while the partition changes.
        """
        return list(self._parts[partition].items())

    def install(self, partition: int, entries: dict[str, bytes]) -> int:
        """
        Take C{entries}, keys of C{partition} to entries as the store keeps
        them (L{partitionItems}), read back from disk: the dictionary itself
        becomes the partition when the partition is empty (a node starting
        up), else each entry is merged as a peer's would be. Nothing is
        journaled for the first case: the entries are on disk already.
        The partition's Merkle tree is built when first needed
        (L{buildTrees} builds them ahead).

        @return: how many entries were taken.
        """
        part = self._parts[partition]
        if part:
            merged = 0
            for key, blob in entries.items():
                merged += self.mergeEncoded(key, blob, partition=partition)
            return merged
        if not entries:
            return 0
        self._parts[partition] = entries
        self._trees[partition] = None
        count = len(entries)
        self._count += count
        self._ring.extend(entries)
        # Sizes summed without a Python loop; the loop below only looks at
        # each entry's flags and whether it has an expiry.
        size = (
            count * (ENTRY_OVERHEAD - HEADER_SIZE)
            + sum(map(len, entries))
            + sum(map(len, entries.values()))
        )
        # Tombstones counted, and entries with an expiry found, by C loops
        # too: the flags bytes gathered and mapped to 1 for a tombstone;
        # the expiry fields compared with zero.
        values = entries.values()
        tombstones = bytes(map(_flagsOf, values)).translate(_TOMBSTONE_BYTES).count(1)
        expiring = map(NO_EXPIRY.__ne__, map(_expiryBytesOf, values))
        for key, blob in compress(entries.items(), expiring):
            self._schedule(key, _HEADER.unpack_from(blob)[0])
        self._bytes += size
        self._tombstones += tombstones
        self._partTombstones[partition] += tombstones
        maxBytes = self.maxBytes
        if maxBytes is not None:
            while self._bytes > maxBytes:
                self._evictOne(protect="")
        return count

    def unbuiltTrees(self) -> list[int]:
        """
        The partitions with entries whose Merkle tree is not built yet.
        """
        trees = self._trees
        return [p for p, part in enumerate(self._parts) if part and trees[p] is None]

    def _buildTree(self, partition: int) -> MerkleTree:
        tree = self._trees[partition] = MerkleTree(TREE_DEPTH, TREE_FANOUT)
        update = tree.updateEncoded
        for key, blob in self._parts[partition].items():
            update(key.encode(), None, _shared(blob))
        return tree

    def buildTree(self, partition: int) -> None:
        """
        Build C{partition}'s Merkle tree now if it is not built yet.
        """
        if self._trees[partition] is None and self._parts[partition]:
            self._buildTree(partition)

    # Internals

    def _lapse(self, key: str, expired: bytes, stored: bytes) -> None:
        """
        Let C{expired} go, C{stored} being the entry under C{key} now (the
        same record, or an older one that C{expired} supersedes): what
        stays is a tombstone of C{expired}'s version, for the expiry
        tombstone time to live, if it replaced an older entry and that
        tombstone has not run out too, else nothing.
        Every replica that keeps one makes the same bytes, so their trees
        agree.
        """
        if expired[_FLAGS_AT] & _FLAG_REPLACED:
            expiresAtMs, timestamp, nodeId, contentHash, flags = _HEADER.unpack_from(
                expired
            )
            forgetAtMs = expiresAtMs + self._expiryTombstoneTtlMs
            if forgetAtMs > self.nowMs():
                flags = FLAG_TOMBSTONE | (flags & FLAG_COUNTER)
                if flags & FLAG_COUNTER:
                    # A counter's tombstone keeps its state (and its hash):
                    # copies of the same counter merge with it, and one
                    # whose expiry was changed later (a newer version)
                    # outlives it.
                    tombstone = (
                        _HEADER.pack(forgetAtMs, timestamp, nodeId, contentHash, flags)
                        + expired[HEADER_SIZE:]
                    )
                else:
                    tombstone = _HEADER.pack(
                        forgetAtMs, timestamp, nodeId, EMPTY_HASH, flags
                    )
                self._store(key, tombstone)
                return
        self._remove(key, stored)

    @staticmethod
    def _size(key: str, blob: bytes) -> int:
        return len(key) + len(blob) - HEADER_SIZE + ENTRY_OVERHEAD

    def _store(self, key: str, blob: bytes, shared: bytes | None = None) -> None:
        """
        Store C{blob} under C{key}; C{shared} is its L{_shared} form, if the
        caller has it.
        """
        partition = (
            _crc(key.encode(), 0) >> _PARTITION_SHIFT & _PARTITION_MASK
            if "{" not in key
            else partitionOf(key)
        )
        part = self._parts[partition]
        self._storeIn(
            partition,
            part,
            key,
            blob,
            part.get(key),
            _shared(blob) if shared is None else shared,
            _HEADER.unpack_from(blob)[0],
        )

    def _storeIn(
        self,
        partition: int,
        part: dict[str, bytes],
        key: str,
        blob: bytes,
        old: bytes | None,
        shared: bytes,
        expiresAtMs: int,
    ) -> None:
        """
        L{_store} for a caller that looked C{key} up already: C{part} is
        the entries of its C{partition}, C{old} what it holds for C{key},
        C{shared} the L{_shared} form of C{blob} and C{expiresAtMs} its
        expiry.
        """
        # _size and _shared inlined: this runs on every write.
        size = len(key) + len(blob) - HEADER_SIZE + ENTRY_OVERHEAD
        maxBytes = self.maxBytes
        if maxBytes is not None and size > maxBytes:
            raise ValueTooLarge(key)
        oldShared = None
        if old is None:
            self._ring.append(key)
            self._count += 1
        else:
            self._bytes -= len(key) + len(old) - HEADER_SIZE + ENTRY_OVERHEAD
            self._referenced.add(key)
            oldFlags = old[_FLAGS_AT]
            if oldFlags & FLAG_TOMBSTONE:
                self._tombstones -= 1
                self._partTombstones[partition] -= 1
            oldShared = (
                _withFlags(old, oldFlags & _KNOWN_FLAGS)
                if oldFlags & _FLAG_REPLACED
                else old
            )
        tree = self._trees[partition]
        if tree is None:
            # Before the change: the tree is of the entries as they were.
            tree = self._buildTree(partition)
        part[key] = blob
        tree.updateEncoded(key.encode(), oldShared, shared)
        if self.journal is not None:
            self.journal.stored(partition, key, blob)
        self._bytes += size
        if blob[_FLAGS_AT] & FLAG_TOMBSTONE:
            self._tombstones += 1
            self._partTombstones[partition] += 1
        # The old expiry is read only for a write that expires: a key keeps
        # its slot in the wheel while its expiry second stays the same.
        if expiresAtMs and (
            old is None or expiresAtMs // 1000 != _HEADER.unpack_from(old)[0] // 1000
        ):
            self._schedule(key, expiresAtMs)
        if len(self._ring) > 2 * self._count + _WHEEL_SLACK:
            self._compactRing()
        if maxBytes is not None:
            while self._bytes > maxBytes:
                self._evictOne(protect=key)

    def _schedule(self, key: str, expiresAtMs: int) -> None:
        second = expiresAtMs // 1000
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = []
            heapq.heappush(self._bucketHeap, second)
            if self._bucketHeap[0] == second:
                for observer in self._expiryObservers:
                    observer()
        bucket.append(key)
        self._wheelRefs += 1
        if self._wheelRefs > 2 * self._count + _WHEEL_SLACK:
            self._rebuildWheel()

    def _rebuildWheel(self) -> None:
        # Overwrites that move a key's expiry leave its old wheel slot
        # behind; rebuilding when those outnumber the entries keeps the wheel
        # proportional to the store at amortised constant cost per write.
        self._buckets = {}
        self._bucketHeap = []
        self._wheelRefs = 0
        for part in self._parts:
            for key, blob in part.items():
                expiresAtMs = _HEADER.unpack_from(blob)[0]
                if expiresAtMs:
                    self._schedule(key, expiresAtMs)

    def _compactRing(self) -> None:
        # Keys removed by expiry leave their ring slot behind, and a key
        # written again gets a second one; drop both kinds, keeping order.
        seen: set[str] = set()
        ring: deque[str] = deque()
        for key in self._ring:
            if key not in seen and key in self._part(key):
                seen.add(key)
                ring.append(key)
        self._ring = ring

    def _evictOne(self, protect: str) -> None:
        ring = self._ring
        referenced = self._referenced
        while ring:
            key = ring.popleft()
            blob = self._part(key).get(key)
            if blob is None:
                continue
            if key in referenced or (key == protect and self._count > 1):
                referenced.discard(key)
                ring.append(key)
                continue
            self._remove(key, blob)
            self.evictions += 1
            return
        raise AssertionError("byte budget exceeded by an empty store")

    def _remove(self, key: str, blob: bytes) -> None:
        encoded = key.encode()
        partition = (
            _crc(encoded, 0) >> _PARTITION_SHIFT & _PARTITION_MASK
            if "{" not in key
            else partitionOf(key)
        )
        tree = self._trees[partition]
        if tree is None:
            tree = self._buildTree(partition)
        del self._parts[partition][key]
        tree.updateEncoded(encoded, _shared(blob), None)
        self._count -= 1
        self._referenced.discard(key)
        self._bytes -= self._size(key, blob)
        if blob[_FLAGS_AT] & FLAG_TOMBSTONE:
            self._tombstones -= 1
            self._partTombstones[partition] -= 1
