"""
Tests for L{disperse.resp.expiry}: the EXPIRE family, TTL and its
siblings and PERSIST on a node in memory, expiry by advancing its clock;
each sequence's replies were checked against redis-server 7.0.
"""

from __future__ import annotations

from disperse.config import NodeConfig
from disperse.resp.replies import OK
from disperse.testing.nodes import MemoryNodes
from disperse.testing.resp import handlerContext
from tests.resp.commandcase import CommandTestCase, started

INT64_MAX = 2**63 - 1


class TimeToLiveTests(CommandTestCase):
    def test_missingAndPersistent(self) -> None:
        self.call("SET", "k", "v")
        for name in ("TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"):
            self.assertEqual(self.call(name, "no"), -2, name)
            self.assertEqual(self.call(name, "k"), -1, name)

    def test_values(self) -> None:
        self.call("SET", "k", "v", "PX", 100_400)
        atMs = self.nowMs + 100_400
        self.assertEqual(
            self.calls(
                ("TTL", "k"),
                ("PTTL", "k"),
                ("EXPIRETIME", "k"),
                ("PEXPIRETIME", "k"),
            ),
            [100, 100_400, (atMs + 500) // 1000, atMs],
        )

    def test_secondsRoundToNearest(self) -> None:
        self.call("SET", "k", "v")
        for milliseconds, seconds in [(1500, 2), (1499, 1), (500, 1), (499, 0)]:
            self.call("PEXPIRE", "k", milliseconds)
            self.assertEqual(self.call("TTL", "k"), seconds, milliseconds)

    def test_expiresWithTheClock(self) -> None:
        self.call("SET", "k", "v")
        self.assertEqual(self.call("EXPIRE", "k", 10), 1)
        self.clock.advance(4)
        self.assertEqual(self.call("PTTL", "k"), 6000)
        self.clock.advance(6)
        self.assertEqual(self.call("TTL", "k"), -2)
        self.assertIsNone(self.call("GET", "k"))


class ExpireTests(CommandTestCase):
    def test_missingKey(self) -> None:
        self.assertEqual(self.call("EXPIRE", "k", 10), 0)
        self.assertEqual(self.call("EXISTS", "k"), 0)

    def test_conditions(self) -> None:
        self.call("SET", "k", "v")
        self.assertEqual(
            self.calls(
                ("EXPIRE", "k", "50", "XX"),
                ("EXPIRE", "k", "50", "GT"),
                ("EXPIRE", "k", "100", "LT"),
                ("TTL", "k"),
                ("EXPIRE", "k", "50", "NX"),
                ("EXPIRE", "k", "50", "XX"),
                ("TTL", "k"),
                ("EXPIRE", "k", "40", "GT"),
                ("EXPIRE", "k", "60", "GT"),
                ("TTL", "k"),
                ("EXPIRE", "k", "70", "LT"),
                ("EXPIRE", "k", "30", "xx", "lt"),
                ("TTL", "k"),
                ("EXPIRE", "k", "30", "gt", "XX"),
            ),
            [0, 0, 1, 100, 0, 1, 50, 0, 1, 60, 0, 1, 30, 0],
        )

    def test_pastTimesDelete(self) -> None:
        """
        A time not in the future deletes the key, and answers 1; GT never
        lets it, against a key without expiry.
        """
        for line in [
            ("EXPIRE", "k", "-1"),
            ("EXPIRE", "k", "0"),
            ("PEXPIREAT", "k", "1"),
            ("EXPIREAT", "k", "0"),
            ("EXPIRE", "k", "-9223372036854775"),
            ("EXPIRE", "k", "-5", "LT"),
        ]:
            self.call("SET", "k", "v")
            self.assertEqual(self.call(*line), 1, line)
            self.assertEqual(self.call("EXISTS", "k"), 0, line)
            record = self.node.store.record("k")
            assert record is not None
            self.assertTrue(record.tombstone)
        self.call("SET", "k", "v")
        self.assertEqual(self.call("EXPIRE", "k", "-5", "GT"), 0)
        self.assertEqual(self.call("EXPIRE", "k", "-5", "XX"), 0)
        self.assertEqual(self.call("EXISTS", "k"), 1)

    def test_units(self) -> None:
        self.call("SET", "k", "v")
        self.call("PEXPIRE", "k", 1234)
        self.assertEqual(self.call("PTTL", "k"), 1234)
        self.call("EXPIREAT", "k", 2_000_000_000)
        self.assertEqual(self.call("PEXPIRETIME", "k"), 2_000_000_000_000)
        self.call("PEXPIREAT", "k", INT64_MAX)
        self.assertEqual(self.call("PEXPIRETIME", "k"), INT64_MAX)

    def test_keepsTheValue(self) -> None:
        self.call("SET", "k", b"\xffv")
        self.call("EXPIRE", "k", 100)
        self.assertEqual(self.call("GET", "k"), b"\xffv")
        record = self.node.getLocal("k")
        assert record is not None
        self.assertTrue(record.binary)

    def test_errors(self) -> None:
        self.call("SET", "k", "v")
        cases = {
            ("EXPIRE", "k", "10", "FOO"): "ERR Unsupported option FOO",
            ("EXPIRE", "k", "abc", "FOO"): "ERR Unsupported option FOO",
            ("EXPIRE", "k", "10", "NX", "XX"): "ERR NX and XX, GT or LT options"
            " at the same time are not compatible",
            ("EXPIRE", "k", "10", "GT", "LT"): "ERR GT and LT options at the same"
            " time are not compatible",
            ("EXPIRE", "k", "abc"): "ERR value is not an integer or out of range",
            (
                "EXPIRE",
                "k",
                "9223372036854775807",
            ): "ERR invalid expire time in 'expire' command",
            (
                "PEXPIRE",
                "k",
                "9223372036854775807",
            ): "ERR invalid expire time in 'pexpire' command",
            (
                "EXPIRE",
                "k",
                "-9223372036854775808",
            ): "ERR invalid expire time in 'expire' command",
        }
        for line, message in cases.items():
            self.assertEqual(self.refused(*line), message, line)
        self.assertEqual(self.call("TTL", "k"), -1)


class PersistTests(CommandTestCase):
    def test_persist(self) -> None:
        self.assertEqual(
            self.calls(
                ("PERSIST", "no"),
                ("SET", "k", "v", "EX", 50),
                ("PERSIST", "k"),
                ("TTL", "k"),
                ("PERSIST", "k"),
                ("GET", "k"),
            ),
            [0, OK, 1, -1, 0, b"v"],
        )

    def test_noWriteWhenNothingChanges(self) -> None:
        self.call("SET", "k", "v")
        before = self.node.store.record("k")
        self.assertEqual(self.call("PERSIST", "k"), 0)
        self.assertEqual(self.call("EXPIRE", "k", 10, "XX"), 0)
        self.assertEqual(self.node.store.record("k"), before)


class ClusterExpiryTests(CommandTestCase):
    """
    An expiry set through one node holds on every replica.
    """

    def test_everyReplica(self) -> None:
        cluster = MemoryNodes(
            config=NodeConfig(nodeName="", replicas=3), clock=self.clock
        )
        context = handlerContext(cluster["a"])
        started(context, "SET", "k", "v")
        atMs = self.nowMs + 30_000
        expire = started(context, "EXPIRE", "k", 30)
        cluster.settle(1.0)
        self.assertEqual(self.successResultOf(expire), 1)
        for name in "abc":
            record = cluster[name].getLocal("k")
            assert record is not None
            self.assertEqual(record.expiresAtMs, atMs, name)
            ttl = started(handlerContext(cluster[name]), "PEXPIRETIME", "k")
            cluster.settle(1.0)
            self.assertEqual(self.successResultOf(ttl), atMs, name)
        cluster.settle(27.0)
        for name in "abc":
            self.assertIsNone(cluster[name].getLocal("k"), name)
