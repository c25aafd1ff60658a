"""
Checking a stopped node's data directory (C{disperse verify --data-dir}):
every file read as a starting node would read it, nothing changed, and
what is wrong said file by file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from disperse.persist.datadir import DataDir, segmentIsFresh
from disperse.persist.format import (
    ENTRY_KINDS,
    FILE_HEADER_SIZE,
    LOG_MAGIC,
    SNAPSHOT_MAGIC,
    FormatError,
    Frame,
    Kind,
    entriesOf,
    readFileHeader,
    scanFrames,
)
from disperse.store.record import intact

_ENTRY_KINDS = frozenset(int(kind) for kind in ENTRY_KINDS)


@dataclass
class FileCheck:
    """
    What one file holds, and what is wrong with it.
    """

    path: str
    kind: str
    bytes: int
    frames: int = 0
    entries: int = 0
    problems: list[str] = field(default_factory=list)
    # What is not damage but worth saying: the end of a log segment a
    # crash cut short, which a starting node cuts back.
    notes: list[str] = field(default_factory=list)


@dataclass
class Verification:
    path: str
    node: str
    files: list[FileCheck] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)

    @property
    def damaged(self) -> bool:
        return any(check.problems for check in self.files)


def verify(path: str | Path) -> Verification:
    """
    Check the data directory at C{path}.

    @raise disperse.persist.datadir.DataDirError: if it is not one.
    """
    dataDir = DataDir.inspect(path)
    identity = dataDir.identity()
    result = Verification(str(dataDir.path), str(identity.get("node")))
    snapshots = dataDir.snapshots()
    for _, snapshot in snapshots:
        result.files.append(_check(snapshot, SNAPSHOT_MAGIC, "snapshot"))
    segments = dataDir.segments()
    for index, (_, segment) in enumerate(segments):
        later = segments[index + 1 :]
        # As loading judges it: a segment may end early only where its
        # writer stopped, last of all or before a fresh start.
        endOfRun = not later or segmentIsFresh(later[0][1])
        result.files.append(_check(segment, LOG_MAGIC, "log", endOfRun))
    if dataDir.quarantineDir.is_dir():
        result.quarantined = sorted(p.name for p in dataDir.quarantineDir.iterdir())
    return result


def _sealed(frames: list[Frame]) -> bool:
    return bool(frames) and frames[-1].kind == Kind.SEAL


def _check(path: Path, magic: bytes, kind: str, endOfRun: bool = True) -> FileCheck:
    data = path.read_bytes()
    check = FileCheck(path.name, kind, len(data))
    try:
        readFileHeader(data[:FILE_HEADER_SIZE], magic)
    except FormatError as e:
        check.problems.append(f"header: {e}")
        return check
    frames, _, damage = scanFrames(data, FILE_HEADER_SIZE)
    check.frames = len(frames)
    ended = False
    for frame in frames:
        if frame.kind in _ENTRY_KINDS:
            check.entries += 1
            if not intact(frame.payload):
                check.problems.append(
                    f"an entry failing its content hash, ending at byte {frame.end}"
                )
        elif frame.kind == Kind.ENTRIES:
            try:
                _, batch = entriesOf(frame.payload)
            except ValueError as e:
                check.problems.append(f"{e}, ending at byte {frame.end}")
                continue
            check.entries += len(batch)
            damaged = sum(not intact(entry) for entry in batch)
            if damaged:
                check.problems.append(
                    f"{damaged} entries failing their content hash in the batch"
                    f" ending at byte {frame.end}"
                )
        elif frame.kind == Kind.END:
            ended = True
    if damage is not None and damage.torn and kind == "log" and endOfRun:
        check.notes.append(
            f"ends in a record cut short at byte {damage.offset} (a crash"
            f" mid-write): a starting node cuts the last"
            f" {len(data) - damage.offset} bytes"
        )
    elif damage is not None:
        check.problems.append(
            f"{damage.reason} at byte {damage.offset}: {len(data) - damage.offset}"
            " bytes after it unreadable"
        )
    elif kind == "snapshot" and not ended:
        check.problems.append("no end frame: the snapshot is cut short")
    elif (
        kind == "log" and not endOfRun and not (frames and frames[-1].kind == Kind.SEAL)
    ):
        check.problems.append("ends without its seal: the segment lost its end")
    return check
