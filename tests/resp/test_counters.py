"""
Tests for L{disperse.resp.counters}: C{INCR}, C{INCRBY}, C{DECR}, C{DECRBY}
and C{INCRBYFLOAT} called in memory as the dispatcher calls them, on a
node alone; what they write reads the same through the node and the HTTP
API.
"""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from disperse.config import NodeConfig
from disperse.resp.arguments import ArgumentError
from disperse.resp.commands import CommandError
from disperse.resp.replies import Reply
from disperse.store import renderedValue
from disperse.testing.node import makeNode
from disperse.testing.resp import handlerContext, runCommand
from disperse.web.api import CacheAPI

NOT_AN_INTEGER = "ERR value is not an integer or out of range"
NOT_A_FLOAT = "ERR value is not a valid float"


class CounterCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.node = makeNode(NodeConfig(nodeName="a"), self.clock)
        self.ctx = handlerContext(self.node)

    def call(self, *line: bytes) -> Reply:
        reply = runCommand(self.ctx, *line)
        if isinstance(reply, Deferred):
            return self.successResultOf(reply)
        return reply

    def refused(self, *line: bytes) -> str:
        try:
            reply = runCommand(self.ctx, *line)
        except (CommandError, ArgumentError) as error:
            return error.message
        assert isinstance(reply, Deferred)
        failure = self.failureResultOf(reply, CommandError)
        assert isinstance(failure.value, CommandError)
        return failure.value.message

    def read(self, key: str) -> bytes | None:
        outcome = self.node.get(key)
        assert not isinstance(outcome, Deferred)
        record = outcome.value
        return None if record is None else renderedValue(record)


class IntegerTests(CounterCase):
    def test_steps(self) -> None:
        self.assertEqual(self.call(b"INCR", b"k"), 1)
        self.assertEqual(self.call(b"incrby", b"k", b"41"), 42)
        self.assertEqual(self.call(b"DECR", b"k"), 41)
        self.assertEqual(self.call(b"DECRBY", b"k", b"50"), -9)
        self.assertEqual(self.call(b"INCRBY", b"k", b"-1"), -10)
        self.assertEqual(self.read("k"), b"-10")

    def test_fromAPlainValue(self) -> None:
        self.node.put("k", b"100")
        self.assertEqual(self.call(b"INCR", b"k"), 101)
        self.node.put("text", b"abc")
        self.assertEqual(self.refused(b"INCR", b"text"), NOT_AN_INTEGER)
        self.node.put("spaced", b" 1")
        self.assertEqual(self.refused(b"INCR", b"spaced"), NOT_AN_INTEGER)
        # Nothing written.
        self.assertEqual(self.read("text"), b"abc")

    def test_argumentsRefused(self) -> None:
        self.assertEqual(self.refused(b"INCRBY", b"k", b"1.5"), NOT_AN_INTEGER)
        self.assertEqual(self.refused(b"INCRBY", b"k", b"x"), NOT_AN_INTEGER)
        self.assertEqual(
            self.refused(b"DECRBY", b"k", b"-9223372036854775808"),
            "ERR decrement would overflow",
        )
        self.assertEqual(
            self.refused(b"INCR", b"k", b"extra"),
            "ERR wrong number of arguments for 'incr' command",
        )
        self.assertIsNone(self.read("k"))

    def test_overflow(self) -> None:
        self.node.put("k", b"9223372036854775807")
        self.assertEqual(
            self.refused(b"INCR", b"k"), "ERR increment or decrement would overflow"
        )
        self.node.put("k", b"-9223372036854775808")
        self.assertEqual(
            self.refused(b"DECRBY", b"k", b"1"),
            "ERR increment or decrement would overflow",
        )
        self.assertEqual(self.call(b"INCRBY", b"k", b"9223372036854775807"), -1)

    def test_keepsTheTimeToLive(self) -> None:
        self.node.put("k", b"1", ttlMs=60_000)
        before = self.node.store.record("k")
        assert before is not None
        self.assertEqual(self.call(b"INCR", b"k"), 2)
        after = self.node.store.record("k")
        assert after is not None
        self.assertEqual(after.expiresAtMs, before.expiresAtMs)
        self.clock.advance(61)
        self.assertIsNone(self.read("k"))
        # Expired: a new counter from 0.
        self.assertEqual(self.call(b"INCR", b"k"), 1)

    def test_setResets(self) -> None:
        for _ in range(3):
            self.call(b"INCR", b"k")
        self.node.put("k", b"10")
        self.assertEqual(self.read("k"), b"10")
        self.assertEqual(self.call(b"INCR", b"k"), 11)
        self.node.delete("k")
        self.assertIsNone(self.read("k"))
        self.assertEqual(self.call(b"INCR", b"k"), 1)


class FloatTests(CounterCase):
    def test_decimalSteps(self) -> None:
        self.node.put("k", b"10.50")
        self.assertEqual(self.call(b"INCRBYFLOAT", b"k", b"0.1"), b"10.6")
        self.assertEqual(self.call(b"INCRBYFLOAT", b"k", b"-5"), b"5.6")
        self.assertEqual(self.call(b"INCRBYFLOAT", b"k", b"5.0e3"), b"5005.6")
        self.assertEqual(self.read("k"), b"5005.6")
        self.assertEqual(self.call(b"INCRBYFLOAT", b"new", b"0.1"), b"0.1")
        self.assertEqual(self.call(b"INCRBYFLOAT", b"new", b"0.2"), b"0.3")

    def test_onAnIntegerCounter(self) -> None:
        self.call(b"INCRBY", b"k", b"5")
        self.assertEqual(self.call(b"INCRBYFLOAT", b"k", b"1.5"), b"6.5")
        self.assertEqual(self.refused(b"INCR", b"k"), NOT_AN_INTEGER)
        self.assertEqual(self.call(b"INCRBYFLOAT", b"k", b"0.5"), b"7")
        self.assertEqual(self.call(b"INCR", b"k"), 8)

    def test_refused(self) -> None:
        self.node.put("text", b"abc")
        self.assertEqual(self.refused(b"INCRBYFLOAT", b"text", b"1"), NOT_A_FLOAT)
        self.assertEqual(self.refused(b"INCRBYFLOAT", b"k", b"nan"), NOT_A_FLOAT)
        self.assertEqual(self.refused(b"INCRBYFLOAT", b"k", b" 1"), NOT_A_FLOAT)
        self.assertEqual(
            self.refused(b"INCRBYFLOAT", b"k", b"inf"),
            "ERR increment would produce NaN or Infinity",
        )
        self.node.put("big", b"1.7e308")
        self.assertEqual(
            self.refused(b"INCRBYFLOAT", b"big", b"1e308"),
            "ERR increment would produce NaN or Infinity",
        )
        self.assertIsNone(self.read("k"))


class FrontEndTests(CounterCase):
    def test_httpReadsTheNumber(self) -> None:
        """
        The HTTP API reads a counter as the Redis front end does.
        """
        self.call(b"INCRBY", b"k", b"7")
        self.call(b"INCRBYFLOAT", b"f", b"2.25")
        stub: Any = StubTreq(CacheAPI(self.node).resource())
        for key, expected in (("k", b"7"), ("f", b"2.25")):
            response = self.successResultOf(stub.get(f"http://node/cache/{key}"))
            self.assertEqual(response.code, 200)
            self.assertEqual(self.successResultOf(response.content()), expected)
            head = self.successResultOf(stub.head(f"http://node/cache/{key}"))
            self.assertEqual(
                head.headers.getRawHeaders("content-length"), [str(len(expected))]
            )


class RestampTests(CounterCase):
    def test_counterKeepsItsState(self) -> None:
        """
        L{Node.restamp} (what C{EXPIRE} and C{PERSIST} write) gives a
        counter a new expiry and leaves it a counter.
        """
        self.call(b"INCRBY", b"k", b"5")
        current = self.node.store.record("k")
        assert current is not None
        expiresAtMs = self.node.store.nowMs() + 10_000
        outcome = self.node.restamp("k", current, expiresAtMs)
        assert not isinstance(outcome, Deferred)
        self.assertTrue(outcome.ok)
        record = self.node.store.record("k")
        assert record is not None
        self.assertTrue(record.counter)
        self.assertEqual(record.expiresAtMs, expiresAtMs)
        self.assertGreater(record.version, current.version)
        self.assertEqual(self.call(b"INCR", b"k"), 6)
        self.clock.advance(11)
        self.assertIsNone(self.read("k"))

    def test_pastExpiryDeletes(self) -> None:
        self.node.put("k", b"v")
        current = self.node.store.record("k")
        assert current is not None
        self.node.restamp("k", current, self.node.store.nowMs() - 1)
        self.assertIsNone(self.read("k"))


class StringCommandTests(CounterCase):
    """
    The string and expiry commands see a counter as its number, and keep
    it a counter where they keep the value.
    """

    def test_readsTheNumber(self) -> None:
        self.call(b"INCRBY", b"k", b"12")
        self.call(b"INCRBYFLOAT", b"f", b"0.5")
        self.assertEqual(self.call(b"GET", b"k"), b"12")
        self.assertEqual(self.call(b"MGET", b"k", b"f", b"none"), [b"12", b"0.5", None])
        self.assertEqual(self.call(b"STRLEN", b"f"), 3)

    def test_appendMakesAPlainValue(self) -> None:
        self.call(b"INCRBY", b"k", b"12")
        self.assertEqual(self.call(b"APPEND", b"k", b"3"), 3)
        self.assertEqual(self.call(b"GET", b"k"), b"123")
        self.assertEqual(self.call(b"INCR", b"k"), 124)

    def test_expiryKeepsTheCounter(self) -> None:
        self.call(b"INCRBY", b"k", b"5")
        self.assertEqual(self.call(b"EXPIRE", b"k", b"100"), 1)
        record = self.node.store.record("k")
        assert record is not None
        self.assertTrue(record.counter)
        self.assertEqual(self.call(b"TTL", b"k"), 100)
        self.assertEqual(self.call(b"INCR", b"k"), 6)
        self.assertEqual(self.call(b"TTL", b"k"), 100)
        self.assertEqual(self.call(b"PERSIST", b"k"), 1)
        self.assertEqual(self.call(b"TTL", b"k"), -1)
        self.assertEqual(self.call(b"GETEX", b"k", b"EX", b"50"), b"6")
        self.assertEqual(self.call(b"TTL", b"k"), 50)
        self.assertEqual(self.call(b"INCR", b"k"), 7)
