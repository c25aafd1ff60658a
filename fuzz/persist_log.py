"""
Coverage-guided fuzzing of the data directory's framing
(L{disperse.persist.format}): arbitrary bytes as a log segment or a
snapshot after its header, scanned whole and in chunks as loading reads
them, and as a file header.

A crash is an exception out of C{scanFrames} or C{readFileHeader} other
than L{FormatError} from the latter; frames or a stopping point that depend
on how the bytes were cut into chunks; a frame that does not encode back to
exactly the bytes it was read from (so a frame loaded is a frame written);
or an entry frame whose payload is shorter than a record's header.

The first byte picks the chunk size (its low six bits, times 7; 0: the
whole input at once).
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from disperse.persist.format import (
        ENTRY_KINDS,
        LOG_MAGIC,
        FormatError,
        frame,
        readFileHeader,
        scanFrames,
    )
    from disperse.store.record import HEADER_SIZE

_ENTRY_KINDS = frozenset(int(kind) for kind in ENTRY_KINDS)


def _chunked(data: bytes, step: int) -> tuple[list[tuple[object, ...]], int, bool]:
    """
    Scan C{data} as loading does: chunk by chunk, carrying what a frame cut
    at a chunk's end left over.
    """
    frames: list[tuple[object, ...]] = []
    buffer = b""
    consumed = 0
    start = 0
    while True:
        chunk = data[start : start + step]
        start += step
        joined = buffer + chunk
        found, used, damage = scanFrames(joined, 0, final=not chunk)
        frames.extend((f.kind, f.partition, f.key, f.payload) for f in found)
        if damage is not None:
            return frames, consumed + damage.offset, True
        consumed += used
        buffer = joined[used:]
        if not chunk:
            return frames, consumed, False


def testOneInput(data: bytes) -> None:
    if not data:
        return
    step = (data[0] & 0x3F) * 7
    body = data[1:]
    with contextlib.suppress(FormatError):
        readFileHeader(body, LOG_MAGIC)
    found, end, damage = scanFrames(body)
    whole = [(f.kind, f.partition, f.key, f.payload) for f in found]
    start = 0
    for f in found:
        encoded = frame(f.kind, f.partition, f.key, f.payload)
        if body[start : f.end] != encoded:
            raise AssertionError(f"frame at {start} does not encode back")
        if f.kind in _ENTRY_KINDS and len(f.payload) < HEADER_SIZE:
            raise AssertionError("an entry shorter than a record's header")
        start = f.end
    if step:
        pieces, stopped, damaged = _chunked(body, step)
        if pieces != whole:
            raise AssertionError(f"chunks of {step} read other frames")
        if damaged != (damage is not None) or (damaged and stopped != end):
            raise AssertionError(f"chunks of {step} stopped elsewhere")


if __name__ == "__main__":
    atheris.Setup(sys.argv, testOneInput)
    atheris.Fuzz()
