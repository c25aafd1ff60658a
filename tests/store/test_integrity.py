"""
Tests for the content hash of records (L{disperse.store.record}), the
store's handling of damaged entries and the scrub
(L{disperse.store.integrity}).
"""

from __future__ import annotations

import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from disperse.logs import fingerprint
from disperse.store import Record, Store
from disperse.store.counter import counterRecord, increment
from disperse.store.hlc import fromMs
from disperse.store.integrity import SOURCES, IntegrityCounters, Scrub, reportDamaged
from disperse.store.partition import PARTITION_COUNT, partitionOf
from disperse.store.record import (
    EMPTY_HASH,
    FLAGS_AT,
    HASH_AT,
    HEADER,
    HEADER_SIZE,
    intact,
)
from disperse.testing.damage import damageEntry, flipped

START = 1_700_000_000.0
NOW_MS = int(START * 1000)


class FormatTests(SynchronousTestCase):
    """
    The content hash in the record header.
    """

    def test_layout(self) -> None:
        """
        The header is expiry, timestamp, writer, content hash, flags: the
        flags stay last, the hash is the 8 bytes before them, big-endian.
        """
        self.assertEqual(HEADER_SIZE, 29)
        self.assertEqual(FLAGS_AT, HEADER_SIZE - 1)
        record = Record(b"value", 5, 6, 7, binary=True)
        blob = record.encode()
        self.assertEqual(
            blob[HASH_AT:FLAGS_AT], xxhash.xxh3_64_digest(b"value"), "xxh3_64"
        )
        self.assertEqual(HEADER.unpack_from(blob), (5, 6, 7, record.contentHash, 2))
        self.assertEqual(blob[HEADER_SIZE:], b"value")

    def test_hashFromTheValue(self) -> None:
        record = Record(b"value", 0, 1, 2)
        self.assertEqual(record.contentHash, xxhash.xxh3_64_intdigest(b"value"))
        self.assertEqual(Record(b"", 0, 1, 2, tombstone=True).contentHash, EMPTY_HASH)
        self.assertTrue(record.intact())

    def test_roundTrip(self) -> None:
        record = Record(b"value", 9, 8, 7, counter=False)
        decoded = Record.decode(record.encode())
        self.assertEqual(decoded, record)
        self.assertEqual(decoded.contentHash, record.contentHash)
        self.assertTrue(intact(record.encode()))

    def test_hashCarried(self) -> None:
        """
        A record given a hash keeps it, even one that does not match its
        value: the hash is the one it was accepted with, and the mismatch
        is what L{Record.intact} and L{intact} find.
        """
        record = Record(b"value", 0, 1, 2, contentHash=12345)
        self.assertEqual(record.contentHash, 12345)
        self.assertFalse(record.intact())
        self.assertFalse(intact(record.encode()))
        self.assertEqual(Record.decode(record.encode()).contentHash, 12345)

    def test_replace(self) -> None:
        """
        A new value gets its own hash; other changes keep the hash.
        """
        record = Record(b"value", 0, 1, 2)
        self.assertEqual(record._replace(timestamp=5).contentHash, record.contentHash)
        changed = record._replace(value=b"other")
        self.assertTrue(changed.intact())
        self.assertEqual(changed, Record(b"other", 0, 1, 2))
        self.assertEqual(record._replace(value=b"").contentHash, EMPTY_HASH)

    def test_shortBlob(self) -> None:
        self.assertFalse(intact(b""))
        self.assertFalse(intact(bytes(HEADER_SIZE - 1)))

    def test_largeValue(self) -> None:
        blob = Record(b"x" * 100_000, 0, 1, 2).encode()
        self.assertTrue(intact(blob))
        self.assertFalse(intact(flipped(blob, 50_000)))

    @settings(max_examples=200, deadline=None)
    @given(
        value=st.binary(max_size=64),
        data=st.data(),
    )
    def test_flippedByteFound(self, value: bytes, data: st.DataObject) -> None:
        """
        A byte of the value or of the hash flipped, in any bit pattern, is
        found by L{intact} and by L{Record.intact} after decoding.
        """
        blob = Record(value, 0, 1, 2).encode()
        at = data.draw(
            st.integers(HASH_AT, FLAGS_AT - 1)
            | st.integers(HEADER_SIZE, max(HEADER_SIZE, len(blob) - 1)),
            label="at",
        )
        if at >= len(blob):
            at = HASH_AT
        mask = data.draw(st.integers(1, 255), label="mask")
        damaged = bytearray(blob)
        damaged[at] ^= mask
        self.assertFalse(intact(bytes(damaged)))
        self.assertFalse(Record.decode(bytes(damaged)).intact())


def stores() -> tuple[Clock, Store, Store]:
    """
    Two stores on one clock: one to damage, one that stays clean.
    """
    clock = Clock()
    clock.advance(START)
    return clock, Store(clock, nodeId=1), Store(clock, nodeId=2)


def sameKeyPartition(count: int) -> list[str]:
    """
    C{count} keys of one partition, so that some share a Merkle leaf.
    """
    keys = [f"{{tag}}k{i}" for i in range(count)]
    assert len({partitionOf(key) for key in keys}) == 1
    return keys


class StoreDamageTests(SynchronousTestCase):
    """
    Damaged entries of a store: removed by L{Store.dropDamaged}, replaced
    by an intact copy, and the Merkle tree kept true.
    """

    def fill(self, *stores: Store, keys: list[str]) -> list[Record]:
        records = [
            Record(b"value %d" % i, 0, fromMs(NOW_MS + i), 9) for i in range(len(keys))
        ]
        for store in stores:
            for key, record in zip(keys, records, strict=True):
                store.merge(key, record)
        return records

    def test_newRecordHashes(self) -> None:
        """
        A record the store makes for a coordinator carries its value's
        hash; the stored blob does too.
        """
        _, store, _ = stores()
        record = store.newRecord(b"hello", ttlMs=1000)
        self.assertTrue(record.intact())
        self.assertEqual(store.newRecord(b"", tombstone=True).contentHash, EMPTY_HASH)
        store.put("k", b"hello")
        blob = store.encoded("k")
        assert blob is not None
        self.assertTrue(intact(blob))
        got = store.get("k")
        assert got is not None
        self.assertTrue(got.intact())
        store.delete("k")
        tombstone = store.encoded("k")
        assert tombstone is not None
        self.assertTrue(intact(tombstone))

    def test_dropDamaged(self) -> None:
        """
        A damaged entry is removed; the counts and the partition's Merkle
        tree are those of a store that never held it.
        """
        _, store, clean = stores()
        keys = sameKeyPartition(300)
        self.fill(store, clean, keys=keys)
        partition = partitionOf(keys[0])
        damageEntry(store, keys[7])
        damageEntry(store, keys[200], at=HASH_AT)
        self.assertEqual(store.dropDamaged(partition, keys), [keys[7], keys[200]])
        clean.dropPartition(partition)
        for i, key in enumerate(keys):
            if i not in (7, 200):
                record = store.record(key)
                assert record is not None
                clean.merge(key, record)
        self.assertIsNone(store.record(keys[7]))
        self.assertEqual(len(store), len(clean))
        self.assertEqual(store.stats().bytes, clean.stats().bytes)
        self.assertEqual(store.partitionRoot(partition), clean.partitionRoot(partition))
        self.assertEqual(
            store.partitionTree(partition).entries,
            clean.partitionTree(partition).entries,
        )
        # Nothing more to find.
        self.assertEqual(store.dropDamaged(partition, keys), [])

    def test_damagedTombstone(self) -> None:
        _, store, _ = stores()
        store.put("k", b"v")
        store.delete("k")
        damageEntry(store, "k")
        self.assertEqual(store.dropDamaged(partitionOf("k"), ["k"]), ["k"])
        self.assertEqual(store.stats().tombstones, 0)
        self.assertEqual(store.partitionRoot(partitionOf("k")), bytes(8))

    def test_repairOfTheSameVersion(self) -> None:
        """
        An intact copy of the very record a damaged entry holds replaces
        it, whichever value bytes compare larger: how a read repairs a
        replica it found damaged. The tree then matches a clean replica's.
        """
        for at in (-1, HASH_AT):
            _, store, clean = stores()
            keys = sameKeyPartition(50)
            records = self.fill(store, clean, keys=keys)
            damageEntry(store, keys[3], at=at)
            self.assertTrue(store.merge(keys[3], records[3]))
            self.assertEqual(store.record(keys[3]), records[3])
            self.assertEqual(store.integrity.replaced, 1)
            partition = partitionOf(keys[0])
            self.assertEqual(
                store.partitionRoot(partition), clean.partitionRoot(partition)
            )

    def test_olderCopyReplacesDamaged(self) -> None:
        """
        A damaged entry is worth nothing whatever its version: an older
        intact copy takes its place.
        """
        _, store, _ = stores()
        older = Record(b"old", 0, fromMs(NOW_MS), 9)
        newer = Record(b"new", 0, fromMs(NOW_MS + 5), 9)
        store.merge("k", newer)
        self.assertFalse(store.merge("k", older))
        damageEntry(store, "k")
        self.assertTrue(store.merge("k", older))
        self.assertEqual(store.record("k"), older)

    def test_sameCopyTwiceIsNoChange(self) -> None:
        _, store, _ = stores()
        record = Record(b"v", 0, fromMs(NOW_MS), 9)
        self.assertTrue(store.merge("k", record))
        self.assertFalse(store.merge("k", record))
        self.assertFalse(store.mergeEncoded("k", record.encode()))
        self.assertEqual(store.integrity.replaced, 0)

    def test_damagedCounterReplaced(self) -> None:
        _, store, _ = stores()
        counter = counterRecord(increment(None, 1, 5, NOW_MS).state, 0, 10, 1)
        store.merge("c", counter)
        damageEntry(store, "c")
        self.assertTrue(store.merge("c", counter))
        self.assertEqual(store.record("c"), counter)
        self.assertEqual(store.integrity.replaced, 1)

    def test_canonicalCounterRehashed(self) -> None:
        """
        A counter made canonical on its way in gets the hash of its
        canonical bytes.
        """
        _, store, _ = stores()
        counter = counterRecord(increment(None, 1, 5, NOW_MS).state, 0, 10, 1)
        flags = counter.encode()[FLAGS_AT] | 0x02
        blob = HEADER.pack(0, 10, 1, counter.contentHash, flags) + counter.value
        store.mergeEncoded("c", blob)
        stored = store.encoded("c")
        assert stored is not None
        self.assertTrue(intact(stored))


class ScrubTests(SynchronousTestCase):
    """
    L{Scrub}: a walk over every entry, a budget at a time.
    """

    def test_findsAndRemovesDamage(self) -> None:
        _, store, _ = stores()
        keys = [f"key{i}" for i in range(2000)]
        for key in keys:
            store.put(key, key.encode())
        damageEntry(store, "key5")
        damageEntry(store, "key1999")
        scrub = Scrub(store)
        while not store.integrity.scrubPasses:
            self.assertLessEqual(scrub.step(300), 300)
        self.assertIsNone(store.record("key5"))
        self.assertIsNone(store.record("key1999"))
        self.assertEqual(len(store), len(keys) - 2)
        counters = store.integrity
        self.assertEqual(counters.scrub, 2)
        # The step that ended the pass went on into the next one.
        self.assertGreaterEqual(counters.scrubbed, len(keys))
        self.assertLess(counters.scrubbed, len(keys) + 300)
        self.assertEqual(counters.failures(), {"peer": 0, "scrub": 2, "disk": 0})

    def test_passes(self) -> None:
        """
        A pass ends after the last partition; an empty store costs one
        pass a step, however large the budget.
        """
        _, store, _ = stores()
        scrub = Scrub(store)
        self.assertEqual(scrub.step(10_000), 0)
        self.assertEqual(scrub.partition, PARTITION_COUNT - 1)
        self.assertEqual(store.integrity.scrubPasses, 0)
        scrub.step(10_000)
        self.assertEqual(store.integrity.scrubPasses, 1)

    def test_storeChangesBetweenSteps(self) -> None:
        """
        Keys listed for a partition but removed before the walk reaches them
        are skipped; a key written meanwhile waits for the next pass.
        """
        _, store, _ = stores()
        keys = sameKeyPartition(100)
        for key in keys:
            store.put(key, b"v")
        partition = partitionOf(keys[0])
        scrub = Scrub(store)
        while scrub.partition != partition:
            scrub.step(1)
        store.dropPartition(partition)
        store.put("{tag}new", b"v")
        damageEntry(store, "{tag}new")
        self.assertEqual(scrub.step(99), 99)
        self.assertEqual(store.integrity.scrub, 0)
        self.assertIsNotNone(store.record("{tag}new"))
        # The next pass reaches it.
        scrub.step(1000)
        self.assertEqual(store.integrity.scrub, 1)
        self.assertIsNone(store.record("{tag}new"))


class CountersTests(SynchronousTestCase):
    def test_reported(self) -> None:
        """
        Each damaged record is counted by source and logged as a warning
        with the key's fingerprint (never the key), the member and what
        found it.
        """
        counters = IntegrityCounters()
        with capturedLogs() as events:
            reportDamaged(counters, "peer", "secret-key", "read", "b")
            reportDamaged(counters, "disk", "other", "load")
        self.assertEqual(counters.failures(), {"peer": 1, "scrub": 0, "disk": 1})
        warnings = [e for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(len(warnings), 2)
        first = warnings[0]
        self.assertEqual(first["key"], fingerprint(b"secret-key"))
        self.assertEqual(
            (first["member"], first["source"], first["what"]), ("b", "peer", "read")
        )
        self.assertNotIn("secret-key", formatEvent(first))
        self.assertEqual(warnings[1]["member"], "this node")

    def test_sources(self) -> None:
        self.assertEqual(SOURCES, ("peer", "scrub", "disk"))
        self.assertEqual(
            IntegrityCounters(peer=1, disk=3).failures(),
            {"peer": 1, "scrub": 0, "disk": 3},
        )
