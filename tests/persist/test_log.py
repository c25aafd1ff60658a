"""
The log (L{disperse.persist.log.Log}): one write per reactor turn, syncs
and what waits on them, and a disk that fails and comes back.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from disperse.persist.datadir import DataDir
from disperse.persist.format import FILE_HEADER_SIZE, Kind, scanFrames
from disperse.persist.log import DiskUnavailable, Log, syncFiles
from disperse.send import sendNow
from disperse.store import Record

from .helpers import NODE, NOW

BLOB = Record(b"value", 0, 1, 1).encode()
_T = TypeVar("_T")


class ControlledSyncer:
    """
    A syncer whose syncs complete when the test says.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Sequence[int], Sequence[int], Deferred[None]]] = []

    def sync(self, fds: Sequence[int], close: Sequence[int]) -> Deferred[None]:
        done: Deferred[None] = Deferred()
        self.calls.append((fds, close, done))
        return done

    def run(self, work: Callable[[], _T]) -> Deferred[_T]:
        return succeed(work())

    def complete(self) -> None:
        fds, close, done = self.calls.pop(0)
        syncFiles(fds, close)
        done.callback(None)


def _log(path: Path, fsync: str) -> tuple[Clock, ControlledSyncer, Log]:
    clock = Clock()
    clock.advance(NOW)
    syncer = ControlledSyncer()
    log = Log(DataDir.open(path, NODE), clock, syncer, fsync)
    log.open(1)
    return clock, syncer, log


def _segment(path: Path, sequence: int = 1) -> bytes:
    return (path / "log" / f"{sequence:016d}.log").read_bytes()


def test_oneWritePerTurn(tmp_path: Path) -> None:
    """
    Changes queue until the end of the reactor turn, then go out in one
    write, framed in order.
    """
    clock, _, log = _log(tmp_path, "no")
    log.stored(1, "a", BLOB)
    log.stored(2, "b", BLOB)
    log.dropped(1)
    assert len(_segment(tmp_path)) == FILE_HEADER_SIZE
    clock.advance(0)
    frames, _, damage = scanFrames(_segment(tmp_path), FILE_HEADER_SIZE)
    assert damage is None
    assert [(f.kind, f.key) for f in frames] == [
        (Kind.PUT, b"a"),
        (Kind.PUT, b"b"),
        (Kind.DROP, b""),
    ]
    assert log.counters.records == 3


def test_answersDoNotOvertakeTheWrite(tmp_path: Path) -> None:
    """
    An answer sent at once, before the end of the turn, may acknowledge
    what the log queued: the queued frames are written first (so that a
    crash right after the answer cannot lose them), and only once.
    """
    clock, _, log = _log(tmp_path, "everysec")
    log.stored(1, "a", BLOB)
    log.stored(2, "b", BLOB)
    transport = StringTransport()
    sendNow(transport, b"+OK\r\n")
    assert transport.value() == b"+OK\r\n"
    frames, _, _ = scanFrames(_segment(tmp_path), FILE_HEADER_SIZE)
    assert [f.key for f in frames] == [b"a", b"b"]
    clock.advance(0)
    log.stored(3, "c", BLOB)
    clock.advance(0)
    sendNow(transport, b"+OK\r\n")
    frames, _, _ = scanFrames(_segment(tmp_path), FILE_HEADER_SIZE)
    assert [f.key for f in frames] == [b"a", b"b", b"c"]
    assert log.counters.records == 3


def test_alwaysWaitsForTheSync(tmp_path: Path) -> None:
    """
    With C{always}, what waits on L{Log.whenSynced} is told once a sync
    that covers the write completed, not before; writes made while a sync
    runs share the next one.
    """
    clock, syncer, log = _log(tmp_path, "always")
    log.stored(1, "a", BLOB)
    first = log.whenSynced()
    assert first is not None
    fired: list[str] = []
    first.addCallback(lambda _: fired.append("first"))
    clock.advance(0)
    assert fired == [] and len(syncer.calls) == 1
    log.stored(1, "b", BLOB)
    log.stored(1, "c", BLOB)
    second = log.whenSynced()
    assert second is not None
    second.addCallback(lambda _: fired.append("second"))
    clock.advance(0)
    syncer.complete()
    assert fired == ["first"]
    # The second batch's sync starts as the first ends: one for both.
    assert len(syncer.calls) == 1
    syncer.complete()
    assert fired == ["first", "second"]


def test_otherModesDoNotWait(tmp_path: Path) -> None:
    for mode in ("everysec", "no"):
        _, _, log = _log(tmp_path / mode, mode)
        log.stored(1, "a", BLOB)
        assert log.whenSynced() is None


def test_everysec(tmp_path: Path) -> None:
    clock, syncer, log = _log(tmp_path, "everysec")
    log.stored(1, "a", BLOB)
    clock.advance(0)
    assert syncer.calls == []
    clock.advance(1)
    assert len(syncer.calls) == 1
    syncer.complete()
    clock.advance(1)
    assert syncer.calls == [], "nothing new written: no sync"


def test_diskFullRefusesAndRecovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A write that fails (no space) fails the log: the segment is cut back
    to whole frames, waiters are told, further changes are counted as lost;
    once the disk takes writes again the log goes on in a fresh segment
    and says it recovered.
    """
    clock, syncer, log = _log(tmp_path, "always")
    log.stored(1, "a", BLOB)
    clock.advance(0)
    syncer.complete()
    whole = len(_segment(tmp_path))
    realWrite = os.write
    full = True

    def write(fd: int, data: bytes | memoryview) -> int:
        if full:
            # Half goes out, then the disk is full.
            realWrite(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return realWrite(fd, data)

    monkeypatch.setattr(os, "write", write)
    recovered: list[bool] = []
    log.recovered = lambda: recovered.append(True)
    log.stored(1, "b", BLOB)
    waiting = log.whenSynced()
    assert waiting is not None
    failures: list[BaseException | None] = []

    def failed(failure: Failure) -> None:
        failures.append(failure.value)

    waiting.addErrback(failed)
    clock.advance(0)
    assert isinstance(log.failed, DiskUnavailable)
    assert len(failures) == 1 and isinstance(failures[0], DiskUnavailable)
    assert len(_segment(tmp_path)) == whole, "cut back to its last whole frame"
    log.stored(1, "c", BLOB)
    clock.advance(0)
    assert log.counters.lost == 2
    clock.advance(1)
    assert log.failed is not None and recovered == []
    full = False
    clock.advance(1)
    assert log.failed is None and recovered == [True]
    assert log.sequence == 2
    log.stored(1, "d", BLOB)
    clock.advance(0)
    frames, _, damage = scanFrames(_segment(tmp_path, 2), FILE_HEADER_SIZE)
    assert damage is None and [f.key for f in frames] == [b"d"]


def test_closeSeals(tmp_path: Path) -> None:
    _, syncer, log = _log(tmp_path, "everysec")
    log.stored(1, "a", BLOB)
    log.close()
    syncer.complete()
    frames, _, _ = scanFrames(_segment(tmp_path), FILE_HEADER_SIZE)
    assert [f.kind for f in frames] == [Kind.PUT, Kind.SEAL]


def test_diskFullAtStart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A disk that cannot take the first segment at start fails the log (the
    node starts refusing writes) rather than the start; it recovers later.
    """
    clock = Clock()
    clock.advance(NOW)
    log = Log(DataDir.open(tmp_path, NODE), clock, ControlledSyncer(), "everysec")
    realOpen = os.open
    full = True

    def openFile(path: str, flags: int, mode: int = 0o777) -> int:
        if full and str(path).endswith(".log"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return realOpen(path, flags, mode)

    monkeypatch.setattr(os, "open", openFile)
    log.open(5)
    assert isinstance(log.failed, DiskUnavailable)
    full = False
    clock.advance(1)
    assert log.failed is None and log.sequence == 5
