"""
Tests for L{disperse.resp.dispatch}: the checks before a command runs,
transactions, errors, and pipelined replies kept in order, all in memory
over handlers the tests control.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from disperse.cluster.view import NoMajority
from disperse.config import NodeConfig
from disperse.node import NotJoined
from disperse.resp.commands import CommandError, keyPositions, lookupCommand
from disperse.resp.context import HANDLERS, Context, Handler, Session
from disperse.resp.dispatch import (
    DROP,
    EXECABORT,
    NOAUTH,
    Dispatcher,
    Pipeline,
    footprint,
)
from disperse.resp.replies import OK, QUEUED, ErrorReply, Reply
from disperse.resp.stats import RespStats
from disperse.resp.wire import ReplyEncoder
from disperse.security.ratelimit import RateLimiter
from disperse.security.tokens import parseTokens
from disperse.store import ValueTooLarge
from disperse.testing.node import makeNode
from disperse.testing.resp import FakeServer, handlerContext

READER = "r" * 32
WRITER = "w" * 32
TOKENS = parseTokens(f"{READER} read\n{WRITER} read,write\n")


class FakeKeys:
    """
    GET and SET over a dict; keys in C{slow} answer with a L{Deferred} the
    test fires. Every call is recorded, in order.
    """

    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}
        self.slow: set[bytes] = set()
        self.pending: list[tuple[list[bytes], Deferred[Reply]]] = []
        self.calls: list[list[bytes]] = []
        self.raises: BaseException | None = None

    def handlers(self) -> dict[str, Handler]:
        return {**HANDLERS, "get": self.get, "set": self.set, "del": self.delete}

    def _answer(self, args: list[bytes], reply: Reply) -> Reply | Deferred[Reply]:
        self.calls.append(args)
        if self.raises is not None:
            raise self.raises
        if args[1] in self.slow:
            d: Deferred[Reply] = Deferred()
            self.pending.append((args, d))
            return d
        return reply

    def get(self, ctx: Context, args: list[bytes]) -> Reply | Deferred[Reply]:
        return self._answer(args, self.values.get(args[1]))

    def set(self, ctx: Context, args: list[bytes]) -> Reply | Deferred[Reply]:
        self.values[args[1]] = args[2]
        return self._answer(args, OK)

    def delete(self, ctx: Context, args: list[bytes]) -> Reply | Deferred[Reply]:
        removed = sum(self.values.pop(key, None) is not None for key in args[1:])
        return self._answer(args, removed)

    def fire(self, index: int = 0, reply: Reply = OK) -> None:
        _, d = self.pending.pop(index)
        d.callback(reply)


class DispatcherCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.node = makeNode(NodeConfig(nodeName="a"), self.clock)
        self.keys = FakeKeys()
        self.stats = RespStats()
        self.limiter: RateLimiter | None = None
        self.dispatcher = self.makeDispatcher()
        self.ctx = handlerContext(self.node)

    def makeDispatcher(self, perClient: RateLimiter | None = None) -> Dispatcher:
        return Dispatcher(
            self.stats, self.clock.seconds, self.keys.handlers(), perClient=perClient
        )

    def run_(self, *line: bytes) -> Reply | Deferred[Reply]:
        return self.dispatcher.execute(self.ctx, list(line))

    def withTokens(self) -> None:
        cast(FakeServer, self.ctx.server).tokens = TOKENS
        self.ctx.session.authenticated = False


class CheckTests(DispatcherCase):
    def test_unknownCommand(self) -> None:
        """
        An unknown command is answered with Redis's text, not raised.
        """
        self.assertEqual(
            self.run_(b"FOO", b"a"),
            ErrorReply("ERR unknown command 'FOO', with args beginning with: 'a' "),
        )

    def test_arity(self) -> None:
        self.assertEqual(
            self.run_(b"GET"),
            ErrorReply("ERR wrong number of arguments for 'get' command"),
        )
        self.assertEqual(self.keys.calls, [])

    def test_handler(self) -> None:
        self.assertEqual(self.run_(b"SET", b"k", b"v"), OK)
        self.assertEqual(self.run_(b"get", b"k"), b"v")

    def test_noAuth(self) -> None:
        """
        With tokens, everything but the no-auth commands is refused before
        AUTH; AUTH with a token opens the connection.
        """
        self.withTokens()
        self.assertEqual(self.run_(b"GET", b"k"), NOAUTH)
        self.assertEqual(self.run_(b"PING"), NOAUTH)
        self.assertEqual(self.keys.calls, [])
        self.assertEqual(
            self.run_(b"AUTH", b"x" * 32),
            ErrorReply("WRONGPASS invalid username-password pair or user is disabled."),
        )
        self.assertEqual(self.run_(b"AUTH", READER.encode()), OK)
        self.assertEqual(self.run_(b"GET", b"k"), None)

    def test_scope(self) -> None:
        """
        A token without the scope a command needs gets NOPERM naming it.
        """
        self.withTokens()
        self.run_(b"AUTH", b"default", READER.encode())
        self.assertEqual(
            self.run_(b"SET", b"k", b"v"),
            ErrorReply(
                "NOPERM this token has no permission to run the 'set' command:"
                " it needs the write scope"
            ),
        )
        self.assertEqual(self.keys.calls, [])
        self.assertEqual(self.run_(b"AUTH", WRITER.encode()), OK)
        self.assertEqual(self.run_(b"SET", b"k", b"v"), OK)

    def test_rateLimit(self) -> None:
        """
        Over its rate, a client gets an error that says so, and the
        connection stays.
        """
        self.dispatcher = self.makeDispatcher(RateLimiter(self.clock, 1.0, burst=2))
        self.assertEqual(self.run_(b"SET", b"k", b"v"), OK)
        self.assertEqual(self.run_(b"GET", b"k"), b"v")
        refused = self.run_(b"GET", b"k")
        self.assertEqual(
            refused,
            ErrorReply(
                "ERR rate limit: too many commands from this client,"
                " try again in 1000 ms"
            ),
        )
        self.assertEqual(self.stats.rateLimited, 1)
        self.clock.advance(1)
        self.assertEqual(self.run_(b"GET", b"k"), b"v")

    def test_checksOnceKnown(self) -> None:
        """
        A command that ran before (and is found faster since) is checked
        all the same: arity, authentication, scope, MULTI.
        """
        self.withTokens()
        self.run_(b"AUTH", WRITER.encode())
        self.assertEqual(self.run_(b"SET", b"k", b"v"), OK)
        self.assertEqual(
            self.run_(b"SET", b"k"),
            ErrorReply("ERR wrong number of arguments for 'set' command"),
        )
        self.run_(b"AUTH", READER.encode())
        self.assertIn("NOPERM", self.run_(b"SET", b"k", b"v"))
        self.run_(b"RESET")
        self.assertEqual(self.run_(b"SET", b"k", b"v"), NOAUTH)
        self.run_(b"AUTH", WRITER.encode())
        self.run_(b"MULTI")
        self.assertEqual(self.run_(b"SET", b"k", b"v"), QUEUED)

    def test_subcommandsKnownApart(self) -> None:
        """
        Each subcommand of a container runs its own handler, however often
        the container's name was seen.
        """
        self.assertEqual(self.run_(b"CLIENT", b"SETNAME", b"w"), OK)
        self.assertEqual(self.run_(b"CLIENT", b"GETNAME"), b"w")
        self.assertEqual(self.run_(b"CLIENT", b"ID"), 1)
        self.assertEqual(
            self.run_(b"CLIENT", b"NOPE"),
            ErrorReply("ERR unknown subcommand 'NOPE'. Try CLIENT HELP."),
        )

    def test_containerAloneThenSubcommand(self) -> None:
        """
        A container that runs alone (a bare C{COMMAND}, as cluster clients
        send at start-up) does not answer for its subcommands afterwards.
        """

        def command(ctx: Context, args: list[bytes]) -> Reply:
            return [b"every command"]

        def count(ctx: Context, args: list[bytes]) -> Reply:
            return 58

        dispatcher = Dispatcher(
            self.stats,
            self.clock.seconds,
            {"command": command, "command|count": count},
        )
        self.assertEqual(dispatcher.execute(self.ctx, [b"COMMAND"]), [b"every command"])
        self.assertEqual(dispatcher.execute(self.ctx, [b"COMMAND", b"COUNT"]), 58)
        self.assertEqual(dispatcher.execute(self.ctx, [b"COMMAND"]), [b"every command"])

    def test_crossProtocol(self) -> None:
        """
        An HTTP request sent to the Redis port closes it without an answer.
        """
        self.assertIs(self.run_(b"POST", b"/", b"HTTP/1.1"), DROP)
        self.assertTrue(self.ctx.session.closing)


class ErrorTests(DispatcherCase):
    def test_commandError(self) -> None:
        self.keys.raises = CommandError("WRONGTYPE Operation against a key")
        self.assertEqual(
            self.run_(b"GET", b"k"), ErrorReply("WRONGTYPE Operation against a key")
        )
        self.assertEqual(self.stats.commands["get"].failed, 1)

    def test_nodeErrors(self) -> None:
        """
        The node's conditions become Redis's errors of the same meaning.
        """
        cases: list[tuple[BaseException, str]] = [
            (
                NotJoined(),
                "CLUSTERDOWN The cluster is down: this node has not joined"
                " its cluster yet",
            ),
            (
                NoMajority(1, 3),
                "CLUSTERDOWN The cluster is down: this node reaches 1 of 3"
                " known members, not a majority",
            ),
            (
                ValueTooLarge(),
                "OOM command not allowed: the value is larger than this node's"
                " whole memory budget (--max-memory)",
            ),
        ]
        for error, text in cases:
            self.keys.raises = error
            self.assertEqual(self.run_(b"GET", b"k"), ErrorReply(text))

    def test_bugLoggedAndAnswered(self) -> None:
        """
        Any other exception is logged and answered with a bare internal
        error: the client learns nothing of it, and the connection stays.
        """
        self.keys.raises = ZeroDivisionError()
        self.assertEqual(self.run_(b"GET", b"k"), ErrorReply("ERR internal error"))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_asynchronousErrors(self) -> None:
        """
        A handler's L{Deferred} that fails is mapped the same way, and the
        dispatcher's never fails.
        """
        self.keys.slow.add(b"k")
        d = self.run_(b"GET", b"k")
        assert isinstance(d, Deferred)
        _, pending = self.keys.pending.pop()
        pending.errback(NoMajority(2, 5))
        self.assertIn("reaches 2 of 5", self.successResultOf(d))
        d = self.run_(b"GET", b"k")
        assert isinstance(d, Deferred)
        self.keys.pending.pop()[1].errback(KeyError("bug"))
        self.assertEqual(self.successResultOf(d), ErrorReply("ERR internal error"))
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_finishedDeferred(self) -> None:
        """
        A L{Deferred} that has fired already is answered as a plain reply.
        """

        def get(ctx: Context, args: list[bytes]) -> Deferred[Reply]:
            return succeed(b"now")

        dispatcher = Dispatcher(self.stats, self.clock.seconds, {"get": get})
        self.assertEqual(dispatcher.execute(self.ctx, [b"GET", b"k"]), b"now")

    def test_deferredSubclass(self) -> None:
        """
        A handler may answer with a subclass of Deferred; the dispatcher
        answers with a plain one, which is all the pipeline looks for.
        """

        class Special(Deferred[Reply]):
            pass

        special = Special()

        def get(ctx: Context, args: list[bytes]) -> Deferred[Reply]:
            return special

        dispatcher = Dispatcher(self.stats, self.clock.seconds, {"get": get})
        d = dispatcher.execute(self.ctx, [b"GET", b"k"])
        self.assertIs(type(d), Deferred)
        assert isinstance(d, Deferred)
        special.callback(b"v")
        self.assertEqual(self.successResultOf(d), b"v")

    def test_latency(self) -> None:
        """
        Each call's time is counted under its command, by the injected
        clock, failures apart.
        """
        self.keys.slow.add(b"k")
        d = self.run_(b"SET", b"k", b"v")
        assert isinstance(d, Deferred)
        self.clock.advance(0.02)
        self.keys.fire()
        self.assertEqual(self.successResultOf(d), OK)
        series = self.stats.commands["set"]
        self.assertEqual((series.calls, series.failed), (1, 0))
        self.assertAlmostEqual(series.seconds, 0.02)
        session = self.ctx.session
        self.assertEqual((session.lastCommand, session.commands), ("set", 1))


class TransactionTests(DispatcherCase):
    def test_queuedAndRunInOrder(self) -> None:
        """
        After MULTI, commands answer QUEUED; EXEC runs them one after the
        other, each once the one before has finished, and answers an array
        with each command's error in its place.
        """
        self.keys.slow.add(b"a")
        self.assertEqual(self.run_(b"MULTI"), OK)
        self.assertEqual(self.run_(b"SET", b"a", b"1"), QUEUED)
        self.assertEqual(self.run_(b"GET", b"a"), QUEUED)
        self.assertEqual(self.run_(b"SET", b"b", b"2", b"bogus"), QUEUED)
        self.assertEqual(self.keys.calls, [])
        self.keys.raises = None
        d = self.run_(b"EXEC")
        assert isinstance(d, Deferred)
        self.assertEqual(self.keys.calls, [[b"SET", b"a", b"1"]])
        self.keys.fire()
        self.assertEqual(len(self.keys.calls), 2)
        self.keys.raises = CommandError("ERR syntax error")
        self.keys.fire(0, b"1")
        self.assertEqual(
            self.successResultOf(d), [OK, b"1", ErrorReply("ERR syntax error")]
        )
        self.assertIsNone(self.ctx.session.queued)

    def test_synchronousExec(self) -> None:
        self.run_(b"MULTI")
        self.run_(b"SET", b"a", b"1")
        self.run_(b"GET", b"a")
        self.assertEqual(self.run_(b"EXEC"), [OK, b"1"])

    def test_abortedByQueueErrors(self) -> None:
        """
        A command refused while queueing (unknown, wrong arity) makes EXEC
        discard the transaction.
        """
        for refused in ([b"NOPE"], [b"GET"]):
            self.run_(b"MULTI")
            self.run_(b"SET", b"a", b"1")
            self.assertIsInstance(self.run_(*refused), ErrorReply)
            self.assertEqual(self.run_(b"EXEC"), EXECABORT)
            self.assertEqual(self.keys.calls, [])
            self.assertIsNone(self.ctx.session.queued)

    def test_abortedByNoPermission(self) -> None:
        self.withTokens()
        self.run_(b"AUTH", READER.encode())
        self.run_(b"MULTI")
        self.assertIn("NOPERM", self.run_(b"SET", b"a", b"1"))
        self.assertEqual(self.run_(b"EXEC"), EXECABORT)

    def test_texts(self) -> None:
        """
        MULTI, EXEC and DISCARD out of place, and WATCH, answer with
        Redis's texts (WATCH: what Disperse does not support, and why).
        """
        self.assertEqual(self.run_(b"EXEC"), ErrorReply("ERR EXEC without MULTI"))
        self.assertEqual(self.run_(b"DISCARD"), ErrorReply("ERR DISCARD without MULTI"))
        watch = self.run_(b"WATCH", b"a")
        assert isinstance(watch, ErrorReply)
        self.assertIn("WATCH is not supported", watch)
        self.assertIn("leaderless", watch)
        self.assertIn("compare-and-set", watch)
        self.assertEqual(self.run_(b"UNWATCH"), OK)
        self.run_(b"MULTI")
        self.assertEqual(
            self.run_(b"MULTI"), ErrorReply("ERR MULTI calls can not be nested")
        )
        self.assertEqual(
            self.run_(b"WATCH", b"a"),
            ErrorReply("ERR WATCH inside MULTI is not allowed"),
        )
        self.run_(b"SET", b"a", b"1")
        self.assertEqual(self.run_(b"DISCARD"), OK)
        self.assertEqual(self.keys.calls, [])
        self.assertEqual(self.run_(b"EXEC"), ErrorReply("ERR EXEC without MULTI"))

    def test_nestedMultiDoesNotAbort(self) -> None:
        self.run_(b"MULTI")
        self.run_(b"MULTI")
        self.run_(b"SET", b"a", b"1")
        self.assertEqual(self.run_(b"EXEC"), [OK])

    def test_levelAppliesInside(self) -> None:
        """
        A DISPERSE CONSISTENCY queued in a transaction sets the level of
        the commands after it.
        """
        levels: list[str] = []

        def get(ctx: Context, args: list[bytes]) -> Reply:
            levels.append(ctx.readLevel.value)
            return None

        dispatcher = Dispatcher(
            self.stats, self.clock.seconds, {**HANDLERS, "get": get}
        )
        for line in (
            [b"MULTI"],
            [b"GET", b"a"],
            [b"DISPERSE", b"CONSISTENCY", b"all"],
            [b"GET", b"a"],
            [b"EXEC"],
        ):
            dispatcher.execute(self.ctx, line)
        self.assertEqual(levels, ["quorum", "all"])


class FootprintTests(SynchronousTestCase):
    def test_keys(self) -> None:
        self.assertEqual(footprint([b"GET", b"a"]), (b"a",))
        self.assertEqual(footprint([b"mset", b"a", b"1", b"b", b"2"]), (b"a", b"b"))
        self.assertEqual(footprint([b"DEL", b"a", b"b"]), (b"a", b"b"))

    def test_common(self) -> None:
        """
        GET, SET and MGET, which the footprint reads without the command
        table, have the keys the table gives them, in every shape.
        """
        for name in (b"GET", b"get", b"SET", b"set", b"MGET", b"mget", b"Get"):
            for size in range(1, 6):
                line = [name, *(b"k%d" % n for n in range(1, size))]
                command = lookupCommand(name)
                assert command is not None
                expected = (
                    tuple(line[i] for i in keyPositions(command, size))
                    if command.arityAccepts(size)
                    else ()
                )
                self.assertEqual(footprint(line), expected, line)

    def test_barriers(self) -> None:
        """
        A command without keys may touch anything: it waits for all.
        """
        self.assertIsNone(footprint([b"HELLO", b"3"]))
        self.assertIsNone(footprint([b"EXEC"]))
        self.assertIsNone(footprint([b"client", b"setname", b"x"]))

    def test_refused(self) -> None:
        """
        Commands refused before they run touch nothing.
        """
        self.assertEqual(footprint([b"nope"]), ())
        self.assertEqual(footprint([b"GET"]), ())
        self.assertEqual(footprint([b"client", b"nope"]), ())


class PipelineTests(DispatcherCase):
    def setUp(self) -> None:
        super().setUp()
        self.encoder = ReplyEncoder()
        self.readies = 0
        self.pipeline = Pipeline(
            self.dispatcher, self.ctx, self.encoder, self.ready, maxRunning=4
        )

    def ready(self) -> None:
        self.readies += 1

    def feed(self, *lines: list[bytes]) -> bytes:
        for line in lines:
            self.pipeline.run(line)
        return self.encoder.take()

    def test_synchronous(self) -> None:
        out = self.feed([b"SET", b"a", b"1"], [b"GET", b"a"], [b"NOPE"])
        self.assertEqual(
            out,
            b"+OK\r\n$1\r\n1\r\n"
            b"-ERR unknown command 'NOPE', with args beginning with: \r\n",
        )
        self.assertTrue(self.pipeline.idle)

    def test_laterSynchronousWaitsForEarlierReply(self) -> None:
        """
        A command on another key runs at once, but its reply goes out after
        the earlier one's.
        """
        self.keys.values[b"b"] = b"B"
        self.keys.slow.add(b"a")
        out = self.feed([b"GET", b"a"], [b"GET", b"b"])
        self.assertEqual(out, b"")
        self.assertEqual(self.keys.calls, [[b"GET", b"a"], [b"GET", b"b"]])
        self.assertEqual(self.pipeline.backlog, 2)
        self.keys.fire(0, b"A")
        self.assertEqual(self.encoder.take(), b"$1\r\nA\r\n$1\r\nB\r\n")
        self.assertEqual(self.readies, 1)
        self.assertTrue(self.pipeline.idle)

    def test_sameKeyWaits(self) -> None:
        """
        A command on a key an earlier running command touches does not
        start until that one has finished: a pipeline reads its writes.
        """
        self.keys.slow.add(b"a")
        self.feed([b"SET", b"a", b"1"], [b"GET", b"a"], [b"GET", b"b"])
        self.assertEqual(self.keys.calls, [[b"SET", b"a", b"1"]])
        self.keys.slow.clear()
        self.keys.fire()
        self.assertEqual(len(self.keys.calls), 3)
        self.assertEqual(self.encoder.take(), b"+OK\r\n$1\r\n1\r\n$-1\r\n")

    def test_barrierWaitsForAll(self) -> None:
        """
        A command without keys (here HELLO, which changes how replies are
        encoded) runs once every earlier one has finished, and the ones
        after it wait for it.
        """
        self.keys.slow.add(b"a")
        self.keys.values[b"b"] = b"B"
        self.feed([b"GET", b"a"], [b"HELLO", b"3"], [b"GET", b"b"])
        self.assertEqual(self.ctx.session.protocol, 2)
        self.assertEqual(len(self.keys.calls), 1)
        self.keys.fire(0, None)
        out = self.encoder.take()
        # The GET before HELLO in RESP2, the one after it in RESP3.
        self.assertTrue(out.startswith(b"$-1\r\n%7\r\n"), out)
        self.assertTrue(out.endswith(b"$1\r\nB\r\n"), out)
        self.assertEqual(self.ctx.session.protocol, 3)

    def test_runningBound(self) -> None:
        """
        No more than C{maxRunning} commands run at once.
        """
        self.keys.slow.update(bytes([key]) for key in b"abcdef")
        self.feed(*([b"GET", bytes([key])] for key in b"abcdef"))
        self.assertEqual(len(self.keys.calls), 4)
        self.assertEqual(self.pipeline.running, 4)
        self.keys.fire(0, b"1")
        self.assertEqual(len(self.keys.calls), 5)
        self.assertEqual(self.encoder.take(), b"$1\r\n1\r\n")

    def test_held(self) -> None:
        """
        While held, nothing starts; resuming starts what waited.
        """
        self.pipeline.held = True
        self.assertEqual(self.feed([b"SET", b"a", b"1"]), b"")
        self.assertEqual(self.keys.calls, [])
        self.assertEqual(self.pipeline.backlog, 1)
        self.pipeline.resume()
        self.assertEqual(self.encoder.take(), b"+OK\r\n")
        self.assertEqual(self.readies, 1)

    def test_finish(self) -> None:
        """
        A final reply goes out after every earlier one.
        """
        self.keys.slow.add(b"a")
        self.feed([b"GET", b"a"])
        self.pipeline.finish(ErrorReply("ERR Protocol error: x"))
        self.assertFalse(self.pipeline.idle)
        self.keys.fire(0, b"A")
        self.assertEqual(self.encoder.take(), b"$1\r\nA\r\n-ERR Protocol error: x\r\n")
        self.assertTrue(self.pipeline.idle)

    def test_quitStopsTheRest(self) -> None:
        self.keys.slow.add(b"a")
        self.feed([b"GET", b"a"], [b"QUIT"], [b"SET", b"b", b"1"])
        self.keys.fire(0, None)
        self.assertEqual(self.encoder.take(), b"$-1\r\n+OK\r\n")
        self.assertEqual(self.keys.calls, [[b"GET", b"a"]])
        self.assertTrue(self.pipeline.idle)

    def test_closedDropsReplies(self) -> None:
        self.keys.slow.add(b"a")
        self.feed([b"GET", b"a"], [b"GET", b"b"])
        self.pipeline.close()
        self.keys.fire(0, b"A")
        self.assertEqual(self.encoder.take(), b"")
        self.assertEqual(self.readies, 0)
        self.assertEqual(self.pipeline.running, 0)

    def test_manyInOrder(self) -> None:
        """
        Replies of interleaved fast and slow commands come out in request
        order whatever order the slow ones finish in.
        """
        self.pipeline = Pipeline(self.dispatcher, self.ctx, self.encoder, self.ready)
        for index in range(100):
            key = b"k%d" % index
            self.keys.values[key] = b"%d" % index
            if index % 3 == 0:
                self.keys.slow.add(key)
            self.pipeline.run([b"GET", key])
        while self.keys.pending:
            args, d = self.keys.pending.pop(len(self.keys.pending) // 2)
            d.callback(self.keys.values[args[1]])
        expected = b"".join(b"$%d\r\n%d\r\n" % (len(b"%d" % i), i) for i in range(100))
        self.assertEqual(self.encoder.take(), expected)


class SessionTests(DispatcherCase):
    def test_sessionIsPerContext(self) -> None:
        """
        A transaction belongs to its connection.
        """
        other = Context(self.node, Session(clientId=2, address="b:1"), self.ctx.server)
        self.run_(b"MULTI")
        self.assertEqual(self.dispatcher.execute(other, [b"SET", b"a", b"1"]), OK)
        self.assertEqual(self.run_(b"SET", b"a", b"2"), QUEUED)
