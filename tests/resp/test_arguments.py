"""
Tests for L{disperse.resp.arguments}: the option-heavy commands parsed as
Redis parses them, errors and their order included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from disperse.resp.arguments import (
    ArgumentError,
    ExpireArguments,
    GetExArguments,
    ScanArguments,
    SetArguments,
    floatArgument,
    integerArgument,
    parseExpire,
    parseGetEx,
    parseIncrement,
    parseScan,
    parseSet,
    parseSetEx,
)

NOW = 1_700_000_000_000
INT64_MAX = 2**63 - 1


def line(text: str) -> list[bytes]:
    return [word.encode() for word in text.split()]


class ArgumentTestCase(SynchronousTestCase):
    def assertRefused(
        self, parse: Callable[..., Any], text: str, message: str, *rest: Any
    ) -> None:
        error = self.assertRaises(ArgumentError, parse, line(text), *rest)
        self.assertEqual(error.message, message, text)


class SetTests(ArgumentTestCase):
    def test_plain(self) -> None:
        self.assertEqual(parseSet(line("SET k v"), NOW), SetArguments(b"k", b"v"))

    def test_options(self) -> None:
        cases = {
            "set k v nx": SetArguments(b"k", b"v", onlyIfAbsent=True),
            "set k v XX GET": SetArguments(b"k", b"v", onlyIfPresent=True, get=True),
            "set k v nx get": SetArguments(b"k", b"v", onlyIfAbsent=True, get=True),
            "set k v EX 10": SetArguments(b"k", b"v", expireAtMs=NOW + 10_000),
            "set k v px 10": SetArguments(b"k", b"v", expireAtMs=NOW + 10),
            "set k v exat 2000000000": SetArguments(
                b"k", b"v", expireAtMs=2_000_000_000_000
            ),
            "set k v pxat 5": SetArguments(b"k", b"v", expireAtMs=5),
            "set k v KEEPTTL xx": SetArguments(
                b"k", b"v", onlyIfPresent=True, keepTtl=True
            ),
            "set k v ex 1 ex 2": SetArguments(b"k", b"v", expireAtMs=NOW + 2000),
            "set k v nx nx": SetArguments(b"k", b"v", onlyIfAbsent=True),
        }
        for text, expected in cases.items():
            self.assertEqual(parseSet(line(text), NOW), expected, text)

    def test_syntaxErrors(self) -> None:
        for text in (
            "set k v nx xx",
            "set k v xx nx",
            "set k v ex 1 px 1",
            "set k v ex 1 keepttl",
            "set k v keepttl ex 1",
            "set k v ex",
            "set k v persist",
            "set k v bogus",
            # Options come first: a bad number after a bad option is a
            # syntax error.
            "set k v ex x nx xx",
        ):
            self.assertRefused(parseSet, text, "ERR syntax error", NOW)

    def test_numbers(self) -> None:
        invalid = "ERR invalid expire time in 'set' command"
        self.assertRefused(
            parseSet,
            "set k v ex 1.5",
            "ERR value is not an integer or out of range",
            NOW,
        )
        for text in (
            "set k v ex 0",
            "set k v px -1",
            f"set k v ex {INT64_MAX // 1000 + 1}",
            f"set k v px {INT64_MAX}",
        ):
            self.assertRefused(parseSet, text, invalid, NOW)
        self.assertEqual(
            parseSet(line(f"set k v pxat {INT64_MAX}"), NOW).expireAtMs, INT64_MAX
        )

    def test_setEx(self) -> None:
        self.assertEqual(
            parseSetEx(line("SETEX k 10 v"), NOW),
            SetArguments(b"k", b"v", expireAtMs=NOW + 10_000),
        )
        self.assertEqual(
            parseSetEx(line("psetex k 10 v"), NOW),
            SetArguments(b"k", b"v", expireAtMs=NOW + 10),
        )
        self.assertRefused(
            parseSetEx, "setex k 0 v", "ERR invalid expire time in 'setex' command", NOW
        )
        self.assertRefused(
            parseSetEx,
            "PSETEX k -5 v",
            "ERR invalid expire time in 'psetex' command",
            NOW,
        )


class GetExTests(ArgumentTestCase):
    def test_options(self) -> None:
        cases = {
            "getex k": GetExArguments(b"k"),
            "getex k persist": GetExArguments(b"k", persist=True),
            "getex k EX 3": GetExArguments(b"k", NOW + 3000),
            "getex k pxat 9": GetExArguments(b"k", 9),
        }
        for text, expected in cases.items():
            self.assertEqual(parseGetEx(line(text), NOW), expected, text)

    def test_errors(self) -> None:
        for text in (
            "getex k persist ex 1",
            "getex k ex 1 persist",
            "getex k keepttl",
            "getex k nx",
            "getex k ex",
        ):
            self.assertRefused(parseGetEx, text, "ERR syntax error", NOW)
        self.assertRefused(
            parseGetEx,
            "getex k ex 0",
            "ERR invalid expire time in 'getex' command",
            NOW,
        )


class ExpireTests(ArgumentTestCase):
    def test_units(self) -> None:
        cases = {
            "expire k 10": ExpireArguments(b"k", NOW + 10_000),
            "PEXPIRE k 10": ExpireArguments(b"k", NOW + 10),
            "expireat k 10": ExpireArguments(b"k", 10_000),
            "pexpireat k 10": ExpireArguments(b"k", 10),
            # In the past: allowed, the key is deleted.
            "expire k -10": ExpireArguments(b"k", NOW - 10_000),
            "expire k 1 nx": ExpireArguments(b"k", NOW + 1000, onlyIfNone=True),
            "expire k 1 xx gt": ExpireArguments(
                b"k", NOW + 1000, onlyIfSome=True, onlyIfLater=True
            ),
            "expire k 1 LT": ExpireArguments(b"k", NOW + 1000, onlyIfEarlier=True),
        }
        for text, expected in cases.items():
            self.assertEqual(parseExpire(line(text), NOW), expected, text)

    def test_errors(self) -> None:
        nx = "ERR NX and XX, GT or LT options at the same time are not compatible"
        cases = {
            "expire k 1 nx xx": nx,
            "expire k 1 gt nx": nx,
            "expire k 1 nx lt": nx,
            "expire k 1 gt lt": (
                "ERR GT and LT options at the same time are not compatible"
            ),
            "expire k 1 foo": "ERR Unsupported option foo",
            "expire k x": "ERR value is not an integer or out of range",
            # Options are checked before the number.
            "expire k x foo": "ERR Unsupported option foo",
            f"expire k {INT64_MAX // 1000 + 1}": (
                "ERR invalid expire time in 'expire' command"
            ),
            f"pexpire k {INT64_MAX}": "ERR invalid expire time in 'pexpire' command",
        }
        for text, message in cases.items():
            self.assertRefused(parseExpire, text, message, NOW)
        self.assertEqual(
            parseExpire(line(f"pexpireat k {INT64_MAX}"), NOW).atMs, INT64_MAX
        )


class NumberTests(ArgumentTestCase):
    def test_increments(self) -> None:
        self.assertEqual(
            [
                parseIncrement(line(text))
                for text in ("incr k", "DECR k", "incrby k 5", "decrby k 5")
            ],
            [1, -1, 5, -5],
        )
        self.assertRefused(
            parseIncrement,
            "incrby k 1.0",
            "ERR value is not an integer or out of range",
        )
        self.assertRefused(
            parseIncrement, f"decrby k {-(2**63)}", "ERR decrement would overflow"
        )

    def test_integers(self) -> None:
        self.assertEqual(integerArgument(b"-42"), -42)
        for text in (b"", b" 1", b"+1", b"0x10", b"1e3", b"99999999999999999999"):
            error = self.assertRaises(ArgumentError, integerArgument, text)
            self.assertEqual(
                error.message, "ERR value is not an integer or out of range"
            )

    def test_floats(self) -> None:
        cases = {
            b"1": 1.0,
            b"-1.5": -1.5,
            b".5": 0.5,
            b"5.": 5.0,
            b"+1e3": 1000.0,
            b"1E-2": 0.01,
            b"inf": float("inf"),
            b"-Infinity": float("-inf"),
        }
        for text, value in cases.items():
            self.assertEqual(floatArgument(text), value, text)
        for text in (b"", b" 1", b"1 ", b"1_000", b"nan", b"abc", b"1e", b"."):
            error = self.assertRaises(ArgumentError, floatArgument, text)
            self.assertEqual(error.message, "ERR value is not a valid float", text)


class ScanTests(ArgumentTestCase):
    def test_options(self) -> None:
        cases = {
            "scan 0": ScanArguments(0),
            "scan 18446744073709551615": ScanArguments(2**64 - 1),
            "scan 7 MATCH user:* count 100 TYPE String": ScanArguments(
                7, b"user:*", 100, "string"
            ),
            "scan 0 match *": ScanArguments(0),
            "scan 0 count 1 count 2": ScanArguments(0, count=2),
        }
        for text, expected in cases.items():
            self.assertEqual(parseScan(line(text)), expected, text)

    def test_cursorAsStrtoul(self) -> None:
        """
        Redis reads the cursor with C{strtoul}: a sign, leading zeros and
        even nothing at all are accepted, a negative cursor wraps.
        """
        cases = {
            b"007": 7,
            b"+0": 0,
            b"-0": 0,
            b"": 0,
            b"-1": 2**64 - 1,
            b"-18446744073709551615": 1,
        }
        for text, cursor in cases.items():
            self.assertEqual(parseScan([b"scan", text]).cursor, cursor, text)
        for text in (b"+", b"-", b" 1", b"1 ", b"0x10", b"1e3"):
            error = self.assertRaises(ArgumentError, parseScan, [b"scan", text])
            self.assertEqual(error.message, "ERR invalid cursor", text)
        error = self.assertRaises(
            ArgumentError, parseScan, [b"scan", b"-18446744073709551616"]
        )
        self.assertEqual(error.message, "ERR invalid cursor")

    def test_errors(self) -> None:
        cases = {
            "scan x": "ERR invalid cursor",
            "scan 18446744073709551616": "ERR invalid cursor",
            "scan 0 count": "ERR syntax error",
            "scan 0 count 0": "ERR syntax error",
            "scan 0 count x": "ERR value is not an integer or out of range",
            "scan 0 bogus 1": "ERR syntax error",
            "scan 0 type Widget": "ERR unknown type name 'Widget'",
        }
        for text, message in cases.items():
            self.assertRefused(parseScan, text, message)
