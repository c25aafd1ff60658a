"""
Running one connection's commands: the checks Redis makes before a command
runs, transactions, the errors of the node mapped to Redis's, and replies
in the order of the requests.

L{Dispatcher} runs one command line for a connection's L{Context}: it
resolves the command, checks authentication, the token's scope and the
rate limits, queues the command inside C{MULTI}, calls its handler and
turns whatever the handler raises into an error reply. It never raises,
and a L{Deferred} it returns never fails.

L{Pipeline} is one connection's queue: it runs the commands a client
pipelines as they arrive, several at once when some wait on replicas, and
writes their replies in the order of the requests. A command waits for
the earlier ones it could observe (those on the same keys, or any earlier
one if it has no keys: C{HELLO}, C{EXEC}, C{FLUSHDB}), so that a pipeline
reads its own writes as on Redis, while commands on other keys overlap.

Pure: no reactor and no transport; time comes from an injected callable.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Mapping
from typing import Final

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from disperse.cluster.view import NoMajority
from disperse.node import Loading, NotJoined
from disperse.persist.log import DiskUnavailable
from disperse.resp import families  # noqa: F401  (registers every handler)
from disperse.resp.arguments import ArgumentError
from disperse.resp.batch import LocalBatch
from disperse.resp.commands import (
    Command,
    CommandError,
    keyPositions,
    lookupCommand,
    resolveCommand,
    unknownCommandMessage,
)
from disperse.resp.context import HANDLERS, Context, Handler, Session
from disperse.resp.replies import (
    NULL_ARRAY,
    OK,
    QUEUED,
    ErrorReply,
    Reply,
    Simple,
    Verbatim,
    encodeReply,
)
from disperse.resp.stats import RespStats
from disperse.resp.wire import ReplyEncoder
from disperse.security.ratelimit import RateLimiter
from disperse.store import ValueTooLarge

NOAUTH: Final = ErrorReply("NOAUTH Authentication required.")
EXECABORT: Final = ErrorReply(
    "EXECABORT Transaction discarded because of previous errors."
)
INTERNAL_ERROR: Final = ErrorReply("ERR internal error")
WATCH_UNSUPPORTED: Final = (
    "ERR WATCH is not supported: Disperse is a leaderless store, where no"
    " single node orders a key's writes, so optimistic locking cannot be"
    " offered; compare-and-set will come with the consensus group of a"
    " later release. MULTI/EXEC still run queued commands in order."
)
# Redis's own words while it loads its files: clients know them (redis-py
# raises BusyLoadingError and may retry).
LOADING: Final = ErrorReply("LOADING Disperse is loading the dataset in memory")
NOT_JOINED: Final = ErrorReply(
    "CLUSTERDOWN The cluster is down: this node has not joined its cluster yet"
)

# Commands MULTI does not queue: they act on the transaction itself or end
# the connection's state, as in Redis.
_NOT_QUEUED: Final = frozenset(("exec", "discard", "multi", "watch", "quit", "reset"))

# Spellings of command names remembered for the fast path: enough for
# every command in upper and lower case, few enough that a client sending
# names in random case cannot grow the table.
_KNOWN_SPELLINGS: Final = 1024

# The types of plain replies, known not to be Deferreds without asking
# isinstance (Deferred is generic, so that question is slow).
_REPLY_TYPES: Final = frozenset(
    (
        *(bytes, str, int, bool, float, list, tuple, dict, frozenset, type(None)),
        *(Simple, ErrorReply, Verbatim, type(NULL_ARRAY)),
    )
)

# What a browser sends when a web page makes it post to a Redis port: Redis
# closes such connections at once, so that a page cannot smuggle commands
# in a form's body (cross-protocol scripting).
_HTTP_VERBS: Final = frozenset((b"post", b"host:"))
# How often that is logged, at most.
_HTTP_LOG_INTERVAL: Final = 60.0


class _Drop(ErrorReply):
    """
    The reply to a command that gets none: the connection closes at once.
    """

    __slots__ = ()


DROP: Final = _Drop("ERR connection closed")


def clusterDown(error: NoMajority) -> ErrorReply:
    """
    The error of a command refused because this node reaches too few
    members for its level.
    """
    return ErrorReply(
        "CLUSTERDOWN The cluster is down: this node reaches"
        f" {error.reachable} of {error.known} known members, not a majority"
    )


class Dispatcher:
    """
    Runs command lines for the connections of one server.

    @param stats: where calls, failures and latencies are counted.
    @param now: the time in seconds (latencies, and when a connection last
        sent a command).
    @param handlers: the handlers by command name; every registered one by
        default.
    @param perClient: the rate limit of each client (its token, else its
        address), or L{None}.
    @param overall: the rate limit of the whole node, or L{None}.
    @param batch: serve runs of plain reads and writes in one pass
        (L{disperse.resp.batch}); without it each command runs alone, as
        the tests that compare both ways need.
    """

    log = Logger()

    def __init__(
        self,
        stats: RespStats,
        now: Callable[[], float],
        handlers: Mapping[str, Handler] = HANDLERS,
        perClient: RateLimiter | None = None,
        overall: RateLimiter | None = None,
        batch: bool = True,
    ) -> None:
        self._stats = stats
        self._series = stats.commands
        self._bounds = stats.bounds
        self._now = now
        self._perClient = perClient
        self._overall = overall
        self._limited = perClient is not None or overall is not None
        self._lastHTTPWarning = -math.inf
        # The transaction commands work on the dispatcher's own state.
        self._handlers: dict[str, Handler] = dict(handlers)
        # Command names as clients spelled them, with their handlers.
        self._known: dict[bytes, tuple[Command, Handler]] = {}
        self._handlers.update(
            multi=self._multi,
            exec=self._exec,
            discard=self._discard,
            watch=self._watch,
            unwatch=self._unwatch,
        )
        self._batch = LocalBatch(
            stats,
            now,
            self._handlers if batch else {},
            HANDLERS,
            self._call,
            self._limit if self._limited else None,
        )
        self.executeBatch = self._batch.run

    @property
    def stats(self) -> RespStats:
        return self._stats

    def execute(self, context: Context, line: list[bytes]) -> Reply | Deferred[Reply]:
        """
        Run one command line (name first) for the connection of
        C{context}.

        @return: the reply, or a L{Deferred} (exactly that class) that
            fires with it and never fails; L{DROP} when the connection must
            close without one.
        """
        # The common case, in as few steps as it takes: a command named as
        # before, with its arity, on a connection with nothing to check.
        known = self._known.get(line[0])
        if known is not None:
            command, handler = known
            arity = command.arity
            count = len(line)
            session = context.session
            if (
                (count == arity if arity >= 0 else count >= -arity)
                and session.queued is None
                and session.authenticated
                and not self._limited
            ):
                grant = session.grant
                scope = command.scope
                if grant is None or scope is None or grant.allows(scope):
                    return self._call(context, command.name, handler, line)
        return self._resolveAndRun(context, line)

    def _resolveAndRun(
        self, context: Context, line: list[bytes]
    ) -> Reply | Deferred[Reply]:
        session = context.session
        try:
            command = resolveCommand(line)
        except CommandError as error:
            if line[0].lower() in _HTTP_VERBS:
                return self._crossProtocol(session)
            if session.queued is not None:
                session.queueFailed = True
            return ErrorReply(error.message)
        refusal = self._refusal(session, command)
        if refusal is not None:
            if session.queued is not None:
                session.queueFailed = True
            return refusal
        name = command.name
        if session.queued is not None and name not in _NOT_QUEUED:
            session.queued.append(line)
            return QUEUED
        return self._run(context, command, line)

    def _remember(self, raw: bytes, command: Command, handler: Handler) -> None:
        # Names are remembered as clients spell them ("GET", "get"), a
        # bounded number of spellings, and only those of plain commands: a
        # subcommand (client|setname) is named by the second word too, and
        # so is any command line that starts with a container's name, even
        # when the container ran alone (a bare COMMAND must not answer a
        # later COMMAND COUNT).
        if (
            len(self._known) < _KNOWN_SPELLINGS
            and "|" not in command.name
            and not command.isContainer
        ):
            self._known[raw] = (command, handler)

    def _refusal(self, session: Session, command: Command) -> ErrorReply | None:
        # Redis's order: authentication, then permissions.
        if not session.authenticated and "no_auth" not in command.flags:
            return NOAUTH
        grant = session.grant
        if grant is not None:
            scope = command.scope
            if scope is not None and not grant.allows(scope):
                return _noPermission(command, scope)
        if self._limited:
            return self._limit(session)
        return None

    def _limit(self, session: Session) -> ErrorReply | None:
        perClient, overall = self._perClient, self._overall
        if perClient is not None:
            grant = session.grant
            client: object = (
                grant.digest
                if grant is not None
                else session.address.rpartition(":")[0]
            )
            wait = perClient.take(client)
            if wait:
                self._stats.rateLimited += 1
                return ErrorReply(
                    "ERR rate limit: too many commands from this client,"
                    f" try again in {_milliseconds(wait)} ms"
                )
        if overall is not None:
            wait = overall.take()
            if wait:
                self._stats.rateLimited += 1
                return ErrorReply(
                    "ERR rate limit: this node is at its command rate limit,"
                    f" try again in {_milliseconds(wait)} ms"
                )
        return None

    def _run(
        self, context: Context, command: Command, line: list[bytes]
    ) -> Reply | Deferred[Reply]:
        name = command.name
        handler = self._handlers.get(name)
        if handler is None:
            # In the table, but no module serves it (yet).
            return ErrorReply(unknownCommandMessage(line))
        self._remember(line[0], command, handler)
        return self._call(context, name, handler, line)

    def _call(
        self, context: Context, name: str, handler: Handler, line: list[bytes]
    ) -> Reply | Deferred[Reply]:
        start = self._now()
        session = context.session
        session.lastCommand = name
        session.lastCommandMs = int(start * 1000)
        session.commands += 1
        try:
            result = handler(context, line)
        except Exception as error:
            result = self._errorReply(error, name)
        kind = type(result)
        if (
            kind is not Deferred
            and kind not in _REPLY_TYPES
            and isinstance(result, Deferred)
        ):
            # A subclass: the pipeline knows Deferred itself only.
            plain: Deferred[Reply] = Deferred()
            result.chainDeferred(plain)
            result = plain
            kind = Deferred
        if kind is Deferred:
            deferred: Deferred[Reply] = result  # type: ignore[assignment]
            if not deferred.called or deferred.paused:
                return deferred.addCallbacks(
                    self._finished,
                    self._failed,
                    callbackArgs=(name, start),
                    errbackArgs=(name, start),
                )
            # Finished already (a KeySerializer on an idle key): take the
            # outcome now rather than send it round the pipeline's slots.
            outcomes: list[Reply | Failure] = []
            deferred.addBoth(outcomes.append)
            outcome = outcomes[0]
            if isinstance(outcome, Failure):
                result = self._errorReply(_exception(outcome), name, outcome)
            else:
                result = outcome
        # RespStats.record, inline: this runs for every command.
        elapsed = self._now() - start
        series = self._series.get(name)
        if series is None:
            self._stats.record(name, elapsed, type(result) is ErrorReply)
            return result
        series.calls += 1
        series.seconds += elapsed
        series.buckets[bisect_left(self._bounds, elapsed)] += 1
        if type(result) is ErrorReply:
            series.failed += 1
        return result

    def _finished(self, reply: Reply, name: str, start: float) -> Reply:
        self._stats.record(name, self._now() - start, type(reply) is ErrorReply)
        return reply

    def _failed(self, failure: Failure, name: str, start: float) -> Reply:
        reply = self._errorReply(_exception(failure), name, failure)
        self._stats.record(name, self._now() - start, True)
        return reply

    def _errorReply(
        self, error: BaseException, name: str, failure: Failure | None = None
    ) -> ErrorReply:
        """
        The reply to a command that raised C{error}. Anything but a
        refusal or one of the node's known conditions is a bug: logged
        (with C{failure}, or the exception being handled), and answered
        with a bare internal error.
        """
        if isinstance(error, CommandError | ArgumentError):
            return ErrorReply(error.message)
        if isinstance(error, NotJoined):
            return NOT_JOINED
        if isinstance(error, Loading):
            return LOADING
        if isinstance(error, NoMajority):
            return clusterDown(error)
        if isinstance(error, DiskUnavailable):
            return ErrorReply(
                f"ERR {error}: this node refuses writes until its disk works"
                " again (reads go on)"
            )
        if isinstance(error, ValueTooLarge):
            return ErrorReply(
                "OOM command not allowed: the value is larger than this"
                " node's whole memory budget (--max-memory)"
            )
        self.log.failure(
            "Redis command {command} failed",
            failure=failure if failure is not None else Failure(),
            command=name,
        )
        return INTERNAL_ERROR

    def _crossProtocol(self, session: Session) -> ErrorReply:
        session.closing = True
        now = self._now()
        if now - self._lastHTTPWarning >= _HTTP_LOG_INTERVAL:
            self._lastHTTPWarning = now
            self.log.warn(
                "closed a Redis connection from {address} that sent an HTTP"
                " request: possibly a web page attacking this node through"
                " a browser (cross-protocol scripting)",
                address=session.address,
            )
        return DROP

    # Transactions. The queue lives in the session (Session.queued); the
    # dispatcher queues commands in execute() and runs them here.

    def _multi(self, context: Context, line: list[bytes]) -> Reply:
        session = context.session
        if session.queued is not None:
            raise CommandError("ERR MULTI calls can not be nested")
        session.queued = []
        session.queueFailed = False
        return OK

    def _discard(self, context: Context, line: list[bytes]) -> Reply:
        session = context.session
        if session.queued is None:
            raise CommandError("ERR DISCARD without MULTI")
        session.queued = None
        session.queueFailed = False
        return OK

    def _watch(self, context: Context, line: list[bytes]) -> Reply:
        if context.session.queued is not None:
            raise CommandError("ERR WATCH inside MULTI is not allowed")
        raise CommandError(WATCH_UNSUPPORTED)

    def _unwatch(self, context: Context, line: list[bytes]) -> Reply:
        # Nothing is ever watched.
        return OK

    def _exec(self, context: Context, line: list[bytes]) -> Reply | Deferred[Reply]:
        session = context.session
        queued = session.queued
        if queued is None:
            raise CommandError("ERR EXEC without MULTI")
        failed = session.queueFailed
        session.queued = None
        session.queueFailed = False
        if failed:
            return EXECABORT
        return self._runQueued(context, queued, [])

    def _runQueued(
        self, context: Context, lines: list[list[bytes]], replies: list[Reply]
    ) -> Reply | Deferred[Reply]:
        """
        Run C{lines} from the first without a reply in C{replies}, each
        once the one before has finished, and answer the replies as one
        array.
        """
        while len(replies) < len(lines):
            result = self._runQueuedLine(context, lines[len(replies)])
            if isinstance(result, Deferred):

                def next(reply: Reply) -> Reply | Deferred[Reply]:
                    replies.append(reply)
                    return self._runQueued(context, lines, replies)

                return result.addCallback(next)
            replies.append(result)
        return replies

    def _runQueuedLine(
        self, context: Context, line: list[bytes]
    ) -> Reply | Deferred[Reply]:
        # Checked again at EXEC, as Redis does: an AUTH queued in the same
        # transaction may have changed the token since.
        command = resolveCommand(line)
        grant = context.session.grant
        scope = command.scope
        if grant is not None and scope is not None and not grant.allows(scope):
            return _noPermission(command, scope)
        return self._run(context, command, line)


def _exception(failure: Failure) -> BaseException:
    error = failure.value
    assert error is not None
    return error


def _noPermission(command: Command, scope: str) -> ErrorReply:
    return ErrorReply(
        f"NOPERM this token has no permission to run the '{command.name}'"
        f" command: it needs the {scope} scope"
    )


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


# The keys a command touches, for ordering within a pipeline; None for a
# command that must wait for every earlier one (it has no keys, so it may
# read or change anything: the connection's state, the whole keyspace).
Footprint = tuple[bytes, ...] | None


# GET, SET and MGET as clients spell them, with their arity (as in the
# command table: 2, at least 3, at least 2).
_KEYED: Final = {
    **dict.fromkeys((b"GET", b"get"), 2),
    **dict.fromkeys((b"SET", b"set"), 3),
    **dict.fromkeys((b"MGET", b"mget"), -2),
}


def footprint(line: list[bytes]) -> Footprint:
    """
    The keys of command line C{line}, or L{None} if it must wait for all
    earlier commands (and all later ones for it).
    """
    # The commands of nearly every pipeline, without the table: their one
    # key (GET, SET with or without options), or every argument (MGET).
    shape = _KEYED.get(line[0])
    if shape is not None:
        size = len(line)
        if shape == 2 and size == 2:
            return (line[1],)
        if shape == 3 and size >= 3:
            return (line[1],)
        if shape == -2 and size >= 2:
            return tuple(line[1:])
    command = lookupCommand(line[0])
    if command is None:
        # Refused at once, touching nothing.
        return ()
    if command.isContainer:
        if len(line) < 2:
            return ()
        sub = command.subcommands.get(line[1].decode("utf-8", "replace").lower())
        if sub is None:
            return ()
        command = sub
    if not command.arityAccepts(len(line)):
        return ()
    if command.firstKey == 0:
        return None
    return tuple(line[index] for index in keyPositions(command, len(line)))


class _Slot:
    """
    A command whose reply is awaited, in the order of the requests.
    """

    __slots__ = ("done", "footprint", "reply")

    def __init__(self, footprint: Footprint) -> None:
        self.footprint = footprint
        self.reply: Reply = None
        self.done = False


# Commands of one connection running at once, at most: beyond it the
# connection's later commands wait (and its reading stops, see the server).
DEFAULT_MAX_RUNNING: Final = 1024


class Pipeline:
    """
    One connection's commands: each runs as soon as no earlier command it
    could observe is still running, and replies are encoded into the
    connection's encoder in the order of the requests.

    The server feeds commands with L{run} and sends whatever the encoder
    holds after each batch; when replies become ready later (a command
    that waited on replicas), C{ready} is called so that it sends them.

    @ivar held: while set, no command starts (the client does not read
        its replies); L{resume} starts them again.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        context: Context,
        encoder: ReplyEncoder,
        ready: Callable[[], None],
        maxRunning: int = DEFAULT_MAX_RUNNING,
    ) -> None:
        self._dispatcher = dispatcher
        self._execute = dispatcher.execute
        self._batch = dispatcher.executeBatch
        self._context = context
        self._session = context.session
        self._encoder = encoder
        self._ready = ready
        self._maxRunning = maxRunning
        # Replies awaited, in order: only while some command is running.
        self._order: deque[_Slot] = deque()
        # Commands not started yet, in order.
        self._waiting: deque[list[bytes]] = deque()
        self.running = 0
        self._barriers = 0
        self._keys: dict[bytes, int] = {}
        # A reply to send after every other (a protocol error's).
        self._final: Reply | None = None
        self._executing = False
        self.held = False
        self.closed = False

    @property
    def backlog(self) -> int:
        """
        Commands received whose replies are not encoded yet.
        """
        return len(self._order) + len(self._waiting)

    @property
    def idle(self) -> bool:
        """
        Every reply is encoded (the final one too).
        """
        return not self._order and not self._waiting and self._final is None

    def runAll(self, lines: list[list[bytes]]) -> None:
        """
        Run command lines C{lines}, in order, after those run before:
        L{run} for each, with the common case (nothing pending, a reply at
        once) kept in one loop.
        """
        execute = self._execute
        batch = self._batch
        context = self._context
        session = self._session
        encoder = self._encoder
        index = 0
        count = len(lines)
        while index < count:
            if self._order or self._waiting or self.held or session.closing:
                for rest in lines[index:]:
                    self.run(rest)
                return
            # A run of plain reads and writes, in one pass (and, if one of
            # them waits on replicas, that one's Deferred).
            encoder.protocol = session.protocol
            index, pending = batch(context, lines, index, encoder)
            if pending is not None:
                slot = _Slot(footprint(lines[index - 1]))
                self._order.append(slot)
                self._occupy(slot.footprint)
                pending.addBoth(self._completed, slot)
                continue
            if index >= count:
                return
            line = lines[index]
            index += 1
            result = execute(context, line)
            if type(result) is Deferred:
                slot = _Slot(footprint(line))
                self._order.append(slot)
                self._occupy(slot.footprint)
                result.addBoth(self._completed, slot)
            elif result is not DROP:
                encoder.protocol = session.protocol
                # Not a Deferred: the dispatcher returns no subclass of one.
                encodeReply(encoder, result)  # type: ignore[arg-type]

    def run(self, line: list[bytes]) -> None:
        """
        Run command line C{line} after those run before, or queue it.
        """
        if self._order or self._waiting or self.held:
            if not self._session.closing:
                self._waiting.append(line)
                self._advance()
            return
        if self._session.closing:
            return
        # Nothing earlier is pending: the common case, kept short.
        result = self._execute(self._context, line)
        if type(result) is Deferred:
            slot = _Slot(footprint(line))
            self._order.append(slot)
            self._occupy(slot.footprint)
            result.addBoth(self._completed, slot)
            return
        if result is DROP:
            return
        encoder = self._encoder
        encoder.protocol = self._session.protocol
        encodeReply(encoder, result)  # type: ignore[arg-type]

    def finish(self, reply: Reply) -> None:
        """
        Send C{reply} once every command received so far has been
        answered, and run nothing received after.
        """
        if self._session.closing:
            return
        self._final = reply
        self._advance()

    def resume(self) -> None:
        """
        Start commands again after L{held} was set.
        """
        self.held = False
        self._advance()
        self._ready()

    def close(self) -> None:
        """
        The connection is gone: replies still due are dropped.
        """
        self.closed = True
        self._waiting.clear()
        self._final = None

    def _completed(self, reply: Reply | Failure, slot: _Slot) -> None:
        if isinstance(reply, Failure):
            # The dispatcher's Deferreds never fail; if one does, the
            # client still gets an answer in its place.
            Dispatcher.log.failure("Redis command failed", failure=reply)
            reply = INTERNAL_ERROR
        slot.reply = reply
        slot.done = True
        self._release(slot.footprint)
        if self.closed or self._executing:
            # A command running now finished this one as it ran: the loop
            # that started it carries on from here.
            return
        self._advance()
        self._ready()

    def _advance(self) -> None:
        """
        Encode the replies that are next in order, and start the waiting
        commands that may start, until neither makes progress.
        """
        order = self._order
        waiting = self._waiting
        session = self._session
        while True:
            while order and order[0].done:
                self._encode(order.popleft().reply)
            if session.closing:
                waiting.clear()
            if not waiting or self.held or self.closed:
                break
            line = waiting[0]
            keys = footprint(line)
            if not self._free(keys):
                break
            waiting.popleft()
            self._executing = True
            try:
                result = self._execute(self._context, line)
            finally:
                self._executing = False
            slot = _Slot(keys)
            order.append(slot)
            if type(result) is Deferred:
                self._occupy(keys)
                result.addBoth(self._completed, slot)
            else:
                slot.reply = result  # type: ignore[assignment]
                slot.done = True
        if self._final is not None and not order and not waiting:
            final, self._final = self._final, None
            self._encode(final)

    def _encode(self, reply: Reply) -> None:
        if reply is DROP:
            return
        encoder = self._encoder
        encoder.protocol = self._session.protocol
        encodeReply(encoder, reply)

    def _free(self, keys: Footprint) -> bool:
        if self.running >= self._maxRunning:
            return False
        if keys is None:
            return self.running == 0
        if self._barriers:
            return False
        running = self._keys
        return not any(key in running for key in keys)

    def _occupy(self, keys: Footprint) -> None:
        self.running += 1
        if keys is None:
            self._barriers += 1
            return
        running = self._keys
        for key in keys:
            running[key] = running.get(key, 0) + 1

    def _release(self, keys: Footprint) -> None:
        self.running -= 1
        if keys is None:
            self._barriers -= 1
            return
        running = self._keys
        for key in keys:
            count = running[key] - 1
            if count:
                running[key] = count
            else:
                del running[key]
