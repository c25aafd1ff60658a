"""
Loading a data directory back: the newest snapshot, then the log segments
written since it, into the store, in bounded slices on the reactor.

What is read goes first into staging dictionaries, one per partition, in
the order it was written: a later frame of a key replaces an earlier one,
a partition drop empties its dictionary. Only once everything is read are
they handed to the store (L{disperse.store.store.Store.install}), a
partition at a time: an empty partition takes its dictionary as it is, and
one written to meanwhile (the node serves while it loads) merges it entry
by entry, by version, with what it holds.

Reading stops at the first frame that is cut short or damaged: what is
loaded is a prefix of what was written. A log segment cut at its end (a
write interrupted by a crash or a power cut) is cut back to its last whole
frame; damage anywhere else moves the rest of that segment and every later
one into the quarantine directory, so that the segments appended after this
start follow whole frames. Either way the node says what it dropped, and
its replicas give it back (anti-entropy). An entry whose frame is whole but
whose content hash does not match (L{disperse.store.record.intact}) is
skipped and counted.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO

from crc32c import crc32c
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from disperse.logs import logger
from disperse.persist.datadir import DataDir, segmentIsFresh
from disperse.persist.format import (
    ENTRY_KINDS,
    FILE_HEADER_SIZE,
    FRAME_HEAD,
    FRAME_HEAD_SIZE,
    LOG_MAGIC,
    MAX_FRAME,
    SNAPSHOT_MAGIC,
    Damage,
    FormatError,
    Kind,
    entriesOf,
    readFileHeader,
    scanFrames,
)
from disperse.store.partition import PARTITION_COUNT
from disperse.store.record import HASH_AT, HEADER_SIZE, contentHashOf, intact
from disperse.store.store import Store

# Bytes read from a file at a time.
CHUNK = 4 * 1024 * 1024
# A slice of loading ends once it has run this long, so that the reactor
# goes on serving while a large directory loads.
SLICE_SECONDS = 0.01

# An entry's version (timestamp) and content hash, where its header has
# them (disperse.store.record.HEADER), together and apart.
_VERSION_AND_HASH = struct.Struct(f">8xQ{HASH_AT - 16}xQ")
_STORED_HASH = struct.Struct(f">{HASH_AT}xQ")
_STORED_TIMESTAMP = struct.Struct(">8xQ")
_VALUE = itemgetter(slice(HEADER_SIZE, None))
_first = itemgetter(0)
_ENTRY_KINDS = frozenset(int(kind) for kind in ENTRY_KINDS)


@dataclass
class LoadReport:
    """
    What loading found.

    @ivar snapshot: the sequence number of the snapshot loaded, if any.
    @ivar segments: log segments read (whole or in part).
    @ivar records: frames read, of entries and drops.
    @ivar entries: entries the store holds from disk once loading ended.
    @ivar damaged: what was dropped and why, one line each.
    @ivar cut: log segments whose last frame a crash cut short, cut back
        (not damage: what a crash mid-write leaves).
    @ivar corrupt: entries skipped because their content hash did not match.
    @ivar droppedBytes: bytes of files not read because of damage.
    @ivar seconds: from the start of loading to its end.
    """

    snapshot: int | None = None
    segments: int = 0
    records: int = 0
    entries: int = 0
    damaged: list[str] = field(default_factory=list)
    cut: list[str] = field(default_factory=list)
    corrupt: int = 0
    droppedBytes: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


class Loader:
    """
    Loads one data directory into a store.
    """

    log = logger()

    def __init__(
        self,
        dataDir: DataDir,
        store: Store,
        clock: IReactorTime,
        timer: Callable[[], float],
        sliceSeconds: float = SLICE_SECONDS,
        repair: bool = True,
        before: int | None = None,
    ) -> None:
        """
        @param timer: a monotonic clock in seconds, for the slices' length.
        @param repair: cut back and quarantine damaged files (a starting
            node); L{False} only reads (the offline checker).
        @param before: read no log segment numbered this or higher: the
            starting node appends to those already.
        """
        self._dir = dataDir
        self._store = store
        self._clock = clock
        self._timer = timer
        self._slice = sliceSeconds
        self._repair = repair
        self._before = before
        self.report = LoadReport()
        self._staging: list[dict[str, bytes]] = [{} for _ in range(PARTITION_COUNT)]
        self._maxTimestamp = 0

    def run(self) -> Deferred[LoadReport]:
        """
        Load everything, a slice per reactor turn.
        """
        return Deferred.fromCoroutine(self._run())

    def runNow(self) -> LoadReport:
        """
        Load everything at once, without yielding to the reactor.
        """
        started = self._timer()
        for _ in self._steps():
            pass
        self.report.seconds = self._timer() - started
        return self.report

    async def _run(self) -> LoadReport:
        started = self._timer()
        sliceEnd = started + self._slice
        for _ in self._steps():
            if self._timer() >= sliceEnd:
                await deferLater(self._clock, 0, _nothing)
                sliceEnd = self._timer() + self._slice
        self.report.seconds = self._timer() - started
        return self.report

    # The work, as steps small enough to yield between

    def _steps(self) -> Iterator[None]:
        report = self.report
        if self._repair:
            for path in self._dir.removePartial():
                self.log.info("removed an unfinished snapshot: {path}", path=str(path))
        logFrom = 0
        snapshots = self._dir.snapshots()
        if snapshots:
            sequence, path = snapshots[-1]
            try:
                logFrom = yield from self._readSnapshot(path)
                report.snapshot = sequence
            except FormatError as e:
                self._damaged(f"snapshot {path.name} not read: {e}")
                report.droppedBytes += path.stat().st_size
        segments = [
            (n, p)
            for n, p in self._dir.segments()
            if n >= logFrom and (self._before is None or n < self._before)
        ]
        for index, (sequence, path) in enumerate(segments):
            report.segments += 1
            damage, sealed = yield from self._readSegment(sequence, path)
            later = segments[index + 1 :]
            # A segment may end early (torn, or without its seal) only where
            # its writer stopped: last of all, or before a fresh start.
            endOfRun = not later or segmentIsFresh(later[0][1])
            if damage is None and not sealed and not endOfRun:
                size = path.stat().st_size
                damage = Damage(size, "the segment ends without its seal", False)
            if damage is None:
                continue
            if damage.torn and endOfRun and damage.offset >= FILE_HEADER_SIZE:
                self._tornTail(path, damage)
                continue
            self._segmentDamaged(path, damage, later)
            break
        if self._maxTimestamp:
            self._store.hlc.observe(self._maxTimestamp)
        store = self._store
        for partition, entries in enumerate(self._staging):
            if entries:
                store.install(partition, entries)
                self._staging[partition] = {}
                yield None
        stats = store.stats()
        report.entries = stats.keys + stats.tombstones

    def _readSnapshot(self, path: Path) -> Generator[None, None, int]:
        """
        Stage the entries of the snapshot at C{path}.

        @return: (as the generator's value) the first log segment to read
            after it.
        @raise FormatError: if its header is not one this version writes.
        """
        ended = False

        def stage(data: bytes, final: bool) -> tuple[int, Damage | None]:
            nonlocal ended
            frames, used, damage = scanFrames(data, 0, final)
            if any(frame.kind == Kind.END for frame in frames):
                ended = True
            self._stage(frames)
            return used, damage

        with open(path, "rb") as f:
            header = readFileHeader(f.read(FILE_HEADER_SIZE), SNAPSHOT_MAGIC)
            damage = yield from _readChunks(f, stage)
        if damage is not None:
            self._damaged(
                f"snapshot {path.name} damaged at byte {damage.offset}"
                f" ({damage.reason}): the rest of it is not loaded"
            )
            self.report.droppedBytes += path.stat().st_size - damage.offset
        elif not ended:
            self._damaged(f"snapshot {path.name} has no end: it may be cut short")
        return header.logFrom

    def _readSegment(
        self, sequence: int, path: Path
    ) -> Generator[None, None, tuple[Damage | None, bool]]:
        """
        Stage the frames of the log segment at C{path}.

        @return: (as the generator's value) the damage that stopped
            reading, if any, and whether the segment ends with its seal.
        """
        with open(path, "rb") as f:
            head = f.read(FILE_HEADER_SIZE)
            try:
                header = readFileHeader(head, LOG_MAGIC)
                if header.sequence != sequence:
                    raise FormatError(f"numbered {header.sequence}, named {sequence}")
            except FormatError as e:
                return Damage(0, f"header: {e}", len(head) < FILE_HEADER_SIZE), False
            sealed = False

            def stage(data: bytes, final: bool) -> tuple[int, Damage | None]:
                nonlocal sealed
                used, damage, last = self._stageLog(data, final)
                if last:
                    sealed = last == Kind.SEAL
                return used, damage

            damage = yield from _readChunks(f, stage)
        return damage, sealed and damage is None

    def _stageLog(self, data: bytes, final: bool) -> tuple[int, Damage | None, int]:
        """
        Stage the frames of a log segment's C{data}: what L{scanFrames} and
        L{_stage} do, in one pass for the frame almost every record is (a
        whole entry whose checksum matches), through them for any other.

        @return: where reading stopped, the damage found there (as
            L{scanFrames}), and the kind of the last frame read (0: none).
        """
        staging = self._staging
        unpack = FRAME_HEAD.unpack_from
        entryUnpack = _VERSION_AND_HASH.unpack_from
        hashOf = contentHashOf
        entryKinds = _ENTRY_KINDS
        # The smallest frame length of an entry with a key of no length:
        # a whole record's header, and the fields after the length.
        smallest = FRAME_HEAD_SIZE - 8 + HEADER_SIZE
        bodyKey = FRAME_HEAD_SIZE - 4
        newest = self._maxTimestamp
        offset = records = corrupt = last = 0
        size = len(data)
        while offset < size:
            if size - offset >= FRAME_HEAD_SIZE:
                crc, length, kind, partition, keyLength = unpack(data, offset)
                end = offset + 8 + length
                if (
                    kind in entryKinds
                    and end <= size
                    and smallest + keyLength <= length <= MAX_FRAME
                    and partition < PARTITION_COUNT
                ):
                    body = data[offset + 4 : end]
                    if crc32c(body) == crc:
                        # As _stage does an entry (intact() inlined).
                        at = bodyKey + keyLength
                        timestamp, contentHash = entryUnpack(body, at)
                        if contentHash == hashOf(body[at + HEADER_SIZE :]):
                            key = body[bodyKey:at].decode()
                            staging[partition][key] = body[at:]
                            if timestamp > newest:  # noqa: PLR1730
                                newest = timestamp
                        else:
                            corrupt += 1
                        records += 1
                        last = kind
                        offset = end
                        continue
            # Anything else, one frame the long way.
            frames, offset, damage = scanFrames(data, offset, final, most=1)
            self._maxTimestamp = newest
            self._stage(frames)
            newest = self._maxTimestamp
            records += len(frames)
            if frames:
                last = frames[-1].kind
            if damage is not None or not frames:
                self._finishStage(records, corrupt, newest)
                return offset, damage, last
        self._finishStage(records, corrupt, newest)
        return offset, None, last

    def _finishStage(self, records: int, corrupt: int, newest: int) -> None:
        self._maxTimestamp = newest
        self.report.records += records
        self._reportCorrupt(corrupt)

    def _reportCorrupt(self, corrupt: int) -> None:
        if corrupt:
            self.report.corrupt += corrupt
            self.log.warn(
                "{count} entries read from disk failed their content check and"
                " were skipped; their replicas will give them back",
                count=corrupt,
            )

    def _stage(self, frames: Sequence[tuple[int, int, bytes, bytes, int]]) -> None:
        # Entry frames come here only when the one-pass log loader
        # (_stageLog) left them to the long way: rare, so not inlined.
        staging = self._staging
        newest = self._maxTimestamp
        corrupt = 0
        for kind, partition, key, payload, _ in frames:
            if kind in _ENTRY_KINDS:
                if not intact(payload):
                    corrupt += 1
                    continue
                staging[partition][key.decode()] = payload
                newest = max(newest, _STORED_TIMESTAMP.unpack_from(payload)[0])
            elif kind == Kind.DROP:
                staging[partition] = {}
            elif kind == Kind.ENTRIES:
                self._maxTimestamp = newest
                corrupt += self._stageBatch(partition, payload)
                newest = self._maxTimestamp
        self._maxTimestamp = newest
        self._reportCorrupt(corrupt)

    def _stageBatch(self, partition: int, payload: bytes) -> int:
        """
        Stage a snapshot's batch of entries of C{partition}, each checked
        against its content hash: decoded, checked and staged by C loops
        (msgpack, C{map}), the reason a snapshot loads faster than a log.

        @return: how many entries failed their content hash (skipped).
        """
        try:
            keys, entries = entriesOf(payload)
        except ValueError as e:
            self._damaged(f"a batch of partition {partition} not loaded: {e}")
            return 0
        self.report.records += len(entries)
        if not entries:
            return 0
        stored = list(map(_first, map(_STORED_HASH.unpack_from, entries)))
        computed = list(map(contentHashOf, map(_VALUE, entries)))
        corrupt = 0
        pairs: Iterable[tuple[str, bytes]] = zip(keys, entries, strict=True)
        if stored != computed:
            checked = zip(keys, entries, stored, computed, strict=True)
            pairs = [(key, entry) for key, entry, a, b in checked if a == b]
            corrupt = len(entries) - len(pairs)
        newest = max(map(_first, map(_STORED_TIMESTAMP.unpack_from, entries)))
        self._maxTimestamp = max(self._maxTimestamp, newest)
        self._staging[partition].update(pairs)
        return corrupt

    # Damage

    def _damaged(self, what: str) -> None:
        self.report.damaged.append(what)
        self.log.warn("{what}", what=what)

    def _tornTail(self, path: Path, damage: Damage) -> None:
        """
        Cut back the end of a segment its writer did not finish: a crash.
        """
        size = path.stat().st_size
        self.report.droppedBytes += size - damage.offset
        if self._repair:
            with open(path, "r+b") as f:
                f.truncate(damage.offset)
        # Not damage: what a crash mid-write leaves.
        what = (
            f"log segment {path.name} ends in a frame cut short at byte"
            f" {damage.offset} (a crash mid-write): {size - damage.offset} bytes"
            " cut"
        )
        self.report.cut.append(what)
        self.log.info("{what}", what=what)

    def _segmentDamaged(
        self, path: Path, damage: Damage, later: list[tuple[int, Path]]
    ) -> None:
        size = path.stat().st_size
        dropped = size - damage.offset + sum(p.stat().st_size for _, p in later)
        self.report.droppedBytes += dropped
        if damage.offset < FILE_HEADER_SIZE:
            what = (
                f"log segment {path.name} has no valid header ({damage.reason}):"
                f" {dropped} bytes in {1 + len(later)} segment(s) not loaded"
            )
            if self._repair:
                for _, damagedPath in [(0, path), *later]:
                    self._dir.quarantine(damagedPath)
                what += f", moved to {self._dir.quarantineDir}"
        else:
            what = (
                f"log segment {path.name} damaged at byte {damage.offset}"
                f" ({damage.reason}): {dropped} bytes in {1 + len(later)} segment(s)"
                " not loaded"
            )
            if self._repair:
                if damage.offset < size:
                    self._dir.quarantine(path, damage.offset)
                for _, laterPath in later:
                    self._dir.quarantine(laterPath)
                what += f", moved to {self._dir.quarantineDir}"
        self._damaged(what)


def _nothing() -> None:
    return None


def _readChunks(
    f: BinaryIO, stage: Callable[[bytes, bool], tuple[int, Damage | None]]
) -> Generator[None, None, Damage | None]:
    """
    Hand the rest of the open file C{f} to C{stage} a chunk at a time (with
    what the last chunk left of a frame cut at its end, and whether it is
    the last), yielding after each.

    @return: (as the generator's value) the damage C{stage} stopped at,
        its offset made one in the file, or L{None} at the end.
    """
    offset = f.tell()
    buffer = b""
    while True:
        chunk = f.read(CHUNK)
        data = buffer + chunk if buffer else chunk
        used, damage = stage(data, not chunk)
        yield None
        if damage is not None:
            damage.offset += offset
            return damage
        offset += used
        buffer = data[used:]
        if not chunk:
            return None
