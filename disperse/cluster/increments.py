"""
Increments of convergent counters (C{INCR} and its kin), coordinated by
this node.

An increment is a read-modify-write of one key, one at a time per key on
this node (the node's L{KeySerializer}): read the key at the level, merge
the copies read (the coordinator does), add the step to this node's own
entry of the counter (L{disperse.store.counter.increment}) and write the
result, with a new version, at the same level. Its replicas merge it with
what they hold, so increments coordinated elsewhere at the same time are
kept whatever the order (L{disperse.store.counter}).

An entry is only correct if it includes every increment its actor made:
an entry written smaller than before would lose the difference in the
merge, which keeps the larger. A read at a weak level (or one that misses
the replicas the last write reached) may not show this node's latest
entry, so this node remembers the last record it wrote for each key it
incremented lately, and merges it into what it reads. It remembers a
bounded number of keys (L{REMEMBERED_KEYS}, least recently incremented
forgotten first); a key it no longer remembers, or increments for the
first time since it started, gets a new actor, a random 64-bit number, so
that no entry is ever continued by a node that cannot know its total. A
counter thus holds an entry per node and period in which that node kept
incrementing it: a few per node for a counter in steady use.

Pure of I/O; time and versions come from the store's clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

from twisted.internet.defer import Deferred, succeed

from disperse.cluster.coordinator import (
    Consistency,
    Coordinator,
    ReadOutcome,
    WriteOutcome,
)
from disperse.cluster.serial import KeySerializer
from disperse.store import Record, Store, ValueTooLarge
from disperse.store.counter import (
    Number,
    counterRecord,
    increment,
    joinRecords,
    render,
)

# Keys whose last written counter this node remembers: about 200 bytes
# each.
REMEMBERED_KEYS = 16384


@dataclass(frozen=True)
class IncrementOutcome:
    """
    How an increment went.

    @ivar read: the read at the increment's level.
    @ivar write: the write of the incremented counter, or L{None} if the
        read fell short of its level (nothing was written).
    @ivar value: the counter's value once incremented (an C{int} after an
        integer step, a L{Decimal} after a decimal one), if written.
    """

    read: ReadOutcome
    write: WriteOutcome | None
    value: Number | None

    @property
    def ok(self) -> bool:
        return self.write is not None and self.write.ok

    @property
    def rendered(self) -> bytes:
        """
        The value as C{GET} reads it (L{disperse.store.counter.render}).
        """
        if self.value is None:
            raise ValueError("nothing was written")
        return render(self.value)


class Increments:
    """
    This node's increments of counters, and the entries it remembers.
    """

    def __init__(
        self,
        *,
        coordinator: Coordinator,
        store: Store,
        serial: KeySerializer,
        random: random.Random,
        remembered: int = REMEMBERED_KEYS,
    ) -> None:
        """
        @param random: draws actors; seeded by the system, since actors of
            different nodes must differ.
        @param remembered: how many keys' last written counter to remember.
        """
        self._coordinator = coordinator
        self._store = store
        self._serial = serial
        self._random = random
        self._capacity = remembered
        # Per key, this node's actor for it and the last record written,
        # least recently incremented first.
        self._own: dict[str, tuple[int, Record]] = {}

    def __len__(self) -> int:
        """
        The number of keys remembered.
        """
        return len(self._own)

    def increment(
        self, key: str, delta: int | Decimal, level: Consistency
    ) -> Deferred[IncrementOutcome]:
        """
        Add C{delta} to the counter C{key} (an C{int} as C{INCRBY} does, a
        L{Decimal} as C{INCRBYFLOAT}), reading and writing at C{level}.

        @return: fires with the outcome, or fails with
            L{disperse.store.counter.CounterError} (nothing written),
            L{disperse.cluster.view.NoMajority} or L{ValueTooLarge}.
        """

        def operation() -> Deferred[IncrementOutcome]:
            # Expired records too: the counter must supersede them.
            read = self._coordinator.read(key, level, expired=True)
            reading = read if isinstance(read, Deferred) else succeed(read)
            return reading.addCallback(self._apply, key, delta, level)

        return self._serial.run(key, operation)

    def _apply(
        self, read: ReadOutcome, key: str, delta: int | Decimal, level: Consistency
    ) -> IncrementOutcome | Deferred[IncrementOutcome]:
        if not read.ok:
            return IncrementOutcome(read, None, None)
        store = self._store
        current = read.record
        remembered = self._own.get(key)
        if remembered is None:
            actor = self._random.getrandbits(64)
        else:
            actor, mine = remembered
            current = mine if current is None else joinRecords(current, mine)
        done = increment(current, actor, delta, store.nowMs())
        record = counterRecord(
            done.state, done.expiresAtMs, store.hlc.now(), store.nodeId
        )
        if not store.fits(key, record.value):
            raise ValueTooLarge(key)
        # Raises before anything is sent when no majority is reachable.
        written = self._coordinator.write(key, record, level)
        # Remembered once sent, whether acknowledged or not: a replica that
        # took it holds this total, which the next increment must exceed.
        self._remember(key, actor, record)
        value = done.value
        if isinstance(written, Deferred):
            return written.addCallback(
                lambda outcome: IncrementOutcome(read, outcome, value)
            )
        return IncrementOutcome(read, written, value)

    def _remember(self, key: str, actor: int, record: Record) -> None:
        own = self._own
        own.pop(key, None)
        own[key] = (actor, record)
        while len(own) > self._capacity:
            del own[next(iter(own))]
