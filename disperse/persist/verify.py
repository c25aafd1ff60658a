"""
Checking a stopped node's data directory (C{disperse verify --data-dir}):
every file read as a starting node would read it, nothing changed, and
what is wrong said file by file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from disperse.persist.datadir import DataDir
from disperse.persist.format import (
    ENTRY_KINDS,
    FILE_HEADER_SIZE,
    LOG_MAGIC,
    SNAPSHOT_MAGIC,
    FormatError,
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
    for _, segment in dataDir.segments():
        result.files.append(_check(segment, LOG_MAGIC, "log"))
    if dataDir.quarantineDir.is_dir():
        result.quarantined = sorted(p.name for p in dataDir.quarantineDir.iterdir())
    return result


def _check(path: Path, magic: bytes, kind: str) -> FileCheck:
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
    if damage is not None:
        check.problems.append(
            f"{damage.reason} at byte {damage.offset}: {len(data) - damage.offset}"
            " bytes after it unreadable"
        )
    elif kind == "snapshot" and not ended:
        check.problems.append("no end frame: the snapshot is cut short")
    return check
