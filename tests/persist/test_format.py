"""
The framing of log segments and snapshots (L{disperse.persist.format}).
"""

from __future__ import annotations

import pytest

from disperse.persist.format import (
    FILE_HEADER_SIZE,
    LOG_MAGIC,
    SNAPSHOT_MAGIC,
    FormatError,
    Kind,
    changeFrames,
    dropFrame,
    entryFrame,
    entryKind,
    fileHeader,
    readFileHeader,
    scanFrames,
)
from disperse.store import Record

VALUE = Record(b"hello", 0, 5, 1).encode()


def test_framesReadBackAsWritten() -> None:
    """
    Frames of every kind come back with their kind, partition, key and
    payload, and where each ends.
    """
    tombstone = Record(b"", 10, 6, 1, tombstone=True).encode()
    expiring = Record(b"x", 99, 7, 1).encode()
    counter = Record(b"\x00", 0, 8, 1, counter=True).encode()
    data = b"".join(
        [
            entryFrame(3, b"a", VALUE),
            entryFrame(3, b"b", tombstone),
            entryFrame(1023, "ключ".encode(), expiring),
            entryFrame(0, b"c", counter),
            dropFrame(3),
        ]
    )
    frames, end, damage = scanFrames(data)
    assert damage is None
    assert end == len(data)
    assert [(f.kind, f.partition, f.key, f.payload) for f in frames] == [
        (Kind.PUT, 3, b"a", VALUE),
        (Kind.DELETE, 3, b"b", tombstone),
        (Kind.EXPIRY, 1023, "ключ".encode(), expiring),
        (Kind.COUNTER, 0, b"c", counter),
        (Kind.DROP, 3, b"", b""),
    ]
    assert frames[-1].end == len(data)


def test_entryKind() -> None:
    assert entryKind(VALUE) is Kind.PUT
    assert entryKind(Record(b"", 1, 1, 1, tombstone=True).encode()) is Kind.DELETE


def test_cutShortIsTornOnlyWhenFinal() -> None:
    """
    A frame cut short at the end of the data is a torn write when nothing
    follows, and where the next read starts otherwise.
    """
    first = entryFrame(1, b"a", VALUE)
    data = first + entryFrame(1, b"b", VALUE)[:-3]
    frames, end, damage = scanFrames(data, final=False)
    assert (len(frames), end, damage) == (1, len(first), None)
    frames, end, damage = scanFrames(data)
    assert len(frames) == 1
    assert damage is not None and damage.torn and damage.offset == len(first)


def test_flippedByteStopsAtItsFrame() -> None:
    first = entryFrame(1, b"a", VALUE)
    data = bytearray(first + entryFrame(1, b"b", VALUE) + entryFrame(1, b"c", VALUE))
    data[len(first) + 20] ^= 0x40
    frames, end, damage = scanFrames(bytes(data))
    assert [f.key for f in frames] == [b"a"]
    assert damage is not None and not damage.torn and end == len(first)


def test_fileHeader() -> None:
    header = fileHeader(LOG_MAGIC, 42)
    assert len(header) == FILE_HEADER_SIZE
    read = readFileHeader(header, LOG_MAGIC)
    assert (read.sequence, read.logFrom) == (42, 0)
    assert readFileHeader(fileHeader(SNAPSHOT_MAGIC, 9, 9), SNAPSHOT_MAGIC).logFrom == 9


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (fileHeader(SNAPSHOT_MAGIC, 1), "not a DSPLOG file"),
        (fileHeader(LOG_MAGIC, 1)[:10], "a header needs"),
        (b"\x00" + fileHeader(LOG_MAGIC, 1)[1:], "checksum"),
    ],
)
def test_badHeaders(header: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        readFileHeader(header, LOG_MAGIC)


def test_otherVersionRefused() -> None:
    from crc32c import crc32c

    from disperse.persist.format import FILE_HEADER

    head = FILE_HEADER.pack(LOG_MAGIC, 99, 1, 0)
    header = head + crc32c(head).to_bytes(4, "big")
    with pytest.raises(FormatError, match="format version 99"):
        readFileHeader(header, LOG_MAGIC)


def test_changeFramesAsEntryFrames() -> None:
    """
    The log's batch encoder writes exactly the frames L{entryFrame} and
    L{dropFrame} do, kinds included.
    """
    changes: list[tuple[int, str | None, bytes | None]] = [
        (3, "a", VALUE),
        (4, "b", Record(b"", 10, 6, 1, tombstone=True).encode()),
        (5, "ключ", Record(b"x", 99, 7, 1).encode()),
        (6, "c", Record(b"\x00", 0, 8, 1, counter=True).encode()),
        (3, None, None),
    ]
    expected = b"".join(
        dropFrame(partition)
        if key is None or blob is None
        else entryFrame(partition, key.encode(), blob)
        for partition, key, blob in changes
    )
    assert changeFrames(changes) == expected
