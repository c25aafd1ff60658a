"""
The append-only log of one node: every change of its store, in segments,
group-committed once per reactor turn, synced off the reactor thread.

The store calls L{Log.stored} with each entry it keeps and L{Log.dropped}
for a partition it lets go (L{disperse.store.store.Journal}); the log
queues them and, at the end of the reactor turn (a C{callLater(0)}), frames
them (L{disperse.persist.format}) and writes them in one C{write}. Writing
goes to the kernel's page cache, which a process crash (kill -9) does not
lose; a sync (C{fsync}) makes it survive a power cut too, and is what the
modes differ in:

  - C{always}: after every write, a sync; a write is acknowledged (by a
    coordinator, or a replica to its coordinator) only once a sync covering
    it completed (L{Log.whenSynced}). Syncs are serialised, so writes made
    while one runs share the next: the cost is one sync per batch, not per
    write.
  - C{everysec}: a sync each second, if anything was written; a power cut
    can lose the last second or so of this node's writes.
  - C{no}: the kernel writes back when it likes (about 30 s on Linux).

Syncs run in a thread of their own (L{ThreadSyncer}) so that the reactor
never waits on the disk. A write or sync that fails (the disk is full, an
I/O error) puts the log in a failed state: the segment is cut back to its
last whole frame, what could not be written is counted, writes are refused
by the node (L{DiskUnavailable}) and the log tries again each second, in a
new segment; once that works it says so (L{Log.recovered}), and the node
takes a snapshot, which puts on disk what the failed writes missed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISDIR
from typing import Protocol, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from disperse.logs import logger
from disperse.persist.datadir import DataDir, segmentName
from disperse.persist.format import (
    FRESH,
    LOG_MAGIC,
    changeFrames,
    fileHeader,
    sealFrame,
)
from disperse.send import writeFirst, written

_T = TypeVar("_T")

FSYNC_MODES = ("always", "everysec", "no")
# A segment is closed and a new one started past this size: small enough
# that compaction frees space in steps, large enough that a busy node
# opens few files.
SEGMENT_BYTES = 64 * 1024 * 1024
# How often a failed log tries the disk again.
RETRY_INTERVAL = 1.0


class DiskUnavailable(Exception):
    """
    This node cannot write to its data directory (the disk is full, or an
    I/O error): it refuses writes until the disk works again.
    """


class Syncer(Protocol):
    """
    Runs the blocking parts of syncing somewhere other than the reactor.
    """

    def sync(self, fds: Sequence[int], close: Sequence[int]) -> Deferred[None]:
        """
        C{fsync} each of C{fds}, then close each of C{close}.
        """

    def run(self, work: Callable[[], _T]) -> Deferred[_T]:
        """
        Call C{work} (renames, deletions, syncs of directories) and fire
        with what it returns.
        """


def syncFiles(fds: Sequence[int], close: Sequence[int]) -> None:
    """
    Sync each of C{fds}, then close each of C{close}. A file is synced with
    C{fdatasync}: its data and what reading it back needs (its size), not
    its times, which on an appended file costs several times less than
    C{fsync} (C{bench/durability}); a directory with C{fsync}.
    """
    try:
        for fd in fds:
            if S_ISDIR(os.fstat(fd).st_mode):
                os.fsync(fd)
            else:
                os.fdatasync(fd)
    finally:
        for fd in close:
            os.close(fd)


class InlineSyncer:
    """
    A L{Syncer} that syncs at once, on the caller's thread: for tests and
    for the offline tools.
    """

    def sync(self, fds: Sequence[int], close: Sequence[int]) -> Deferred[None]:
        try:
            syncFiles(fds, close)
        except OSError as e:
            return fail(e)
        return succeed(None)

    def run(self, work: Callable[[], _T]) -> Deferred[_T]:
        try:
            return succeed(work())
        except OSError as e:
            return fail(e)


@dataclass
class LogCounters:
    # Frames and bytes written since start.
    records: int = 0
    bytes: int = 0
    # Syncs completed, and their durations (for the histogram).
    syncs: int = 0
    # Frames that never reached the disk: written while the log had failed.
    lost: int = 0
    failures: int = 0


class Log:
    """
    The log of one data directory, appending to a new segment from start.

    @ivar failed: why writes are refused, while they are.
    @ivar recovered: called when a failed log works again.
    @ivar syncLatency: called with each sync's duration, in seconds.
    """

    log = logger()

    def __init__(
        self,
        dataDir: DataDir,
        clock: IReactorTime,
        syncer: Syncer,
        fsync: str = "everysec",
        segmentBytes: int = SEGMENT_BYTES,
        timer: Callable[[], float] | None = None,
    ) -> None:
        if fsync not in FSYNC_MODES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_MODES)}")
        self._dir = dataDir
        self._clock = clock
        self._syncer = syncer
        self.fsync = fsync
        self._segmentBytes = segmentBytes
        self._timer = timer or clock.seconds
        self.counters = LogCounters()
        self.failed: DiskUnavailable | None = None
        self.recovered: Callable[[], object] = lambda: None
        self.syncLatency: Callable[[float], object] = lambda seconds: None

        self.sequence = 0
        self._fd: int | None = None
        self._path: Path | None = None
        # Bytes of the current segment that reached the kernel whole.
        self._size = 0
        self._pending: list[tuple[int, str | None, bytes | None]] = []
        self._flushCall: IDelayedCall | None = None
        # Every byte ever written, as a position; what the last sync covers.
        self._written = 0
        self._synced = 0
        self._syncing = False
        # Segments closed, not synced and closed yet (their descriptors).
        self._retired: list[int] = []
        # Deferreds to fire once a sync covers a position.
        self._waiters: list[tuple[int, Deferred[None]]] = []
        # Deferreds waiting for this turn's batch to be written.
        self._turnWaiters: list[Deferred[None]] = []
        self._loop: LoopingCall | None = None
        self._retry: LoopingCall | None = None

    # Life cycle

    def open(self, sequence: int) -> None:
        """
        Start appending to a new segment numbered C{sequence}.
        """
        self.sequence = sequence - 1
        try:
            self._openSegment(sequence, fresh=True)
        except OSError as e:
            # A full or failing disk at start: the node starts refusing
            # writes and tries again, as if the disk had failed later.
            self._fail(e)
        if self.fsync == "everysec":
            self._loop = LoopingCall(self._syncNow)
            self._loop.clock = self._clock
            self._loop.start(1.0, now=False)

    def close(self) -> Deferred[None]:
        """
        Write what is queued, sync and close everything.
        """
        if self._flushCall is not None and self._flushCall.active():
            self._flushCall.cancel()
        self._flushCall = None
        self.flush()
        for loop in (self._loop, self._retry):
            if loop is not None and loop.running:
                loop.stop()
        if self._fd is not None and self.failed is None:
            try:
                self._write(sealFrame())
            except OSError as e:
                self.log.warn("cannot seal the log segment at stop: {e}", e=e)
        fds = list(self._retired)
        self._retired = []
        if self._fd is not None:
            fds.append(self._fd)
            self._fd = None
        sync = fds if self.fsync != "no" else []
        done = self._syncer.sync(sync, fds)
        return done.addErrback(self._closeFailed)

    def _closeFailed(self, failure: Failure) -> None:
        self.log.failure("syncing the log at stop failed", failure)

    @property
    def segmentSize(self) -> int:
        return self._size

    # Appending: the store's journal

    def stored(self, partition: int, key: str, blob: bytes) -> None:
        self._pending.append((partition, key, blob))
        if self._flushCall is None:
            self._scheduleFlush()

    def dropped(self, partition: int) -> None:
        self._pending.append((partition, None, None))
        if self._flushCall is None:
            self._scheduleFlush()

    def _scheduleFlush(self) -> None:
        self._flushCall = self._clock.callLater(0, self.flush)
        # An answer sent before the end of the turn may acknowledge what
        # is queued: it must not leave before the queue reaches the kernel,
        # or a crash right after it would lose an acknowledged write.
        writeFirst(self.flush)

    def whenSynced(self) -> Deferred[None] | None:
        """
        With C{always}, a L{Deferred} that fires once everything appended
        so far is synced (or fails with L{DiskUnavailable}); with the other
        modes, L{None}: nothing to wait for.
        """
        if self.fsync != "always":
            return None
        if self.failed is not None:
            return fail(self.failed)
        waiter: Deferred[None] = Deferred()
        if self._pending:
            self._turnWaiters.append(waiter)
        elif self._synced >= self._written:
            waiter.callback(None)
        else:
            self._waiters.append((self._written, waiter))
            self._startSync()
        return waiter

    def flush(self) -> None:
        """
        Write the queued frames in one write: what the end of each reactor
        turn does.
        """
        call, self._flushCall = self._flushCall, None
        if call is not None and call.active():
            call.cancel()
        written(self.flush)
        pending = self._pending
        if not pending:
            return
        self._pending = []
        waiters = self._turnWaiters
        self._turnWaiters = []
        if self.failed is not None or self._fd is None:
            self.counters.lost += len(pending)
            for waiter in waiters:
                waiter.errback(self.failed or DiskUnavailable("the log is closed"))
            return
        data = changeFrames(pending)
        try:
            self._write(data)
        except OSError as e:
            self.counters.lost += len(pending)
            self._fail(e)
            for waiter in waiters:
                waiter.errback(self.failed or DiskUnavailable(str(e)))
            return
        self.counters.records += len(pending)
        self.counters.bytes += len(data)
        for waiter in waiters:
            self._waiters.append((self._written, waiter))
        if self.fsync == "always":
            self._startSync()
        if self._size >= self._segmentBytes:
            self.roll()

    def _write(self, data: bytes) -> None:
        fd = self._fd
        assert fd is not None
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                done += os.write(fd, view[done:])
        except OSError:
            # Cut the segment back to its last whole frame, so that what
            # is appended once the disk works again follows a whole frame.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._size)
            raise
        self._size += len(data)
        self._written += len(data)

    def roll(self) -> int:
        """
        Close the current segment (its sync goes with the next) and start
        the next: what a snapshot does first, so that every change after
        that point is in segments it does not replace.

        @return: the new segment's sequence number.
        """
        self.flush()
        if self.failed is not None:
            raise self.failed
        if self._fd is not None:
            try:
                self._write(sealFrame())
            except OSError as e:
                self._fail(e)
                raise DiskUnavailable(str(e)) from None
            self._retired.append(self._fd)
            self._fd = None
        self._openSegment(self.sequence + 1)
        if self.fsync != "no":
            self._startSync()
        else:
            fds, self._retired = self._retired, []
            self._syncer.sync([], fds)
        return self.sequence

    def _openSegment(self, sequence: int, fresh: bool = False) -> None:
        path = self._dir.logDir / segmentName(sequence)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            header = fileHeader(LOG_MAGIC, sequence, FRESH if fresh else 0)
            os.write(fd, header)
            # The segment's name is made durable by the next sync, with
            # the segment, off the reactor thread.
            self._retired.append(
                os.open(self._dir.logDir, os.O_RDONLY | os.O_DIRECTORY)
            )
        except OSError:
            os.close(fd)
            os.unlink(path)
            raise
        self._fd = fd
        self._path = path
        self.sequence = sequence
        self._size = len(header)

    # Syncing

    def _syncNow(self) -> None:
        if self._written > self._synced or self._retired:
            self._startSync()

    def _startSync(self) -> None:
        if self._syncing or self.failed is not None:
            return
        target = self._written
        retired, self._retired = self._retired, []
        fds = [*retired]
        if self._fd is not None:
            fds.append(self._fd)
        if not fds:
            return
        self._syncing = True
        started = self._timer()
        done = self._syncer.sync(fds, retired)
        done.addCallbacks(
            self._syncDone, self._syncFailed, callbackArgs=(target, started)
        )

    def _syncDone(self, _: object, target: int, started: float) -> None:
        self._syncing = False
        self.counters.syncs += 1
        self.syncLatency(max(0.0, self._timer() - started))
        self._synced = max(self._synced, target)
        waiters = self._waiters
        ready = [waiter for position, waiter in waiters if position <= target]
        if ready:
            self._waiters = [(p, w) for p, w in waiters if p > target]
            for waiter in ready:
                waiter.callback(None)
        if self._waiters or (self.fsync == "always" and self._written > self._synced):
            self._startSync()

    def _syncFailed(self, failure: Failure) -> None:
        self._syncing = False
        error = failure.value
        self._fail(error if isinstance(error, OSError) else OSError(str(error)))

    # Failing and recovering

    def _fail(self, error: OSError) -> None:
        self.counters.failures += 1
        if self.failed is None:
            self.failed = DiskUnavailable(
                f"cannot write to the data directory: {error.strerror or error}"
            )
            self.log.error(
                "the log cannot write ({error}): refusing writes until the disk"
                " works again, trying every {interval} s",
                error=error.strerror or str(error),
                interval=RETRY_INTERVAL,
            )
        waiters, self._waiters = self._waiters, []
        for _, waiter in waiters:
            waiter.errback(self.failed)
        if self._retry is None or not self._retry.running:
            self._retry = LoopingCall(self._tryAgain)
            self._retry.clock = self._clock
            self._retry.start(RETRY_INTERVAL, now=False)

    def _tryAgain(self) -> None:
        if self._syncing:
            return
        if self._fd is not None:
            self._retired.append(self._fd)
            self._fd = None
        fds, self._retired = self._retired, []
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        try:
            self._openSegment(self.sequence + 1, fresh=True)
            assert self._fd is not None
            os.fdatasync(self._fd)
        except OSError as e:
            self.log.debug("the disk still fails: {error}", error=e.strerror or e)
            self._fd = None
            return
        assert self._retry is not None
        self._retry.stop()
        self.failed = None
        self._synced = self._written
        self.log.info(
            "the log writes again (segment {sequence}); a snapshot will put"
            " on disk what failed meanwhile",
            sequence=self.sequence,
        )
        self.recovered()
