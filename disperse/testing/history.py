"""
A checker of client histories for replication tests and the fault bed: a
workload records what it asked and what it was told (L{History}), and
L{check} says whether the answers are ones the system may give.

A history is a list of L{Event}s. Each client (a workload thread, a
simulated process) has at most one operation in flight: an C{invoke},
then one of

  - C{ok}: the operation took effect; a read's event carries the value
    read (C{None} for not found);
  - C{fail}: the operation certainly did not take effect (refused before
    anything was written). A write the system may have applied in part,
    such as one that reached fewer replicas than its consistency level
    asks, is a C{timeout}, not a C{fail};
  - C{timeout}: unknown, the operation may take effect, now or at any
    later time.

An invoke without a completion is pending, like a timeout. Every event
carries a time, wall or simulated, and the operation's interval runs from
its invoke to its completion (to infinity for a timeout or a pending one).
Times decide everything: "before" means strictly earlier, and two intervals
that touch or overlap are concurrent.

The workload writes values unique per key, so a value read names the write
it came from. (Duplicates are tolerated: a value is then accepted if any of
its writes could explain it.) A delete writes "not found", as the initial
state does.

The checks, per key:

  - B{must observe}: an C{ok} read R must observe an C{ok} write or delete
    W, or something after it, when either W completed before R began and
    their consistency levels intersect (read replicas + write replicas >
    replicas: quorum/quorum, one/all...), or W completed before
    C{settledAt} (faults healed, replication done) and R began at or after
    it. Reads at levels that do not intersect with a write's, before the
    settling point, may be stale without blame: that is eventual
    consistency.
  - B{allowed answers}: the value of W, or the value of any non-failed
    write or delete X that is not entirely before W (X did not complete
    before W began) and began no later than R completed. Such an X may be
    ordered between W and R, so any write or delete concurrent with R, or
    with W, makes its value acceptable. Not found is allowed only through
    such a delete (or W itself being one). Anything else is older than W:
    a violation.
  - B{lost-write}: a read that began at or after C{settledAt} missed a
    write or delete acknowledged before C{settledAt}: the acknowledged
    write is gone (or a deleted value came back).
  - B{stale-read}: otherwise, a read missed a write or delete whose level
    intersects its own.
  - B{unwritten-value}: a read, at any level, returned a value that no
    non-failed write that began no later than the read completed wrote:
    never written, written only by failed writes, or only by later ones.

These are exactly the consequences of linearizability per key that apply
to a read and one write at a time: a history of a linearizable register is
never flagged, whatever its concurrency, failures and timeouts (the tests
check it). It is not a full linearizability check (NP-complete in
general): reads are not checked against each other, so two readers seeing
two concurrent writes in opposite orders pass. A correct last-writer-wins
store can still be flagged, rightly: when clocks are skewed an acknowledged
write can lose to an older one.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, get_args

OpKind: TypeAlias = Literal["read", "write", "delete"]
EventType: TypeAlias = Literal["invoke", "ok", "fail", "timeout"]
Outcome: TypeAlias = Literal["ok", "fail", "timeout", "pending"]
ViolationKind: TypeAlias = Literal["lost-write", "stale-read", "unwritten-value"]
Value: TypeAlias = str | bytes | int
ClientId: TypeAlias = str | int

OP_KINDS: tuple[OpKind, ...] = get_args(OpKind)
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
VIOLATION_KINDS: tuple[ViolationKind, ...] = get_args(ViolationKind)

# Replicas a level involves, as a function of the replication factor.
LEVELS: dict[str, Callable[[int], int]] = {
    "one": lambda n: 1,
    "two": lambda n: 2,
    "three": lambda n: 3,
    "quorum": lambda n: n // 2 + 1,
    "all": lambda n: n,
}


class MalformedHistory(ValueError):
    """
    The events do not make a history: a completion without an invoke, two
    operations in flight for one client, an unknown level, time running
    backwards within an operation.
    """


@dataclass(frozen=True, slots=True)
class Event:
    """
    One thing a client did or was told.

    @ivar value: for a write's invoke, the value written; for a read's
        C{ok}, the value read, C{None} for not found; otherwise C{None}.
    @ivar consistency: the level asked for: C{one}, C{two}, C{three},
        C{quorum} or C{all}.
    """

    type: EventType
    client: ClientId
    op: OpKind
    key: str
    value: Value | None
    consistency: str
    time: float


@dataclass(frozen=True, slots=True)
class Operation:
    """
    An invoke and its completion.

    @ivar value: the value written, or the value a successful read returned.
    @ivar completed: when the outcome was known; infinity for a timeout or
        a pending operation, whose effect may come at any time.
    """

    client: ClientId
    op: OpKind
    key: str
    value: Value | None
    consistency: str
    invoked: float
    completed: float
    outcome: Outcome

    def toDict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "op": self.op,
            "key": self.key,
            "value": _jsonValue(self.value),
            "consistency": self.consistency,
            "invoked": self.invoked,
            "completed": None if math.isinf(self.completed) else self.completed,
            "outcome": self.outcome,
        }

    def describe(self) -> str:
        end = "..." if math.isinf(self.completed) else f"{self.completed:g}"
        what = "delete" if self.op == "delete" else f"{self.op} {self.value!r}"
        return (
            f"{what} by client {self.client!r} at {self.consistency}, "
            f"{self.outcome} [{self.invoked:g}, {end}]"
        )


@dataclass(frozen=True, slots=True)
class Violation:
    """
    A read the system should not have answered as it did.

    @ivar missed: the acknowledged write or delete the read should have
        observed (for C{unwritten-value}, C{None}).
    @ivar source: the latest-completing write or delete that wrote the
        value read, if any: it completed before C{missed} began.
    """

    kind: ViolationKind
    key: str
    read: Operation
    missed: Operation | None
    source: Operation | None
    message: str

    def toDict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "read": self.read.toDict(),
            "missed": None if self.missed is None else self.missed.toDict(),
            "source": None if self.source is None else self.source.toDict(),
            "message": self.message,
        }


@dataclass(frozen=True)
class Report:
    """
    The verdict on a history.

    @ivar counts: operation kind to outcome to how many.
    """

    violations: tuple[Violation, ...]
    counts: Mapping[str, Mapping[str, int]]
    replicas: int
    settledAt: float | None

    @property
    def valid(self) -> bool:
        return not self.violations

    def byKind(self) -> dict[str, int]:
        found = Counter(v.kind for v in self.violations)
        return {kind: found[kind] for kind in VIOLATION_KINDS}

    def toDict(self) -> dict[str, Any]:
        """
        The report as plain JSON-able data.
        """
        return {
            "valid": self.valid,
            "replicas": self.replicas,
            "settledAt": self.settledAt,
            "counts": {op: dict(outcomes) for op, outcomes in self.counts.items()},
            "violationCounts": self.byKind(),
            "violations": [v.toDict() for v in self.violations],
        }

    def toText(self, limit: int = 20) -> str:
        """
        The report for people: counts, then up to C{limit} violations.
        """
        lines = []
        total = sum(sum(outcomes.values()) for outcomes in self.counts.values())
        lines.append(f"{total} operations ({self.replicas} replicas):")
        for op, outcomes in self.counts.items():
            parts = ", ".join(f"{n} {outcome}" for outcome, n in outcomes.items())
            lines.append(f"  {op}: {parts}")
        if self.valid:
            lines.append("valid: no violations")
        else:
            kinds = ", ".join(f"{n} {k}" for k, n in self.byKind().items() if n)
            lines.append(f"INVALID: {kinds}")
            for violation in self.violations[:limit]:
                lines.append(f"  {violation.kind} on {violation.key!r}:")
                lines.append(f"    {violation.message}")
            if len(self.violations) > limit:
                lines.append(f"  ... and {len(self.violations) - limit} more")
        return "\n".join(lines)


@dataclass
class History:
    """
    A recorder for a workload: call L{invoke} before sending a request and
    L{ok}, L{fail} or L{timeout} when its outcome is known, with the time
    from whatever clock the test runs on.
    """

    events: list[Event] = field(default_factory=list)
    _pending: dict[ClientId, Event] = field(
        default_factory=dict, init=False, repr=False
    )

    def invoke(
        self,
        client: ClientId,
        op: OpKind,
        key: str,
        *,
        value: Value | None = None,
        consistency: str,
        time: float,
    ) -> None:
        if client in self._pending:
            raise MalformedHistory(f"client {client!r} already has an operation")
        event = Event("invoke", client, op, key, value, consistency, time)
        self._pending[client] = event
        self.events.append(event)

    def ok(self, client: ClientId, *, time: float, value: Value | None = None) -> None:
        """
        The operation succeeded; for a read, C{value} is what it returned.
        """
        self._complete("ok", client, time, value)

    def fail(self, client: ClientId, *, time: float) -> None:
        """
        The operation certainly did not take effect.
        """
        self._complete("fail", client, time, None)

    def timeout(self, client: ClientId, *, time: float) -> None:
        """
        The outcome is unknown: the operation may take effect.
        """
        self._complete("timeout", client, time, None)

    def _complete(
        self, outcome: EventType, client: ClientId, time: float, value: Value | None
    ) -> None:
        invoked = self._pending.pop(client, None)
        if invoked is None:
            raise MalformedHistory(f"client {client!r} has no operation in flight")
        if invoked.op != "read":
            value = None
        self.events.append(
            Event(
                outcome,
                client,
                invoked.op,
                invoked.key,
                value,
                invoked.consistency,
                time,
            )
        )


def operations(events: Iterable[Event]) -> list[Operation]:
    """
    Pair each invoke with the next completion of the same client, in the
    order of C{events}; operations without a completion are pending.
    Ordered by invoke position.

    @raise MalformedHistory: if the events do not pair up.
    """
    pending: dict[ClientId, tuple[int, Event]] = {}
    done: list[tuple[int, Operation]] = []
    for position, event in enumerate(events):
        if event.op not in OP_KINDS:
            raise MalformedHistory(f"unknown operation {event.op!r}")
        if event.consistency.lower() not in LEVELS:
            raise MalformedHistory(f"unknown consistency level {event.consistency!r}")
        if event.type == "invoke":
            if event.client in pending:
                raise MalformedHistory(
                    f"client {event.client!r} invoked at {event.time} with an "
                    "operation in flight"
                )
            pending[event.client] = (position, event)
            continue
        if event.type not in ("ok", "fail", "timeout"):
            raise MalformedHistory(f"unknown event type {event.type!r}")
        if event.client not in pending:
            raise MalformedHistory(
                f"{event.type} for client {event.client!r} at {event.time} "
                "with nothing in flight"
            )
        start, invoked = pending.pop(event.client)
        if (event.op, event.key) != (invoked.op, invoked.key):
            raise MalformedHistory(
                f"client {event.client!r}: {event.type} of {event.op} {event.key!r} "
                f"completes {invoked.op} {invoked.key!r}"
            )
        if event.time < invoked.time:
            raise MalformedHistory(
                f"client {event.client!r}: completed at {event.time} before its "
                f"invoke at {invoked.time}"
            )
        value = event.value if invoked.op == "read" else invoked.value
        if event.type == "ok":
            outcome: Outcome = "ok"
            completed = event.time
        elif event.type == "fail":
            outcome, completed = "fail", event.time
        else:
            outcome, completed = "timeout", math.inf
        if outcome != "ok" and invoked.op == "read":
            value = None
        done.append(
            (
                start,
                Operation(
                    invoked.client,
                    invoked.op,
                    invoked.key,
                    value,
                    invoked.consistency,
                    invoked.time,
                    completed,
                    outcome,
                ),
            )
        )
    for start, invoked in pending.values():
        value = None if invoked.op == "read" else invoked.value
        done.append(
            (
                start,
                Operation(
                    invoked.client,
                    invoked.op,
                    invoked.key,
                    value,
                    invoked.consistency,
                    invoked.time,
                    math.inf,
                    "pending",
                ),
            )
        )
    done.sort(key=lambda pair: pair[0])
    return [op for _, op in done]


def intersects(readLevel: str, writeLevel: str, replicas: int) -> bool:
    """
    Whether every read at C{readLevel} meets every write at C{writeLevel} on
    at least one of C{replicas} replicas.
    """
    read = LEVELS[readLevel.lower()](replicas)
    write = LEVELS[writeLevel.lower()](replicas)
    return read + write > replicas


def check(
    history: Iterable[Event] | History,
    *,
    replicas: int = 3,
    settledAt: float | None = None,
) -> Report:
    """
    Check a history as the module docstring defines.

    @param replicas: the replication factor, which gives the levels their
        sizes.
    @param settledAt: a time by which the system had healed and replicated
        everything acknowledged before it, or C{None} if it never settled.
        Reads that began at or after it must observe every write and delete
        acknowledged before it, whatever the levels.
    @raise MalformedHistory: if the events do not pair up.
    """
    events = history.events if isinstance(history, History) else history
    ops = operations(events)
    counts: dict[str, dict[str, int]] = {
        kind: dict.fromkeys(OUTCOMES, 0) for kind in OP_KINDS
    }
    byKey: dict[str, list[Operation]] = defaultdict(list)
    for op in ops:
        counts[op.op][op.outcome] += 1
        byKey[op.key].append(op)
    violations: list[Violation] = []
    for key, keyOps in byKey.items():
        violations.extend(_KeyChecker(key, keyOps, replicas, settledAt).violations())
    return Report(tuple(violations), counts, replicas, settledAt)


class _LatestBefore:
    """
    Operations sorted by one time, answering: of those whose time is below a
    bound, which has the greatest other time? O(log n) a query.
    """

    def __init__(
        self,
        ops: Iterable[Operation],
        sortBy: Callable[[Operation], float],
        maximise: Callable[[Operation], float],
        strict: bool,
    ) -> None:
        ordered = sorted(ops, key=sortBy)
        self._times = [sortBy(op) for op in ordered]
        self._find = bisect.bisect_left if strict else bisect.bisect_right
        self._best: list[Operation] = []
        for op in ordered:
            if not self._best or maximise(op) > maximise(self._best[-1]):
                self._best.append(op)
            else:
                self._best.append(self._best[-1])

    def query(self, bound: float) -> Operation | None:
        """
        The best operation whose time is below C{bound} (strictly, or at or
        below it when not strict).
        """
        index = self._find(self._times, bound)
        return self._best[index - 1] if index else None


def _invoked(op: Operation) -> float:
    return op.invoked


def _completed(op: Operation) -> float:
    return op.completed


class _KeyChecker:
    def __init__(
        self,
        key: str,
        ops: list[Operation],
        replicas: int,
        settledAt: float | None,
    ) -> None:
        self.key = key
        self.replicas = replicas
        self.settledAt = settledAt
        self.reads = [op for op in ops if op.op == "read" and op.outcome == "ok"]
        mutations = [op for op in ops if op.op != "read"]
        effective = [op for op in mutations if op.outcome != "fail"]
        acked = [op for op in effective if op.outcome == "ok"]
        # Per level: among writes acknowledged before a time, the one that
        # began last. The last to begin is the one that binds: any answer
        # allowed for it is allowed for the earlier ones.
        self.ackedByLevel = {
            level: _LatestBefore(
                [op for op in acked if op.consistency.lower() == level],
                _completed,
                _invoked,
                strict=True,
            )
            for level in {op.consistency.lower() for op in acked}
        }
        self.settledWrite = None
        if settledAt is not None:
            self.settledWrite = _LatestBefore(
                acked, _completed, _invoked, strict=True
            ).query(settledAt)
        # Per value read: among its writes begun by a time, the one that
        # completed last. None stands for every delete.
        sources: dict[Value | None, list[Operation]] = defaultdict(list)
        for op in effective:
            sources[op.value if op.op == "write" else None].append(op)
        self.sources = {
            value: _LatestBefore(writes, _invoked, _completed, strict=False)
            for value, writes in sources.items()
        }
        self.failed = {op.value for op in mutations if op.outcome == "fail"}

    def violations(self) -> Iterable[Violation]:
        for read in self.reads:
            violation = self._checkRead(read)
            if violation is not None:
                yield violation

    def _checkRead(self, read: Operation) -> Violation | None:
        latest = self.sources.get(read.value)
        source = None if latest is None else latest.query(read.completed)
        if read.value is not None and source is None:
            return Violation(
                "unwritten-value",
                self.key,
                read,
                None,
                None,
                f"{read.describe()} returned a value {self._whyUnwritten(read)}",
            )
        # The initial state, and deletes, wrote "not found" before everything.
        sourceEnd = -math.inf if source is None else source.completed
        settled = self.settledWrite
        if (
            settled is not None
            and self.settledAt is not None
            and read.invoked >= self.settledAt
            and sourceEnd < settled.invoked
        ):
            return self._violation("lost-write", read, settled, source)
        missed = self._bindingWrite(read)
        if missed is not None and sourceEnd < missed.invoked:
            return self._violation("stale-read", read, missed, source)
        return None

    def _bindingWrite(self, read: Operation) -> Operation | None:
        binding = None
        for level, acked in self.ackedByLevel.items():
            if not intersects(read.consistency, level, self.replicas):
                continue
            candidate = acked.query(read.invoked)
            if candidate is not None and (
                binding is None or candidate.invoked > binding.invoked
            ):
                binding = candidate
        return binding

    def _whyUnwritten(self, read: Operation) -> str:
        if read.value in self.sources:
            return "first written after the read completed"
        if read.value in self.failed:
            return "written only by failed writes"
        return "never written"

    def _violation(
        self,
        kind: ViolationKind,
        read: Operation,
        missed: Operation,
        source: Operation | None,
    ) -> Violation:
        found = "not found" if read.value is None else f"{read.value!r}"
        origin = (
            "the initial state"
            if source is None
            else f"{source.describe()}, which completed before it began"
        )
        when = (
            f"settled at {self.settledAt:g}"
            if kind == "lost-write"
            else "at an intersecting level"
        )
        return Violation(
            kind,
            self.key,
            read,
            missed,
            source,
            f"{read.describe()} returned {found}, from {origin}; it should "
            f"observe {missed.describe()} ({when})",
        )


def _jsonValue(value: Value | None) -> str | int | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value
