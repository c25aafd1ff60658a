"""
Small disks for the bed's C{disk-full} fault: a tmpfs of a few megabytes
mounted as one node's data directory, filled by a file of zeros until the
kernel answers "no space left", freed by removing that file, and unmounted
whatever happened. Needs root.

The nodes run in network namespaces of their own, not mount namespaces:
they see this tmpfs, and it fills for them when the bed fills it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from disperse.testbed.hosts import run

SIZE = "4m"
# In the data directory's root, where a node keeps none of its files.
FILLER = "filler"
_CHUNK = b"\0" * (64 * 1024)


class SmallDisk:
    """
    A tmpfs of C{size} bytes (as C{mount -o size=} reads it) at C{path}.
    """

    def __init__(self, path: Path, size: str = SIZE) -> None:
        self.path = path
        self.size = size

    @property
    def filler(self) -> Path:
        return self.path / FILLER

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.path)]
        )

    def unmount(self) -> None:
        run(["umount", str(self.path)], check=False)

    def fill(self) -> int:
        """
        Write zeros into the filler until the disk is full; the bytes
        written.
        """
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            while True:
                try:
                    written += os.write(fd, _CHUNK)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()


def unmountUnder(directory: Path) -> list[str]:
    """
    Unmount the tmpfs left mounted under C{directory} by a run that did
    not finish; the mount points.
    """
    prefix = str(directory.resolve()) + os.sep
    found = []
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            if (
                len(fields) > 2
                and fields[2] == "tmpfs"
                and fields[1].startswith(prefix)
            ):
                found.append(fields[1])
    for point in sorted(found, reverse=True):
        run(["umount", point], check=False)
    return found
