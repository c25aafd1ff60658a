"""
The batch path: a run of pipelined C{GET}, C{SET} and C{MGET} commands
served in one pass.

A pipelining client sends many commands in one read, nearly all of them
plain reads and writes of keys. When the node's own replica alone answers
them (a node alone, or a read at level one of a key it holds), each is a
lookup or a store in memory, and the per-command machinery around it (the
handler, its outcome object, the reply's dispatch by type, one latency
measurement each) costs several times the work itself (C{bench/resp-profile}).
L{LocalBatch} serves such a run with one loop: the checks the dispatcher
makes (authentication, the token's scope and key prefix, rate limits, the
value size), the node's own answer (L{disperse.node.Node.readHere},
L{disperse.node.Node.writeHere}), the replies' bytes written together, and
the statistics counted once for the run.

Any command of the run that the node's replica does not answer at once,
or that a check refuses, runs through its handler exactly as it would
have outside a batch (the dispatcher's own call), so that replies, errors
and the store's state are those of the per-command path byte for byte;
the run stops at the first command of another kind, or spelled or shaped
otherwise, and at one whose reply is a L{Deferred}.

Pure: no reactor and no transport.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from twisted.internet.defer import Deferred

from disperse.cluster.coordinator import ELSEWHERE, Consistency, Elsewhere
from disperse.cluster.peer.messages import MAX_KEY_SIZE
from disperse.cluster.serial import KeySerializer
from disperse.node import Node
from disperse.resp.context import Context, Handler, Session
from disperse.resp.replies import ErrorReply, Reply, encodeReply
from disperse.resp.stats import RespStats
from disperse.resp.strings import isBinary
from disperse.resp.wire import ReplyEncoder, parseInteger
from disperse.security.tokens import READ, WRITE
from disperse.store import Record, renderedValue

# The commands served here, by the spellings clients send (any other goes
# the per-command way, which serves it the same).
_GET: Final = 1
_SET: Final = 2
_MGET: Final = 3
_KINDS: Final = {
    b"GET": _GET,
    b"get": _GET,
    b"SET": _SET,
    b"set": _SET,
    b"MGET": _MGET,
    b"mget": _MGET,
}
_NAMES: Final = {_GET: "get", _SET: "set", _MGET: "mget"}

_OK: Final = b"+OK\r\n"
# A missing value, in RESP2 and in RESP3.
_NULLS: Final = (b"$-1\r\n", b"_\r\n")
_INT64_MAX: Final = 2**63 - 1

# What a run uses of the node: the node, its readHere and writeHere, its
# key serializer, its largest value.
_Bound = tuple[
    "Node",
    Callable[[str, Consistency], "Record | Elsewhere | None"],
    Callable[[str, bytes, int, bool, Consistency], bool],
    KeySerializer,
    int,
]

# What calls a command's handler as the dispatcher does once its checks
# passed (Dispatcher._call): the reply, or a Deferred of it.
Call = Callable[[Context, str, Handler, list[bytes]], "Reply | Deferred[Reply]"]
# What takes one command from the rate limits: the refusal, or None.
Limit = Callable[[Session], "ErrorReply | None"]


class LocalBatch:
    """
    Serves runs of C{GET}, C{SET} and C{MGET} for the dispatcher.

    @param handlers: the dispatcher's handlers by command name: a command
        is served here only while its handler is the registered one, whose
        behaviour this path reproduces.
    @param registered: the registered handlers.
    @param call: runs a command's handler once the checks passed.
    @param limit: takes a command from the rate limits, or L{None} when
        there are none.
    """

    def __init__(
        self,
        stats: RespStats,
        now: Callable[[], float],
        handlers: Mapping[str, Handler],
        registered: Mapping[str, Handler],
        call: Call,
        limit: Limit | None,
    ) -> None:
        self._stats = stats
        self._now = now
        self._call = call
        self._limit = limit
        self._handlers = {
            kind: handlers[name]
            for kind, name in _NAMES.items()
            if name in handlers and handlers[name] is registered.get(name)
        }
        self._bound: _Bound | None = None
        self.kinds: dict[bytes, int] = {
            spelling: kind
            for spelling, kind in _KINDS.items()
            if kind in self._handlers
        }

    def run(
        self,
        context: Context,
        lines: list[list[bytes]],
        start: int,
        encoder: ReplyEncoder,
    ) -> tuple[int, Deferred[Reply] | None]:
        """
        Serve the commands of C{lines} from C{start} on while they are
        C{GET}, C{SET} or C{MGET} with the arity Redis accepts, on a
        connection that is authenticated, outside C{MULTI}, whose token
        allows them; their replies go into C{encoder}.

        @return: the index of the first line not served, and L{None}; or,
            when a command's reply is not ready, the index after it and
            the L{Deferred} of its reply (which the caller awaits in
            order).
        """
        kinds = self.kinds
        count = len(lines)
        if start >= count or lines[start][0] not in kinds:
            return start, None
        session = context.session
        if session.queued is not None or not session.authenticated:
            return start, None
        grant = session.grant
        mayRead = grant is None or grant.allows(READ)
        mayWrite = grant is None or grant.allows(WRITE)
        node = context.node
        bound = self._bound
        if bound is None or bound[0] is not node:
            bound = self._bind(node)
        _, readHere, writeHere, serial, maxValueSize = bound
        level = session.level
        readLevel: Consistency = level or node.readConsistency
        writeLevel: Consistency = level or node.writeConsistency
        limit = self._limit
        add = encoder.pieces.append
        null = _NULLS[session.protocol >= 3]
        # Commands answered here, of each kind.
        gets = sets = mgets = 0
        lastKind = 0
        began = self._now()
        index = start
        pending: Deferred[Reply] | None = None
        while index < count:
            line = lines[index]
            kind = kinds.get(line[0])
            if kind is None:
                break
            size = len(line)
            if kind == _GET:
                if size != 2 or not mayRead:
                    break
            elif kind == _SET:
                if size < 3 or not mayWrite:
                    break
            elif size < 2 or not mayRead:
                break
            index += 1
            lastKind = 0
            if limit is not None:
                refusal = limit(session)
                if refusal is not None:
                    encodeReply(encoder, refusal)
                    continue
            if kind == _GET:
                raw = line[1]
                if len(raw) <= MAX_KEY_SIZE and (grant is None or grant.covers(raw)):
                    try:
                        key = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        pass
                    else:
                        record = readHere(key, readLevel)
                        if record is not ELSEWHERE:
                            if record is None:
                                add(null)
                            elif not record.counter:
                                value = record.value
                                add(b"$%d\r\n%b\r\n" % (len(value), value))
                            else:
                                reply = _rendered([record], null)
                                if reply is None:
                                    encodeReply(
                                        encoder,
                                        self._broken(context, _NAMES[kind], line),
                                    )
                                    continue
                                add(reply)
                            gets += 1
                            lastKind = kind
                            continue
            elif kind == _SET:
                raw = line[1]
                value = line[2]
                expiresAtMs = 0
                if size == 5:
                    expiresAtMs = _expiryAtMs(line[3], line[4], node.store.nowMs())
                if (
                    expiresAtMs >= 0
                    and (size == 3 or expiresAtMs)
                    and len(value) <= maxValueSize
                    and len(raw) <= MAX_KEY_SIZE
                    and (grant is None or grant.covers(raw))
                ):
                    try:
                        key = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        pass
                    else:
                        # A key a read-modify-write holds waits its turn,
                        # which the handler arranges.
                        if (not serial or serial.idle(key)) and writeHere(
                            key, value, expiresAtMs, isBinary(value), writeLevel
                        ):
                            add(_OK)
                            sets += 1
                            lastKind = kind
                            continue
            else:
                records = self._readAll(node, session, line, readLevel)
                if records is not None:
                    reply = _rendered(records, null)
                    if reply is None:
                        encodeReply(encoder, self._broken(context, _NAMES[kind], line))
                        continue
                    add(b"*%d\r\n" % len(records))
                    add(reply)
                    mgets += 1
                    lastKind = kind
                    continue
            # Not answered here: the handler runs it, as it would have
            # outside a batch (the checks above are the dispatcher's).
            result = self._call(context, _NAMES[kind], self._handlers[kind], line)
            if type(result) is Deferred:
                pending = result
                break
            encodeReply(encoder, result)  # type: ignore[arg-type]
        served = gets + sets + mgets
        if served:
            now = self._now()
            elapsed = now - began
            share = elapsed / served
            tally = self._stats.recordMany
            if gets:
                tally("get", gets, share)
            if sets:
                tally("set", sets, share)
            if mgets:
                tally("mget", mgets, share)
            session.commands += served
            if lastKind:
                # The last command was answered here (else its handler
                # noted it).
                session.lastCommand = _NAMES[lastKind]
                session.lastCommandMs = int(now * 1000)
        return index, pending

    def _bind(self, node: Node) -> _Bound:
        """
        What every run on C{node} uses of it, looked up once.
        """
        bound = self._bound = (
            node,
            node.readHere,
            node.writeHere,
            node.serial,
            node.config.maxValueSize,
        )
        return bound

    def _readAll(
        self, node: Node, session: Session, line: list[bytes], level: Consistency
    ) -> list[Record | None] | None:
        """
        The values of C{MGET}'s keys when the node's replica alone answers
        them all, else L{None}, none read.
        """
        grant = session.grant
        keys = []
        for raw in line[1:]:
            if len(raw) > MAX_KEY_SIZE or (grant is not None and not grant.covers(raw)):
                return None
            try:
                keys.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                return None
        records = node.readAllHere(keys, level)
        if records is ELSEWHERE:
            return None
        return records

    def _broken(self, context: Context, name: str, line: list[bytes]) -> Reply:
        """
        The reply to a read that found a counter whose state does not
        decode (never one this node stored: stores check what they take):
        the handler's, an internal error, logged and counted as failed.
        """
        return self._call(context, name, _raising, line)  # type: ignore[return-value]


def _raising(context: Context, line: list[bytes]) -> Reply:
    raise ValueError("a counter whose state does not decode")


def _rendered(records: list[Record | None], null: bytes) -> bytes | None:
    """
    The bulk replies of C{records} (a missing one as C{null}), counters as
    the number they count; L{None} if a counter does not decode.
    """
    pieces = []
    for record in records:
        if record is None:
            pieces.append(null)
            continue
        try:
            value = renderedValue(record)
        except ValueError:
            return None
        pieces.append(b"$%d\r\n%b\r\n" % (len(value), value))
    return b"".join(pieces)


def _expiryAtMs(option: bytes, amount: bytes, nowMs: int) -> int:
    """
    The absolute expiry of C{SET}'s C{EX} or C{PX} option, by Redis's rules
    (L{disperse.resp.arguments.parseSet}); -1 for any other option, or an
    amount the handler refuses.
    """
    option = option.upper()
    if option == b"EX":
        seconds = True
    elif option == b"PX":
        seconds = False
    else:
        return -1
    number = parseInteger(amount)
    if number is None or number <= 0:
        return -1
    if seconds:
        if number > _INT64_MAX // 1000:
            return -1
        number *= 1000
    number += nowMs
    if number > _INT64_MAX:
        return -1
    return number
