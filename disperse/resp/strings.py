"""
The string commands, and the generic ones on whole keys: C{GET}, C{SET}
(C{EX}, C{PX}, C{EXAT}, C{PXAT}, C{KEEPTTL}, C{NX}, C{XX}, C{GET}),
C{SETEX}, C{PSETEX}, C{SETNX}, C{GETDEL}, C{GETEX}, C{GETSET}, C{MGET},
C{MSET}, C{MSETNX}, C{APPEND}, C{STRLEN}, C{DEL}, C{UNLINK}, C{EXISTS},
C{TYPE} and C{TOUCH}, with Redis's argument rules, reply types and error
texts.

How they map onto a leaderless store:

    - Every key holds a string (Disperse has no other type): C{TYPE}
      answers C{string} or C{none}, and no command answers C{WRONGTYPE}.
      A value that is empty or not UTF-8 is stored as binary, so the HTTP
      API serves it as C{application/octet-stream}; other values as text.
    - Reads (C{GET}, C{MGET}, C{STRLEN}, C{EXISTS}, C{TYPE}, C{TOUCH}) read
      at the connection's read level (C{DISPERSE CONSISTENCY}, else the
      node's C{--read-consistency}) and answer C{NOREPLICAS} when fewer
      replicas than the level needs answered. C{EXISTS} and C{TOUCH} count
      a key named twice twice, as Redis does.
    - Blind writes (C{SET} without C{NX}, C{XX}, C{GET} or C{KEEPTTL},
      C{SETEX}, C{PSETEX}, C{MSET}) write a new version at the
      connection's write level and answer C{NOREPLICAS} when fewer replicas
      than the level needs acknowledged it (the write may still have
      reached some: it is not undone). An expiry is absolute, fixed by the
      node that takes the command; one already past (C{EXAT}, C{PXAT})
      deletes the key and still answers C{OK}.
    - Read-modify-write commands (C{SET} with C{NX}, C{XX}, C{GET} or
      C{KEEPTTL}, C{SETNX}, C{GETSET}, C{GETDEL}, C{GETEX} with an option,
      C{APPEND}, C{MSETNX}, C{DEL}, C{UNLINK}) read the key at the
      connection's I{write} level, so that at quorum the decision sees
      every acknowledged quorum write, decide, then write a new version
      (newer than what they read) at the write level. On one node they run
      one at a time per key (L{disperse.cluster.serial}), and so do the
      blind writes, so that commands sent to one node behave as on one
      Redis. Two nodes running them on the same key at the same moment may
      both succeed (two C{SETNX} both answer 1, two C{APPEND}s may lose one
      of the suffixes): the newer write wins on every replica.
    - C{DEL} and C{UNLINK} answer how many of the keys existed (read at
      the write level) and write a tombstone for every key named, found or
      not, so that a version only a replica not read holds is deleted too.
    - C{MSET} writes each key as a write of its own: a reader may see some
      of the new values before others, and after a C{NOREPLICAS} some
      keys may hold the new value. C{MSETNX} reads every key first and
      writes none if any exists; between nodes it is not atomic either.
    - C{APPEND} keeps the key's expiry, as Redis does; C{GETSET} and
      C{SET} without C{KEEPTTL} remove it.

Every value read goes through L{stringOf}, the one place that turns a
stored record into the string a command sees.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from typing import Any, TypeVar, cast

from twisted.internet.defer import (
    Deferred,
    FirstError,
    fail,
    gatherResults,
    maybeDeferred,
    succeed,
)
from twisted.python.failure import Failure

from disperse.cluster.coordinator import Consistency, ReadOutcome, WriteOutcome
from disperse.resp.arguments import (
    SYNTAX_ERROR,
    ArgumentError,
    GetExArguments,
    SetArguments,
    parseGetEx,
    parseSet,
    parseSetEx,
)
from disperse.resp.commands import CommandError
from disperse.resp.context import Context, handles, requireRead, requireWrite
from disperse.resp.replies import OK, Reply, Simple
from disperse.store import Record, renderedValue

_T = TypeVar("_T")

STRING: Simple = Simple("string")
NONE: Simple = Simple("none")


# What the other families share


def stringOf(record: Record) -> bytes:
    """
    The string a command sees for a stored value: a counter's number as
    text (L{renderedValue}).
    """
    return renderedValue(record)


def isBinary(value: bytes) -> bool:
    """
    Whether C{value} is stored as binary: empty (the HTTP API's rule for
    empty values) or not UTF-8 text.
    """
    if not value:
        return True
    if value.isascii():
        return False
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def isDeferred(result: object) -> bool:
    """
    Whether C{result} is a L{Deferred}: as C{isinstance}, without its cost
    (L{Deferred} is generic, which makes C{isinstance} slow), on the path
    of every command.
    """
    kind = type(result)
    return kind is Deferred or Deferred in kind.__mro__


def settled(result: _T | Deferred[_T]) -> Deferred[_T]:
    """
    C{result}, which the node gave at once or later, as a L{Deferred}.
    """
    if isDeferred(result):
        return cast(Deferred[_T], result)
    return succeed(cast(_T, result))


def run(coroutine: Coroutine[Any, Any, _T]) -> Deferred[_T]:
    """
    C{coroutine} started, as a L{Deferred}.
    """
    return Deferred.fromCoroutine(coroutine)


def serially(context: Context, key: str, operation: Callable[[], Any]) -> Deferred[Any]:
    """
    Run C{operation} when no other operation on C{key} runs on this node.
    """
    return context.node.serial.run(key, operation)


def seriallyAll(
    context: Context, keys: Sequence[str], operation: Callable[[], Any]
) -> Deferred[Any]:
    """
    Run C{operation} when no other operation on any of C{keys} (distinct,
    and sorted, so that two callers holding overlapping keys cannot each
    wait for the other) runs on this node.
    """
    if not keys:
        return maybeDeferred(operation)
    rest = keys[1:]
    return serially(context, keys[0], lambda: seriallyAll(context, rest, operation))


def seriallyNow(
    context: Context, key: str, operation: Callable[[], _T | Deferred[_T]]
) -> _T | Deferred[_T]:
    """
    L{serially}, answering at once (no L{Deferred}) when C{key} is idle
    and C{operation} finishes at once
    (L{disperse.cluster.serial.KeySerializer.runNow}).
    """
    return context.node.serial.runNow(key, operation)


def gathered(deferreds: Sequence[Deferred[_T]]) -> Deferred[list[_T]]:
    """
    The results of C{deferreds}, or the first failure among them as it
    was raised (not wrapped in a L{FirstError}), so that the dispatcher
    maps it as if one command had failed.
    """

    def unwrap(failure: Failure) -> Failure:
        if isinstance(failure.value, FirstError):
            return failure.value.subFailure
        return failure

    return gatherResults(list(deferreds), consumeErrors=True).addErrback(unwrap)


def read(context: Context, key: str, level: Consistency) -> Deferred[Record | None]:
    """
    The live value of C{key} read at C{level}.

    @raise CommandError: C{NOREPLICAS} (in the L{Deferred}) when too few
        replicas answered.
    """
    outcome = settled(context.node.get(key, level))
    return outcome.addCallback(lambda outcome: requireRead(outcome).value)


def readForWrite(context: Context, key: str) -> Deferred[Record | None]:
    """
    The live value of C{key} read at the connection's write level: what a
    read-modify-write decides on.
    """
    return read(context, key, context.writeLevel)


def write(
    context: Context, key: str, value: bytes, expiresAtMs: int = 0
) -> Deferred[WriteOutcome]:
    """
    Write C{value} under C{key} at the connection's write level, expiring
    at C{expiresAtMs} (0 for never; a time past deletes the key).

    @raise CommandError: C{NOREPLICAS} (in the L{Deferred}) when too few
        replicas acknowledged.
    """
    outcome = settled(
        context.node.putUntil(
            key, value, expiresAtMs, isBinary(value), context.writeLevel
        )
    )
    return outcome.addCallback(requireWrite)


def writeNow(
    context: Context, key: str, value: bytes, expiresAtMs: int = 0
) -> WriteOutcome | Deferred[WriteOutcome]:
    """
    L{write}, answering at once when the node does.

    @raise CommandError: C{NOREPLICAS} (at once, or in the L{Deferred})
        when too few replicas acknowledged.
    """
    outcome = context.node.putUntil(
        key, value, expiresAtMs, isBinary(value), context.writeLevel
    )
    if type(outcome) is WriteOutcome:
        return requireWrite(outcome)
    return settled(outcome).addCallback(requireWrite)


def restamp(
    context: Context, key: str, current: Record, expiresAtMs: int = 0
) -> Deferred[WriteOutcome]:
    """
    Write C{current}, the record of C{key} just read, again with the expiry
    C{expiresAtMs} (0 for never; a time past deletes the key), at the
    connection's write level: a counter stays one, with its state
    (L{disperse.node.Node.restamp}).

    @raise CommandError: C{NOREPLICAS} (in the L{Deferred}) when too few
        replicas acknowledged.
    """
    outcome = settled(
        context.node.restamp(key, current, expiresAtMs, context.writeLevel)
    )
    return outcome.addCallback(requireWrite)


def delete(context: Context, key: str) -> Deferred[WriteOutcome]:
    """
    Write a tombstone for C{key} at the connection's write level.
    """
    outcome = settled(context.node.delete(key, context.writeLevel))
    return outcome.addCallback(requireWrite)


def _valueOf(outcome: ReadOutcome) -> bytes | None:
    record = requireRead(outcome).value
    return None if record is None else stringOf(record)


def _arityError(arguments: Sequence[bytes]) -> CommandError:
    name = arguments[0].decode("utf-8", "replace").lower()
    return CommandError(f"ERR wrong number of arguments for '{name}' command")


def _pairs(context: Context, arguments: list[bytes]) -> dict[str, bytes]:
    """
    The keys and values of C{MSET}/C{MSETNX}, checked, the last value of a
    key named twice winning, as it does when Redis sets them in order.
    """
    if len(arguments) % 2 == 0:
        raise _arityError(arguments)
    pairs: dict[str, bytes] = {}
    for index in range(1, len(arguments), 2):
        key = context.key(arguments[index])
        pairs.pop(key, None)
        pairs[key] = context.value(arguments[index + 1])
    return pairs


def _keys(context: Context, arguments: list[bytes]) -> list[str]:
    return [context.key(argument) for argument in arguments[1:]]


# Reads


@handles("get")
def get(context: Context, arguments: list[bytes]) -> Reply | Deferred[Reply]:
    key = context.key(arguments[1])
    outcome = context.node.get(key, context.readLevel)
    if type(outcome) is ReadOutcome:
        return _valueOf(outcome)
    return settled(outcome).addCallback(_valueOf)


@handles("mget")
def mget(context: Context, arguments: list[bytes]) -> Reply | Deferred[Reply]:
    keys = _keys(context, arguments)
    level = context.readLevel
    get = context.node.get
    outcomes = [get(key, level) for key in keys]
    if all(type(outcome) is ReadOutcome for outcome in outcomes):
        # Every replica read answered at once: so does MGET.
        return [_valueOf(outcome) for outcome in outcomes]  # type: ignore[arg-type]
    reads = [settled(outcome).addCallback(_valueOf) for outcome in outcomes]
    return cast(Deferred[Reply], gathered(reads))


@handles("strlen")
def strlen(context: Context, arguments: list[bytes]) -> Deferred[Reply]:
    key = context.key(arguments[1])
    return read(context, key, context.readLevel).addCallback(
        lambda record: 0 if record is None else len(stringOf(record))
    )


@handles("type")
def type_(context: Context, arguments: list[bytes]) -> Deferred[Reply]:
    key = context.key(arguments[1])
    return read(context, key, context.readLevel).addCallback(
        lambda record: NONE if record is None else STRING
    )


@handles("exists", "touch")
def exists(context: Context, arguments: list[bytes]) -> Deferred[Reply]:
    """
    C{EXISTS} and C{TOUCH}: how many of the keys named exist, a key named
    twice counted twice. Any read marks a key recently used on the
    replicas that serve it, so C{TOUCH} is C{EXISTS}.
    """
    keys = _keys(context, arguments)
    distinct = list(dict.fromkeys(keys))
    level = context.readLevel

    def count(records: list[Record | None]) -> int:
        found = {key for key, r in zip(distinct, records, strict=True) if r is not None}
        return sum(1 for key in keys if key in found)

    return gathered([read(context, key, level) for key in distinct]).addCallback(count)


# Writes


@handles("set")
def set_(context: Context, arguments: list[bytes]) -> Reply | Deferred[Reply]:
    if len(arguments) == 3:
        # A plain SET, the most common write: no options to parse, and no
        # Deferred at all when the key is idle and the write is local.
        key = context.key(arguments[1])
        value = context.value(arguments[2])
        # seriallyNow and _okWhenDone inlined: two calls are a tenth of a
        # local SET's own work.
        done = context.node.serial.runNow(key, partial(writeNow, context, key, value))
        if type(done) is WriteOutcome:
            return OK
        return _okWhenDone(done)
    options = parseSet(arguments, context.nowMs())
    key = context.key(options.key)
    value = context.value(options.value)
    if options.onlyIfAbsent or options.onlyIfPresent or options.get or options.keepTtl:
        return serially(context, key, lambda: run(_setIf(context, key, value, options)))
    return _okWhenDone(
        seriallyNow(
            context,
            key,
            partial(writeNow, context, key, value, options.expireAtMs or 0),
        )
    )


def _okWhenDone(result: object) -> Reply | Deferred[Reply]:
    """
    C{OK} once C{result}, a write's outcome now or later, is in.
    """
    if isDeferred(result):
        return cast(Deferred[object], result).addCallback(_ok)
    return OK


def _ok(_: object) -> Reply:
    return OK


async def _setIf(
    context: Context, key: str, value: bytes, options: SetArguments
) -> Reply:
    current = await readForWrite(context, key)
    old = None if current is None else stringOf(current)
    if (options.onlyIfAbsent and current is not None) or (
        options.onlyIfPresent and current is None
    ):
        return old if options.get else None
    expiresAtMs = options.expireAtMs or 0
    if options.keepTtl and current is not None:
        expiresAtMs = current.expiresAtMs
    await write(context, key, value, expiresAtMs)
    return old if options.get else OK


@handles("setex", "psetex")
def setex(context: Context, arguments: list[bytes]) -> Reply | Deferred[Reply]:
    options = parseSetEx(arguments, context.nowMs())
    key = context.key(options.key)
    value = context.value(options.value)
    return _okWhenDone(
        seriallyNow(
            context,
            key,
            partial(writeNow, context, key, value, options.expireAtMs or 0),
        )
    )


@handles("setnx")
def setnx(context: Context, arguments: list[bytes]) -> Deferred[Reply]:
    key = context.key(arguments[1])
    value = context.value(arguments[2])

    async def setIfAbsent() -> Reply:
        if await readForWrite(context, key) is not None:
            return 0
        await write(context, key, value)
        return 1

    return serially(context, key, lambda: run(setIfAbsent()))


@handles("getset")
def getset(context: Context, arguments: list[bytes]) -> Deferred[Reply]:
    key = context.key(arguments[1])
    value = context.value(arguments[2])

    async def swap() -> Reply:
        current = await readForWrite(context, key)
        await write(context, key, value)
        return None if current is None else stringOf(current)

    return serially(context, key, lambda: run(swap()))


@handles("getdel")
def getdel(context: Context, arguments: list[bytes]) -> Deferred[Reply]:
    key = context.key(arguments[1])

    async def take() -> Reply:
        current = await readForWrite(context, key)
        if current is None:
            return None
        await delete(context, key)
        return stringOf(current)

    return serially(context, key, lambda: run(take()))


@handles("getex")
def getex(context: Context, arguments: list[bytes]) -> Reply | Deferred[Reply]:
    """
    C{GETEX}: without options a read (at the read level); with one, a
    read-modify-write. As in Redis, a bad time is only refused for a key
    that exists: for a missing key the answer is nil.
    """
    refused: ArgumentError | None = None
    try:
        options = parseGetEx(arguments, context.nowMs())
    except ArgumentError as error:
        if error.message == SYNTAX_ERROR:
            raise
        # The option was well placed; its number is checked after the
        # lookup.
        refused = error
        options = GetExArguments(arguments[1])
    key = context.key(options.key)
    if refused is None and options.expireAtMs is None and not options.persist:
        return get(context, arguments[:2])

    async def change() -> Reply:
        current = await readForWrite(context, key)
        if current is None:
            return None
        if refused is not None:
            raise refused
        value = stringOf(current)
        if options.expireAtMs is not None:
            await restamp(context, key, current, options.expireAtMs)
        elif current.expiresAtMs:
            await restamp(context, key, current)
        return value

    return serially(context, key, lambda: run(change()))


@handles("append")
def append(context: Context, arguments: list[bytes]) -> Deferred[Reply]:
    key = context.key(arguments[1])
    suffix = arguments[2]

    async def extend() -> Reply:
        current = await readForWrite(context, key)
        if current is None:
            value = context.value(suffix)
            expiresAtMs = 0
        else:
            value = context.value(stringOf(current) + suffix)
            expiresAtMs = current.expiresAtMs
        await write(context, key, value, expiresAtMs)
        return len(value)

    return serially(context, key, lambda: run(extend()))


@handles("mset")
def mset(context: Context, arguments: list[bytes]) -> Reply | Deferred[Reply]:
    pairs = _pairs(context, arguments)
    # Each key is written whatever happens to the others, as a write of
    # its own; a write that fails at once fails MSET once all are in.
    writes: list[object] = []
    waiting = False
    for key, value in pairs.items():
        try:
            result = seriallyNow(context, key, partial(writeNow, context, key, value))
        except Exception:
            result = fail()
        if isDeferred(result):
            waiting = True
        writes.append(result)
    if not waiting:
        return OK
    return gathered([settled(result) for result in writes]).addCallback(_ok)


@handles("msetnx")
def msetnx(context: Context, arguments: list[bytes]) -> Deferred[Reply]:
    pairs = _pairs(context, arguments)

    async def setAllOrNone() -> Reply:
        current = await gathered([readForWrite(context, key) for key in pairs])
        if any(record is not None for record in current):
            return 0
        await gathered([write(context, key, value) for key, value in pairs.items()])
        return 1

    return seriallyAll(context, sorted(pairs), lambda: run(setAllOrNone()))


@handles("del", "unlink")
def del_(context: Context, arguments: list[bytes]) -> Deferred[Reply]:
    """
    C{DEL} and C{UNLINK}: how many of the keys existed. Each key named is
    read at the write level, then gets a tombstone whether found or not.
    """
    keys = list(dict.fromkeys(_keys(context, arguments)))
    removals = [serially(context, key, partial(_remove, context, key)) for key in keys]
    return gathered(removals).addCallback(sum)


def _remove(context: Context, key: str) -> Deferred[bool]:
    async def remove() -> bool:
        current = await readForWrite(context, key)
        await delete(context, key)
        return current is not None

    return run(remove())
