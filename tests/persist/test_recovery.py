"""
Loading a data directory back (L{disperse.persist.recovery}), and above all
crash consistency: whatever a crash or a bad disk did to the files, what is
loaded is exactly the whole frames before the first damaged one, and never
a damaged record.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from disperse.persist.datadir import DataDir
from disperse.persist.format import FILE_HEADER_SIZE, Kind, entryFrame, scanFrames
from disperse.persist.recovery import Loader
from disperse.persist.verify import verify
from disperse.store import Record, Store
from disperse.store.partition import partitionOf

from .helpers import NOW, contents, newStore, openLog

KEYS = [f"k{i}" for i in range(12)] + ["{tag}a", "{tag}b"]

Frames = list[tuple[int, int, bytes, bytes, int]]

_op = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS), st.binary(max_size=40)),
    st.tuples(st.just("ttl"), st.sampled_from(KEYS), st.binary(max_size=8)),
    st.tuples(st.just("delete"), st.sampled_from(KEYS), st.just(b"")),
    st.tuples(st.just("drop"), st.sampled_from(KEYS), st.just(b"")),
    st.tuples(st.just("roll"), st.just(""), st.just(b"")),
)


def _write(path: Path, ops: list[tuple[str, str, bytes]]) -> Store:
    """
    Run C{ops} on a store whose journal is a log in C{path}; the store.
    """
    clock = Clock()
    clock.advance(NOW)
    store = newStore(clock)
    dataDir, log = openLog(path, clock)
    store.journal = log
    for op, key, value in ops:
        if op == "put":
            store.put(key, value)
        elif op == "ttl":
            store.put(key, value, ttlMs=3_600_000)
        elif op == "delete":
            store.delete(key)
        elif op == "drop":
            store.dropPartition(partitionOf(key))
        else:
            log.roll()
        clock.advance(0.001)
    log.close()
    dataDir.close()
    return store


def _load(path: Path) -> tuple[Store, Loader]:
    clock = Clock()
    clock.advance(NOW)
    store = newStore(clock)
    dataDir = DataDir.open(path, "node-a")
    loader = Loader(dataDir, store, clock, time.perf_counter)
    loader.runNow()
    dataDir.close()
    return store, loader


def _frames(path: Path) -> list[tuple[int, Frames]]:
    """
    Every segment's frames, as written.
    """
    dataDir = DataDir.inspect(path)
    out = []
    for sequence, segment in dataDir.segments():
        frames, _, damage = scanFrames(segment.read_bytes(), FILE_HEADER_SIZE)
        assert damage is None
        out.append((sequence, [tuple(f) for f in frames]))
    return out  # type: ignore[return-value]


def _replay(
    segments: list[list[tuple[int, int, bytes, bytes, int]]],
) -> dict[str, bytes]:
    """
    What loading these frames, in order, must give.
    """
    model: dict[str, bytes] = {}
    for frames in segments:
        for kind, partition, key, payload, _ in frames:
            if kind == Kind.DROP:
                for name in [k for k in model if partitionOf(k) == partition]:
                    del model[name]
            elif kind != Kind.SEAL:
                model[key.decode()] = payload
    return model


def test_loadsWhatWasWritten(tmp_path: Path) -> None:
    store = _write(
        tmp_path,
        [
            ("put", "a", b"1"),
            ("ttl", "b", b"2"),
            ("roll", "", b""),
            ("delete", "a", b""),
        ],
    )
    loaded, loader = _load(tmp_path)
    assert contents(loaded) == contents(store)
    assert loader.report.damaged == []
    assert loaded.get("b") is not None and loaded.get("a") is None
    assert loaded.partitionRoot(partitionOf("b")) == store.partitionRoot(
        partitionOf("b")
    )


def test_clockAheadOfEverythingLoaded(tmp_path: Path) -> None:
    """
    The store's clock is moved past every version loaded, so that a write
    after a restart with the clock set back still wins.
    """
    store = _write(tmp_path, [("put", "a", b"1")])
    newest = store.record("a")
    assert newest is not None
    loaded, _ = _load(tmp_path)
    assert loaded.hlc.now() > newest.timestamp


_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@_SETTINGS
@given(ops=st.lists(_op, min_size=1, max_size=25), data=st.data())
def test_truncatedAnywhere(
    ops: list[tuple[str, str, bytes]], data: st.DataObject
) -> None:
    """
    A segment cut at any byte (a write torn by a crash, a file that lost
    its end) loads the frames wholly before the cut, in its segment and
    every one before it; the segments after it are not loaded, since the
    one cut lost its seal.
    """
    with tempfile.TemporaryDirectory() as name:
        path = Path(name)
        _write(path, ops)
        segments = _frames(path)
        index = data.draw(st.integers(0, len(segments) - 1), label="segment")
        sequence, frames = segments[index]
        segment = DataDir.inspect(path).logDir / f"{sequence:016d}.log"
        size = segment.stat().st_size
        boundaries = [FILE_HEADER_SIZE, *(f[4] for f in frames)]
        cut = data.draw(
            st.one_of(st.sampled_from(boundaries), st.integers(0, size)), label="cut"
        )
        with open(segment, "r+b") as f:
            f.truncate(cut)
        kept = [f for f in frames if f[4] <= cut] if cut >= FILE_HEADER_SIZE else []
        if cut == size:
            expected = _replay([s[1] for s in segments])
        else:
            expected = _replay([*(s[1] for s in segments[:index]), kept])
        loaded, loader = _load(path)
        assert contents(loaded) == expected
        # Loading again finds no damage and the same entries: the cut
        # segment was cut back to whole frames, what followed set aside.
        again, loader = _load(path)
        assert loader.report.damaged == [] and loader.report.cut == []
        assert contents(again) == expected
        assert not verify(path).damaged


@_SETTINGS
@given(ops=st.lists(_op, min_size=1, max_size=25), data=st.data())
def test_flippedByte(ops: list[tuple[str, str, bytes]], data: st.DataObject) -> None:
    """
    A byte changed anywhere in a segment (bit rot, a bad write) stops
    loading at the frame that holds it: nothing damaged is loaded, nothing
    after it either, and the damage is reported.
    """
    with tempfile.TemporaryDirectory() as name:
        path = Path(name)
        _write(path, ops)
        segments = _frames(path)
        index = data.draw(st.integers(0, len(segments) - 1), label="segment")
        sequence, frames = segments[index]
        segment = DataDir.inspect(path).logDir / f"{sequence:016d}.log"
        raw = bytearray(segment.read_bytes())
        at = data.draw(st.integers(0, len(raw) - 1), label="at")
        raw[at] ^= data.draw(st.integers(1, 255), label="flip")
        segment.write_bytes(bytes(raw))
        kept = [f for f in frames if f[4] <= at] if at >= FILE_HEADER_SIZE else []
        expected = _replay([*(s[1] for s in segments[:index]), kept])
        loaded, loader = _load(path)
        assert contents(loaded) == expected
        # A length field changed to run past the end of the last segment
        # reads as a write a crash cut short: reported as cut.
        assert loader.report.damaged or loader.report.cut, "the damage is reported"
        again, loader = _load(path)
        assert loader.report.damaged == [] and loader.report.cut == []
        assert contents(again) == expected


def test_verifyReportsDamage(tmp_path: Path) -> None:
    _write(tmp_path, [("put", "a", b"1"), ("put", "b", b"2")])
    segment = DataDir.inspect(tmp_path).segments()[0][1]
    raw = bytearray(segment.read_bytes())
    raw[-3] ^= 1
    segment.write_bytes(bytes(raw))
    result = verify(tmp_path)
    assert result.damaged
    assert "checksum" in result.files[0].problems[0]


def test_verifyTellsACrashFromDamage(tmp_path: Path) -> None:
    """
    The last segment cut inside a record is what a crash mid-write leaves:
    noted, not damage (exit status 0); a segment before a later one of the
    same run that lost its end is damage.
    """
    _write(tmp_path, [("put", "a", b"1"), ("roll", "", b""), ("put", "b", b"2")])
    segments = DataDir.inspect(tmp_path).segments()
    last = segments[-1][1]
    last.write_bytes(last.read_bytes()[:-5])
    result = verify(tmp_path)
    assert not result.damaged
    assert "a crash mid-write" in result.files[-1].notes[0]
    first = segments[0][1]
    first.write_bytes(first.read_bytes()[: FILE_HEADER_SIZE + 10])
    result = verify(tmp_path)
    assert result.damaged


def _emptyLoader() -> Loader:
    clock = Clock()
    clock.advance(NOW)
    loader = Loader.__new__(Loader)
    Loader.__init__(
        loader, DataDir.__new__(DataDir), newStore(clock), clock, time.perf_counter
    )
    return loader


@_SETTINGS
@given(
    ops=st.lists(_op, min_size=1, max_size=20),
    data=st.data(),
)
def test_fastLogPathAsTheLongWay(
    ops: list[tuple[str, str, bytes]], data: st.DataObject
) -> None:
    """
    Loading a log segment's bytes in one pass (L{Loader._stageLog}) stages,
    counts and stops exactly as scanning them (L{scanFrames}) and staging
    the frames would, whatever was done to the bytes.
    """
    with tempfile.TemporaryDirectory() as name:
        path = Path(name)
        store = _write(path, ops)
        raw = b"".join(
            segment.read_bytes()[FILE_HEADER_SIZE:]
            for _, segment in DataDir.inspect(path).segments()
        )
    if data.draw(st.booleans(), label="a damaged value"):
        # Whole frame, checksum right, content hash wrong: skipped, counted.
        record = Record(b"value", 0, 9, 1).encode()
        raw += entryFrame(5, b"bad", record[:-1] + b"V")
    damaged = bytearray(raw)
    if damaged and data.draw(st.booleans(), label="flip"):
        at = data.draw(st.integers(0, len(damaged) - 1), label="at")
        damaged[at] ^= data.draw(st.integers(1, 255), label="by")
    cut = data.draw(st.integers(0, len(damaged)), label="cut")
    blob = bytes(damaged[:cut])
    final = data.draw(st.booleans(), label="final")
    fast, slow = _emptyLoader(), _emptyLoader()
    used, damage, last = fast._stageLog(blob, final)
    frames, slowUsed, slowDamage = scanFrames(blob, 0, final)
    slow._stage(frames)
    slow.report.records += len(frames)
    assert used == slowUsed
    assert (damage is None) == (slowDamage is None)
    if damage is not None and slowDamage is not None:
        assert (damage.offset, damage.torn) == (slowDamage.offset, slowDamage.torn)
    assert last == (frames[-1].kind if frames else 0)
    assert fast._staging == slow._staging
    assert fast._maxTimestamp == slow._maxTimestamp
    assert (fast.report.records, fast.report.corrupt) == (
        slow.report.records,
        slow.report.corrupt,
    )
    assert store is not None
