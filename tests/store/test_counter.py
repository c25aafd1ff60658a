"""
Tests for L{disperse.store.counter}: the merge of records is a join
(commutative, associative, idempotent, on bytes), the encoding is canonical
and checked, increments follow Redis's rules, and counters read as Redis
prints them; and for the store's use of it: copies merged in any order end
in identical bytes and Merkle roots, an expired counter leaves a tombstone
of its state.
"""

from __future__ import annotations

from decimal import Decimal
from functools import reduce

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from disperse.store import Record, Store, renderedValue
from disperse.store.counter import (
    NO_VERSION,
    CounterError,
    CounterState,
    NotAFloat,
    NotAnInteger,
    NotFinite,
    WouldOverflow,
    counterRecord,
    decodeState,
    encodeState,
    increment,
    joinRecords,
    rank,
    render,
    supersedes,
    value,
)
from disperse.store.partition import PARTITION_COUNT
from disperse.store.record import FLAG_BINARY, FLAG_COUNTER, HEADER, contentHashOf

START = 1_700_000_000.0
NOW_MS = 1_700_000_000_000
INT64_MAX = 2**63 - 1

# A few versions, so that generated records share them often.
VERSIONS = [(10, 1), (10, 2), (20, 1), (30, 3)]
ACTORS = [1, 2, 2**64 - 1]


def _counter(
    baseVersion: tuple[int, int],
    decimal: bool,
    base: int,
    entries: dict[int, tuple[int, int]],
    header: tuple[int, int],
    tombstone: bool,
    expiresAtMs: int,
) -> Record:
    convert = (lambda n: Decimal(n) / 4) if decimal else (lambda n: n)
    state = CounterState(
        decimal,
        baseVersion,
        convert(base),
        {a: (convert(i), convert(d)) for a, (i, d) in entries.items()},
    )
    record = counterRecord(state, expiresAtMs, *header)
    return record._replace(tombstone=tombstone)


# Counters whose base is a function of their base version, as in real use
# (every copy based on a write has that write's number).
counters = st.builds(
    lambda baseVersion, decimal, entries, header, tombstone, expiry: _counter(
        baseVersion,
        decimal,
        baseVersion[0] - baseVersion[1],
        entries,
        header,
        tombstone,
        expiry,
    ),
    st.sampled_from([NO_VERSION, *VERSIONS]),
    st.booleans(),
    st.dictionaries(
        st.sampled_from(ACTORS),
        st.tuples(st.integers(0, 5), st.integers(0, 5)),
        max_size=3,
    ),
    st.sampled_from(VERSIONS),
    st.booleans(),
    st.sampled_from([0, NOW_MS + 1000]),
)
plains = st.builds(
    lambda version, value, tombstone: Record(
        b"" if tombstone else value, 0, version[0], version[1], tombstone
    ),
    st.sampled_from(VERSIONS),
    st.sampled_from([b"1", b"2", b"x"]),
    st.booleans(),
)
records = st.one_of(counters, plains)


class JoinTests(SynchronousTestCase):
    @settings(max_examples=500, deadline=None)
    @given(records, records)
    def test_commutative(self, a: Record, b: Record) -> None:
        self.assertEqual(joinRecords(a, b).encode(), joinRecords(b, a).encode())

    @settings(max_examples=500, deadline=None)
    @given(records, records, records)
    def test_associative(self, a: Record, b: Record, c: Record) -> None:
        self.assertEqual(
            joinRecords(joinRecords(a, b), c).encode(),
            joinRecords(a, joinRecords(b, c)).encode(),
        )

    @settings(max_examples=200, deadline=None)
    @given(records, records)
    def test_idempotent(self, a: Record, b: Record) -> None:
        self.assertEqual(joinRecords(a, a), a)
        joined = joinRecords(a, b)
        self.assertEqual(joinRecords(joined, a), joined)
        self.assertEqual(joinRecords(joined, b), joined)

    @settings(max_examples=200, deadline=None)
    @given(records, records)
    def test_supersedes(self, a: Record, b: Record) -> None:
        """
        A record supersedes another exactly when merging it in changes it.
        """
        self.assertEqual(supersedes(a, b), joinRecords(a, b) != b)

    def test_entriesMergeByLargestTotals(self) -> None:
        """
        Copies with the same base keep, per actor, the larger of each
        total: both sides' increments count, once each.
        """
        a = _counter((10, 1), False, 5, {1: (3, 0), 2: (1, 1)}, (40, 1), False, 0)
        b = _counter((10, 1), False, 5, {2: (4, 0), 3: (0, 2)}, (41, 2), False, 0)
        joined = joinRecords(a, b)
        state = decodeState(joined.value)
        self.assertEqual(dict(state.entries), {1: (3, 0), 2: (4, 1), 3: (0, 2)})
        self.assertEqual(value(state), 5 + 3 + 3 - 2)
        self.assertEqual(joined.version, (41, 2))

    def test_headerIsTheNewer(self) -> None:
        """
        The header (version, life, expiry) of the merge is the newer one's.
        """
        a = _counter((10, 1), False, 0, {1: (1, 0)}, (40, 1), False, 5000)
        b = _counter((10, 1), False, 0, {1: (2, 0)}, (39, 2), True, 0)
        joined = joinRecords(a, b)
        self.assertEqual(
            (joined.timestamp, joined.nodeId, joined.tombstone, joined.expiresAtMs),
            (40, 1, False, 5000),
        )
        self.assertEqual(renderedValue(joined), b"2")

    def test_newerBaseWinsWhole(self) -> None:
        """
        A counter based on a newer write supersedes one based on an older,
        whatever their headers' versions: the reset wins over increments
        that did not see it.
        """
        old = _counter((10, 1), False, 0, {1: (9, 0)}, (90, 1), False, 0)
        reset = _counter((20, 1), False, 7, {2: (1, 0)}, (21, 1), False, 0)
        self.assertEqual(joinRecords(old, reset), reset)

    def test_plainAgainstCounter(self) -> None:
        """
        A plain write newer than a counter's base resets it (even one older
        than its last increment); one older than, or the same as, its base
        is superseded by it.
        """
        counter = _counter((20, 1), False, 4, {1: (1, 0)}, (50, 1), False, 0)
        self.assertEqual(joinRecords(Record(b"9", 0, 30, 2), counter).value, b"9")
        delete = Record(b"", 0, 30, 2, tombstone=True)
        self.assertEqual(joinRecords(counter, delete), delete)
        self.assertEqual(joinRecords(counter, Record(b"4", 0, 20, 1)), counter)
        self.assertEqual(joinRecords(Record(b"4", 0, 10, 1), counter), counter)
        self.assertEqual(rank(counter), (20, 1))

    def test_integerAndDecimalCopiesMergeDecimal(self) -> None:
        """
        A copy made decimal by C{INCRBYFLOAT} merges with an integer copy
        into a decimal counter of both sides' totals, encoded once.
        """
        base = Record(b"5", 0, 10, 1)
        integer = increment(base, 1, 2, NOW_MS)
        decimal = increment(base, 2, Decimal("0.5"), NOW_MS)
        a = counterRecord(integer.state, 0, 11, 1)
        b = counterRecord(decimal.state, 0, 12, 2)
        joined = joinRecords(a, b)
        self.assertEqual(renderedValue(joined), b"7.5")
        self.assertEqual(joined, joinRecords(b, a))
        self.assertTrue(decodeState(joined.value).decimal)


class EncodingTests(SynchronousTestCase):
    def test_goldenBytes(self) -> None:
        """
        The encoding is part of the contract between nodes: an integer
        counter based on version (258, 3), from -2, with one actor.
        """
        state = CounterState(False, (258, 3), -2, {5: (300, 1)})
        self.assertEqual(
            encodeState(state).hex(),
            "00" + "0000000000000102" + "00000003" + "03" + "01"
            "0000000000000005" + "ac02" + "01",
        )
        decimal = CounterState(True, NO_VERSION, Decimal("-1.50"), {})
        # Coefficient -15 (zigzag 29), exponent -1 (zigzag 1), no actors.
        self.assertEqual(
            encodeState(decimal).hex(), "01" + "00" * 12 + "1d" + "01" + "00"
        )

    @settings(max_examples=300, deadline=None)
    @given(counters)
    def test_roundTripIsCanonical(self, record: Record) -> None:
        state = decodeState(record.value)
        self.assertEqual(encodeState(state), record.value)

    def test_equalNumbersEncodeAlike(self) -> None:
        """
        One encoding per number: 10, 10.0 and 1E+1 are the same bytes.
        """
        encodings = {
            encodeState(CounterState(True, NO_VERSION, Decimal(text), {1: (d, d)}))
            for text in ("10", "10.0", "1E+1")
            for d in [Decimal(text)]
        }
        self.assertEqual(len(encodings), 1)

    def test_malformedRefused(self) -> None:
        good = encodeState(CounterState(False, NO_VERSION, 0, {1: (1, 0), 2: (1, 0)}))
        self.assertEqual(decodeState(good).entries, {1: (1, 0), 2: (1, 0)})
        # Kind, base version, base, count, then two entries of ten bytes.
        header, first, second = good[:15], good[15:25], good[25:35]
        bad = {
            b"": "too short",
            b"\x00" * 12: "too short",
            b"\x02" + good[1:]: "unknown counter kind",
            good[:-1]: "truncated",
            good + b"\x00": "trailing bytes",
            header + second + first: "out of order",
            header + first + first: "out of order",
            good[:13] + b"\x80\x00" + good[14:]: "not minimal",
            b"\x00" + bytes(12) + b"\xff" * 40: "too long",
            # A decimal 10 written as coefficient 10, exponent 0.
            b"\x01" + bytes(12) + b"\x14\x00\x00": "not canonical",
        }
        for data, reason in bad.items():
            with self.assertRaisesRegex(ValueError, reason, msg=data.hex()):
                decodeState(data)


class RenderTests(SynchronousTestCase):
    def test_asRedisPrintsIncrByFloat(self) -> None:
        """
        Fixed point, 17 digits after the point, trailing zeros and point
        dropped, and no negative zero (Redis's C{ld2string} for
        C{INCRBYFLOAT}).
        """
        cases = {
            "10.6": b"10.6",
            "5.0e3": b"5000",
            "2.000": b"2",
            "-0.0": b"0",
            "1e20": b"100000000000000000000",
            "0.000000000000000001": b"0",
            "-0.000000000000000006": b"-0.00000000000000001",
            "1.234567890123456789012345678901234": b"1.23456789012345679",
            "3.0000000000000000000000000000000001": b"3",
        }
        for text, expected in cases.items():
            self.assertEqual(render(Decimal(text)), expected, text)
        self.assertEqual(render(-42), b"-42")

    def test_readsBackEqual(self) -> None:
        """
        What a counter reads as, set as a plain value and incremented by
        nothing, reads the same.
        """
        for text in ("0.1", "10.6", "-3.25", "1e20", "0.00000000000000001"):
            rendered = render(Decimal(text))
            again = increment(Record(rendered, 0, 1, 1), 1, Decimal(0), NOW_MS)
            self.assertEqual(render(again.value), rendered)

    def test_renderedValue(self) -> None:
        plain = Record(b"abc", 0, 1, 1)
        self.assertEqual(renderedValue(plain), b"abc")
        counter = counterRecord(increment(None, 1, 41, NOW_MS).state, 0, 2, 1)
        self.assertEqual(renderedValue(counter), b"41")


class IncrementTests(SynchronousTestCase):
    def step(
        self, current: Record | None, delta: int | Decimal, actor: int = 1
    ) -> tuple[Record, bytes]:
        done = increment(current, actor, delta, NOW_MS)
        timestamp = 100 if current is None else current.timestamp + 1
        record = counterRecord(done.state, done.expiresAtMs, timestamp, 1)
        self.assertEqual(render(done.value), renderedValue(record))
        return record, render(done.value)

    def test_missingKeyStartsAtZero(self) -> None:
        record, text = self.step(None, 5)
        self.assertEqual(text, b"5")
        self.assertEqual(rank(record), NO_VERSION)

    def test_plainValueIsTheBase(self) -> None:
        plain = Record(b"-7", NOW_MS + 9000, 50, 2)
        record, text = self.step(plain, 10)
        self.assertEqual(text, b"3")
        self.assertEqual(rank(record), (50, 2))
        # The key's time to live is kept.
        self.assertEqual(record.expiresAtMs, NOW_MS + 9000)
        self.assertEqual(joinRecords(record, plain), record)

    def test_deadRecordsRebase(self) -> None:
        """
        After a tombstone or an expired record, a counter starts from 0
        based on its version, so that it supersedes it.
        """
        for dead in (
            Record(b"", NOW_MS + 1, 60, 3, tombstone=True),
            Record(b"9", NOW_MS, 60, 3),
            _counter((10, 1), False, 0, {1: (4, 0)}, (60, 3), True, NOW_MS + 1),
            _counter((10, 1), False, 0, {1: (4, 0)}, (60, 3), False, NOW_MS),
        ):
            record, text = self.step(dead, 1)
            self.assertEqual(
                (text, rank(record), record.expiresAtMs), (b"1", (60, 3), 0)
            )
            self.assertEqual(joinRecords(dead, record), record)

    def test_resultSupersedesWhatWasRead(self) -> None:
        current, _ = self.step(Record(b"1", 0, 10, 1), 1, actor=2)
        for delta in (1, -1, Decimal("0.25"), 0):
            record, _ = self.step(current, delta, actor=3)
            self.assertEqual(joinRecords(record, current), record)

    def test_refusals(self) -> None:
        cases: list[tuple[bytes, int | Decimal, type[CounterError]]] = [
            (b"abc", 1, NotAnInteger),
            (b" 1", 1, NotAnInteger),
            (b"01", 1, NotAnInteger),
            (b"1.5", 1, NotAnInteger),
            (b"9223372036854775808", 1, NotAnInteger),
            (b"9223372036854775807", 1, WouldOverflow),
            (b"-9223372036854775808", -1, WouldOverflow),
            (b"abc", Decimal(1), NotAFloat),
            (b"1.5 ", Decimal(1), NotAFloat),
            (b"nan", Decimal(1), NotAFloat),
            (b"1", Decimal("inf"), NotFinite),
            (b"1e308", Decimal("1e308"), NotFinite),
        ]
        for value_, delta, error in cases:
            with self.assertRaises(error, msg=(value_, delta)):
                increment(Record(value_, 0, 1, 1), 1, delta, NOW_MS)

    def test_integerRange(self) -> None:
        record, text = self.step(Record(b"9223372036854775806", 0, 1, 1), 1)
        self.assertEqual(text, b"9223372036854775807")
        self.assertRaises(WouldOverflow, self.step, record, 1)
        record, text = self.step(record, -INT64_MAX - 1)
        self.assertEqual(text, b"-1")

    def test_mergedBeyondRangeIsNotAnInteger(self) -> None:
        """
        Increments merged from two sides may leave a counter outside a
        64-bit integer: it reads as its exact number, and only
        C{INCRBYFLOAT} takes it further.
        """
        base = Record(b"9223372036854775000", 0, 1, 1)
        a, _ = self.step(base, 800, actor=1)
        b, _ = self.step(base, 800, actor=2)
        joined = joinRecords(a, b)
        self.assertEqual(renderedValue(joined), b"9223372036854776600")
        self.assertRaises(NotAnInteger, self.step, joined, 1)
        _, text = self.step(joined, Decimal("0.5"))
        self.assertEqual(text, b"9223372036854776600.5")

    def test_decimalSteps(self) -> None:
        """
        Decimal steps add up exactly, as Redis's long double shows them:
        0.1 + 0.2 reads 0.3, 10.50 + 0.1 reads 10.6.
        """
        record, text = self.step(None, Decimal("0.1"))
        record, text = self.step(record, Decimal("0.2"))
        self.assertEqual(text, b"0.3")
        _, text = self.step(Record(b"10.50", 0, 1, 1), Decimal("0.1"))
        self.assertEqual(text, b"10.6")

    def test_integerStepOnADecimalCounter(self) -> None:
        """
        A decimal counter that reads as an integer takes integer steps, as
        Redis's stored text would; one that does not refuses them.
        """
        record, _ = self.step(Record(b"5", 0, 1, 1), Decimal("0.5"))
        self.assertRaises(NotAnInteger, self.step, record, 1)
        record, text = self.step(record, Decimal("0.5"))
        self.assertEqual(text, b"6")
        record, text = self.step(record, 1)
        self.assertEqual(text, b"7")
        _, text = self.step(record, -10)
        self.assertEqual(text, b"-3")

    def test_ownEntryOnly(self) -> None:
        """
        An increment changes its actor's entry alone, increments and
        decrements apart.
        """
        record, _ = self.step(None, 5, actor=1)
        record, _ = self.step(record, 3, actor=2)
        record, _ = self.step(record, -2, actor=1)
        self.assertEqual(
            dict(decodeState(record.value).entries), {1: (5, 2), 2: (3, 0)}
        )


START_CLOCK = NOW_MS / 1000


class StoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START_CLOCK)

    def store(self) -> Store:
        return Store(self.clock, 1)

    @settings(max_examples=100, deadline=None)
    @given(st.permutations(list(range(6))))
    def test_anyDeliveryOrderConverges(self, order: list[int]) -> None:
        """
        Copies of a counter from several coordinators, a reset and a plain
        value, merged in any order: identical bytes and Merkle roots.
        """
        base = Record(b"3", 0, 10, 1)
        copies: list[Record] = [base]
        for actor in (1, 2, 3):
            done = increment(base, actor, actor * 10, NOW_MS)
            copies.append(counterRecord(done.state, 0, 10 + actor, actor))
        done = increment(copies[1], 1, Decimal("0.5"), NOW_MS)
        copies.append(counterRecord(done.state, 0, 20, 1))
        copies.append(Record(b"", 0, 5, 2, tombstone=True))
        expected = reduce(joinRecords, copies)
        self.assertEqual(renderedValue(expected), b"63.5")
        stores = [self.store(), self.store()]
        for index in order:
            stores[0].merge("k", copies[index])
        for index in reversed(order):
            stores[1].merge("k", copies[index])
        for store in stores:
            self.assertEqual(store.encoded("k"), expected.encode())
        self.assertEqual(
            [stores[0].partitionRoot(p) for p in range(PARTITION_COUNT)],
            [stores[1].partitionRoot(p) for p in range(PARTITION_COUNT)],
        )

    def test_mergeReportsChange(self) -> None:
        store = self.store()
        done = increment(None, 1, 1, NOW_MS)
        record = counterRecord(done.state, 0, 10, 1)
        self.assertTrue(store.merge("k", record))
        self.assertFalse(store.merge("k", record))
        other = counterRecord(increment(None, 2, 1, NOW_MS).state, 0, 9, 2)
        # Older header, but an entry this copy lacks.
        self.assertTrue(store.merge("k", other))
        got = store.get("k")
        assert got is not None
        self.assertTrue(got.counter)
        self.assertEqual(renderedValue(got), b"2")

    def test_malformedCounterRefused(self) -> None:
        store = self.store()
        blob = (
            HEADER.pack(0, 10, 1, contentHashOf(b"\x07junk"), FLAG_COUNTER)
            + b"\x07junk"
        )
        self.assertRaises(ValueError, store.mergeEncoded, "k", blob)
        self.assertIsNone(store.record("k"))

    def test_counterIsNeverBinary(self) -> None:
        """
        A counter sent with the binary flag is stored without it: replicas
        hold the same bytes whatever a peer sent.
        """
        store = self.store()
        record = counterRecord(increment(None, 1, 1, NOW_MS).state, 0, 10, 1)
        blob = record.encode()
        flagged = (
            HEADER.pack(0, 10, 1, record.contentHash, FLAG_COUNTER | FLAG_BINARY)
            + record.value
        )
        store.mergeEncoded("k", flagged)
        self.assertEqual(store.encoded("k"), blob)

    def test_expiredCounterLeavesItsStateAsTombstone(self) -> None:
        """
        A counter that expires over an older entry leaves a tombstone that
        keeps its state: a copy with a later change of expiry (a newer
        header) outlives it, an older copy does not come back.
        """
        store = self.store()
        base = Record(b"1", NOW_MS + 500, 10, 1)
        store.merge("k", base)
        done = increment(base, 1, 1, NOW_MS)
        counter = counterRecord(done.state, done.expiresAtMs, 11, 1)
        store.merge("k", counter)
        self.clock.advance(1)
        self.assertIsNone(store.get("k"))
        dead = store.record("k")
        assert dead is not None
        self.assertTrue(dead.tombstone and dead.counter)
        self.assertEqual(dead.value, counter.value)
        self.assertFalse(store.merge("k", counter))
        persisted = counter._replace(expiresAtMs=0, timestamp=12)
        self.assertTrue(store.merge("k", persisted))
        got = store.get("k")
        assert got is not None
        self.assertEqual(renderedValue(got), b"2")
