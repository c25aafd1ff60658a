"""
The expiry commands: C{EXPIRE}, C{PEXPIRE}, C{EXPIREAT}, C{PEXPIREAT}
(with C{NX}, C{XX}, C{GT}, C{LT}), C{TTL}, C{PTTL}, C{EXPIRETIME},
C{PEXPIRETIME} and C{PERSIST}, with Redis's argument rules, replies and
error texts.

How they map onto a leaderless store:

    - An expiry is an absolute time in ms since the epoch, stored in the
      value's record and fixed by the node that takes the command (its
      clock; nodes' clocks should agree as closely as for any cache with
      absolute expiry). Every replica drops the value once that time has
      passed on its own clock.
    - C{TTL}, C{PTTL}, C{EXPIRETIME} and C{PEXPIRETIME} read at the
      connection's read level: -2 for a missing key, -1 for a key without
      expiry. C{TTL} and C{EXPIRETIME} round to the nearest second, as
      Redis does.
    - C{EXPIRE} and its siblings and C{PERSIST} are read-modify-writes:
      the key is read at the connection's I{write} level; if it exists
      (and the C{NX}/C{XX}/C{GT}/C{LT} condition holds, a key without
      expiry counting as expiring never) the same value is written again
      as a new version with the new expiry, at the write level, and the
      answer is 1; else 0 and nothing is written. A time already past
      deletes the key (a tombstone) and answers 1. C{PERSIST} answers 1
      only for a key that had an expiry. On one node they run one at a
      time per key with every other write of it; two nodes changing the
      same key at the same moment may both answer 1, and the newer write
      wins on every replica (so a C{PERSIST} and a C{SET} racing on two
      nodes may leave either). A counter's expiry is written with its
      state (L{disperse.node.Node.restamp}): increments made meanwhile
      elsewhere still count, and the newer of an expiry change and an
      increment (which keeps the expiry it read) sets the expiry. Too few
      acknowledgements answer C{NOREPLICAS}.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from disperse.resp.arguments import parseExpire
from disperse.resp.context import Context, handles
from disperse.resp.replies import Reply
from disperse.resp.strings import read, readForWrite, restamp, run, serially
from disperse.store import Record


@handles("expire", "pexpire", "expireat", "pexpireat")
def expire(context: Context, arguments: list[bytes]) -> Deferred[Reply]:
    options = parseExpire(arguments, context.nowMs())
    key = context.key(options.key)

    async def change() -> Reply:
        current = await readForWrite(context, key)
        if current is None:
            return 0
        when = options.atMs
        # 0 in a record means no expiry; Redis's -1.
        existing = current.expiresAtMs or None
        if options.onlyIfNone and existing is not None:
            return 0
        if options.onlyIfSome and existing is None:
            return 0
        if options.onlyIfLater and (existing is None or when <= existing):
            return 0
        if options.onlyIfEarlier and existing is not None and when >= existing:
            return 0
        # A time already past deletes the key: the node writes a tombstone
        # (0 and negative times too, which a record would read as none).
        await restamp(context, key, current, max(when, 1))
        return 1

    return serially(context, key, lambda: run(change()))


@handles("persist")
def persist(context: Context, arguments: list[bytes]) -> Deferred[Reply]:
    key = context.key(arguments[1])

    async def change() -> Reply:
        current = await readForWrite(context, key)
        if current is None or not current.expiresAtMs:
            return 0
        await restamp(context, key, current)
        return 1

    return serially(context, key, lambda: run(change()))


def _timeToLive(
    context: Context, arguments: list[bytes], milliseconds: bool, absolute: bool
) -> Deferred[Reply]:
    key = context.key(arguments[1])

    def answer(record: Record | None) -> Reply:
        if record is None:
            return -2
        expiresAtMs = record.expiresAtMs
        if not expiresAtMs:
            return -1
        left = expiresAtMs if absolute else max(expiresAtMs - context.nowMs(), 0)
        return left if milliseconds else (left + 500) // 1000

    return read(context, key, context.readLevel).addCallback(answer)


@handles("ttl")
def ttl(context: Context, arguments: list[bytes]) -> Deferred[Reply]:
    return _timeToLive(context, arguments, milliseconds=False, absolute=False)


@handles("pttl")
def pttl(context: Context, arguments: list[bytes]) -> Deferred[Reply]:
    return _timeToLive(context, arguments, milliseconds=True, absolute=False)


@handles("expiretime")
def expiretime(context: Context, arguments: list[bytes]) -> Deferred[Reply]:
    return _timeToLive(context, arguments, milliseconds=False, absolute=True)


@handles("pexpiretime")
def pexpiretime(context: Context, arguments: list[bytes]) -> Deferred[Reply]:
    return _timeToLive(context, arguments, milliseconds=True, absolute=True)
