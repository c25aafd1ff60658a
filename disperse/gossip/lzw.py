"""
LZW compression exactly as memberlist uses it: Go's C{compress/lzw} with
least-significant-bit-first code packing and 8-bit literals.

This module owns the bit-level format only; L{disperse.gossip.wire} wraps the
result in memberlist's compress envelope.  Codes start 9 bits wide and grow
to at most 12; code 256 clears the table and 257 ends the stream.  Like Go's
writer we open every stream with a clear code and clear again whenever the
table fills, so our output is byte-for-byte what Go produces.
"""

from __future__ import annotations

from typing import Final

_LITERAL_WIDTH: Final = 8
_CLEAR: Final = 1 << _LITERAL_WIDTH
_EOF: Final = _CLEAR + 1
_MAX_WIDTH: Final = 12
_MAX_CODE: Final = (1 << _MAX_WIDTH) - 1


class LzwError(ValueError):
    """
    The input is not a valid LZW stream, or expands beyond the allowed size.
    """


class _BitWriter:
    """
    Packs variable-width codes, least significant bit first.
    """

    __slots__ = ("_bits", "_nBits", "_out")

    def __init__(self) -> None:
        self._out = bytearray()
        self._bits = 0
        self._nBits = 0

    def write(self, code: int, width: int) -> None:
        self._bits |= code << self._nBits
        self._nBits += width
        while self._nBits >= 8:
            self._out.append(self._bits & 0xFF)
            self._bits >>= 8
            self._nBits -= 8

    def finish(self) -> bytes:
        if self._nBits > 0:
            self._out.append(self._bits & 0xFF)
        return bytes(self._out)


def compress(data: bytes) -> bytes:
    """
    Compress C{data} the way Go's C{lzw.NewWriter(w, lzw.LSB, 8)} does.
    """
    writer = _BitWriter()
    width = _LITERAL_WIDTH + 1
    writer.write(_CLEAR, width)
    if not data:
        writer.write(_EOF, width)
        return writer.finish()

    table: dict[int, int] = {}
    hi = _EOF
    overflow = _CLEAR << 1

    code = data[0]
    for literal in data[1:]:
        key = (code << 8) | literal
        found = table.get(key)
        if found is not None:
            code = found
            continue
        writer.write(code, width)
        code = literal
        # Every emitted code implies a new table entry; the width grows the
        # moment the next code no longer fits, and a full table is cleared
        # rather than frozen, both exactly when Go's writer does it.
        hi += 1
        if hi == overflow:
            width += 1
            overflow <<= 1
        if hi == _MAX_CODE:
            writer.write(_CLEAR, width)
            width = _LITERAL_WIDTH + 1
            hi = _EOF
            overflow = _CLEAR << 1
            table.clear()
            continue
        table[key] = hi

    writer.write(code, width)
    hi += 1
    if hi == overflow:
        width += 1
        overflow <<= 1
    if hi == _MAX_CODE:
        writer.write(_CLEAR, width)
        width = _LITERAL_WIDTH + 1
    writer.write(_EOF, width)
    return writer.finish()


def decompress(data: bytes, maxLength: int) -> bytes:
    """
    Expand an LZW stream as Go's C{lzw.NewReader(r, lzw.LSB, 8)} does.

    Bytes after the end code are ignored, as Go ignores them.

    @param maxLength: the largest expansion accepted; bigger ones raise, so
        a small hostile packet cannot make us allocate without bound.
    @raise LzwError: on a truncated or corrupt stream, or one expanding to
        more than C{maxLength} bytes.
    """
    out = bytearray()
    # Entries below the clear code are the literals themselves; the two
    # control codes get placeholders so indexes line up with code values.
    table: list[bytes] = [bytes((i,)) for i in range(_CLEAR)] + [b"", b""]
    width = _LITERAL_WIDTH + 1
    hi = _EOF
    overflow = 1 << width
    last: bytes | None = None

    bits = 0
    nBits = 0
    position = 0
    end = len(data)
    while True:
        while nBits < width:
            if position >= end:
                raise LzwError("LZW stream ends without an end code")
            bits |= data[position] << nBits
            position += 1
            nBits += 8
        code = bits & ((1 << width) - 1)
        bits >>= width
        nBits -= width

        if code == _CLEAR:
            del table[_EOF + 1 :]
            width = _LITERAL_WIDTH + 1
            hi = _EOF
            overflow = 1 << width
            last = None
            continue
        if code == _EOF:
            return bytes(out)

        if code < len(table):
            entry = table[code]
        elif code == len(table) and last is not None:
            # The one code the decoder has not seen defined yet: it can only
            # be the previous expansion followed by its own first byte.
            entry = last + last[:1]
        else:
            raise LzwError(f"invalid LZW code {code}")
        out += entry
        if len(out) > maxLength:
            raise LzwError(f"LZW expansion exceeds {maxLength} bytes")

        if last is not None:
            # The entry at hi is the previous expansion plus this one's head.
            table.append(last + entry[:1])
        last = entry
        hi += 1
        if hi >= overflow:
            if width == _MAX_WIDTH:
                # Table full and no clear code yet: stop learning, as Go does.
                last = None
                hi -= 1
            else:
                width += 1
                overflow = 1 << width
