"""
Tests for L{disperse.resp.batch}: pipelines served by the batch path give
the replies, the store, the journal and the counters the per-command path
gives, byte for byte, whatever the pipeline holds.

Each test runs the same bytes through two servers on two nodes that start
alike (same name, same clock readings): one with the batch path, one
without (L{Dispatcher}'s C{batch=False}), and compares everything.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from disperse.config import NodeConfig
from disperse.node import Node
from disperse.persist.log import DiskUnavailable
from disperse.resp.dispatch import Dispatcher
from disperse.resp.server import RespFactory, RespProtocol, wireLimits
from disperse.resp.stats import RespStats
from disperse.security.ratelimit import RateLimiter
from disperse.security.tokens import TokenTable, parseTokens
from disperse.testing.node import makeNode
from disperse.testing.resp import encodeCommand

START = 1_700_000_000.0
MAX_VALUE = 64
OWNER = "o" * 32
READER = "r" * 32
PREFIXED = "p" * 32
TOKENS = parseTokens(
    f"{OWNER} read,write\n{READER} read\n{PREFIXED} read,write {{t}}\n"
)


@dataclass
class RecordingJournal:
    """
    A journal that remembers what the store told it.
    """

    entries: list[tuple[int, str, bytes]] = field(default_factory=list)

    def stored(self, partition: int, key: str, blob: bytes) -> None:
        self.entries.append((partition, key, blob))

    def dropped(self, partition: int) -> None:
        self.entries.append((partition, "", b""))


@dataclass
class FailingDisk:
    """
    What the node reads of a data directory whose disk fails.
    """

    loading: bool = False
    fsync: str = "everysec"
    writable: bool = False

    def checkWritable(self) -> None:
        raise DiskUnavailable("no space left on device")


class Side:
    """
    One node and one connection to its Redis port, with or without the
    batch path.
    """

    def __init__(
        self,
        batch: bool,
        tokens: TokenTable | None = None,
        rate: float | None = None,
    ) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.node = makeNode(
            NodeConfig(nodeName="a", maxValueSize=MAX_VALUE),
            self.clock,
        )
        # Counters draw an actor at random: the same on both sides.
        self.node.increments._random = random.Random(7)
        self.journal = RecordingJournal()
        self.node.store.journal = self.journal
        self.stats = RespStats()
        limiter = None
        if rate is not None:
            limiter = RateLimiter(self.clock, rate, burst=rate)
        self.dispatcher = Dispatcher(
            self.stats, self.clock.seconds, perClient=limiter, batch=batch
        )
        self.factory = RespFactory(
            self.node,
            self.dispatcher,
            self.clock,
            wireLimits(MAX_VALUE),
            tokens=lambda: tokens,
        )
        address = IPv4Address("TCP", "10.0.0.1", 5000)
        protocol = self.factory.buildProtocol(address)
        assert isinstance(protocol, RespProtocol)
        self.protocol = protocol
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 6380), peerAddress=address
        )
        protocol.makeConnection(self.transport)

    def feed(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def state(self) -> dict[str, Any]:
        """
        Everything the two paths must agree on, but the latencies.
        """
        node: Node = self.node
        return {
            "replies": self.transport.value(),
            "records": sorted(node.store.records(expired=True)),
            "store": node.store.stats(),
            "journal": self.journal.entries,
            "coordinator": node.coordinator.counters,
            "calls": {
                name: (series.calls, series.failed)
                for name, series in self.stats.commands.items()
            },
            "rateLimited": self.stats.rateLimited,
            "commands": self.protocol.session.commands,
        }


def both(**options: Any) -> tuple[Side, Side]:
    return Side(batch=True, **options), Side(batch=False, **options)


KEYS = [b"a", b"b", b"{t}c", b"{t}d", b"\xff\xfe", b"k" * 1025]
VALUES = [b"v", b"", b"\xc3\xa9t\xc3\xa9", b"\xff", b"x" * (MAX_VALUE + 1), b"12"]
NUMBERS = [b"1", b"100", b"0", b"-5", b"abc", b"9223372036854775807", b"01"]

keys = st.sampled_from(KEYS)
values = st.sampled_from(VALUES)
numbers = st.sampled_from(NUMBERS)
names = {
    "get": st.sampled_from([b"GET", b"get", b"Get"]),
    "set": st.sampled_from([b"SET", b"set", b"sEt"]),
    "mget": st.sampled_from([b"MGET", b"mget"]),
}

commands = st.one_of(
    st.tuples(names["get"], keys),
    st.tuples(names["get"]),
    st.tuples(names["get"], keys, keys),
    st.tuples(names["set"], keys, values),
    st.tuples(names["set"], keys),
    st.tuples(
        names["set"],
        keys,
        values,
        st.sampled_from([b"EX", b"px", b"PX", b"ex", b"NX", b"KEEPTTL"]),
        numbers,
    ),
    st.tuples(names["set"], keys, values, st.sampled_from([b"NX", b"XX", b"GET"])),
    st.tuples(names["mget"]),
    st.lists(keys, min_size=1, max_size=4).map(lambda ks: (b"MGET", *ks)),
    st.tuples(st.just(b"INCR"), keys),
    st.tuples(st.just(b"DEL"), keys),
    st.tuples(st.just(b"APPEND"), keys, values),
    st.tuples(st.just(b"PEXPIRE"), keys, numbers),
    st.just((b"PING",)),
    st.sampled_from([(b"HELLO", b"3"), (b"HELLO", b"2")]),
    st.sampled_from([(b"MULTI",), (b"EXEC",), (b"DISCARD",)]),
    st.sampled_from(
        [
            (b"DISPERSE", b"CONSISTENCY", b"one"),
            (b"DISPERSE", b"CONSISTENCY", b"all"),
        ]
    ),
)

# A pipeline: reads of a few commands each, with time passing between
# some of them (expiry).
pipelines = st.lists(
    st.tuples(
        st.lists(commands, min_size=1, max_size=12),
        st.sampled_from([0.0, 0.0, 0.05, 2.0]),
    ),
    min_size=1,
    max_size=6,
)


def play(sides: tuple[Side, Side], pipeline: list[tuple[list[Any], float]]) -> None:
    for batch, later in pipeline:
        data = b"".join(encodeCommand(*words) for words in batch)
        for side in sides:
            side.feed(data)
        for side in sides:
            side.clock.advance(later)


class SamePipelineTests(SynchronousTestCase):
    """
    Random pipelines, through both paths.
    """

    def assertAlike(self, sides: tuple[Side, Side]) -> None:
        batched, single = sides
        self.assertEqual(batched.state(), single.state())

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(pipelines)
    def test_open(self, pipeline: list[tuple[list[Any], float]]) -> None:
        """
        A node without tokens or limits.
        """
        sides = both()
        play(sides, pipeline)
        self.assertAlike(sides)

    @settings(
        max_examples=100,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        st.sampled_from([None, OWNER, READER, PREFIXED]),
        pipelines,
    )
    def test_tokens(
        self, token: str | None, pipeline: list[tuple[list[Any], float]]
    ) -> None:
        """
        With tokens: before C{AUTH}, and with a token that may not write,
        or only keys of its prefix.
        """
        sides = both(tokens=TOKENS)
        if token is not None:
            pipeline = [([(b"AUTH", token.encode())], 0.0), *pipeline]
        play(sides, pipeline)
        self.assertAlike(sides)

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(pipelines)
    def test_rateLimited(self, pipeline: list[tuple[list[Any], float]]) -> None:
        """
        With a rate limit that refuses some of the commands.
        """
        sides = both(rate=5.0)
        play(sides, pipeline)
        self.assertAlike(sides)


class BatchTests(SynchronousTestCase):
    """
    The batch path in the cases it must not take, or takes.
    """

    def run_(self, sides: tuple[Side, Side], *lines: tuple[bytes, ...]) -> bytes:
        data = b"".join(encodeCommand(*words) for words in lines)
        for side in sides:
            side.feed(data)
        batched, single = sides
        self.assertEqual(batched.state(), single.state())
        replies: bytes = batched.transport.value()
        return replies

    def test_pipeline(self) -> None:
        """
        A pipeline of plain writes and reads is answered in order, each
        reading the writes before it, and counted per command.
        """
        sides = both()
        replies = self.run_(
            sides,
            (b"SET", b"a", b"1"),
            (b"GET", b"a"),
            (b"SET", b"a", b"2", b"PX", b"100"),
            (b"MGET", b"a", b"b"),
            (b"GET", b"b"),
        )
        self.assertEqual(
            replies, b"+OK\r\n$1\r\n1\r\n+OK\r\n*2\r\n$1\r\n2\r\n$-1\r\n$-1\r\n"
        )
        calls = sides[0].stats.commands
        self.assertEqual(
            (calls["set"].calls, calls["get"].calls, calls["mget"].calls), (2, 2, 1)
        )
        self.assertEqual(sides[0].node.store.stats().hits, 2)
        self.assertEqual(sides[0].node.store.stats().misses, 2)
        for side in sides:
            side.clock.advance(0.1)
        self.assertEqual(self.run_(sides, (b"GET", b"a"))[-5:], b"$-1\r\n")

    def test_onePass(self) -> None:
        """
        The batch path answers plain reads and writes on a node alone
        without the per-command operations of the node.
        """
        batched = Side(batch=True)

        def unused(*args: object, **kwargs: object) -> object:
            raise AssertionError("the per-command path ran")

        batched.node.get = unused  # type: ignore[method-assign,assignment]
        batched.node.putUntil = unused  # type: ignore[method-assign,assignment]
        batched.feed(
            encodeCommand(b"SET", b"a", b"1", b"EX", b"10")
            + encodeCommand(b"MGET", b"a", b"b")
            + encodeCommand(b"get", b"a")
        )
        self.assertEqual(
            batched.transport.value(), b"+OK\r\n*2\r\n$1\r\n1\r\n$-1\r\n$1\r\n1\r\n"
        )

    def test_journal(self) -> None:
        """
        Every write of the batch path reaches the store's journal.
        """
        sides = both()
        self.run_(sides, *[(b"SET", b"k%d" % n, b"v") for n in range(20)])
        self.assertEqual(
            [key for _, key, _ in sides[0].journal.entries],
            [f"k{n}" for n in range(20)],
        )

    def test_counter(self) -> None:
        """
        A counter reads as its number.
        """
        sides = both()
        replies = self.run_(
            sides, (b"INCR", b"n"), (b"INCR", b"n"), (b"GET", b"n"), (b"MGET", b"n")
        )
        self.assertEqual(replies, b":1\r\n:2\r\n$1\r\n2\r\n*1\r\n$1\r\n2\r\n")

    def test_diskUnavailable(self) -> None:
        """
        While the disk fails, writes are refused as L{DiskUnavailable} says,
        and reads go on.
        """
        sides = both()
        self.run_(sides, (b"SET", b"a", b"1"))
        for side in sides:
            side.node.persistence = FailingDisk()  # type: ignore[assignment]
        replies = self.run_(sides, (b"SET", b"a", b"2"), (b"GET", b"a"))
        self.assertEqual(
            replies,
            b"+OK\r\n-ERR no space left on device: this node refuses writes until"
            b" its disk works again (reads go on)\r\n$1\r\n1\r\n",
        )

    def test_notJoined(self) -> None:
        """
        Before the node joined, reads and writes answer C{CLUSTERDOWN}.
        """
        sides = both()
        for side in sides:
            side.node.ready = False
        replies = self.run_(sides, (b"SET", b"a", b"1"), (b"GET", b"a"))
        self.assertEqual(replies.count(b"-CLUSTERDOWN"), 2)

    def test_loading(self) -> None:
        """
        While the node, alone, loads its data directory, reads answer
        C{LOADING}.
        """
        sides = both()
        for side in sides:
            side.node.persistence = FailingDisk(  # type: ignore[assignment]
                loading=True, writable=True
            )
            side.node.replica.beginLoading()
        replies = self.run_(sides, (b"GET", b"a"), (b"MGET", b"a"))
        self.assertEqual(replies.count(b"-LOADING"), 2)

    def test_multi(self) -> None:
        """
        Inside C{MULTI}, commands are queued, not served.
        """
        sides = both()
        replies = self.run_(
            sides,
            (b"MULTI",),
            (b"SET", b"a", b"1"),
            (b"GET", b"a"),
            (b"EXEC",),
            (b"GET", b"a"),
        )
        self.assertEqual(
            replies,
            b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n$1\r\n1\r\n$1\r\n1\r\n",
        )

    def test_busyKey(self) -> None:
        """
        A write to a key a read-modify-write holds waits behind it, as the
        handler queues it; later commands on other keys go on.
        """
        sides = both()
        holds: list[Deferred[None]] = []
        for side in sides:
            hold: Deferred[None] = Deferred()
            side.node.serial.run("a", lambda hold=hold: hold)  # type: ignore[misc]
            holds.append(hold)
        self.assertEqual(self.run_(sides, (b"SET", b"a", b"1"), (b"GET", b"b")), b"")
        for side, hold in zip(sides, holds, strict=True):
            hold.callback(None)
            side.clock.advance(0)
        batched, single = sides
        self.assertEqual(batched.state(), single.state())
        self.assertEqual(batched.transport.value(), b"+OK\r\n$-1\r\n")
