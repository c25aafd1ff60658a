"""
A node's data directory: its identity file, its lock, and where its log
segments and snapshots live. Blocking file I/O, done at start-up and by
the offline checker (L{disperse.persist.verify}), never on a busy reactor.

    DIR/disperse.json      format version and the node it belongs to
    DIR/lock               held (flock) by the one process using DIR
    DIR/log/NNNNNNNNNNNNNNNN.log        log segments, in order
    DIR/snapshots/NNNNNNNNNNNNNNNN.snap snapshots; the newest is loaded
    DIR/quarantine/        damaged bytes moved aside at start-up
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from pathlib import Path
from typing import IO

from disperse.persist.format import (
    FILE_HEADER_SIZE,
    FORMAT_VERSION,
    FRESH,
    LOG_MAGIC,
    FormatError,
    readFileHeader,
)

IDENTITY = "disperse.json"
LOCK = "lock"
LOG_DIR = "log"
SNAPSHOT_DIR = "snapshots"
QUARANTINE_DIR = "quarantine"
LOG_SUFFIX = ".log"
SNAPSHOT_SUFFIX = ".snap"
PARTIAL_SUFFIX = ".partial"


class DataDirError(Exception):
    """
    The data directory cannot be used: the message says why, in one line.
    """


def segmentName(sequence: int) -> str:
    return f"{sequence:016d}{LOG_SUFFIX}"


def snapshotName(sequence: int) -> str:
    return f"{sequence:016d}{SNAPSHOT_SUFFIX}"


def _numbered(directory: Path, suffix: str) -> list[tuple[int, Path]]:
    found = []
    for path in directory.iterdir():
        stem = path.name[: -len(suffix)]
        if path.name.endswith(suffix) and stem.isdigit():
            found.append((int(stem), path))
    return sorted(found)


def segmentIsFresh(path: Path) -> bool:
    """
    Whether the log segment at C{path} was started fresh (by a node starting,
    or a log whose disk failed), so that the one before it may end early;
    not when its header cannot be read.
    """
    with open(path, "rb") as f:
        head = f.read(FILE_HEADER_SIZE)
    try:
        return readFileHeader(head, LOG_MAGIC).logFrom == FRESH
    except FormatError:
        return False


def syncDirectory(path: Path) -> None:
    """
    Make the names in C{path} (a file created, renamed or removed) durable.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DataDir:
    """
    An open data directory of one node, locked against other processes.
    """

    def __init__(self, path: Path, lock: IO[str] | None) -> None:
        self.path = path
        self.logDir = path / LOG_DIR
        self.snapshotDir = path / SNAPSHOT_DIR
        self.quarantineDir = path / QUARANTINE_DIR
        self._lock = lock

    @classmethod
    def open(cls, path: str | Path, nodeName: str) -> DataDir:
        """
        Open (creating it if needed) the data directory at C{path} for the
        node C{nodeName}, and lock it.

        @raise DataDirError: if it belongs to another node, was written by
            an incompatible version, is locked by another process, or
            cannot be created.
        """
        path = Path(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            (path / LOG_DIR).mkdir(exist_ok=True)
            (path / SNAPSHOT_DIR).mkdir(exist_ok=True)
        except OSError as e:
            raise DataDirError(
                f"cannot create data directory {path}: {e.strerror}"
            ) from None
        lock = _lock(path)
        try:
            _checkIdentity(path, nodeName)
        except BaseException:
            lock.close()
            raise
        return cls(path, lock)

    @classmethod
    def inspect(cls, path: str | Path) -> DataDir:
        """
        A stopped node's data directory, for reading only: not locked, not
        created, its identity not checked against a name.

        @raise DataDirError: if it is not a data directory.
        """
        path = Path(path)
        if not (path / IDENTITY).is_file():
            raise DataDirError(f"{path} is not a Disperse data directory")
        return cls(path, None)

    def identity(self) -> dict[str, object]:
        with open(self.path / IDENTITY, encoding="utf-8") as f:
            found: dict[str, object] = json.load(f)
        return found

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def segments(self) -> list[tuple[int, Path]]:
        """
        The log segments, by sequence number, oldest first.
        """
        return _numbered(self.logDir, LOG_SUFFIX)

    def snapshots(self) -> list[tuple[int, Path]]:
        """
        The complete snapshots, by sequence number, oldest first.
        """
        return _numbered(self.snapshotDir, SNAPSHOT_SUFFIX)

    def removePartial(self) -> list[Path]:
        """
        Remove the snapshots a stop interrupted before they were complete.
        """
        partial = [
            path
            for path in self.snapshotDir.iterdir()
            if path.name.endswith(PARTIAL_SUFFIX)
        ]
        for path in partial:
            path.unlink()
        return partial

    def quarantine(self, path: Path, start: int = 0) -> Path:
        """
        Move C{path}'s bytes from C{start} on into the quarantine directory,
        leaving the file cut at C{start} (removed, when that is 0).

        @return: where the bytes went.
        """
        self.quarantineDir.mkdir(exist_ok=True)
        target = self.quarantineDir / f"{path.name}.from-{start}"
        if start == 0:
            os.replace(path, target)
        else:
            with open(path, "rb") as source, open(target, "wb") as sink:
                source.seek(start)
                while chunk := source.read(1 << 20):
                    sink.write(chunk)
                sink.flush()
                os.fsync(sink.fileno())
            os.truncate(path, start)
        syncDirectory(self.quarantineDir)
        syncDirectory(path.parent)
        return target

    def diskBytes(self) -> tuple[int, int]:
        """
        The bytes of the log segments and of the snapshots.
        """
        log = sum(p.stat().st_size for _, p in self.segments())
        snapshots = sum(p.stat().st_size for _, p in self.snapshots())
        return log, snapshots


def _lock(path: Path) -> IO[str]:
    # Held open for as long as the node runs: no context manager.
    lock = open(path / LOCK, "a+", encoding="utf-8")  # noqa: SIM115
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        lock.close()
        if e.errno in (errno.EAGAIN, errno.EACCES):
            raise DataDirError(
                f"data directory {path} is in use by another process (its lock"
                f" file {path / LOCK} is held)"
            ) from None
        raise DataDirError(f"cannot lock data directory {path}: {e.strerror}") from None
    # Who holds it, for a person looking; not needed for the lock, so a
    # full disk does not stop the node here.
    with contextlib.suppress(OSError):
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
    return lock


def _checkIdentity(path: Path, nodeName: str) -> None:
    identity = path / IDENTITY
    if not identity.exists():
        if any((path / LOG_DIR).iterdir()) or any((path / SNAPSHOT_DIR).iterdir()):
            raise DataDirError(
                f"data directory {path} holds data but no {IDENTITY}: refusing"
                " to guess whose it is"
            )
        partial = identity.with_name(IDENTITY + PARTIAL_SUFFIX)
        with open(partial, "w", encoding="utf-8") as f:
            json.dump({"format": FORMAT_VERSION, "node": nodeName}, f)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, identity)
        syncDirectory(path)
        return
    try:
        with open(identity, encoding="utf-8") as f:
            found = json.load(f)
        version = found["format"]
        owner = found["node"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataDirError(
            f"data directory {path}: unreadable {IDENTITY} ({e})"
        ) from None
    if version != FORMAT_VERSION:
        raise DataDirError(
            f"data directory {path} has format version {version}; this version"
            f" of Disperse reads {FORMAT_VERSION}"
        )
    if owner != nodeName:
        raise DataDirError(
            f"data directory {path} belongs to node {owner!r}, not {nodeName!r}"
        )
