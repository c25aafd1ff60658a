"""
Tests for L{disperse.resp.strings}: the string commands and DEL, EXISTS,
TYPE, TOUCH on a node in memory, replies and errors as a Redis 7 server
gives them (each sequence was checked against redis-server 7.0), and how
they behave on a cluster: read-modify-writes read at the write level and
run one at a time per key on a node, and a short level answers NOREPLICAS.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from disperse.cluster.coordinator import Consistency
from disperse.config import NodeConfig
from disperse.resp.commands import CommandError
from disperse.resp.context import Session
from disperse.resp.replies import OK, Reply, Simple
from disperse.store import Record
from disperse.testing.nodes import MemoryNodes
from disperse.testing.resp import handlerContext, runCommand
from tests.resp.commandcase import CommandTestCase, started

INVALID_SET_EXPIRE = "ERR invalid expire time in 'set' command"
NOT_AN_INTEGER = "ERR value is not an integer or out of range"
SYNTAX = "ERR syntax error"


class GetSetTests(CommandTestCase):
    def test_getAndSet(self) -> None:
        self.assertEqual(
            self.calls(
                ("GET", "k"),
                ("SET", "k", "v"),
                ("GET", "k"),
                ("SET", "k", "w", "NX"),
                ("SET", "k", "w", "XX"),
                ("GET", "k"),
                ("SET", "n", "w", "XX"),
                ("GET", "n"),
            ),
            [None, OK, b"v", None, OK, b"w", None, None],
        )

    def test_replyTypes(self) -> None:
        self.assertIs(type(self.call("SET", "k", "v")), Simple)
        self.assertIs(type(self.call("GET", "k")), bytes)

    def test_setGet(self) -> None:
        """
        C{SET ... GET} answers the old value (nil for none) whether or not
        C{NX}/C{XX} let the write happen.
        """
        self.assertEqual(
            self.calls(
                ("SET", "k", "v", "GET"),
                ("SET", "k", "w", "GET"),
                ("SET", "k", "x", "NX", "GET"),
                ("SET", "z", "x", "XX", "GET"),
                ("EXISTS", "z"),
                ("SET", "k", "y", "XX", "GET"),
                ("GET", "k"),
            ),
            [None, b"v", b"w", None, 0, b"w", b"y"],
        )

    def test_setOptionErrors(self) -> None:
        cases = {
            ("SET", "k", "v", "EX", "0"): INVALID_SET_EXPIRE,
            ("SET", "k", "v", "EX", "-1"): INVALID_SET_EXPIRE,
            ("SET", "k", "v", "EX", "abc"): NOT_AN_INTEGER,
            ("SET", "k", "v", "PX", "10", "EX", "10"): SYNTAX,
            ("SET", "k", "v", "NX", "XX"): SYNTAX,
            ("SET", "k", "v", "KEEPTTL", "EX", "10"): SYNTAX,
            ("SET", "k", "v", "EX"): SYNTAX,
            ("SET", "k", "v", "FOO"): SYNTAX,
            ("SET", "k", "v", "EX", "9223372036854776"): INVALID_SET_EXPIRE,
            ("SET", "k", "v", "PX", "9223372036854775807"): INVALID_SET_EXPIRE,
        }
        for line, message in cases.items():
            self.assertEqual(self.refused(*line), message, line)
        self.assertIsNone(self.call("GET", "k"))

    def test_expiryOptions(self) -> None:
        self.call("SET", "k", "v", "EX", 100)
        self.assertEqual(self.call("PTTL", "k"), 100_000)
        self.call("SET", "k", "v", "PX", 1500)
        self.assertEqual(self.call("PTTL", "k"), 1500)
        self.call("SET", "k", "v", "EXAT", 2_000_000_000)
        self.assertEqual(self.call("PEXPIRETIME", "k"), 2_000_000_000_000)
        self.call("SET", "k", "v", "PXAT", self.nowMs + 5)
        self.assertEqual(self.call("PTTL", "k"), 5)
        self.clock.advance(0.005)
        self.assertIsNone(self.call("GET", "k"))

    def test_keepTtl(self) -> None:
        self.assertEqual(
            self.calls(
                ("SET", "k", "v", "EX", "100"),
                ("TTL", "k"),
                ("SET", "k", "w", "KEEPTTL"),
                ("TTL", "k"),
                ("GET", "k"),
                ("SET", "k", "x"),
                ("TTL", "k"),
            ),
            [OK, 100, OK, 100, b"w", OK, -1],
        )

    def test_expiryInThePastDeletes(self) -> None:
        """
        C{EXAT}/C{PXAT} in the past: C{OK}, and the key is gone (a
        tombstone, not a value that lapses).
        """
        self.call("SET", "k", "old")
        self.assertEqual(self.call("SET", "k", "v", "EXAT", "1"), OK)
        self.assertIsNone(self.call("GET", "k"))
        self.assertEqual(self.call("EXISTS", "k"), 0)
        record = self.node.store.record("k")
        assert record is not None
        self.assertTrue(record.tombstone)
        self.call("SET", "k", "v")
        self.assertEqual(self.call("SET", "k", "w", "PXAT", "1", "GET"), b"v")
        self.assertIsNone(self.call("GET", "k"))

    def test_expires(self) -> None:
        self.call("SET", "k", "v", "EX", 10)
        self.clock.advance(9.999)
        self.assertEqual(self.call("GET", "k"), b"v")
        self.clock.advance(0.001)
        self.assertIsNone(self.call("GET", "k"))

    def test_largeExpiry(self) -> None:
        self.assertEqual(
            self.refused("SET", "k", "v", "EX", "9223372036854775"), INVALID_SET_EXPIRE
        )
        self.assertEqual(self.call("SET", "k", "v", "EXAT", "9223372036854775"), OK)
        self.assertEqual(self.call("EXPIRETIME", "k"), 9223372036854775)

    def test_emptyValue(self) -> None:
        self.assertEqual(
            self.calls(
                ("SET", "k", ""),
                ("GET", "k"),
                ("STRLEN", "k"),
                ("APPEND", "k", ""),
                ("EXISTS", "k"),
            ),
            [OK, b"", 0, 0, 1],
        )

    def test_binaryFlag(self) -> None:
        """
        Values that are empty or not UTF-8 are stored as binary, for the
        HTTP API's content type; text is not.
        """
        for value, binary in [
            (b"text", False),
            ("\u00e9t\u00e9".encode(), False),
            (b"", True),
            (b"\xff\x00", True),
        ]:
            self.call("SET", "k", value)
            record = self.node.getLocal("k")
            assert record is not None
            self.assertEqual((record.value, record.binary), (value, binary))

    def test_valueTooLarge(self) -> None:
        limit = self.config.maxValueSize
        message = f"ERR value is larger than {limit} bytes"
        self.assertEqual(self.refused("SET", "k", b"x" * (limit + 1)), message)
        self.assertEqual(self.call("SET", "k", b"x" * limit), OK)
        self.assertEqual(self.refused("APPEND", "k", "y"), message)
        self.assertEqual(self.call("STRLEN", "k"), limit)
        self.assertEqual(self.refused("MSET", "a", "1", "b", b"x" * 65), message)
        self.assertEqual(self.call("EXISTS", "a"), 0)

    def test_keys(self) -> None:
        self.assertEqual(
            self.refused("SET", b"\xff", "v"), "ERR Disperse keys must be valid UTF-8"
        )
        self.assertEqual(
            self.refused("GET", b"k" * 1025), "ERR key is longer than 1024 bytes"
        )
        self.call("SET", "\u00e9", "v")
        self.assertEqual(self.call("GET", "\u00e9".encode()), b"v")


class SetVariantTests(CommandTestCase):
    def test_setex(self) -> None:
        self.assertEqual(self.call("SETEX", "k", 10, "v"), OK)
        self.assertEqual(self.call("TTL", "k"), 10)
        self.assertEqual(self.call("PSETEX", "k", 1500, "v"), OK)
        self.assertEqual(self.call("PTTL", "k"), 1500)
        cases: list[tuple[tuple[str | int, ...], str]] = [
            (("SETEX", "k", 0, "v"), "ERR invalid expire time in 'setex' command"),
            (("SETEX", "k", -5, "v"), "ERR invalid expire time in 'setex' command"),
            (("SETEX", "k", "x", "v"), NOT_AN_INTEGER),
            (("PSETEX", "k", 0, "v"), "ERR invalid expire time in 'psetex' command"),
        ]
        for line, message in cases:
            self.assertEqual(self.refused(*line), message, line)

    def test_setnx(self) -> None:
        self.assertEqual(
            self.calls(("SETNX", "k", "v"), ("SETNX", "k", "w"), ("GET", "k")),
            [1, 0, b"v"],
        )

    def test_getdel(self) -> None:
        self.assertEqual(
            self.calls(
                ("GETDEL", "k"), ("SET", "k", "v"), ("GETDEL", "k"), ("GET", "k")
            ),
            [None, OK, b"v", None],
        )

    def test_getset(self) -> None:
        self.assertEqual(
            self.calls(
                ("GETSET", "k", "v"),
                ("SET", "k", "v", "EX", "100"),
                ("GETSET", "k", "w"),
                ("TTL", "k"),
                ("GET", "k"),
            ),
            [None, OK, b"v", -1, b"w"],
        )

    def test_getex(self) -> None:
        self.assertEqual(
            self.calls(
                ("GETEX", "k"),
                # A bad time is not looked at for a missing key.
                ("GETEX", "k", "EX", "abc"),
                ("SET", "k", "v"),
                ("GETEX", "k", "EX", "100"),
                ("TTL", "k"),
                ("GETEX", "k", "PERSIST"),
                ("TTL", "k"),
                ("GETEX", "k", "PXAT", self.nowMs + 2000),
                ("PTTL", "k"),
                ("GETEX", "k"),
                ("PTTL", "k"),
                ("GETEX", "k", "EXAT", "1"),
                ("GET", "k"),
            ),
            [None, None, OK, b"v", 100, b"v", -1, b"v", 2000, b"v", 2000, b"v", None],
        )

    def test_getexErrors(self) -> None:
        self.assertEqual(self.refused("GETEX", "k", "FOO"), SYNTAX)
        self.assertEqual(self.refused("GETEX", "k", "EX"), SYNTAX)
        self.assertEqual(self.refused("GETEX", "k", "EX", "10", "PX", "10"), SYNTAX)
        self.assertEqual(self.refused("GETEX", "k", "PX", "100", "PERSIST"), SYNTAX)
        self.assertEqual(self.refused("GETEX", "k", "PERSIST", "PX", "100"), SYNTAX)
        self.call("SET", "k", "v")
        self.assertEqual(self.refused("GETEX", "k", "EX", "abc"), NOT_AN_INTEGER)
        self.assertEqual(
            self.refused("GETEX", "k", "EX", "-1"),
            "ERR invalid expire time in 'getex' command",
        )
        self.assertEqual(self.call("TTL", "k"), -1)

    def test_persistWithoutExpiryWritesNothing(self) -> None:
        self.call("SET", "k", "v")
        before = self.node.store.record("k")
        self.assertEqual(self.call("GETEX", "k", "PERSIST"), b"v")
        self.assertEqual(self.node.store.record("k"), before)


class MultiKeyTests(CommandTestCase):
    def test_msetMget(self) -> None:
        self.assertEqual(
            self.calls(
                ("MSET", "a", "1", "b", "2"),
                ("MGET", "a", "b", "c"),
                ("MSET", "a", "1", "a", "2"),
                ("GET", "a"),
            ),
            [OK, [b"1", b"2", None], OK, b"2"],
        )
        for name in ("MSET", "MSETNX"):
            message = f"ERR wrong number of arguments for '{name.lower()}' command"
            self.assertEqual(self.refused(name, "a", "1", "b"), message)

    def test_msetnx(self) -> None:
        self.assertEqual(
            self.calls(
                ("MSETNX", "a", "1", "b", "2"),
                ("MSETNX", "b", "3", "c", "4"),
                ("MGET", "a", "b", "c"),
                ("MSETNX", "x", "1", "x", "2"),
                ("GET", "x"),
            ),
            [1, 0, [b"1", b"2", None], 1, b"2"],
        )

    def test_append(self) -> None:
        self.assertEqual(
            self.calls(
                ("APPEND", "k", "ab"),
                ("APPEND", "k", "cd"),
                ("GET", "k"),
                ("STRLEN", "k"),
                ("STRLEN", "nope"),
                ("SET", "e", "x", "EX", "100"),
                ("APPEND", "e", "y"),
                ("TTL", "e"),
            ),
            [2, 4, b"abcd", 4, 0, OK, 2, 100],
        )

    def test_del(self) -> None:
        self.assertEqual(
            self.calls(
                ("SET", "a", "1"),
                ("SET", "b", "2"),
                ("DEL", "a", "b", "c", "a"),
                ("UNLINK", "a"),
                ("SET", "a", "1"),
                ("UNLINK", "a", "a"),
                ("MGET", "a", "b"),
            ),
            [OK, OK, 2, 0, OK, 1, [None, None]],
        )

    def test_delWritesATombstoneEvenForAMissingKey(self) -> None:
        """
        A version the replicas read did not hold (written at level one on
        a replica that was not asked) is deleted too.
        """
        self.call("DEL", "k")
        record = self.node.store.record("k")
        assert record is not None
        self.assertTrue(record.tombstone)

    def test_existsTouchType(self) -> None:
        self.assertEqual(
            self.calls(
                ("SET", "a", "1"),
                ("EXISTS", "a", "a", "b"),
                ("TOUCH", "a", "a", "b"),
                ("TYPE", "a"),
                ("TYPE", "b"),
            ),
            [OK, 2, 2, "string", "none"],
        )
        self.assertIs(type(self.call("TYPE", "a")), Simple)


class SynchronousReplyTests(CommandTestCase):
    """
    On a cluster of one, the common commands on idle keys answer at once,
    without a Deferred; on a key busy with a read-modify-write, they wait
    for it, in order.
    """

    def test_plainCommandsAnswerAtOnce(self) -> None:
        context = self.context
        self.assertEqual(runCommand(context, b"SET", b"k", b"v"), OK)
        self.assertEqual(runCommand(context, b"GET", b"k"), b"v")
        self.assertEqual(runCommand(context, b"MSET", b"a", b"1", b"b", b"2"), OK)
        self.assertEqual(
            runCommand(context, b"MGET", b"a", b"b", b"none"), [b"1", b"2", None]
        )
        self.assertEqual(len(self.node.serial), 0)

    def test_blindWritesWithExpiryAnswerAtOnce(self) -> None:
        """
        SET with an expiry only, SETEX and PSETEX are blind writes too.
        """
        context = self.context
        self.assertEqual(runCommand(context, b"SET", b"k", b"v", b"EX", b"10"), OK)
        self.assertEqual(runCommand(context, b"SETEX", b"j", b"10", b"w"), OK)
        self.assertEqual(runCommand(context, b"PSETEX", b"i", b"10000", b"x"), OK)
        self.assertEqual(self.call("MGET", "k", "j", "i"), [b"v", b"w", b"x"])
        self.assertEqual(self.call("PTTL", "i"), 10000)
        self.clock.advance(10)
        self.assertEqual(self.call("MGET", "k", "j", "i"), [None, None, None])

    def test_plainSetRefusesAtOnce(self) -> None:
        """
        A value over the limit is refused by raising, as before the write.
        """
        self.assertRaises(
            CommandError, runCommand, self.context, b"SET", b"k", b"v" * 65
        )

    def test_waitsForBusyKey(self) -> None:
        """
        A plain SET (and an MSET) of a key a read-modify-write holds
        writes after it, in order.
        """
        gate: Deferred[None] = Deferred()
        self.node.serial.run("k", lambda: gate)
        setReply = runCommand(self.context, b"SET", b"k", b"late")
        msetReply = runCommand(self.context, b"MSET", b"j", b"1", b"k", b"later")
        self.assertIsInstance(setReply, Deferred)
        self.assertIsInstance(msetReply, Deferred)
        self.assertIsNone(self.call("GET", "k"))
        self.assertEqual(self.call("GET", "j"), b"1")
        gate.callback(None)
        self.assertEqual(self.successResultOf(setReply), OK)  # type: ignore[arg-type]
        self.assertEqual(self.successResultOf(msetReply), OK)  # type: ignore[arg-type]
        self.assertEqual(self.call("GET", "k"), b"later")
        self.assertEqual(len(self.node.serial), 0)

    def test_msetWritesEveryKeyWhenOneFails(self) -> None:
        """
        A write refused at once still lets MSET write the other keys, then
        fails it.
        """
        node = self.node
        realPut = node.putUntil

        def putUntil(key: str, *rest: object, **kw: object) -> object:
            if key == "bad":
                raise ValueError("refused")
            return realPut(key, *rest, **kw)  # type: ignore[arg-type]

        node.putUntil = putUntil  # type: ignore[method-assign, assignment]
        reply = started(self.context, "MSET", "a", "1", "bad", "2", "c", "3")
        self.failureResultOf(reply, ValueError)
        self.assertEqual(self.call("MGET", "a", "c"), [b"1", b"3"])


class ClusterTests(CommandTestCase):
    """
    Three nodes, each key on two of them; reads at one, writes at quorum.
    """

    def setUp(self) -> None:
        super().setUp()
        config = NodeConfig(
            nodeName="",
            replicas=2,
            readConsistency="one",
            writeConsistency="quorum",
        )
        self.cluster = MemoryNodes(config=config, clock=self.clock)
        self.node = self.cluster["a"]
        self.context = handlerContext(self.node)
        # A key this node holds no replica of, and one it does.
        self.remote = next(
            f"k{n}" for n in range(100) if "a" not in self.node.view.owners(f"k{n}")
        )

    def resolve(self, deferred: Deferred[Reply]) -> Reply:
        self.cluster.settle(2.0)
        return self.successResultOf(deferred)

    def plant(self, key: str, value: bytes) -> None:
        """
        Put C{value} on one replica of C{key} only, as a write at level one
        that reached no other replica would.
        """
        owner = self.cluster[self.node.view.owners(key)[-1]]
        record = owner.store.newRecord(value)
        owner.store.merge(key, record)

    def test_setAndGetAcrossNodes(self) -> None:
        self.assertEqual(
            self.resolve(started(self.context, "SET", self.remote, "v")), OK
        )
        for name in "abc":
            reply = started(handlerContext(self.cluster[name]), "GET", self.remote)
            self.assertEqual(self.resolve(reply), b"v")

    def test_readModifyWriteReadsAtTheWriteLevel(self) -> None:
        """
        A value on one replica of two: a read at one may miss it, but
        SETNX decides on a read at the write level (quorum: both).
        """
        key = self.remote
        self.plant(key, b"there")
        self.assertEqual(self.resolve(started(self.context, "SETNX", key, "v")), 0)
        self.assertEqual(
            self.resolve(started(self.context, "SET", key, "w", "GET")), b"there"
        )

    def test_oneAtATimePerKey(self) -> None:
        """
        Two SETNX of one key from two connections of a node: the second
        reads after the first wrote, so exactly one succeeds.
        """
        other = handlerContext(self.node, Session(clientId=2, address="b:1"))
        first = started(self.context, "SETNX", self.remote, "first")
        second = started(other, "SETNX", self.remote, "second")
        self.assertEqual((self.resolve(first), self.resolve(second)), (1, 0))
        get = started(self.context, "GET", self.remote)
        self.assertEqual(self.resolve(get), b"first")

    def test_appendsInTurn(self) -> None:
        replies = [started(self.context, "APPEND", self.remote, c) for c in "abc"]
        self.assertEqual([self.resolve(r) for r in replies], [1, 2, 3])
        get = started(self.context, "GET", self.remote)
        self.assertEqual(self.resolve(get), b"abc")

    def test_msetnxOverlapping(self) -> None:
        """
        Overlapping MSETNX from two connections wait for each other rather
        than deadlock, and only the first sets anything.
        """
        other = handlerContext(self.node, Session(clientId=2, address="b:1"))
        first = started(self.context, "MSETNX", "x", "1", "y", "1")
        second = started(other, "MSETNX", "y", "2", "x", "2")
        self.assertEqual((self.resolve(first), self.resolve(second)), (1, 0))
        mget = started(self.context, "MGET", "x", "y")
        self.assertEqual(self.resolve(mget), [b"1", b"1"])

    def test_delCountsWhatTheWriteLevelSees(self) -> None:
        self.plant(self.remote, b"there")
        reply = started(self.context, "DEL", self.remote, "missing")
        self.assertEqual(self.resolve(reply), 1)
        for name in "abc":
            record: Record | None = self.cluster[name].store.record(self.remote)
            if name in self.node.view.owners(self.remote):
                assert record is not None
                self.assertTrue(record.tombstone)

    def test_noReplicas(self) -> None:
        """
        With one replica of the key down, a quorum write is short: the
        reply is NOREPLICAS, for blind and conditional writes alike, and
        reads at quorum too.
        """
        self.cluster.network.down.add(self.node.view.owners(self.remote)[-1])
        short = {
            ("SET", self.remote, "v"): "NOREPLICAS Not enough good replicas to"
            " write (1 of 2 required acknowledged)",
            # A read-modify-write is refused by its read already.
            ("SETNX", self.remote, "v"): "NOREPLICAS Not enough replicas answered"
            " the read (1 of 2 required)",
        }
        for line, message in short.items():
            failure = self.failureResultOf(self.waited(started(self.context, *line)))
            self.assertEqual(failure.value.message, message, line)
        self.assertEqual(self.resolve(started(self.context, "GET", self.remote)), b"v")
        self.context.session.level = Consistency.quorum
        failure = self.failureResultOf(
            self.waited(started(self.context, "GET", self.remote))
        )
        self.assertEqual(
            failure.value.message,
            "NOREPLICAS Not enough replicas answered the read (1 of 2 required)",
        )

    def waited(self, deferred: Deferred[Reply]) -> Deferred[Reply]:
        self.cluster.settle(2.0)
        return deferred
