"""
Persistence as a service of the node: opens the data directory, loads it
back, keeps the log and takes snapshots, and says how it is doing.

Start-up: the store's journal is the log from the first moment, so that
whatever the node is sent while it loads is logged (to a segment newer
than every one being read); the replica serves no reads of its own until
loading ends (L{disperse.cluster.replica.Replica.beginLoading}); the node
coordinates meanwhile, reading other replicas.

A snapshot is taken when the log has grown by half the snapshot before it
(and at least L{SNAPSHOT_MIN_LOG} bytes): a restart then reads at most that
much log, which loads slower than a snapshot (one frame per change against
thousands of entries a frame); when the log recovered from a failed disk
(the writes it refused meanwhile are in memory, not on disk); after loading
found damage; at a clean stop, when the log holds more than
L{SNAPSHOT_AT_STOP} bytes since the last one; and on request
(C{POST /persistence/snapshot}).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from disperse.logs import logger
from disperse.persist.datadir import DataDir
from disperse.persist.log import DiskUnavailable, Log, Syncer, syncFiles
from disperse.persist.recovery import Loader, LoadReport
from disperse.persist.snapshot import Abandoned, SnapshotResult, SnapshotWriter
from disperse.store.store import Store

_T = TypeVar("_T")

# The log must have grown by at least this much since the last snapshot
# before the next is taken (and by as much as that snapshot's size).
SNAPSHOT_MIN_LOG = 4 * 1024 * 1024
# A clean stop takes a snapshot first when the log has grown by more than
# this since the last: the next start loads it rather than the log.
SNAPSHOT_AT_STOP = 1024 * 1024
# How long after a failed snapshot the next is tried (unless asked for).
SNAPSHOT_RETRY = 60.0
# How often the log's size is looked at.
CHECK_INTERVAL = 5.0
# The Merkle trees of loaded partitions are built ahead of need, this many
# partitions per reactor turn.
TREES_PER_TURN = 8


# Sync durations: from a fast SSD's page flush to a disk in trouble.
SYNC_BOUNDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class LatencyHistogram:
    """
    Durations counted into fixed buckets (the last one past every bound).
    """

    def __init__(self, bounds: tuple[float, ...] = SYNC_BOUNDS) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)
        self.seconds = 0.0

    def record(self, seconds: float) -> None:
        self.buckets[bisect_left(self.bounds, seconds)] += 1
        self.seconds += seconds


class ThreadSyncer:
    """
    A L{Syncer} on a thread of its own: one, so that syncs run in order.
    """

    def __init__(self, reactor: IReactorThreads) -> None:
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="disperse-sync")

    def start(self) -> None:
        self._pool.start()

    def stop(self) -> None:
        self._pool.stop()

    def sync(self, fds: Sequence[int], close: Sequence[int]) -> Deferred[None]:
        return deferToThreadPool(self._reactor, self._pool, syncFiles, fds, close)

    def run(self, work: Callable[[], _T]) -> Deferred[_T]:
        return deferToThreadPool(self._reactor, self._pool, work)


class Persistence(Service):
    """
    The data directory of one node.

    @ivar loading: whether the data directory is still being loaded.
    @ivar report: what loading found, once it ended.
    """

    log = logger()

    def __init__(
        self,
        dataDir: DataDir,
        store: Store,
        clock: IReactorTime,
        syncer: Syncer,
        fsync: str = "everysec",
        timer: Callable[[], float] = time.perf_counter,
        snapshotMinLog: int = SNAPSHOT_MIN_LOG,
    ) -> None:
        self.dataDir = dataDir
        self.store = store
        self._clock = clock
        self._syncer = syncer
        self._timer = timer
        self._snapshotMinLog = snapshotMinLog
        self.journal = Log(dataDir, clock, syncer, fsync, timer=timer)
        self.journal.recovered = self._recovered
        self.snapshots = SnapshotWriter(
            dataDir, store, self.journal, clock, syncer, timer
        )
        self.loading = True
        self.loaded: Deferred[LoadReport] = Deferred()
        self.report: LoadReport | None = None
        self.lastSnapshot: SnapshotResult | None = None
        self.snapshotFailures = 0
        self._needSnapshot = False
        # No automatic snapshot before then: the last one failed.
        self._retryAt = 0.0
        self._logBytesAtSnapshot = 0
        self._snapshotBytes = 0
        self._check: LoopingCall | None = None
        self.syncLatency = LatencyHistogram()
        self.journal.syncLatency = self.syncLatency.record

    @property
    def diskFailures(self) -> int:
        """
        Damage loading found: files or parts of files not read, and
        entries that failed their content hash.
        """
        report = self.report
        if report is None:
            return 0
        return len(report.damaged) + report.corrupt

    @property
    def fsync(self) -> str:
        return self.journal.fsync

    # Life cycle

    def startService(self) -> None:
        super().startService()
        start = getattr(self._syncer, "start", None)
        if start is not None:
            start()
        segments = self.dataDir.segments()
        # Appends go to a segment after every one there is; loading reads
        # those before it.
        first = segments[-1][0] + 1 if segments else 1
        self.journal.open(first)
        self.store.journal = self.journal
        loader = Loader(
            self.dataDir,
            self.store,
            self._clock,
            self._timer,
            before=first,
        )
        loader.run().addCallbacks(self._loadedOk, self._loadFailed)
        self._check = LoopingCall(self._maybeSnapshot)
        self._check.clock = self._clock
        self._check.start(CHECK_INTERVAL, now=False)

    def _loadedOk(self, report: LoadReport) -> None:
        self.loading = False
        self.report = report
        _, self._snapshotBytes = self.dataDir.diskBytes()
        self.log.info(
            "loaded {entries} entries from {path} in {seconds:.3f} s ({records}"
            " records read, {rate:.0f}/s; snapshot {snapshot}, {segments} log"
            " segments){damage}",
            entries=report.entries,
            path=str(self.dataDir.path),
            seconds=report.seconds,
            records=report.records,
            rate=report.rate,
            snapshot=report.snapshot,
            segments=report.segments,
            damage="; damage: " + "; ".join(report.damaged) if report.damaged else "",
        )
        if report.damaged or report.corrupt:
            # The snapshot and log hold less than the store now: write out
            # what the store has, once it has been repaired a little.
            self._needSnapshot = True
        self._buildTrees()
        self.loaded.callback(report)

    def _loadFailed(self, failure: Failure) -> None:
        self.log.failure("loading the data directory failed", failure)
        self.loading = False
        self.loaded.errback(failure)

    def _buildTrees(self) -> None:
        pending = self.store.unbuiltTrees()

        def step() -> None:
            for _ in range(TREES_PER_TURN):
                if not pending:
                    return
                self.store.buildTree(pending.pop())
            self._clock.callLater(0, step)

        step()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._check is not None and self._check.running:
            self._check.stop()
        grown = self.journal.counters.bytes - self._logBytesAtSnapshot
        if (
            grown > SNAPSHOT_AT_STOP
            and not self.loading
            and self.writable
            and self.snapshots.running is None
        ):
            final = self.snapshot()
            final.addErrback(self._snapshotFailed)
            return final.addBoth(lambda _: self._close())
        return self._close()

    def _close(self) -> Deferred[None]:
        self.snapshots.stop()
        self.store.journal = None
        closed = self.journal.close()

        def release(result: object) -> object:
            stop = getattr(self._syncer, "stop", None)
            if stop is not None:
                stop()
            self.dataDir.close()
            return result

        return closed.addBoth(release)

    # Writes

    @property
    def writable(self) -> bool:
        return self.journal.failed is None

    def checkWritable(self) -> None:
        """
        @raise DiskUnavailable: while the log cannot write.
        """
        failed = self.journal.failed
        if failed is not None:
            raise failed

    def whenSynced(self) -> Deferred[None] | None:
        """
        See L{Log.whenSynced}.
        """
        return self.journal.whenSynced()

    # Snapshots

    def snapshot(self) -> Deferred[SnapshotResult]:
        """
        Take a snapshot now (or join the one running).

        @raise DiskUnavailable: while the log cannot write, or the data
            directory is still loading (a snapshot then would replace
            segments not read yet).
        """
        if self.loading:
            raise DiskUnavailable("the data directory is still loading")
        self.checkWritable()
        self._needSnapshot = False
        logBytes = self.journal.counters.bytes
        taking = self.snapshots.take()

        def taken(result: SnapshotResult) -> SnapshotResult:
            self.lastSnapshot = result
            self._snapshotBytes = result.bytes
            self._logBytesAtSnapshot = logBytes
            return result

        def failed(failure: Failure) -> Failure:
            self.snapshotFailures += 1
            self._needSnapshot = True
            # Each attempt rolls the log: a snapshot that keeps failing
            # (no room for it) must not leave a segment every few seconds.
            self._retryAt = self._clock.seconds() + SNAPSHOT_RETRY
            return failure

        return taking.addCallbacks(taken, failed)

    def _maybeSnapshot(self) -> None:
        if self.loading or self.snapshots.running is not None or not self.writable:
            return
        if self._clock.seconds() < self._retryAt:
            return
        grown = self.journal.counters.bytes - self._logBytesAtSnapshot
        if self._needSnapshot or grown >= max(
            self._snapshotMinLog, self._snapshotBytes // 2
        ):
            self.snapshot().addErrback(self._snapshotFailed)

    def _snapshotFailed(self, failure: Failure) -> None:
        if failure.check(Abandoned):
            self.log.info("a snapshot was abandoned: the node is stopping")
            return
        self.log.failure("a snapshot failed", failure)

    def _recovered(self) -> None:
        self._needSnapshot = True
        self._retryAt = 0.0
        self._clock.callLater(0, self._maybeSnapshot)

    # What it says

    def stats(self) -> dict[str, Any]:
        logBytes, snapshotBytes = self.dataDir.diskBytes()
        counters = self.journal.counters
        report = self.report
        last = self.lastSnapshot
        return {
            "dataDir": str(self.dataDir.path),
            "fsync": self.fsync,
            "loading": self.loading,
            "writable": self.writable,
            "error": None if self.journal.failed is None else str(self.journal.failed),
            "logBytes": logBytes,
            "snapshotBytes": snapshotBytes,
            "segment": self.journal.sequence,
            "logRecords": counters.records,
            "logBytesWritten": counters.bytes,
            "logSyncs": counters.syncs,
            "logLost": counters.lost,
            "logFailures": counters.failures,
            "load": None
            if report is None
            else {
                "seconds": report.seconds,
                "records": report.records,
                "recordsPerSecond": report.rate,
                "entries": report.entries,
                "snapshot": report.snapshot,
                "segments": report.segments,
                "damaged": report.damaged,
                "cut": report.cut,
                "corrupt": report.corrupt,
                "droppedBytes": report.droppedBytes,
            },
            "lastSnapshot": None
            if last is None
            else {
                "sequence": last.sequence,
                "entries": last.entries,
                "bytes": last.bytes,
                "seconds": last.seconds,
                "longestSliceSeconds": last.longestSlice,
                "segmentsDeleted": last.segmentsDeleted,
                "age": self._clock.seconds() - last.startedAt,
            },
            "snapshotRunning": self.snapshots.running is not None,
            "snapshotFailures": self.snapshotFailures,
        }
