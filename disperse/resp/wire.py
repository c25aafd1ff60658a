"""
RESP on the wire: requests in, replies out.

L{RequestReader} turns bytes, fed in whatever pieces the network delivers,
into commands (lists of bytes). Multibulk frames are assembled by
C{hiredis}; this module only walks their header lines, so that a count or a
bulk length above the configured limits is refused before the payload it
announces is buffered, and so that it knows where each frame ends and an
inline command (a person typing into C{nc}) may begin. Inline commands are
split here with Redis's quoting rules.

L{ReplyEncoder} writes replies for RESP2 or RESP3 into a list of pieces and
joins them once per batch, so a pipeline of replies costs one join and one
write.

Error texts are Redis's own, since clients and people match on them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Final

import hiredis

CRLF: Final = b"\r\n"

# Redis's string2ll: an optional minus, no plus, no spaces, no leading zeros.
_INTEGER: Final = re.compile(rb"-?[1-9][0-9]*|0")
# The header lines of the frames every client sends, in the same strict
# form: a count of 1 to 9,999,999 arguments, a bulk length below 10**10.
# Anything else (other counts, oversized lengths, malformed lines) takes the
# line-by-line walk, which accepts or refuses it.
_FAST_COUNT: Final = re.compile(rb"\*([1-9][0-9]{0,6})\r\n")
_FAST_BULK: Final = re.compile(rb"\$(0|[1-9][0-9]{0,9})\r\n")
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


def parseInteger(text: bytes) -> int | None:
    """
    Parse C{text} as Redis parses a 64-bit integer, strictly.

    @return: the integer, or L{None} if C{text} is not one Redis accepts.
    """
    if len(text) > 20 or _INTEGER.fullmatch(text) is None:
        return None
    value = int(text)
    if value < _INT64_MIN or value > _INT64_MAX:
        return None
    return value


class ProtocolError(Exception):
    """
    A malformed frame. The adapter answers C{-ERR Protocol error: <reason>}
    and closes the connection: after a bad frame the stream cannot be
    re-synchronised.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def message(self) -> str:
        """
        The error reply's text, without the leading C{-}.
        """
        return f"ERR Protocol error: {self.reason}"


@dataclass(frozen=True)
class WireLimits:
    """
    How large a request may claim to be. Redis's defaults: a bulk of 512 MB
    (C{proto-max-bulk-len}), an inline line or header line of 64 KB.

    @ivar maxMultibulkLength: the most arguments in one command.
    @ivar maxBulkLength: the longest single argument, in bytes.
    @ivar maxInlineLength: the longest inline command or header line.
    """

    maxMultibulkLength: int = 1024 * 1024
    maxBulkLength: int = 512 * 1024 * 1024
    maxInlineLength: int = 64 * 1024


@dataclass(slots=True)
class Requests:
    """
    What one call to L{RequestReader.feed} found.

    @ivar commands: complete commands, in order; each is a non-empty list.
    @ivar error: the protocol error that ended the stream, after those
        commands (which the adapter still runs, as Redis does), or L{None}.
    """

    commands: list[list[bytes]] = field(default_factory=list)
    error: ProtocolError | None = None


# Where the reader is within the stream.
_BOUNDARY: Final = 0  # between commands
_INLINE: Final = 1  # in an inline command's line
_COUNT: Final = 2  # in a multibulk's "*<count>" line
_BULK_HEADER: Final = 3  # in a "$<length>" line
_PAYLOAD: Final = 4  # in a bulk's bytes and their CRLF


class RequestReader:
    """
    Commands from a client's byte stream. Feed it every piece received, in
    order; after it reports an error it accepts nothing more.
    """

    def __init__(self, limits: WireLimits | None = None) -> None:
        self._limits = limits if limits is not None else WireLimits()
        self._hiredis = hiredis.Reader()
        # For reads made of whole frames only, parsed first and checked
        # after (see _wholeRead); empty between reads.
        self._whole = hiredis.Reader()
        self._state = _BOUNDARY
        # The start of a line that has not ended yet (headers and inline).
        self._line = bytearray()
        self._elements = 0  # bulks still to come in this multibulk
        self._remaining = 0  # payload bytes (with CRLF) still to come
        self._failed: ProtocolError | None = None

    def feed(self, data: bytes) -> Requests:
        """
        Take the next piece of the stream.

        @return: the commands it completes and the error it ran into, if any.
        """
        if self._failed is not None:
            return Requests(error=self._failed)
        if self._state == _BOUNDARY and data[:1] == b"*":
            whole = self._wholeRead(data)
            if whole is not None:
                return Requests(whole)
        found = Requests()
        try:
            self._scan(data, found.commands)
        except ProtocolError as error:
            self._failed = error
            return Requests(found.commands, error)
        return found

    def _scan(self, data: bytes, commands: list[list[bytes]]) -> None:
        position = 0
        end = len(data)
        # Multibulk bytes go to hiredis as contiguous slices of data, from
        # segment up to wherever the scan has checked.
        segment = 0
        while position < end:
            state = self._state
            if state == _BOUNDARY:
                if data[position] == 0x2A:  # "*"
                    after = self._wholeFrames(data, position, end, commands)
                    if after != position:
                        position = after
                        continue
                    self._state = _COUNT
                    segment = position
                    position += 1
                else:
                    self._state = _INLINE
                continue
            if state == _PAYLOAD:
                step = min(self._remaining, end - position)
                position += step
                self._remaining -= step
                if self._remaining == 0:
                    self._elements -= 1
                    if self._elements == 0:
                        self._finishFrame(data, segment, position, commands)
                    else:
                        self._state = _BULK_HEADER
                continue
            newline = data.find(b"\n", position)
            if newline < 0:
                self._line += data[position:]
                if len(self._line) > self._limits.maxInlineLength:
                    raise ProtocolError(_TOO_BIG[state])
                position = end
                break
            line = bytes(self._line) + data[position:newline]
            self._line.clear()
            position = newline + 1
            if state == _INLINE:
                self._state = _BOUNDARY
                if len(line) > self._limits.maxInlineLength:
                    raise ProtocolError("too big inline request")
                arguments = splitInline(line)
                if arguments:
                    commands.append(arguments)
            elif state == _COUNT:
                count = self._headerNumber(line)
                if count is None or count > self._limits.maxMultibulkLength:
                    raise ProtocolError("invalid multibulk length")
                if count <= 0:
                    # Redis ignores "*0" and "*-1"; so does hiredis's result.
                    self._finishFrame(data, segment, position, None)
                else:
                    self._elements = count
                    self._state = _BULK_HEADER
            else:
                if not line or line[0] != 0x24:  # "$"
                    got = chr(line[0]) if line else "\\r"
                    raise ProtocolError(f"expected '$', got '{got}'")
                length = self._headerNumber(line[1:])
                if length is None or not 0 <= length <= self._limits.maxBulkLength:
                    raise ProtocolError("invalid bulk length")
                self._remaining = length + 2
                self._state = _PAYLOAD
        if self._state not in (_BOUNDARY, _INLINE) and segment < position:
            self._hiredis.feed(data, segment, position - segment)

    def _wholeRead(self, data: bytes) -> list[list[bytes]] | None:
        """
        The commands of C{data} if it is nothing but whole, well-formed
        multibulk frames within the limits, as a pipelining client sends
        them; else L{None}, and the stream is read line by line instead.

        hiredis parses the read first; the frames are then checked: each a
        list of bulk strings within the limits, and together exactly as
        long as their canonical encoding. Any other accepted encoding (a
        leading zero, a sign, another type of element) is longer, so a
        read that is not canonical throughout cannot pass. No bytes stay
        buffered: an incomplete last frame sends the read down the other
        path, which checks each header as it comes.
        """
        reader = self._whole
        reader.feed(data)
        frames: list[list[bytes]] = []
        try:
            frame = reader.gets()
            while frame is not False:
                frames.append(frame)
                frame = reader.gets()
        except hiredis.ProtocolError:
            self._whole = hiredis.Reader()
            return None
        if reader.has_data():
            self._whole = hiredis.Reader()
            return None
        limits = self._limits
        maxCount = limits.maxMultibulkLength
        maxBulk = limits.maxBulkLength
        overhead = _BULK_OVERHEAD
        known = len(overhead)
        total = 0
        for frame in frames:
            if type(frame) is not list:
                return None
            count = len(frame)
            if count == 0 or count > maxCount:
                return None
            # "*<count>\r\n"
            total += (3 + len(str(count))) if count >= 10 else 4
            for argument in frame:
                if type(argument) is not bytes:
                    return None
                size = len(argument)
                if size > maxBulk:
                    return None
                total += size + (overhead[size] if size < known else 5 + len(str(size)))
        if total != len(data):
            return None
        return frames

    def _wholeFrames(
        self, data: bytes, position: int, end: int, commands: list[list[bytes]]
    ) -> int:
        """
        Read the complete, ordinary multibulk frames of C{data} from
        C{position} (a frame boundary) with one regular expression match a
        header line, and hand them to hiredis at once.

        @return: where the first frame this does not take starts (one that
            is incomplete, or unusual enough for the line-by-line walk).
        """
        start = position
        frames = 0
        countAt = _FAST_COUNT.match
        bulkAt = _FAST_BULK.match
        limits = self._limits
        maxCount = limits.maxMultibulkLength
        maxBulk = limits.maxBulkLength
        while position < end:
            header = countAt(data, position)
            if header is None:
                break
            count = int(header[1])
            if count > maxCount:
                break
            cursor = header.end()
            for _ in range(count):
                bulk = bulkAt(data, cursor)
                if bulk is None:
                    break
                length = int(bulk[1])
                if length > maxBulk:
                    break
                # The payload and its CRLF, which Redis skips unread.
                cursor = bulk.end() + length + 2
                if cursor > end:
                    break
            else:
                position = cursor
                frames += 1
                continue
            break
        if frames:
            reader = self._hiredis
            reader.feed(data, start, position - start)
            gets = reader.gets
            for _ in range(frames):
                commands.append(gets())
        return position

    @staticmethod
    def _headerNumber(line: bytes) -> int | None:
        # A header line ends in CRLF; the newline is already gone.
        if not line.endswith(b"\r"):
            return None
        return parseInteger(line[:-1])

    def _finishFrame(
        self,
        data: bytes,
        segment: int,
        position: int,
        commands: list[list[bytes]] | None,
    ) -> None:
        self._state = _BOUNDARY
        if position > segment:
            self._hiredis.feed(data, segment, position - segment)
        try:
            frame = self._hiredis.gets()
        except hiredis.ProtocolError as error:
            # The header walk should have caught every malformed frame;
            # report it the same way if hiredis disagrees.
            raise ProtocolError(str(error)) from error
        if commands is None or not isinstance(frame, list):
            return
        if not all(isinstance(argument, bytes) for argument in frame):
            raise ProtocolError("expected '$'")
        commands.append(frame)


_TOO_BIG: Final = {
    _INLINE: "too big inline request",
    _COUNT: "too big mbulk count string",
    _BULK_HEADER: "too big bulk count string",
}

_ESCAPES: Final = {
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
    ord("b"): b"\b",
    ord("a"): b"\a",
}
_HEX: Final = b"0123456789abcdefABCDEF"
_SPACE: Final = b" \n\r\t\v\f\x00"


def splitInline(line: bytes) -> list[bytes]:
    """
    Split an inline command as Redis does: arguments separated by white
    space; in double quotes, C{\\n}, C{\\r}, C{\\t}, C{\\b}, C{\\a} and
    C{\\xHH} escapes, any other escaped character standing for itself; in
    single quotes only C{\\'} is an escape. A closing quote must be followed
    by white space or the end of the line.

    @raise ProtocolError: on unbalanced quotes.
    """
    arguments: list[bytes] = []
    position = 0
    end = len(line)
    while True:
        while position < end and line[position] in _SPACE:
            position += 1
        if position >= end:
            return arguments
        current = bytearray()
        quote = 0  # 0 outside quotes, else the quote character
        while True:
            if position >= end:
                if quote:
                    raise ProtocolError("unbalanced quotes in request")
                break
            char = line[position]
            if quote == 0x22:  # '"'
                if (
                    char == 0x5C  # backslash
                    and position + 3 < end
                    and line[position + 1] == 0x78  # "x"
                    and line[position + 2] in _HEX
                    and line[position + 3] in _HEX
                ):
                    current.append(int(line[position + 2 : position + 4], 16))
                    position += 3
                elif char == 0x5C and position + 1 < end:
                    position += 1
                    escaped = line[position]
                    current += _ESCAPES.get(escaped, bytes((escaped,)))
                elif char == 0x22:
                    if position + 1 < end and line[position + 1] not in _SPACE:
                        raise ProtocolError("unbalanced quotes in request")
                    position += 1
                    break
                else:
                    current.append(char)
            elif quote == 0x27:  # "'"
                if char == 0x5C and position + 1 < end and line[position + 1] == 0x27:
                    current.append(0x27)
                    position += 1
                elif char == 0x27:
                    if position + 1 < end and line[position + 1] not in _SPACE:
                        raise ProtocolError("unbalanced quotes in request")
                    position += 1
                    break
                else:
                    current.append(char)
            elif char in _SPACE:
                break
            elif char in (0x22, 0x27):
                quote = char
            else:
                current.append(char)
            position += 1
        arguments.append(bytes(current))


def _clean(text: str) -> bytes:
    # A simple string or error cannot hold a line break; Redis turns them
    # into spaces rather than corrupt the stream.
    return text.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")


# The bytes a bulk of each small size adds to its payload in a request:
# "$<size>\r\n" and the final "\r\n".
_BULK_OVERHEAD: Final = [5 + len(str(size)) for size in range(4096)]

# The simple strings nearly every reply is, encoded once.
_SIMPLE: Final = {text: b"+%s\r\n" % text.encode() for text in ("OK", "PONG", "QUEUED")}


def formatDouble(value: float) -> bytes:
    """
    A double as Redis writes one: the shortest text that reads back the
    same, integers without a fraction, and C{inf}, C{-inf}, C{nan}.
    """
    if math.isnan(value):
        return b"nan"
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    if value.is_integer() and abs(value) < 1e17:
        return b"%d" % int(value)
    return repr(value).encode("ascii")


class ReplyEncoder:
    """
    Replies for one connection, in the protocol it chose with C{HELLO}.

    Each method appends one reply (or an aggregate's header, to be followed
    by its elements) to a list of pieces; L{take} joins them into the bytes
    of one write. Where RESP2 has no type of its own, the reply takes the
    form Redis gives it there: a map is a flat array, a set an array, a
    double a bulk string, a boolean an integer, null a null bulk.
    """

    def __init__(self, protocol: int = 2) -> None:
        self.protocol = protocol
        # The pieces written since the last take(); a caller may append
        # replies it encoded itself (disperse.resp.batch).
        self.pieces: list[bytes] = []

    def take(self) -> bytes:
        """
        The replies written since the last call, as one bytes object.
        """
        pieces = self.pieces
        self.pieces = []
        return b"".join(pieces)

    def simple(self, text: str) -> None:
        encoded = _SIMPLE.get(text)
        if encoded is not None:
            self.pieces.append(encoded)
        else:
            self.pieces += (b"+", _clean(text), CRLF)

    def error(self, text: str) -> None:
        """
        An error reply; C{text} starts with its code (C{ERR}, C{WRONGTYPE}).
        """
        self.pieces += (b"-", _clean(text), CRLF)

    def integer(self, value: int) -> None:
        self.pieces.append(b":%d\r\n" % value)

    def bulk(self, value: bytes) -> None:
        self.pieces += (b"$%d\r\n" % len(value), value, CRLF)

    def bulkOrNull(self, value: bytes | None) -> None:
        if value is None:
            self.null()
        else:
            self.bulk(value)

    def null(self) -> None:
        """
        No value: RESP3's null, RESP2's null bulk string.
        """
        self.pieces.append(b"_\r\n" if self.protocol >= 3 else b"$-1\r\n")

    def nullArray(self) -> None:
        """
        No array (C{EXEC} after an aborted transaction): RESP2's null array.
        """
        self.pieces.append(b"_\r\n" if self.protocol >= 3 else b"*-1\r\n")

    def arrayHeader(self, length: int) -> None:
        self.pieces.append(b"*%d\r\n" % length)

    def array(self, values: list[bytes | None]) -> None:
        """
        A whole array of bulk strings, a missing one as null (C{MGET}).
        """
        self.arrayHeader(len(values))
        for value in values:
            self.bulkOrNull(value)

    def mapHeader(self, pairs: int) -> None:
        if self.protocol >= 3:
            self.pieces.append(b"%%%d\r\n" % pairs)
        else:
            self.arrayHeader(2 * pairs)

    def setHeader(self, length: int) -> None:
        if self.protocol >= 3:
            self.pieces.append(b"~%d\r\n" % length)
        else:
            self.arrayHeader(length)

    def double(self, value: float) -> None:
        text = formatDouble(value)
        if self.protocol >= 3:
            self.pieces += (b",", text, CRLF)
        else:
            self.bulk(text)

    def boolean(self, value: bool) -> None:
        if self.protocol >= 3:
            self.pieces.append(b"#t\r\n" if value else b"#f\r\n")
        else:
            self.integer(1 if value else 0)

    def verbatim(self, text: bytes, format: bytes = b"txt") -> None:
        """
        Text meant for a person (C{INFO}, C{CLUSTER NODES}); C{format} is
        three bytes, C{txt} or C{mkd}.
        """
        if self.protocol >= 3:
            self.pieces += (b"=%d\r\n" % (len(text) + 4), format, b":", text, CRLF)
        else:
            self.bulk(text)
