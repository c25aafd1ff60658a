"""
Snapshots (L{disperse.persist.snapshot}): taken over many reactor turns
while the store changes, they and the log after them load back the store
as it was last; they replace the segments before them.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from twisted.internet.task import Clock

from disperse.persist.datadir import DataDir
from disperse.persist.log import InlineSyncer
from disperse.persist.recovery import Loader
from disperse.persist.snapshot import SnapshotResult, SnapshotWriter
from disperse.store.partition import partitionOf

from .helpers import NODE, NOW, contents, newStore, oneTurn, openLog


def _reload(path: Path) -> dict[str, bytes]:
    clock = Clock()
    clock.advance(NOW)
    store = newStore(clock)
    dataDir = DataDir.open(path, NODE)
    report = Loader(dataDir, store, clock, time.perf_counter).runNow()
    dataDir.close()
    assert report.damaged == []
    return contents(store)


def test_snapshotWhileWriting(tmp_path: Path) -> None:
    clock = Clock()
    clock.advance(NOW)
    store = newStore(clock)
    dataDir, log = openLog(tmp_path, clock)
    store.journal = log
    for i in range(3000):
        store.put(f"key{i}", b"v%d" % i)
    store.put("gone", b"x", ttlMs=10)
    clock.advance(0)
    # Each look at the timer moves it a millisecond: slices end often.
    ticks = itertools.count()
    writer = SnapshotWriter(
        dataDir, store, log, clock, InlineSyncer(), lambda: next(ticks) / 1000
    )
    clock.advance(1)  # "gone" expires: left out of the snapshot.
    taking = writer.take()
    results: list[SnapshotResult] = []
    taking.addCallback(results.append)
    turns = 0
    while not results:
        # Changes between slices, to partitions written out already and
        # to partitions not reached yet.
        store.put(f"key{turns % 3000}", b"changed %d" % turns)
        store.delete(f"key{(turns * 7) % 3000}")
        if turns == 5:
            store.dropPartition(partitionOf("key10"))
        # Each slice is followed by a pause as long as it took.
        oneTurn(clock)
        clock.advance(0.005)
        turns += 1
        assert turns < 10_000
    assert turns > 10, "the snapshot took many turns"
    result = results[0]
    assert result.sequence == 2
    assert result.segmentsDeleted == 1
    assert [n for n, _ in dataDir.segments()] == [2]
    assert [n for n, _ in dataDir.snapshots()] == [2]
    log.close()
    dataDir.close()
    expected = contents(store)
    del expected["gone"]
    assert _reload(tmp_path) == expected


def test_secondSnapshotReplacesTheFirst(tmp_path: Path) -> None:
    clock = Clock()
    clock.advance(NOW)
    store = newStore(clock)
    dataDir, log = openLog(tmp_path, clock)
    store.journal = log
    writer = SnapshotWriter(dataDir, store, log, clock, InlineSyncer())
    store.put("a", b"1")
    writer.take()
    clock.advance(1)
    store.put("b", b"2")
    done = writer.take()
    clock.advance(1)
    assert done.called
    assert [n for n, _ in dataDir.snapshots()] == [3]
    assert [n for n, _ in dataDir.segments()] == [3]
    store.put("c", b"3")
    log.close()
    dataDir.close()
    assert _reload(tmp_path) == contents(store)
