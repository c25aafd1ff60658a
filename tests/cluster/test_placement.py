"""
Tests for L{disperse.cluster.placement}: balance, movement on join and
leave, zone spreading, and determinism across member order and processes.

The sweeps are deterministic (fixed names, every N in range); the Hypothesis
properties are derandomized. Tables are built once and shared (L{table}).
"""

from __future__ import annotations

import functools
import math
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from disperse.cluster.placement import (
    LOAD_BOUND,
    MemberSpec,
    PartitionTable,
    moves,
    parseReplicas,
)
from disperse.store.partition import PARTITION_COUNT, partitionOf

P = PARTITION_COUNT
REPLICAS = (1, 2, 3)

# What a join or leave may move beyond the minimum (the newcomer's replicas,
# or the leaver's), as a share of all replicas: the partitions the load
# bound re-routes because the caps moved with N. Measured at most 0.39%
# (R=1) without zones (bench/placement).
CASCADE_SLACK = Fraction(1, 100)

derandomized = settings(max_examples=15, deadline=None, derandomize=True)


def members(n: int, zones: int = 0) -> list[MemberSpec]:
    return [
        MemberSpec(f"node-{i:02d}", f"zone-{i % zones}" if zones else "")
        for i in range(n)
    ]


@functools.cache
def table(n: int, replicas: int, zones: int = 0) -> PartitionTable:
    return PartitionTable.build(members(n, zones), replicas)


def zoned(sizes: Sequence[int], replicas: int) -> PartitionTable:
    return PartitionTable.build(
        [
            MemberSpec(f"{zone}-{i}", zone)
            for zone, size in zip("abcdef", sizes, strict=False)
            for i in range(size)
        ],
        replicas,
    )


def loads(t: PartitionTable) -> Counter[str]:
    return Counter({m.name: len(t.partitionsOf(m.name)) for m in t.members})


def primaryLoads(t: PartitionTable) -> Counter[str]:
    return Counter(t.owners(p)[0] for p in range(P))


def streamed(old: PartitionTable, new: PartitionTable) -> int:
    """
    How many replicas must be copied to go from C{old} to C{new}.
    """
    return sum(
        len(set(after) - set(before)) for before, after in moves(old, new).values()
    )


def zoneCount(t: PartitionTable, partition: int) -> int:
    zoneOf = {m.name: m.zone for m in t.members}
    return len({zoneOf[name] for name in t.owners(partition)})


def assertWellFormed(t: PartitionTable) -> None:
    """
    Every partition has C{t.replicas} distinct owners, all members;
    L{PartitionTable.partitionsOf} agrees; nobody holds more than the bound
    of replicas or of primaries.
    """
    n = len(t.members)
    held: dict[str, set[int]] = {m.name: set() for m in t.members}
    for p in range(P):
        owners = t.owners(p)
        assert len(owners) == len(set(owners)) == t.replicas
        for name in owners:
            held[name].add(p)
    for name, partitions in held.items():
        assert t.partitionsOf(name) == partitions
        assert len(partitions) <= LOAD_BOUND * Fraction(P * t.replicas, n), name
    primaryBound = max(LOAD_BOUND * Fraction(P, n), Fraction(-(-P // n)))
    for name, load in primaryLoads(t).items():
        assert load <= primaryBound, name


# Balance


@pytest.mark.parametrize("replicas", REPLICAS)
def test_balance(replicas: int) -> None:
    """
    For every N from 3 to 50, nobody holds more than 1.25 times its fair
    share of replicas (P*R/N), nor of primaries (P/N).
    """
    for n in range(3, 51):
        assertWellFormed(table(n, replicas))


def weight(member: str, partition: int) -> int:
    """
    A member's rendezvous weight for a partition, as placement defines it.
    """
    return xxhash.xxh64_intdigest(member.encode(), partition)


def cap(t: PartitionTable, slots: int) -> int:
    fair = Fraction(slots, len(t.members))
    return max(math.ceil(fair), math.floor(fair * LOAD_BOUND))


@pytest.mark.parametrize(("n", "replicas"), [(7, 1), (40, 1), (12, 2), (50, 3)])
def test_passedOverOnlyWhenFull(n: int, replicas: int) -> None:
    """
    The table is rendezvous but for the bound: a member that outweighs one
    of a partition's owners, yet is not one itself, is full (it holds its
    cap of replicas, at R=1 its cap of primaries); the owners come heaviest
    first, but for an owner that outweighs the primary and is full of
    primaries. Where hashing alone keeps within the bound (N=7 at R=1, N=12
    at R=2), that is plain rendezvous.
    """
    t = table(n, replicas)
    held = loads(t)
    primaries = primaryLoads(t)
    replicaCap, primaryCap = cap(t, P * replicas), cap(t, P)
    full = {name for name, load in held.items() if load == replicaCap}
    bypassed = 0
    for p in range(P):
        owners = t.owners(p)
        lightest = min(weight(name, p) for name in owners)
        heavier = {m.name for m in t.members if weight(m.name, p) > lightest}
        assert heavier - set(owners) <= full, p
        bypassed += bool(heavier - set(owners))
        rest = owners[1:]
        assert list(rest) == sorted(rest, key=lambda m: weight(m, p), reverse=True)
        for m in rest:
            if weight(m, p) > weight(owners[0], p):
                assert primaries[m] == primaryCap, p
    # Only where hashing alone would have broken the bound.
    assert bypassed < P // 4


# Movement


@pytest.mark.parametrize("replicas", REPLICAS)
def test_joinMovesLittleMoreThanTheNewcomersShare(replicas: int) -> None:
    """
    A join streams the newcomer's replicas (at most 1.25 times its fair share
    P*R/(N+1), by the bound) and at most the cascade slack on top.
    """
    for n in range(3, 31):
        before, after = table(n, replicas), table(n + 1, replicas)
        newcomer = f"node-{n:02d}"
        copies = streamed(before, after)
        own = len(after.partitionsOf(newcomer))
        assert copies >= own
        assert copies - own <= CASCADE_SLACK * P * after.replicas, n
        fair = Fraction(P * after.replicas, n + 1)
        assert copies <= LOAD_BOUND * fair + CASCADE_SLACK * P * after.replicas


@pytest.mark.parametrize("replicas", REPLICAS)
def test_leaveMovesLittleMoreThanWhatTheLeaverHeld(replicas: int) -> None:
    """
    A leave streams one new replica for each the leaver held (none once N
    drops to R or below: the partitions just keep fewer), and the partitions
    that change are those it held, plus the cascade slack.
    """
    for n in range(3, 31):
        leaver = "node-00"
        before = table(n, replicas)
        after = PartitionTable.build(
            [m for m in members(n) if m.name != leaver], replicas
        )
        held = before.partitionsOf(leaver)
        expected = len(held) if after.replicas == before.replicas else 0
        copies = streamed(before, after)
        assert copies >= expected
        assert copies - expected <= CASCADE_SLACK * P * before.replicas, n
        # Partitions that changed for another reason than the leaver's slot.
        unexplained = [
            p
            for p, (old, new) in moves(before, after).items()
            if not set(old) - {leaver} <= set(new)
            or (leaver not in old and set(old) != set(new))
        ]
        assert len(unexplained) <= CASCADE_SLACK * P * before.replicas, n


@derandomized
@given(
    st.integers(3, 20),
    st.sampled_from(REPLICAS),
    st.integers(0, 19),
    st.sampled_from([0, 2, 3]),
)
def test_anyMemberMayLeave(n: int, replicas: int, which: int, zones: int) -> None:
    """
    Whoever leaves, the replicas it held are replaced and little else moves;
    zones add the slack of small zones' caps shifting.
    """
    everyone = members(n, zones)
    leaver = everyone[which % n]
    before = table(n, replicas, zones)
    after = PartitionTable.build([m for m in everyone if m != leaver], replicas)
    assertWellFormed(after)
    expected = (
        len(before.partitionsOf(leaver.name))
        if after.replicas == before.replicas
        else 0
    )
    # A leave can leave a zone too small for its spread; its members, capped,
    # then give up partitions they need not have, measured up to 4.5% (N=5
    # in two zones, R=2).
    slack = CASCADE_SLACK if not zones else Fraction(10, 100)
    assert 0 <= streamed(before, after) - expected <= slack * P * before.replicas


def test_movesListsOwnerChanges() -> None:
    """
    L{moves} lists the partitions whose owner lists differ, order included,
    with the lists before and after; nothing for equal tables.
    """
    before, after = table(5, 2), table(6, 2)
    changes = moves(before, after)
    assert changes
    for p in range(P):
        if p in changes:
            assert changes[p] == (before.owners(p), after.owners(p))
            assert before.owners(p) != after.owners(p)
        else:
            assert before.owners(p) == after.owners(p)
    assert moves(before, table(5, 2)) == {}


# Zones


@pytest.mark.parametrize("sizes", [(1, 1, 1), (2, 2, 2), (3, 4, 4), (5, 5, 6)])
def test_threeZonesHoldOneReplicaEach(sizes: tuple[int, int, int]) -> None:
    """
    With three zones and R=3, every partition has one replica in each zone,
    as long as each zone's members can hold a replica of every partition
    within the bound (here: every zone has at least N/3.75 members).
    """
    t = zoned(sizes, 3)
    assertWellFormed(t)
    assert all(zoneCount(t, p) == 3 for p in range(P))


@pytest.mark.parametrize(
    ("sizes", "replicas"), [((1, 1), 2), ((3, 3), 3), ((2, 3), 3), ((4, 6), 2)]
)
def test_twoZonesAreBothRepresented(sizes: tuple[int, int], replicas: int) -> None:
    t = zoned(sizes, replicas)
    assertWellFormed(t)
    assert all(zoneCount(t, p) == 2 for p in range(P))


def test_zonesSpreadBeforeFilling() -> None:
    """
    At R=2 with three zones, the two replicas are in two zones; the first
    replica in a new zone comes before any second one in the same zone.
    """
    t = zoned((3, 3, 3), 2)
    assert all(zoneCount(t, p) == 2 for p in range(P))
    t = zoned((3, 3), 3)
    zoneOf = {m.name: m.zone for m in t.members}
    for p in range(P):
        first, second, _ = (zoneOf[name] for name in t.owners(p))
        assert first != second


@pytest.mark.parametrize("sizes", [(4, 4, 1), (6, 6, 1), (2, 2, 1)])
def test_loneZoneMemberIsNotOverloaded(sizes: tuple[int, int, int]) -> None:
    """
    A member alone in its zone would hold every partition if zones were
    spread at any cost; instead it is held to the bound like everyone, and
    the partitions it cannot take span the other two zones.
    """
    t = zoned(sizes, 3)
    assertWellFormed(t)
    lone = "c-0"
    fair = Fraction(P * 3, sum(sizes))
    assert len(t.partitionsOf(lone)) <= LOAD_BOUND * fair
    spread = Counter(zoneCount(t, p) for p in range(P))
    assert spread[3] == len(t.partitionsOf(lone))
    assert spread[3] + spread[2] == P


def test_smallZonesNeverTakeAMemberPastItsBound() -> None:
    """
    Three zones of 2, 1 and 1 members at R=3: the two lone members cannot
    both cover every partition within the bound, and the partitions each
    misses overlap, leaving some with only the first zone's two members to
    choose from; the table still gives every partition three owners and
    nobody more than the bound.
    """
    assertWellFormed(zoned((2, 1, 1), 3))
    assertWellFormed(zoned((1, 1, 1, 3), 4))


@derandomized
@given(st.lists(st.integers(1, 5), min_size=1, max_size=4), st.integers(1, 4))
def test_anyZoneLayoutKeepsTheBound(sizes: list[int], replicas: int) -> None:
    """
    However lopsided the zones, every partition gets its replicas and
    nobody goes past the bound (zones of 2, 1 and 1 at R=3 need the repair
    step of the placement; so do 3, 1, 1 and 1 at R=4).
    """
    assertWellFormed(zoned(sizes, replicas))


def test_zoneLabelsDoNotMoveDataWithoutCause() -> None:
    """
    A member's weights depend on its name alone: with one zone everywhere,
    labelled or not, the owners are the same.
    """
    plain = PartitionTable.build(members(7), 3)
    labelled = PartitionTable.build(
        [MemberSpec(m.name, "zone-a") for m in members(7)], 3
    )
    assert moves(plain, labelled) == {}
    assert plain != labelled  # the inputs differ, and so do the digests
    assert plain.digest() != labelled.digest()


# Determinism and edge cases


@derandomized
@given(st.permutations(members(12, 3)), st.sampled_from([1, 2, 3, 12]))
def test_memberOrderDoesNotMatter(order: list[MemberSpec], replicas: int) -> None:
    t = PartitionTable.build(order, replicas)
    assert t == table(12, replicas, 3)
    assert t.digest() == table(12, replicas, 3).digest()
    assert hash(t) == hash(table(12, replicas, 3))


@derandomized
@given(
    st.sets(st.text(min_size=1, max_size=6), min_size=1, max_size=16),
    st.integers(0, 3),
    st.integers(1, 4),
)
def test_anyMembership(names: set[str], zones: int, replicas: int) -> None:
    """
    Any names (Unicode, look-alikes, prefixes of each other) make a
    well-formed table.
    """
    specs = [
        MemberSpec(name, f"zone-{i % zones}" if zones else "")
        for i, name in enumerate(sorted(names))
    ]
    t = PartitionTable.build(specs, replicas)
    assertWellFormed(t)
    assert t.replicas == min(replicas, len(names))


def test_sameTableInAnotherProcess() -> None:
    """
    Nothing depends on the process: another interpreter, with another
    string hash seed, computes the same digest.
    """
    script = (
        "from disperse.cluster.placement import MemberSpec, PartitionTable\n"
        "specs = [MemberSpec(f'node-{i:02d}', f'zone-{i % 3}') for i in range(9)]\n"
        "print(PartitionTable.build(reversed(specs), 3).digest())\n"
    )
    for seed in ("1", "2"):
        output = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        assert output == table(9, 3, 3).digest()


def test_digestIsPinned() -> None:
    """
    The digest of one table, pinned: a change to the algorithm, the hash or
    the encoding shows here, and must come with a new PLACEMENT_VERSION
    (nodes on both sides of the change would place keys differently).
    """
    assert table(9, 3, 3).digest() == PINNED_DIGEST
    assert table(9, 3, 3).owners(0) == PINNED_OWNERS_0


PINNED_DIGEST = "82b6993d04b501dfb02ca338ff7ca7e5"
PINNED_OWNERS_0 = ("node-01", "node-05", "node-06")


def test_digestSeesEveryInput() -> None:
    base = table(5, 2)
    assert base.digest() != table(5, 3).digest()
    assert base.digest() != table(6, 2).digest()
    assert base.digest() != table(5, 2, 2).digest()
    assert base.digest() == PartitionTable.build(members(5), 2).digest()


def test_allMeansEveryMemberHoldsEverything() -> None:
    t = PartitionTable.build(members(7), "all")
    assertWellFormed(t)
    assert t.replicas == 7
    assert all(t.partitionsOf(m.name) == frozenset(range(P)) for m in t.members)
    assert t == table(7, 7)


def test_replicasCappedAtClusterSize() -> None:
    t = PartitionTable.build(members(2), 3)
    assert t.replicas == 2
    assert all(len(t.owners(p)) == 2 for p in range(P))
    assert t == PartitionTable.build(members(2), "all")


def test_singleMember() -> None:
    t = PartitionTable.build([MemberSpec("solo")], 3)
    assert t.replicas == 1
    assert t.ownersOf("anything") == ("solo",)
    assert t.partitionsOf("solo") == frozenset(range(P))


def test_emptyMembershipOwnsNothing() -> None:
    """
    No members, no owners: callers must handle an empty tuple.
    """
    t = PartitionTable.build([], 3)
    assert t.replicas == 0
    assert all(t.owners(p) == () for p in range(P))
    assert t.ownersOf("k") == ()
    assert t.partitionsOf("anyone") == frozenset()
    assert t == PartitionTable.build([], "all")
    assert set(moves(t, table(3, 3))) == set(range(P))


def test_ownersOfFollowsPartitionOf() -> None:
    t = table(10, 3)
    for key in ("a", "b", "user:7", "ключ"):
        assert t.ownersOf(key) == t.owners(partitionOf(key))


def test_strangerHoldsNothing() -> None:
    assert table(4, 2).partitionsOf("node-99") == frozenset()


def test_invalidInputs() -> None:
    with pytest.raises(ValueError, match="same name"):
        PartitionTable.build([MemberSpec("a", "x"), MemberSpec("a", "y")], 2)
    with pytest.raises(ValueError, match="at least 1"):
        PartitionTable.build(members(3), 0)
    # The same member listed twice is one member.
    assert PartitionTable.build(members(3) + members(3), 2) == table(3, 2)


def test_parseReplicas() -> None:
    assert parseReplicas("3") == 3
    assert parseReplicas("all") == "all"
    assert parseReplicas(" ALL ") == "all"
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ValueError):
            parseReplicas(bad)


def test_repr() -> None:
    assert repr(table(3, 2)).startswith("<PartitionTable members=3 replicas=2 ")
