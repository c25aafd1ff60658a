"""
Tests for L{disperse.resp.wire}: requests read from pieces of a stream,
limits, inline quoting, and replies byte for byte.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from disperse.resp.wire import (
    ReplyEncoder,
    RequestReader,
    WireLimits,
    formatDouble,
    parseInteger,
    splitInline,
)

PIPELINE = (
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nv\r\nx!\r\n"
    b"PING\r\n"
    b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    b"\r\n"
    b"*0\r\n"
    b"set \"a b\" 'c d'\n"
    b"*1\r\n$0\r\n\r\n"
)
COMMANDS = [
    [b"SET", b"k", b"v\r\nx!"],
    [b"PING"],
    [b"GET", b"k"],
    [b"set", b"a b", b"c d"],
    [b""],
]


def readAll(reader: RequestReader, pieces: list[bytes]) -> list[list[bytes]]:
    commands: list[list[bytes]] = []
    for piece in pieces:
        found = reader.feed(piece)
        assert found.error is None, found.error
        commands += found.commands
    return commands


class FramingTests(SynchronousTestCase):
    def test_whole(self) -> None:
        self.assertEqual(readAll(RequestReader(), [PIPELINE]), COMMANDS)

    def test_splitAtEveryByte(self) -> None:
        """
        Split in two at every position, and fed one byte at a time, the
        stream gives the same commands.
        """
        for cut in range(len(PIPELINE) + 1):
            self.assertEqual(
                readAll(RequestReader(), [PIPELINE[:cut], PIPELINE[cut:]]),
                COMMANDS,
                cut,
            )
        self.assertEqual(
            readAll(RequestReader(), [bytes((b,)) for b in PIPELINE]), COMMANDS
        )

    def test_binaryPayload(self) -> None:
        value = bytes(range(256)) * 4
        frame = b"*2\r\n$4\r\nECHO\r\n$%d\r\n%s\r\n" % (len(value), value)
        self.assertEqual(readAll(RequestReader(), [frame]), [[b"ECHO", value]])

    def test_commandsBeforeAnError(self) -> None:
        """
        Commands complete before a malformed frame are still returned, with
        the error; after it the reader accepts nothing more.
        """
        reader = RequestReader()
        found = reader.feed(b"PING\r\n*1\r\n+OK\r\n")
        self.assertEqual(found.commands, [[b"PING"]])
        assert found.error is not None
        self.assertEqual(
            found.error.message, "ERR Protocol error: expected '$', got '+'"
        )
        again = reader.feed(b"PING\r\n")
        self.assertEqual((again.commands, again.error), ([], found.error))

    def test_malformed(self) -> None:
        cases = {
            b"*x\r\n": "invalid multibulk length",
            b"*01\r\n": "invalid multibulk length",
            b"*1\r\n$-1\r\n": "invalid bulk length",
            b"*1\r\n$abc\r\n": "invalid bulk length",
            b"*1\r\n:1\r\n": "expected '$', got ':'",
            b"*1\n": "invalid multibulk length",
            b'GET "k\r\n': "unbalanced quotes in request",
        }
        for frame, reason in cases.items():
            found = RequestReader().feed(frame)
            assert found.error is not None, frame
            self.assertEqual(found.error.reason, reason, frame)


class LimitTests(SynchronousTestCase):
    limits = WireLimits(maxMultibulkLength=3, maxBulkLength=10, maxInlineLength=20)

    def test_withinLimits(self) -> None:
        frame = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n0123456789\r\n"
        self.assertEqual(
            readAll(RequestReader(self.limits), [frame]),
            [[b"SET", b"k", b"0123456789"]],
        )

    def test_tooManyArguments(self) -> None:
        found = RequestReader(self.limits).feed(b"*4\r\n")
        assert found.error is not None
        self.assertEqual(found.error.reason, "invalid multibulk length")

    def test_bulkRefusedBeforeItsPayload(self) -> None:
        """
        The length is refused as soon as its header line ends, with none of
        the payload sent.
        """
        found = RequestReader(self.limits).feed(b"*1\r\n$11\r\n")
        assert found.error is not None
        self.assertEqual(found.error.reason, "invalid bulk length")

    def test_longLines(self) -> None:
        cases = {
            b"GET " + b"k" * 30: "too big inline request",
            b"*" + b"1" * 30: "too big mbulk count string",
            b"*1\r\n$" + b"1" * 30: "too big bulk count string",
        }
        for frame, reason in cases.items():
            found = RequestReader(self.limits).feed(frame)
            assert found.error is not None, frame
            self.assertEqual(found.error.reason, reason)
        found = RequestReader(self.limits).feed(b"GET " + b"k" * 30 + b"\r\n")
        assert found.error is not None
        self.assertEqual(found.error.reason, "too big inline request")


class InlineTests(SynchronousTestCase):
    def test_quoting(self) -> None:
        cases: dict[bytes, list[bytes]] = {
            b"": [],
            b"   ": [],
            b"SET k v": [b"SET", b"k", b"v"],
            b"  SET\tk   v  ": [b"SET", b"k", b"v"],
            b'SET k "a b"': [b"SET", b"k", b"a b"],
            b'SET k "\\x41\\n\\r\\t\\b\\a\\"\\\\\\q"': [
                b"SET",
                b"k",
                b'A\n\r\t\b\a"\\q',
            ],
            b'"\\x4g"': [b"x4g"],
            b"SET k 'it\\'s \"x\"'": [b"SET", b"k", b'it\'s "x"'],
            b"'a\\nb'": [b"a\\nb"],
            b'""': [b""],
            b'a"b c" d': [b"ab c", b"d"],
        }
        for line, expected in cases.items():
            self.assertEqual(splitInline(line), expected, line)

    def test_unbalanced(self) -> None:
        from disperse.resp.wire import ProtocolError

        for line in (b'"abc', b"'abc", b'"a"b', b"'a'b", b'a"b c"d'):
            self.assertRaises(ProtocolError, splitInline, line)

    def test_crlfAndLf(self) -> None:
        self.assertEqual(
            readAll(RequestReader(), [b"PING\r\nECHO hi\n"]),
            [[b"PING"], [b"ECHO", b"hi"]],
        )


class IntegerTests(SynchronousTestCase):
    def test_strict(self) -> None:
        good = {b"0": 0, b"-1": -1, b"42": 42, b"9223372036854775807": 2**63 - 1}
        good[b"-9223372036854775808"] = -(2**63)
        for text, value in good.items():
            self.assertEqual(parseInteger(text), value)
        for text in (
            b"",
            b"-",
            b"+1",
            b" 1",
            b"1 ",
            b"01",
            b"-0",
            b"1.0",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"1e3",
        ):
            self.assertIsNone(parseInteger(text), text)


class EncoderTests(SynchronousTestCase):
    def test_resp2(self) -> None:
        encoder = ReplyEncoder(2)
        encoder.simple("OK")
        encoder.error("ERR bad\r\nthing")
        encoder.integer(-7)
        encoder.bulk(b"v\r\n")
        encoder.null()
        encoder.nullArray()
        encoder.array([b"a", None])
        encoder.mapHeader(1)
        encoder.bulk(b"k")
        encoder.integer(1)
        encoder.setHeader(0)
        encoder.double(1.5)
        encoder.boolean(True)
        encoder.verbatim(b"# Server")
        self.assertEqual(
            encoder.take(),
            b"+OK\r\n-ERR bad  thing\r\n:-7\r\n$3\r\nv\r\n\r\n$-1\r\n*-1\r\n"
            b"*2\r\n$1\r\na\r\n$-1\r\n*2\r\n$1\r\nk\r\n:1\r\n*0\r\n"
            b"$3\r\n1.5\r\n:1\r\n$8\r\n# Server\r\n",
        )
        self.assertEqual(encoder.take(), b"")

    def test_resp3(self) -> None:
        encoder = ReplyEncoder(3)
        encoder.null()
        encoder.nullArray()
        encoder.array([None])
        encoder.mapHeader(2)
        encoder.setHeader(3)
        encoder.double(float("-inf"))
        encoder.double(3.0)
        encoder.boolean(False)
        encoder.verbatim(b"hi")
        self.assertEqual(
            encoder.take(),
            b"_\r\n_\r\n*1\r\n_\r\n%2\r\n~3\r\n,-inf\r\n,3\r\n#f\r\n=6\r\ntxt:hi\r\n",
        )

    def test_doubles(self) -> None:
        cases = {0.1: b"0.1", 10.0: b"10", -2.5: b"-2.5", 1e20: b"1e+20"}
        for value, text in cases.items():
            self.assertEqual(formatDouble(value), text)
        self.assertEqual(formatDouble(float("nan")), b"nan")


def encodeCommand(command: list[bytes]) -> bytes:
    parts = [b"*%d\r\n" % len(command)]
    for argument in command:
        parts.append(b"$%d\r\n%s\r\n" % (len(argument), argument))
    return b"".join(parts)


@settings(max_examples=200, deadline=None)
@given(
    commands=st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=5)),
    cuts=st.lists(st.integers(min_value=0), max_size=8),
)
def test_anySplit(commands: list[list[bytes]], cuts: list[int]) -> None:
    """
    Any commands, encoded and cut anywhere, read back as they were.
    """
    stream = b"".join(encodeCommand(command) for command in commands)
    points = sorted({cut % (len(stream) + 1) for cut in cuts})
    pieces = [
        stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)
    ]
    assert readAll(RequestReader(), pieces) == commands


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_garbage(data: bytes) -> None:
    """
    Arbitrary bytes give commands or a protocol error, never an exception.
    """
    found = RequestReader(WireLimits(maxBulkLength=100)).feed(data)
    assert all(isinstance(command, list) and command for command in found.commands)


class WholeReadTests(SynchronousTestCase):
    """
    A read of whole frames is parsed by hiredis first and checked after;
    whatever hiredis accepts that Redis does not is refused all the same,
    with the error the line-by-line walk gives.
    """

    def test_refusedLikeLineByLine(self) -> None:
        cases = [
            (b"*2\r\n$3\r\nGET\r\n$03\r\nabc\r\n", "invalid bulk length"),
            (b"*01\r\n$1\r\na\r\n", "invalid multibulk length"),
            (b"*1\r\n*1\r\n$1\r\na\r\n", "expected '$', got '*'"),
            (b"*2\r\n$3\r\nGET\r\n+abc\r\n", "expected '$', got '+'"),
            (b"*1\r\n:1\r\n", "expected '$', got ':'"),
            (b"*1\r\n$-1\r\n", "invalid bulk length"),
            (b"*2\r\n$3\r\nSET\r\n$10\r\n0123456789\r\n", "invalid bulk length"),
        ]
        for data, reason in cases:
            found = RequestReader(WireLimits(maxBulkLength=5)).feed(data)
            self.assertEqual(found.commands, [], data)
            assert found.error is not None, data
            self.assertEqual(found.error.reason, reason, data)

    def test_wholeThenPieces(self) -> None:
        """
        Whole reads and split ones follow each other on one connection.
        """
        reader = RequestReader()
        frame = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        self.assertEqual(reader.feed(frame * 2).commands, [[b"GET", b"k"]] * 2)
        self.assertEqual(reader.feed(frame + frame[:7]).commands, [[b"GET", b"k"]])
        self.assertEqual(reader.feed(frame[7:] + frame).commands, [[b"GET", b"k"]] * 2)
        self.assertEqual(
            reader.feed(b"PING\r\n" + frame).commands, [[b"PING"], [b"GET", b"k"]]
        )

    def test_largeValues(self) -> None:
        value = b"v" * 100_000
        frame = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n" + value + b"\r\n"
        self.assertEqual(RequestReader().feed(frame).commands, [[b"SET", b"k", value]])
