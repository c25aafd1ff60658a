"""
Tests for L{disperse.resp.keyspace} and L{disperse.cluster.keyspace}: SCAN,
KEYS, RANDOMKEY, DBSIZE and FLUSHALL on a node alone and over clusters held
in memory, where a node lists (and counts) the partitions it does not hold
from their owners; replies and errors as Redis 7 gives them.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from disperse.cluster import keyspace, replica
from disperse.cluster.coordinator import Consistency
from disperse.cluster.keyspace import ROOTS_WINDOW
from disperse.config import NodeConfig
from disperse.node import NotJoined
from disperse.resp.keyspace import CURSOR_END, cursorPosition
from disperse.resp.replies import OK, Reply
from disperse.security.tokens import READ, Grant
from disperse.store.partition import PARTITION_COUNT, partitionOf
from disperse.store.store import LEAF_COUNT
from disperse.testing.nodes import MemoryNodes
from disperse.testing.resp import handlerContext
from tests.resp.commandcase import CommandTestCase, Word, started


def page(reply: Reply) -> tuple[bytes, list[bytes]]:
    """
    The cursor and keys of a SCAN reply.
    """
    assert isinstance(reply, list) and len(reply) == 2
    cursor, keys = reply
    assert isinstance(cursor, bytes) and isinstance(keys, list)
    listed = [key for key in keys if isinstance(key, bytes)]
    assert len(listed) == len(keys)
    return cursor, listed


def scanAll(
    call: object, *options: Word, limit: int = 10_000
) -> tuple[list[bytes], int]:
    """
    Every key a SCAN iteration with C{options} returns, following its
    cursor from 0 back to 0, and how many calls that took.
    """
    assert callable(call)
    keys: list[bytes] = []
    cursor = b"0"
    for calls in range(1, limit + 1):
        cursor, listed = page(call("SCAN", cursor, *options))
        keys.extend(listed)
        if cursor == b"0":
            return keys, calls
    raise AssertionError("the cursor did not come back to 0")


class ScanTests(CommandTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.names = [f"user:{n}".encode() for n in range(200)] + [b"other"]
        self.call("MSET", *[word for name in self.names for word in (name, b"v")])

    def test_everyKey(self) -> None:
        for count in (1, 10, 1000):
            keys, calls = scanAll(self.call, "COUNT", count)
            self.assertEqual(sorted(keys), sorted(self.names), count)
            if count == 1000:
                self.assertEqual(calls, 1)

    def test_countIsAHint(self) -> None:
        """
        A call lists whole leaves until it has seen COUNT keys: about
        COUNT keys, unless the keyspace ends or the call has listed ten
        times COUNT partitions.
        """
        cursor, keys = page(self.call("SCAN", 0, "COUNT", 20))
        self.assertNotEqual(cursor, b"0")
        self.assertGreaterEqual(len(keys), 20)
        self.assertLess(len(keys), 40)

    def test_cursor(self) -> None:
        """
        The cursor is the partition and leaf to go on with: any node can
        continue it, and one beyond the keyspace ends at once.
        """
        self.assertEqual(cursorPosition(0), (0, 0))
        self.assertEqual(cursorPosition(5 * LEAF_COUNT + 7), (5, 7))
        self.assertIsNone(cursorPosition(CURSOR_END))
        self.assertEqual(self.call("SCAN", CURSOR_END), [b"0", []])
        self.assertEqual(self.call("SCAN", 2**64 - 1), [b"0", []])
        cursor, keys = page(self.call("SCAN", 0, "COUNT", 5))
        position = cursorPosition(int(cursor))
        assert position is not None
        partition, _ = position
        for key in keys:
            self.assertLessEqual(partitionOf(key.decode()), partition)

    def test_partitionListedInParts(self) -> None:
        """
        A partition with more keys than COUNT is listed a few leaves per
        call, the cursor pointing into it; keys deleted there (tombstones)
        do not end a call early or make it skip leaves.
        """
        tagged = [f"{{tag}}:{n}".encode() for n in range(300)]
        self.call("MSET", *[word for name in tagged for word in (name, b"v")])
        self.call("DEL", *tagged[::2])
        partition = partitionOf("{tag}")
        keys, calls = scanAll(self.call, "MATCH", "{tag}:*", "COUNT", 3)
        self.assertEqual(sorted(keys), sorted(tagged[1::2]))
        self.assertGreater(calls, 20)
        cursors = []
        cursor = b"0"
        while True:
            cursor, _ = page(self.call("SCAN", cursor, "COUNT", 3))
            if cursor == b"0":
                break
            cursors.append(cursorPosition(int(cursor)))
        self.assertGreater(
            sum(1 for p in cursors if p is not None and p[0] == partition), 20
        )

    def test_match(self) -> None:
        keys, _ = scanAll(self.call, "MATCH", "user:1?", "COUNT", 7)
        self.assertEqual(sorted(keys), sorted(f"user:1{n}".encode() for n in range(10)))
        keys, _ = scanAll(self.call, "MATCH", "other")
        self.assertEqual(keys, [b"other"])
        keys, _ = scanAll(self.call, "MATCH", "*")
        self.assertEqual(len(keys), len(self.names))

    def test_type(self) -> None:
        keys, _ = scanAll(self.call, "TYPE", "string")
        self.assertEqual(sorted(keys), sorted(self.names))
        for name in ("hash", "list", "set", "zset", "stream"):
            self.assertEqual(self.call("SCAN", 0, "TYPE", name), [b"0", []])

    def test_errors(self) -> None:
        cases = {
            ("SCAN", "x"): "ERR invalid cursor",
            ("SCAN", "18446744073709551616"): "ERR invalid cursor",
            ("SCAN", 0, "COUNT", 0): "ERR syntax error",
            ("SCAN", 0, "COUNT", "x"): "ERR value is not an integer or out of range",
            ("SCAN", 0, "MATCH"): "ERR syntax error",
            ("SCAN", 0, "FOO", 1): "ERR syntax error",
            ("SCAN", 0, "TYPE", "widget"): "ERR unknown type name 'widget'",
        }
        for line, message in cases.items():
            self.assertEqual(self.refused(*line), message, line)

    def test_deletedAndExpiredKeysAreNotListed(self) -> None:
        self.call("DEL", "user:1")
        self.call("SET", "user:2", "v", "PX", 10)
        self.clock.advance(0.01)
        keys, _ = scanAll(self.call)
        self.assertEqual(sorted(keys), sorted(set(self.names) - {b"user:1", b"user:2"}))

    def test_keysThatStayAreReturned(self) -> None:
        """
        Keys present from the start of an iteration to its end are all
        returned, whatever is written and deleted meanwhile.
        """
        keys: list[bytes] = []
        cursor = b"0"
        step = 0
        while True:
            cursor, listed = page(self.call("SCAN", cursor, "COUNT", 3))
            keys.extend(listed)
            if cursor == b"0":
                break
            step += 1
            self.call("SET", f"new:{step}", "v")
            self.call("DEL", f"new:{step - 1}", f"user:{100 + step % 50}")
        deleted = {f"user:{100 + n % 50}".encode() for n in range(1, step + 1)}
        stayed = set(self.names) - deleted
        self.assertGreater(step, 10)
        self.assertLessEqual(stayed, set(keys))

    def test_prefixGrant(self) -> None:
        """
        A connection whose token is limited to a prefix lists the keys
        under it only.
        """
        self.context.session.grant = Grant(b"d", frozenset({READ}), prefix=b"user:1")
        keys, _ = scanAll(self.call, "COUNT", 50)
        self.assertEqual(
            sorted(keys),
            sorted(name for name in self.names if name.startswith(b"user:1")),
        )
        listed = self.call("KEYS", "*")
        assert isinstance(listed, list)
        self.assertEqual(sorted(listed), sorted(keys))
        for _ in range(20):
            key = self.call("RANDOMKEY")
            assert isinstance(key, bytes)
            self.assertTrue(key.startswith(b"user:1"))


class KeysTests(CommandTestCase):
    def test_patterns(self) -> None:
        self.assertEqual(self.call("KEYS", "*"), [])
        self.call("MSET", "a", "1", "b", "2", "c:1", "3", "c:22", "4")
        cases = {
            "*": [b"a", b"b", b"c:1", b"c:22"],
            "c:*": [b"c:1", b"c:22"],
            "?": [b"a", b"b"],
            "[ab]": [b"a", b"b"],
            "c:??": [b"c:22"],
            "nothing": [],
        }
        for pattern, expected in cases.items():
            listed = self.call("KEYS", pattern)
            assert isinstance(listed, list)
            self.assertEqual(sorted(listed), expected, pattern)


class CounterKeysTests(CommandTestCase):
    def test_countersAreKeysLikeAnyOther(self) -> None:
        self.call("SET", "plain", "v")
        self.call("INCRBY", "counter", 5)
        self.assertEqual(self.call("DBSIZE"), 2)
        keys, _ = scanAll(self.call, "TYPE", "string")
        self.assertEqual(sorted(keys), [b"counter", b"plain"])
        self.assertEqual(self.call("KEYS", "c*"), [b"counter"])
        self.assertEqual(self.call("FLUSHALL"), OK)
        self.assertIsNone(self.call("GET", "counter"))
        self.assertEqual(self.call("DBSIZE"), 0)
        self.assertEqual(self.call("INCR", "counter"), 1)


class RandomKeyTests(CommandTestCase):
    def test_emptyAndNot(self) -> None:
        self.assertIsNone(self.call("RANDOMKEY"))
        names = {f"k{n}".encode() for n in range(50)}
        self.call("MSET", *[word for name in names for word in (name, b"v")])
        seen = {self.call("RANDOMKEY") for _ in range(200)}
        self.assertLessEqual(seen, names)
        self.assertGreater(len(seen), 10)
        self.call("DEL", *names)
        self.assertIsNone(self.call("RANDOMKEY"))


class DbSizeTests(CommandTestCase):
    def test_alone(self) -> None:
        self.assertEqual(self.call("DBSIZE"), 0)
        self.call("MSET", "a", "1", "b", "2", "c", "3")
        self.call("DEL", "b")
        self.assertEqual(self.call("DBSIZE"), 2)
        self.call("SET", "d", "4", "PX", 10)
        self.call("SET", "e", "5", "PX", 10)
        self.assertEqual(self.call("DBSIZE"), 4)

    def test_expiredKeysCountUntilDropped(self) -> None:
        """
        As in Redis, a key that expired counts until it is dropped, by the
        sweep within a second or so.
        """
        self.call("SET", "a", "1")
        self.call("SET", "d", "4", "PX", 10)
        self.call("SET", "e", "5", "PX", 10)
        self.clock.advance(0.01)
        self.assertIsNone(self.call("GET", "d"))
        self.assertEqual(self.call("DBSIZE"), 3)
        # What a running node's sweeper does once the second is over.
        self.clock.advance(1.0)
        self.node.store.sweep(100)
        self.assertEqual(self.call("DBSIZE"), 1)

    def test_notJoined(self) -> None:
        self.node.ready = False
        self.failureResultOf(started(self.context, "DBSIZE"), NotJoined)


class FlushTests(CommandTestCase):
    def test_flush(self) -> None:
        for name in ("FLUSHALL", "FLUSHDB"):
            self.call("MSET", "a", "1", "b", "2")
            self.assertEqual(self.call(name), OK)
            self.assertEqual(self.call("DBSIZE"), 0)
            self.assertEqual(self.call("MGET", "a", "b"), [None, None])
        for line in [("FLUSHALL", "ASYNC"), ("FLUSHALL", "sync"), ("FLUSHDB", "Async")]:
            self.assertEqual(self.call(*line), OK)

    def test_errors(self) -> None:
        for line in [
            ("FLUSHALL", "foo"),
            ("FLUSHALL", "sync", "async"),
            ("FLUSHDB", "x"),
        ]:
            self.assertEqual(self.refused(*line), "ERR syntax error", line)

    def test_olderValuesDoNotComeBack(self) -> None:
        """
        A copy of a value written before the flush, arriving afterwards
        (a hint, a repair), is older than the tombstone.
        """
        self.call("SET", "k", "old")
        record = self.node.store.record("k")
        assert record is not None
        self.call("FLUSHALL")
        self.assertFalse(self.node.store.merge("k", record))
        self.assertIsNone(self.call("GET", "k"))
        self.call("SET", "k", "new")
        self.assertEqual(self.call("GET", "k"), b"new")


class ClusterTestCase(CommandTestCase):
    """
    Commands on node C{a} of a cluster of three held in memory.
    """

    replicas = 1
    level = "one"

    def setUp(self) -> None:
        super().setUp()
        config = NodeConfig(
            nodeName="",
            replicas=self.replicas,
            readConsistency=self.level,
            writeConsistency=self.level,
        )
        self.cluster = MemoryNodes(config=config, clock=self.clock)
        self.node = self.cluster["a"]
        self.context = handlerContext(self.node)

    def resolve(self, deferred: Deferred[Reply]) -> Reply:
        self.cluster.settle(3.0)
        return self.successResultOf(deferred)

    def call(self, *line: Word) -> Reply:
        return self.resolve(started(self.context, *line))

    def callOn(self, name: str, *line: Word) -> Reply:
        return self.resolve(started(handlerContext(self.cluster[name]), *line))

    def remoteCalls(self) -> int:
        return sum(
            count
            for (source, _), count in self.cluster.network.calls.items()
            if source == "a"
        )


class SplitClusterTests(ClusterTestCase):
    """
    Each partition on one node: node a lists two thirds of the keyspace
    from the others.
    """

    def setUp(self) -> None:
        super().setUp()
        self.names = [f"k{n}".encode() for n in range(300)]
        self.call("MSET", *[word for name in self.names for word in (name, b"v")])
        mine = self.node.view.table.partitionsOf("a")
        self.assertTrue(0 < len(mine) < PARTITION_COUNT)
        self.held = {n for n in self.names if partitionOf(n.decode()) in mine}
        self.assertTrue(0 < len(self.held) < len(self.names))
        self.assertEqual(len(self.node.store), len(self.held))

    def test_scanListsOtherNodesKeys(self) -> None:
        before = self.remoteCalls()
        keys, _ = scanAll(self.call, "COUNT", 25)
        self.assertEqual(sorted(keys), sorted(self.names))
        self.assertGreater(self.remoteCalls(), before)

    def test_cursorGoesOnOnAnotherNode(self) -> None:
        cursor, keys = page(self.call("SCAN", 0, "COUNT", 40))
        while cursor != b"0":
            cursor, listed = page(self.callOn("b", "SCAN", cursor, "COUNT", 40))
            keys.extend(listed)
        self.assertEqual(sorted(keys), sorted(self.names))

    def test_longRangesAskedInParts(self) -> None:
        """
        An owner answers a range with at most so many records: a listing
        that may have been cut is asked again, in halves.
        """
        self.patch(replica, "RANGE_MAX_RECORDS", 4)
        self.patch(keyspace, "RANGE_MAX_RECORDS", 4)
        tag = next(
            f"t{n}" for n in range(1000) if "a" not in self.node.view.owners(f"t{n}")
        )
        tagged = [f"{{{tag}}}:{n}".encode() for n in range(40)]
        self.call("MSET", *[word for name in tagged for word in (name, b"v")])
        listed = self.call("KEYS", f"{{{tag}}}:*")
        assert isinstance(listed, list)
        self.assertEqual(sorted(listed), sorted(tagged))

    def test_keysAndRandomKey(self) -> None:
        listed = self.call("KEYS", "k1*")
        assert isinstance(listed, list)
        self.assertEqual(
            sorted(listed),
            sorted(n for n in self.names if n.startswith(b"k1")),
        )
        self.assertIn(self.call("RANDOMKEY"), self.held)

    def test_randomKeyFromOthersWhenEmptyHere(self) -> None:
        self.call("DEL", *self.held)
        self.assertIn(self.call("RANDOMKEY"), set(self.names) - self.held)

    def test_dbsizeCountsTheCluster(self) -> None:
        for name in "abc":
            self.assertEqual(self.callOn(name, "DBSIZE"), len(self.names), name)

    def test_unreachableOwner(self) -> None:
        """
        At level one, a partition whose only owner is down cannot be read:
        SCAN and KEYS answer NOREPLICAS rather than leave its keys out.
        """
        self.cluster.network.down.add("b")
        failure = self.failureResultOf(self.waited(started(self.context, "KEYS", "*")))
        self.assertEqual(
            failure.value.message,
            "NOREPLICAS Not enough replicas answered the read (0 of 1 required)",
        )
        # Nor does DBSIZE count without them.
        failure = self.failureResultOf(self.waited(started(self.context, "DBSIZE")))
        self.assertEqual(
            failure.value.message,
            "NOREPLICAS Not enough replicas answered the count (no owner of"
            f" {len(self.node.view.table.partitionsOf('b'))} partitions answered)",
        )

    def test_flushEverywhere(self) -> None:
        self.assertEqual(self.call("FLUSHALL"), OK)
        for name in "abc":
            self.assertEqual(self.callOn(name, "DBSIZE"), 0, name)
        self.assertEqual(self.call("KEYS", "*"), [])

    def test_flushShort(self) -> None:
        self.cluster.network.down.add("c")
        failure = self.failureResultOf(self.waited(started(self.context, "FLUSHALL")))
        self.assertTrue(failure.value.message.startswith("NOREPLICAS"))
        self.cluster.network.down.clear()
        listed = self.call("KEYS", "*")
        assert isinstance(listed, list)
        # What only c held remains; everything else is gone.
        self.assertEqual(
            {n for n in self.names if n in listed},
            {n for n in self.names if "c" in self.node.view.owners(n.decode())},
        )

    def waited(self, deferred: Deferred[Reply]) -> Deferred[Reply]:
        self.cluster.settle(3.0)
        return deferred


class QuorumClusterTests(ClusterTestCase):
    """
    Each partition on two nodes of three, read at quorum (both).
    """

    replicas = 2
    level = "quorum"

    def setUp(self) -> None:
        super().setUp()
        self.names = [f"k{n}".encode() for n in range(300)]
        self.call("MSET", *[word for name in self.names for word in (name, b"v")])

    def test_agreeingRootsSaveListings(self) -> None:
        """
        Where the owners' Merkle roots agree, one copy is listed: a whole
        iteration asks each other member for roots a window at a time, and
        lists from them only the partitions this node does not hold.
        """
        self.cluster.network.calls.clear()
        keys, calls = scanAll(self.call, "COUNT", 1000)
        self.assertEqual(sorted(keys), sorted(self.names))
        mine = self.node.view.table.partitionsOf("a")
        elsewhere = {partitionOf(n.decode()) for n in self.names} - mine
        # A range call for each partition with keys not held here, and a
        # roots call to each other member for each window of each SCAN
        # call; reading every owner would take over a thousand calls.
        windows = PARTITION_COUNT // ROOTS_WINDOW + calls
        self.assertLessEqual(self.remoteCalls(), len(elsewhere) + 2 * windows)
        self.assertLess(self.remoteCalls(), PARTITION_COUNT // 4)

    def test_divergentReplicasAreMerged(self) -> None:
        """
        A key one owner missed, or deleted on one owner only (a newer
        tombstone), is listed as the newest record says.
        """
        owners = self.node.view.owners
        onlyThere = next(f"x{n}" for n in range(1000) if owners(f"x{n}")[0] != "a")
        holder = self.cluster[owners(onlyThere)[-1]]
        holder.store.merge(onlyThere, holder.store.newRecord(b"v"))
        deleted = next(n for n in self.names if "a" in owners(n.decode()))
        other = self.cluster[next(o for o in owners(deleted.decode()) if o != "a")]
        other.store.delete(deleted.decode())
        keys, _ = scanAll(self.call, "COUNT", 1000)
        self.assertIn(onlyThere.encode(), keys)
        self.assertNotIn(deleted, keys)

    def test_levelOne(self) -> None:
        self.context.session.level = Consistency.one
        before = self.remoteCalls()
        keys, _ = scanAll(self.call, "COUNT", 1000)
        self.assertEqual(sorted(keys), sorted(self.names))
        self.assertGreater(self.remoteCalls(), before)

    def test_shortRead(self) -> None:
        self.cluster.network.down.add("b")
        failure = self.failureResultOf(
            self.waited(started(self.context, "SCAN", 0, "COUNT", 1000))
        )
        self.assertEqual(
            failure.value.message,
            "NOREPLICAS Not enough replicas answered the read (1 of 2 required)",
        )

    def test_dbsizeCountsTheCluster(self) -> None:
        for name in "abc":
            self.assertEqual(self.callOn(name, "DBSIZE"), len(self.names), name)

    def test_flushTombstonesEveryReplica(self) -> None:
        self.assertEqual(self.call("FLUSHALL"), OK)
        for name in "abc":
            store = self.cluster[name].store
            self.assertEqual(len(store), 0, name)
            for key in self.names:
                record = store.record(key.decode())
                if name in self.node.view.owners(key.decode()):
                    assert record is not None
                    self.assertTrue(record.tombstone)

    def waited(self, deferred: Deferred[Reply]) -> Deferred[Reply]:
        self.cluster.settle(3.0)
        return deferred


class ClusterDbSizeTests(ClusterTestCase):
    """
    DBSIZE on node C{a} of three, each partition on two: the partitions a
    holds counted here, the others on their first owner that answers, in
    one call per member a round.
    """

    replicas = 2
    level = "quorum"

    def setUp(self) -> None:
        super().setUp()
        names = [f"k{n}".encode() for n in range(300)]
        self.call("MSET", *[word for name in names for word in (name, b"v")])
        self.call("DEL", *names[:20])
        self.call("INCR", "counter")
        self.total = len(names) - 20 + 1
        table = self.node.view.table
        self.elsewhere = [
            p for p in range(PARTITION_COUNT) if "a" not in table.owners(p)
        ]
        # Some partitions are counted on each of the other two.
        self.assertEqual({table.owners(p)[0] for p in self.elsewhere}, {"b", "c"})
        self.assertLess(len(self.node.store), self.total)
        self.cluster.network.calls.clear()

    def dbsize(self) -> Deferred[Reply]:
        deferred = started(self.context, "DBSIZE")
        self.cluster.settle(3.0)
        return deferred

    def test_oneCallPerMember(self) -> None:
        self.assertEqual(self.call("DBSIZE"), self.total)
        self.assertEqual(self.cluster.network.calls, {("a", "b"): 1, ("a", "c"): 1})
        for name in "bc":
            self.assertEqual(self.callOn(name, "DBSIZE"), self.total, name)

    def test_failingOwner(self) -> None:
        """
        The partitions of an owner that does not answer are counted on
        their next owners, in a second round.
        """
        self.cluster.network.down.add("b")
        self.assertEqual(self.successResultOf(self.dbsize()), self.total)
        self.assertEqual(self.cluster.network.calls, {("a", "b"): 1, ("a", "c"): 2})

    def test_silentOwner(self) -> None:
        self.cluster.network.silent.add("c")
        self.assertEqual(self.successResultOf(self.dbsize()), self.total)
        self.assertEqual(self.cluster.network.calls, {("a", "b"): 2, ("a", "c"): 1})

    def test_ownerCatchingUp(self) -> None:
        """
        An owner catching up on a partition leaves it to the next owner,
        and counts the others.
        """
        table = self.node.view.table
        onB = [p for p in self.elsewhere if table.owners(p)[0] == "b"]
        self.cluster["b"].replica.holdReads(onB[:5])
        self.assertEqual(self.successResultOf(self.dbsize()), self.total)
        self.assertEqual(self.cluster.network.calls, {("a", "b"): 1, ("a", "c"): 2})

    def test_noOwnerAnswers(self) -> None:
        self.cluster.network.down.update({"b", "c"})
        failure = self.failureResultOf(self.dbsize())
        self.assertEqual(
            failure.value.message,
            "NOREPLICAS Not enough replicas answered the count (no owner of"
            f" {len(self.elsewhere)} partitions answered)",
        )

    def test_aloneCountsAtOnce(self) -> None:
        """
        A node that holds every partition (a cluster of one) counts
        without a call, in the same reactor turn.
        """
        alone = MemoryNodes(["solo"], clock=self.clock)["solo"]
        context = handlerContext(alone)
        self.assertEqual(self.successResultOf(started(context, "DBSIZE")), 0)
        alone.store.put("x", b"1")
        self.assertEqual(self.successResultOf(started(context, "DBSIZE")), 1)
