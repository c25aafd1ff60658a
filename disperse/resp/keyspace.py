"""
The commands over the whole keyspace: C{SCAN}, C{KEYS}, C{RANDOMKEY},
C{DBSIZE}, C{FLUSHDB} and C{FLUSHALL}, with Redis's argument rules,
replies and error texts.

How they map onto a cluster of leaderless replicas (the machinery is
L{disperse.cluster.keyspace}):

    - C{SCAN} walks the whole cluster's keyspace, whichever node it is
      sent to: the 1024 partitions in order, each listed a few of the 256
      leaves of its Merkle tree at a time. The cursor is
      C{partition * 256 + leaf}, the next leaf to list (0 starts, and a
      reply's 0 ends, the iteration), so any node can continue a cursor
      another gave, and a cursor past the keyspace ends at once. A key
      always falls in the same partition and leaf, so a full iteration
      returns every key that existed from its start to its end, and may
      return a key twice (when a call stops inside a partition another
      writes to) or one written or deleted meanwhile, as Redis promises.
    - A C{SCAN} call lists leaves until it has seen C{COUNT} live keys (10
      by default; before C{MATCH} and C{TYPE} filter them, as in Redis),
      or it has listed ten times C{COUNT} partitions (or parts of one), or
      asked other members 10 times; so a call may return fewer keys than
      C{COUNT}, even none, with a cursor that is not 0. Partitions known to
      be empty cost nothing: on a node alone, a small keyspace is walked in
      one call.
    - Each partition is read from as many of its owners as the
      connection's read level needs, this node's replica first when it
      holds the partition, and the newest record of each key decides
      whether it is live (a key deleted on a majority is not listed at
      quorum because a lagging replica still has it). Where that level
      needs other owners, their Merkle roots of 64 partitions at a time
      are asked first, in one call per owner: where they equal this
      node's, its replica alone is listed; where they agree among
      themselves, one copy is; an empty one is not listed at all. Too few
      owners answering is C{NOREPLICAS} (no partition is silently left
      out).
    - Every key is a string: C{TYPE string} filters nothing, any other
      type returns nothing (and ends the iteration at once).
    - A cluster client that sends C{SCAN} to every primary (as redis-py's
      C{scan_iter} on a C{RedisCluster} does) would get every key from each
      of them; C{CLUSTER SLOTS} shows redis-py a single primary so that it
      does not (L{disperse.resp.topology}).
    - C{KEYS} is a whole C{SCAN} in one call, the partitions of each window
      listed at once: as slow as the keyspace is large.
    - C{MATCH} and C{KEYS} patterns follow Redis's glob rules exactly
      (L{disperse.resp.match}); a connection whose token is limited to a
      key prefix sees only the keys under it.
    - C{RANDOMKEY} lists partitions from a random one on, those this node
      holds with keys here first, and picks uniformly among the keys of
      the first that has any (under the connection's prefix); nil when the
      cluster holds none. Not uniform over the whole keyspace.
    - C{DBSIZE} counts the keys of the whole cluster, whichever node it
      is sent to (C{redis-cli dbsize} to any node; redis-py's
      C{RedisCluster} sends it to one node, its default one): each
      partition is counted on one owner, this node's replica for the
      partitions it holds, the first other owner that answers for the
      rest, asked in one call per member. Each replica keeps its count of
      every partition as it changes, so this lists no keys: at once on a
      node alone, a round trip to each other member otherwise. Each
      partition's count is one copy's, as a read at level C{one} sees one
      copy: a key that owner missed (until a repair) is not counted, a
      write on its way may be or not. Expired keys count until the sweep
      drops them (within a second or so), as Redis counts those its
      expiry cycle has not reached yet. When no owner of some partition
      answers, the answer is C{NOREPLICAS} rather than a count short of
      it. The connection's read level and prefix do not apply. (C{INFO}'s
      C{keyspace} section counts this node's replica alone, as Redis's
      counts one node.)
    - C{FLUSHDB} and C{FLUSHALL} (the same: Disperse has one database)
      delete every key of the cluster: every owner of every partition is
      read, and every live key gets a tombstone, newer than every record
      read, written to its owners at the connection's write level, so no
      value written before the flush comes back through a repair or a
      hint. Writes that arrive during the flush may survive it. C{ASYNC}
      and C{SYNC} both answer once the tombstones are written. When some
      partition could not be read from as many owners as the level needs,
      or some tombstone was acknowledged by too few, the answer is
      C{NOREPLICAS} (the tombstones written stay, and hints carry them to
      the replicas that missed them); a key only an unreachable owner held
      may then remain. The token scope (admin) is checked by the
      dispatcher.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred

from disperse.cluster.keyspace import (
    WHOLE,
    FlushOutcome,
    KeyWalk,
    ShortCount,
    ShortRead,
)
from disperse.resp.arguments import SYNTAX_ERROR, parseScan
from disperse.resp.commands import CommandError
from disperse.resp.context import Context, handles
from disperse.resp.match import GlobPattern
from disperse.resp.replies import OK, Reply
from disperse.resp.strings import run
from disperse.store.partition import PARTITION_COUNT
from disperse.store.store import LEAF_COUNT

# The cursor past the last leaf of the last partition: the end.
CURSOR_END = PARTITION_COUNT * LEAF_COUNT
# A SCAN call asks other members at most this many times.
SCAN_REMOTE_STEPS = 10


def cursorPosition(cursor: int) -> tuple[int, int] | None:
    """
    The partition and leaf a SCAN cursor points at, or L{None} past the
    end (a cursor no call gave).
    """
    if cursor >= CURSOR_END:
        return None
    partition, leaf = divmod(cursor, LEAF_COUNT)
    return partition, leaf


def cursorOf(walk: KeyWalk) -> int:
    """
    The SCAN cursor that goes on where C{walk} stopped: 0 at the end.
    """
    if walk.partition >= PARTITION_COUNT:
        return 0
    return walk.partition * LEAF_COUNT + walk.leaf


def _visible(context: Context, pattern: bytes | None) -> Callable[[str], bool]:
    """
    Whether a key is listed: within the connection's prefix and matching
    C{pattern} (L{None} for every key).
    """
    grant = context.session.grant
    prefix = grant.prefix if grant is not None else b""
    compiled = GlobPattern(pattern) if pattern is not None else None

    def visible(key: str) -> bool:
        encoded = key.encode()
        return encoded.startswith(prefix) and (
            compiled is None or compiled.matches(encoded)
        )

    return visible


async def _walk(context: Context, walking: Deferred[KeyWalk]) -> KeyWalk:
    try:
        return await walking
    except ShortRead as short:
        raise CommandError(
            "NOREPLICAS Not enough replicas answered the read"
            f" ({short.answered} of {short.required} required)"
        ) from None


@handles("scan")
def scan(context: Context, arguments: list[bytes]) -> Reply | Deferred[Reply]:
    options = parseScan(arguments)
    position = cursorPosition(options.cursor)
    if position is None or options.type not in (None, "string"):
        return [b"0", []]
    partition, leaf = position
    walking = context.node.scanKeys(
        partition,
        leaf,
        options.count,
        context.readLevel,
        maxSteps=options.count * 10,
        maxRemote=SCAN_REMOTE_STEPS,
    )
    visible = _visible(context, options.match)

    async def page() -> Reply:
        walk = await _walk(context, walking)
        listed: list[Reply] = [key.encode() for key in walk.keys if visible(key)]
        return [str(cursorOf(walk)).encode(), listed]

    return run(page())


@handles("keys")
def keys(context: Context, arguments: list[bytes]) -> Deferred[Reply]:
    visible = _visible(context, None if arguments[1] == b"*" else arguments[1])
    walking = context.node.scanKeys(0, 0, WHOLE, context.readLevel)

    async def listAll() -> Reply:
        walk = await _walk(context, walking)
        return [key.encode() for key in walk.keys if visible(key)]

    return run(listAll())


@handles("randomkey")
def randomkey(context: Context, arguments: list[bytes]) -> Deferred[Reply]:
    visible = _visible(context, None)
    return context.node.randomKey(context.readLevel, visible).addCallback(
        lambda key: None if key is None else key.encode()
    )


@handles("dbsize")
def dbsize(context: Context, arguments: list[bytes]) -> Deferred[Reply]:
    counting = context.node.keyCount()

    async def count() -> Reply:
        try:
            return await counting
        except ShortCount as short:
            raise CommandError(
                "NOREPLICAS Not enough replicas answered the count (no owner of"
                f" {short.partitions} partitions answered)"
            ) from None

    return run(count())


@handles("flushdb", "flushall")
def flush(context: Context, arguments: list[bytes]) -> Deferred[Reply]:
    if len(arguments) > 2 or (
        len(arguments) == 2 and arguments[1].upper() not in (b"SYNC", b"ASYNC")
    ):
        raise CommandError(SYNTAX_ERROR)

    def answer(outcome: FlushOutcome) -> Reply:
        if not outcome.ok:
            raise CommandError(
                "NOREPLICAS Not enough good replicas to flush"
                f" ({outcome.partitionsShort} partitions read from too few"
                f" owners, {outcome.writesShort} tombstones acknowledged by"
                " too few replicas)"
            )
        return OK

    return context.node.flush(context.writeLevel).addCallback(answer)
