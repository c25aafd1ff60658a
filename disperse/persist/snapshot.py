"""
Snapshots: the whole store written out, partition by partition, without a
fork and without stalling the reactor, after which the log segments it
replaces are deleted.

A snapshot starts by closing the log's segment (L{Log.roll}): every change
from then on is in segments numbered from the new one, which the snapshot
names as where replay starts after it. Then, for each partition in turn,
it copies the partition's entries (a list of references to immutable
bytes, so the copy is the partition at that instant) and writes them out
over as many reactor turns as it takes, each turn bounded in time and
followed by a pause as long, so that requests keep at least half the core.
Entries go out in batches (L{disperse.persist.format.entriesFrame}), so
that loading decodes a thousand at a time.
Replaying the log from the named segment over a snapshot taken this way
gives the store as it was last: each partition's copy was taken after the
roll, and every change after the roll is in the log, applied in order.

The file is written as C{NNN.snap.partial}, synced, renamed, and the
directory synced; only then are older snapshots and the segments before
the named one deleted. Expired entries and tombstones past their time are
left out, so they leave the disk here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from disperse.logs import logger
from disperse.persist.datadir import (
    PARTIAL_SUFFIX,
    DataDir,
    snapshotName,
    syncDirectory,
)
from disperse.persist.format import (
    BATCH_ENTRIES,
    SNAPSHOT_MAGIC,
    endFrame,
    entriesFrame,
    fileHeader,
)
from disperse.persist.log import Log, Syncer
from disperse.store.partition import PARTITION_COUNT
from disperse.store.record import HEADER, NO_EXPIRY
from disperse.store.store import Store

# The longest a slice of snapshot work runs before the reactor gets a turn:
# a request arriving meanwhile waits for the slice to end.
SLICE_SECONDS = 0.002
# Frames are gathered into writes of about this many bytes.
WRITE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class SnapshotResult:
    """
    A snapshot taken.

    @ivar sequence: its number, which is also the first log segment to
        replay after it.
    @ivar longestSlice: the longest reactor turn spent on it, in seconds.
    """

    sequence: int
    entries: int
    bytes: int
    seconds: float
    longestSlice: float
    segmentsDeleted: int
    startedAt: float


class SnapshotWriter:
    """
    Takes snapshots of one store into one data directory, one at a time.
    """

    log = logger()

    def __init__(
        self,
        dataDir: DataDir,
        store: Store,
        log: Log,
        clock: IReactorTime,
        syncer: Syncer,
        timer: Callable[[], float] = time.perf_counter,
        sliceSeconds: float = SLICE_SECONDS,
    ) -> None:
        self._dir = dataDir
        self._store = store
        self._log = log
        self._clock = clock
        self._syncer = syncer
        self._timer = timer
        self._slice = sliceSeconds
        self.running: Deferred[SnapshotResult] | None = None
        self._stopping = False

    def take(self) -> Deferred[SnapshotResult]:
        """
        Take a snapshot, or join the one running.
        """
        if self.running is not None:
            joined: Deferred[SnapshotResult] = Deferred()
            self.running.addBoth(_pass, joined)
            return joined
        self._stopping = False
        running = self.running = Deferred.fromCoroutine(self._take())

        def done(result: object) -> object:
            self.running = None
            return result

        running.addBoth(done)
        return running

    def stop(self) -> None:
        """
        Abandon the snapshot running, if any (the node is stopping).
        """
        self._stopping = True

    async def _take(self) -> SnapshotResult:
        store = self._store
        started = self._clock.seconds()
        startedTimer = self._timer()
        sequence = self._log.roll()
        final = self._dir.snapshotDir / snapshotName(sequence)
        partial = final.with_name(final.name + PARTIAL_SUFFIX)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        entries = batches = written = 0
        longest = 0.0
        noExpiry = NO_EXPIRY
        unpack = HEADER.unpack_from
        try:
            buffer: list[bytes] = [fileHeader(SNAPSHOT_MAGIC, sequence, sequence)]
            buffered = len(buffer[0])
            sliceStart = self._timer()
            for partition in range(PARTITION_COUNT):
                items = store.partitionItems(partition)
                if not items:
                    continue
                nowMs = store.nowMs()
                # Expired entries leave the disk here.
                kept = [
                    (key, blob)
                    for key, blob in items
                    if blob.startswith(noExpiry) or unpack(blob)[0] > nowMs
                ]
                for start in range(0, len(kept), BATCH_ENTRIES):
                    batch = kept[start : start + BATCH_ENTRIES]
                    frame = entriesFrame(partition, batch)
                    buffer.append(frame)
                    buffered += len(frame)
                    entries += len(batch)
                    batches += 1
                    if buffered >= WRITE_BYTES:
                        written += _writeAll(fd, b"".join(buffer))
                        buffer, buffered = [], 0
                    spent = self._timer() - sliceStart
                    if spent >= self._slice:
                        longest = max(longest, spent)
                        # As long off as on: requests get at least half
                        # the core while a snapshot runs.
                        await deferLater(self._clock, spent, _nothing)
                        if self._stopping:
                            raise Abandoned()
                        sliceStart = self._timer()
            buffer.append(endFrame(store.hlc.last, entries, batches))
            written += _writeAll(fd, b"".join(buffer))
            longest = max(longest, self._timer() - sliceStart)
        except BaseException:
            os.close(fd)
            partial.unlink(missing_ok=True)
            raise

        def finish() -> int:
            # Off the reactor thread: syncs, a rename and deletions of
            # segments that may be large.
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
            os.replace(partial, final)
            syncDirectory(self._dir.snapshotDir)
            return self._deleteReplaced(sequence)

        deleted = await self._syncer.run(finish)
        result = SnapshotResult(
            sequence=sequence,
            entries=entries,
            bytes=written,
            seconds=self._timer() - startedTimer,
            longestSlice=longest,
            segmentsDeleted=deleted,
            startedAt=started,
        )
        self.log.info(
            "snapshot {sequence}: {entries} entries, {bytes} bytes in {seconds:.3f} s"
            " (longest slice {slice:.1f} ms); {deleted} log segments deleted",
            sequence=sequence,
            entries=entries,
            bytes=written,
            seconds=result.seconds,
            slice=longest * 1000,
            deleted=deleted,
        )
        return result

    def _deleteReplaced(self, sequence: int) -> int:
        for number, path in self._dir.snapshots():
            if number < sequence:
                path.unlink()
        deleted = 0
        for number, path in self._dir.segments():
            if number < sequence:
                path.unlink()
                deleted += 1
        syncDirectory(self._dir.logDir)
        syncDirectory(self._dir.snapshotDir)
        return deleted


class Abandoned(Exception):
    """
    The node stopped while a snapshot was being written: it is not taken,
    and the log it would have replaced stays.
    """


def _pass(result: object, to: Deferred[SnapshotResult]) -> object:
    if isinstance(result, SnapshotResult):
        to.callback(result)
    elif isinstance(result, Failure):
        to.errback(result)
    return result


def _writeAll(fd: int, data: bytes) -> int:
    view = memoryview(data)
    done = 0
    while done < len(data):
        done += os.write(fd, view[done:])
    return done


def _nothing() -> None:
    return None
