"""
Coverage-guided fuzzing of the Redis protocol's request reader
(L{disperse.resp.wire}): arbitrary bytes fed to L{RequestReader} in reads
of any size, and each line to L{splitInline}.

A crash is an exception out of C{feed} (it reports errors, never raises),
a command that is not a non-empty list of bytes, commands or an error that
depend on how the bytes were cut into reads, or anything but
L{ProtocolError} out of C{splitInline}.

The first byte picks the size of the reads (its low six bits; 0: all at
once) and, with its top bit, small limits, so that the limit checks are
reached by short inputs.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from disperse.resp.wire import (
        ProtocolError,
        RequestReader,
        Requests,
        WireLimits,
        splitInline,
    )

_SMALL = WireLimits(maxMultibulkLength=8, maxBulkLength=64, maxInlineLength=64)


def _read(data: bytes, chunk: int, limits: WireLimits) -> Requests:
    reader = RequestReader(limits)
    commands: list[list[bytes]] = []
    error = None
    step = chunk or max(len(data), 1)
    for start in range(0, len(data), step):
        found = reader.feed(data[start : start + step])
        commands.extend(found.commands)
        if found.error is not None:
            error = found.error
            break
    return Requests(commands, error)


def testOneInput(data: bytes) -> None:
    if not data:
        return
    chunk = data[0] & 0x3F
    limits = _SMALL if data[0] & 0x80 else WireLimits()
    stream = data[1:]
    pieces = _read(stream, chunk, limits)
    whole = _read(stream, 0, limits)
    for command in pieces.commands:
        if not command or not all(type(argument) is bytes for argument in command):
            raise AssertionError(f"not a command: {command!r}")
    if pieces.commands != whole.commands:
        raise AssertionError(
            f"reads of {chunk} bytes gave {pieces.commands!r},"
            f" one read {whole.commands!r}"
        )
    if (pieces.error is None) != (whole.error is None):
        raise AssertionError(
            f"reads of {chunk} bytes ended in {pieces.error!r},"
            f" one read in {whole.error!r}"
        )
    for line in stream.split(b"\n"):
        try:
            arguments = splitInline(line)
        except ProtocolError:
            continue
        if not all(type(argument) is bytes for argument in arguments):
            raise AssertionError(f"not arguments: {arguments!r}")


if __name__ == "__main__":
    atheris.Setup(sys.argv, testOneInput)
    atheris.Fuzz()
