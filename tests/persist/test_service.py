"""
Persistence in a node (L{disperse.persist.service.Persistence} wired by
L{disperse.node.Node.persist}): a restart gives the keys back, the replica
serves no reads while loading, C{always} acknowledges only synced writes,
and a failed disk refuses writes.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock

from disperse.cluster.coordinator import WriteOutcome
from disperse.cluster.peer.server import NotCaughtUp
from disperse.config import NodeConfig
from disperse.node import Loading, Node
from disperse.persist.datadir import DataDir
from disperse.persist.log import DiskUnavailable, InlineSyncer
from disperse.persist.service import (
    CHECK_INTERVAL,
    SNAPSHOT_AT_STOP,
    SNAPSHOT_RETRY,
    Persistence,
)
from disperse.persist.snapshot import SnapshotResult
from disperse.testing.node import makeNode

from .helpers import NOW
from .test_log import ControlledSyncer


def _node(
    path: Path,
    clock: Clock,
    fsync: str = "everysec",
    syncer: object = None,
    snapshotMinLog: int = 64 * 1024 * 1024,
) -> tuple[Node, Persistence]:
    node = makeNode(NodeConfig(nodeName="solo", handoffTimeout=0), clock)
    dataDir = DataDir.open(path, "solo")
    persistence = Persistence(
        dataDir,
        node.store,
        clock,
        syncer or ControlledSyncer(),  # type: ignore[arg-type]
        fsync,
        snapshotMinLog=snapshotMinLog,
    )
    node.persist(persistence)
    return node, persistence


def _clock() -> Clock:
    clock = Clock()
    clock.advance(NOW)
    return clock


def test_restartGivesTheKeysBack(tmp_path: Path) -> None:
    clock = _clock()
    syncer = ControlledSyncer()
    node, persistence = _node(tmp_path, clock, syncer=syncer)
    node.startService()
    clock.advance(0)
    assert not persistence.loading
    for i in range(50):
        node.put(f"k{i}", b"v%d" % i)
    node.delete("k3")
    clock.advance(0)
    stopped = node.stopService()
    while syncer.calls:
        syncer.complete()
    assert stopped.called

    clock = _clock()
    again, persistence = _node(tmp_path, clock)
    assert again.replica.loading
    again.startService()
    clock.advance(0)
    assert not persistence.loading and not again.replica.loading
    outcome = again.get("k7")
    assert not isinstance(outcome, Deferred)
    assert outcome.value is not None and outcome.value.value == b"v7"
    missing = again.get("k3")
    assert not isinstance(missing, Deferred) and missing.value is None
    assert persistence.report is not None and persistence.report.entries == 50


def test_noReplicaReadsWhileLoading(tmp_path: Path) -> None:
    """
    Until loading ends, the replica answers no peer's read: what it holds
    is not all it has.
    """
    clock = _clock()
    node, persistence = _node(tmp_path, clock)
    assert persistence.loading
    # Alone, it cannot read another replica instead: a clear refusal.
    with pytest.raises(Loading):
        node.get("k")
    with pytest.raises(NotCaughtUp):
        node.replica.fetchLocal(["k"])
    assert node.replica.countsLocal([0]) == [None]
    node.startService()
    clock.advance(0)
    assert node.replica.fetchLocal(["k"]) == [None]


def test_alwaysAcknowledgesOnceSynced(tmp_path: Path) -> None:
    clock = _clock()
    syncer = ControlledSyncer()
    node, _ = _node(tmp_path, clock, "always", syncer)
    node.startService()
    clock.advance(0)
    written = node.put("k", b"v")
    assert isinstance(written, Deferred)
    outcomes: list[WriteOutcome] = []
    written.addCallback(outcomes.append)
    clock.advance(0)
    assert outcomes == []
    syncer.complete()
    assert len(outcomes) == 1 and outcomes[0].ok


def test_failedDiskRefusesWrites(tmp_path: Path) -> None:
    clock = _clock()
    node, persistence = _node(tmp_path, clock)
    node.startService()
    clock.advance(0)
    persistence.journal.failed = DiskUnavailable("cannot write: No space left")
    with pytest.raises(DiskUnavailable):
        node.put("k", b"v")
    with pytest.raises(DiskUnavailable):
        node.replica.applyLocal([("k", b"")])
    outcome = node.get("k")
    assert not isinstance(outcome, Deferred) and outcome.ok


def test_failedSnapshotRetriedLater(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A snapshot that fails (no room for it) is tried again, but not at every
    check: each attempt rolls the log.
    """
    clock = _clock()
    # Any write makes a snapshot due.
    node, persistence = _node(tmp_path, clock, syncer=InlineSyncer(), snapshotMinLog=1)
    node.startService()
    clock.advance(0)
    node.put("k", b"v")
    attempts: list[int] = []

    def take() -> Deferred[SnapshotResult]:
        attempts.append(1)
        return fail(OSError(errno.ENOSPC, "No space left on device"))

    monkeypatch.setattr(persistence.snapshots, "take", take)
    clock.advance(CHECK_INTERVAL)
    assert len(attempts) == 1
    clock.pump([CHECK_INTERVAL] * int(SNAPSHOT_RETRY // CHECK_INTERVAL - 1))
    assert len(attempts) == 1
    clock.advance(CHECK_INTERVAL)
    assert len(attempts) == 2
    assert persistence.snapshotFailures == 2


def test_cleanStopTakesASnapshot(tmp_path: Path) -> None:
    """
    A clean stop with much logged since the last snapshot takes one, so
    that the next start reads it rather than the log.
    """
    clock = _clock()
    node, persistence = _node(tmp_path, clock, syncer=InlineSyncer())
    node.startService()
    clock.advance(0)
    for i in range(SNAPSHOT_AT_STOP // 1000 + 50):
        node.put(f"k{i}", b"x" * 1000)
    clock.advance(0)
    stopped: list[object] = []
    node.stopService().addBoth(stopped.append)
    while not stopped:
        clock.advance(0.01)
    assert [n for n, _ in DataDir.inspect(tmp_path).snapshots()] == [2]

    clock = _clock()
    again, persistence = _node(tmp_path, clock)
    again.startService()
    clock.advance(0)
    assert persistence.report is not None
    assert persistence.report.snapshot == 2
    assert len(again.store) == SNAPSHOT_AT_STOP // 1000 + 50
