"""
Tests for L{disperse.testing.history}: histories of a simulated linearizable
register are never flagged, the checker agrees with a direct (quadratic)
reading of its definitions on corrupted histories, and hand-written histories
show each kind of violation and each kind of acceptable staleness.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections import Counter
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from disperse.testing.history import (
    Event,
    History,
    MalformedHistory,
    Operation,
    OpKind,
    Value,
    check,
    intersects,
    operations,
)

LEVELS = ["one", "quorum", "all"]


@dataclasses.dataclass(frozen=True)
class Spec:
    """
    One operation a simulated client performs.

    @ivar fraction: where in its interval the operation takes effect.
    @ivar applies: whether a timed-out or pending write takes effect.
    @ivar lateness: how long after its timeout it may still take effect.
    """

    op: OpKind
    key: str
    level: str
    gap: int
    duration: int
    outcome: Literal["ok", "fail", "timeout"]
    fraction: float
    applies: bool
    lateness: int


specs = st.builds(
    Spec,
    op=st.sampled_from(["read", "read", "write", "write", "delete"]),
    key=st.sampled_from(["a", "a", "b"]),
    level=st.sampled_from(LEVELS),
    gap=st.integers(0, 3),
    duration=st.integers(0, 4),
    outcome=st.sampled_from(["ok", "ok", "ok", "ok", "fail", "timeout"]),
    fraction=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    applies=st.booleans(),
    lateness=st.integers(0, 10),
)


@st.composite
def registerHistories(draw: st.DrawFn) -> tuple[list[Event], float | None]:
    """
    A history of clients using a linearizable register per key: every
    operation that takes effect does so at one instant inside its interval
    (a timed-out or pending write possibly long after its timeout, or
    never), reads return the value at their instant, and the clients'
    events are interleaved at random where times tie.
    """
    rng = draw(st.randoms(use_true_random=False))
    clients = draw(st.lists(st.lists(specs, max_size=8), min_size=1, max_size=5))
    pendingLast = draw(st.lists(st.booleans(), min_size=5, max_size=5))
    if draw(st.booleans()):
        # Calm: every operation answered, so fewer excuses for stale answers.
        clients = [[dataclasses.replace(s, outcome="ok") for s in c] for c in clients]
        pendingLast = [False] * 5
    # (instant, tie-break, client, index) of everything that takes effect.
    effects: list[tuple[float, float, int, int]] = []
    plans: list[list[tuple[Spec, float, float, Value | None]]] = []
    for c, ops in enumerate(clients):
        plan = []
        time = 0.0
        for i, spec in enumerate(ops):
            invoked = time + spec.gap
            completed = invoked + spec.duration
            value: Value | None = f"{c}.{i}" if spec.op == "write" else None
            pending = i == len(ops) - 1 and pendingLast[c]
            if spec.outcome == "ok" and not pending:
                effects.append(
                    (invoked + spec.fraction * spec.duration, rng.random(), c, i)
                )
            elif spec.op != "read" and spec.applies and spec.outcome != "fail":
                span = spec.duration + spec.lateness
                effects.append((invoked + spec.fraction * span, rng.random(), c, i))
            plan.append((spec, float(invoked), float(completed), value))
            time = completed
        plans.append(plan)
    register: dict[str, Value | None] = {}
    readValues: dict[tuple[int, int], Value | None] = {}
    for _, _, c, i in sorted(effects):
        spec, _, _, value = plans[c][i]
        if spec.op == "read":
            readValues[c, i] = register.get(spec.key)
        else:
            register[spec.key] = value
    perClient: list[list[Event]] = []
    for c, plan in enumerate(plans):
        events = []
        for i, (spec, invoked, completed, value) in enumerate(plan):
            op = spec.op
            events.append(Event("invoke", c, op, spec.key, value, spec.level, invoked))
            if i == len(plan) - 1 and pendingLast[c]:
                continue
            result = readValues.get((c, i)) if op == "read" else None
            events.append(
                Event(spec.outcome, c, op, spec.key, result, spec.level, completed)
            )
        perClient.append(events)
    merged: list[Event] = []
    while any(perClient):
        first = min(events[0].time for events in perClient if events)
        ready = [events for events in perClient if events and events[0].time == first]
        merged.append(rng.choice(ready).pop(0))
    end = max((event.time for event in merged), default=0.0)
    settledAt = draw(st.sampled_from([None, 0.0, end / 3, end / 2, end, end + 1]))
    return merged, settledAt


@settings(max_examples=200, deadline=None)
@given(registerHistories())
def test_linearizableHistoriesAreValid(
    generated: tuple[list[Event], float | None],
) -> None:
    """
    Whatever the concurrency, failures, timeouts and levels, and wherever
    the settling point, a linearizable register's history is not flagged.
    """
    events, settledAt = generated
    report = check(events, settledAt=settledAt)
    assert report.valid, report.toText()


def naiveCheck(
    ops: list[Operation], replicas: int, settledAt: float | None
) -> Counter[tuple[Operation, str]]:
    """
    The module docstring's definitions, read literally, in quadratic time.
    """
    found: Counter[tuple[Operation, str]] = Counter()
    for read in ops:
        if read.op != "read" or read.outcome != "ok":
            continue
        sameKey = [op for op in ops if op.key == read.key and op.op != "read"]
        effective = [op for op in sameKey if op.outcome != "fail"]
        acked = [op for op in effective if op.outcome == "ok"]

        def valueOf(op: Operation) -> Value | None:
            return op.value if op.op == "write" else None

        def allowed(
            missed: Operation,
            read: Operation = read,
            effective: list[Operation] = effective,
        ) -> bool:
            return any(
                valueOf(x) == read.value
                and not x.completed < missed.invoked
                and x.invoked <= read.completed
                for x in effective
            )

        if read.value is not None and not any(
            x.op == "write" and x.value == read.value and x.invoked <= read.completed
            for x in effective
        ):
            found[read, "unwritten-value"] += 1
        elif (
            settledAt is not None
            and read.invoked >= settledAt
            and any(w.completed < settledAt and not allowed(w) for w in acked)
        ):
            found[read, "lost-write"] += 1
        elif any(
            w.completed < read.invoked
            and intersects(read.consistency, w.consistency, replicas)
            and not allowed(w)
            for w in acked
        ):
            found[read, "stale-read"] += 1
    return found


@settings(max_examples=200, deadline=None)
@given(
    registerHistories(),
    st.randoms(use_true_random=False),
    st.sampled_from([1, 3, 5]),
)
def test_agreesWithDefinition(
    generated: tuple[list[Event], float | None],
    rng: random.Random,
    replicas: int,
) -> None:
    """
    With read results corrupted at random (another written value, not
    found, a value never written), the checker finds exactly the
    violations a literal reading of its definitions finds.
    """
    events, settledAt = generated
    written = {
        key: [e.value for e in events if e.op == "write" and e.key == key]
        for key in ("a", "b")
    }
    corrupted = []
    for event in events:
        if event.op == "read" and event.type == "ok" and rng.random() < 0.5:
            choice = rng.choice([*written[event.key], None, "never"])
            corrupted.append(dataclasses.replace(event, value=choice))
        else:
            corrupted.append(event)
    report = check(corrupted, replicas=replicas, settledAt=settledAt)
    got = Counter((v.read, v.kind) for v in report.violations)
    assert got == naiveCheck(operations(corrupted), replicas, settledAt)
    json.dumps(report.toDict())


# Hand-written histories. Each helper records one whole operation.


def write(
    h: History,
    client: int,
    key: str,
    value: Value,
    start: float,
    end: float | None,
    level: str = "quorum",
    outcome: str = "ok",
) -> None:
    h.invoke(client, "write", key, value=value, consistency=level, time=start)
    complete(h, client, end, outcome)


def delete(
    h: History,
    client: int,
    key: str,
    start: float,
    end: float | None,
    level: str = "quorum",
    outcome: str = "ok",
) -> None:
    h.invoke(client, "delete", key, consistency=level, time=start)
    complete(h, client, end, outcome)


def read(
    h: History,
    client: int,
    key: str,
    value: Value | None,
    start: float,
    end: float,
    level: str = "quorum",
) -> None:
    h.invoke(client, "read", key, consistency=level, time=start)
    h.ok(client, time=end, value=value)


def complete(h: History, client: int, end: float | None, outcome: str) -> None:
    if end is None:
        return
    if outcome == "ok":
        h.ok(client, time=end)
    elif outcome == "fail":
        h.fail(client, time=end)
    else:
        h.timeout(client, time=end)


def kinds(h: History, settledAt: float | None = None) -> list[str]:
    return [v.kind for v in check(h, settledAt=settledAt).violations]


def test_lostWrite() -> None:
    """
    After the settling point, a read at any level must see every write
    acknowledged before it: not found, or an older value, means the write
    was lost.
    """
    h = History()
    write(h, 1, "k", "a", 0, 1, level="one")
    write(h, 1, "k", "b", 2, 3, level="one")
    read(h, 2, "k", "a", 4, 5, level="one")  # before settling: may lag
    read(h, 2, "k", "a", 10, 11, level="one")
    read(h, 3, "k", None, 12, 13, level="one")
    read(h, 3, "k", "b", 14, 15, level="one")
    report = check(h, settledAt=8)
    assert [v.kind for v in report.violations] == ["lost-write", "lost-write"]
    first = report.violations[0]
    assert first.missed is not None and first.missed.value == "b"
    assert first.source is not None and first.source.value == "a"
    assert report.violations[1].source is None
    assert "initial state" in report.violations[1].message
    assert kinds(h) == []


def test_deletedValueComesBack() -> None:
    h = History()
    write(h, 1, "k", "a", 0, 1)
    delete(h, 1, "k", 2, 3, level="one")
    read(h, 2, "k", "a", 10, 11, level="one")
    report = check(h, settledAt=5)
    assert [v.kind for v in report.violations] == ["lost-write"]
    assert report.violations[0].missed is not None
    assert report.violations[0].missed.op == "delete"


def test_writeAfterSettlingMayLag() -> None:
    """
    Settling covers what was acknowledged before it; a weak write after it
    may still be read stale at a weak level.
    """
    h = History()
    write(h, 1, "k", "a", 0, 1, level="one")
    write(h, 1, "k", "b", 6, 7, level="one")
    read(h, 2, "k", "a", 8, 9, level="one")
    assert kinds(h, settledAt=5) == []


def test_staleQuorumRead() -> None:
    """
    A quorum read that begins after a quorum write's acknowledgement must
    not return anything older.
    """
    h = History()
    write(h, 1, "k", "a", 0, 1)
    write(h, 1, "k", "b", 2, 3)
    read(h, 2, "k", "a", 4, 5)
    read(h, 2, "k", None, 6, 7)
    read(h, 2, "k", "b", 8, 9)
    read(h, 3, "k", "a", 10, 11, level="one")  # weak: may lag
    read(h, 3, "k", "a", 12, 13, level="all")  # all meets quorum
    assert kinds(h) == ["stale-read", "stale-read", "stale-read"]


def test_levelsMustIntersect() -> None:
    h = History()
    write(h, 1, "k", "a", 0, 1, level="one")
    write(h, 1, "k", "b", 2, 3, level="one")
    read(h, 2, "k", "a", 4, 5, level="quorum")  # 2 + 1 = 3: may miss it
    read(h, 2, "k", "a", 6, 7, level="all")  # 3 + 1 > 3: must see it
    assert kinds(h) == ["stale-read"]
    assert intersects("quorum", "quorum", 3)
    assert intersects("one", "all", 3)
    assert not intersects("one", "quorum", 3)
    assert intersects("quorum", "quorum", 4)
    assert not intersects("two", "two", 4)


def test_concurrentWritesAreAcceptable() -> None:
    """
    Any write or delete overlapping the read, or overlapping the write it
    must observe, may be what it sees.
    """
    h = History()
    write(h, 1, "k", "a", 0, 1)
    write(h, 1, "k", "b", 2, 5)
    write(h, 4, "k", "c", 3, 4)  # overlaps b: may be ordered after it
    delete(h, 3, "k", 6.5, 20)  # overlaps the reads
    read(h, 2, "k", "c", 6, 7)
    read(h, 2, "k", None, 8, 9)
    read(h, 2, "k", "a", 12, 13)  # a was over before b began
    assert kinds(h) == ["stale-read"]


def test_indeterminateWritesMayApplyLate() -> None:
    """
    A timed-out or pending write may take effect at any time after it
    began, even long after a later write was acknowledged.
    """
    h = History()
    write(h, 1, "k", "late", 0, 1, outcome="timeout")
    write(h, 3, "k", "never-answered", 0.5, None)
    write(h, 2, "k", "b", 2, 3)
    read(h, 4, "k", "late", 100, 101)
    read(h, 4, "k", "never-answered", 102, 103)
    read(h, 4, "k", "b", 104, 105)
    assert kinds(h, settledAt=50) == []


def test_unwrittenValues() -> None:
    """
    A value from a failed write, from a write that began after the read
    ended, or from nowhere is flagged at any level.
    """
    h = History()
    write(h, 1, "k", "failed", 0, 1, outcome="fail")
    read(h, 2, "k", "failed", 2, 3, level="one")
    read(h, 2, "k", "future", 4, 5, level="one")
    write(h, 1, "k", "future", 6, 7)
    read(h, 2, "k", "nowhere", 8, 9, level="one")
    report = check(h)
    assert [v.kind for v in report.violations] == ["unwritten-value"] * 3
    messages = [v.message for v in report.violations]
    assert "only by failed writes" in messages[0]
    assert "after the read completed" in messages[1]
    assert "never written" in messages[2]


def test_failedDeleteIsNoExcuse() -> None:
    h = History()
    write(h, 1, "k", "a", 0, 1)
    delete(h, 3, "k", 1.5, 2.5, outcome="fail")
    read(h, 2, "k", None, 2, 3)
    assert kinds(h) == ["stale-read"]


def test_equalTimesAreConcurrent() -> None:
    """
    A read invoked at the instant a write is acknowledged may miss it;
    simulated clocks tie often.
    """
    h = History()
    write(h, 1, "k", "a", 0, 1)
    read(h, 2, "k", None, 1, 1)
    write(h, 1, "k", "b", 1, 2)
    read(h, 2, "k", "a", 2, 3)
    read(h, 3, "k", "a", 2.5, 3, level="one")
    assert kinds(h, settledAt=2) == []


def test_keysAreIndependent() -> None:
    h = History()
    write(h, 1, "a", "x", 0, 1)
    read(h, 2, "b", None, 2, 3)
    assert kinds(h, settledAt=1.5) == []


def test_reportCountsAndRendering() -> None:
    h = History()
    write(h, 1, "k", b"a\xff", 0, 1)
    write(h, 1, "k", b"b", 2, 3, outcome="timeout")
    delete(h, 1, "k", 4, 5, outcome="fail")
    h.invoke(2, "read", "k", consistency="quorum", time=6)
    h.timeout(2, time=7)
    read(h, 2, "k", None, 8, 9)
    h.invoke(3, "read", "k", consistency="one", time=10)
    report = check(h)
    assert report.counts["write"] == {"ok": 1, "fail": 0, "timeout": 1, "pending": 0}
    assert report.counts["delete"]["fail"] == 1
    assert report.counts["read"] == {"ok": 1, "fail": 0, "timeout": 1, "pending": 1}
    assert report.byKind() == {
        "lost-write": 0,
        "stale-read": 1,
        "unwritten-value": 0,
    }
    data = json.loads(json.dumps(report.toDict()))
    assert data["valid"] is False
    assert data["violations"][0]["missed"]["value"] == "a\\xff"
    assert data["violations"][0]["missed"]["completed"] == 1
    text = report.toText()
    assert "INVALID: 1 stale-read" in text
    assert "6 operations" in text
    assert check(History()).toText().endswith("valid: no violations")


def test_timedOutReadsCarryNoValue() -> None:
    ops = operations(
        [
            Event("invoke", 1, "read", "k", None, "one", 0),
            Event("timeout", 1, "read", "k", "x", "one", 1),
        ]
    )
    assert ops[0].value is None
    assert ops[0].outcome == "timeout"
    assert math.isinf(ops[0].completed)


@pytest.mark.parametrize(
    "events",
    [
        [Event("ok", 1, "read", "k", None, "one", 0)],
        [
            Event("invoke", 1, "read", "k", None, "one", 0),
            Event("invoke", 1, "read", "k", None, "one", 1),
        ],
        [
            Event("invoke", 1, "read", "k", None, "one", 0),
            Event("ok", 1, "read", "other", None, "one", 1),
        ],
        [
            Event("invoke", 1, "read", "k", None, "one", 5),
            Event("ok", 1, "read", "k", None, "one", 1),
        ],
        [Event("invoke", 1, "read", "k", None, "eventually", 0)],
        [Event("invoke", 1, "scan", "k", None, "one", 0)],  # type: ignore[arg-type]
        [Event("begin", 1, "read", "k", None, "one", 0)],  # type: ignore[arg-type]
    ],
)
def test_malformed(events: list[Event]) -> None:
    with pytest.raises(MalformedHistory):
        check(events)


def test_recorderRefusesMisuse() -> None:
    h = History()
    with pytest.raises(MalformedHistory):
        h.ok(1, time=0)
    h.invoke(1, "read", "k", consistency="one", time=0)
    with pytest.raises(MalformedHistory):
        h.invoke(1, "read", "k", consistency="one", time=1)
