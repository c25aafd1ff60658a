"""
Placement: which members hold a replica of which key.

Keys hash to one of L{PARTITION_COUNT} partitions
(L{disperse.store.partition.partitionOf}); a L{PartitionTable} lists, for
every partition, its owners in preference order (the first is the
primary). The table is a function of the membership view and the
replication factor alone, so every node that sees the same members computes
the same table without talking to anyone; L{PartitionTable.digest} lets two
nodes check that they did. L{moves} lists what changes between two tables,
for streaming handoff.

The assignment is rendezvous (highest random weight) hashing per partition,
with bounded loads and zone spreading:

  - Every member gets a pseudo-random weight per partition, the xxh64 of its
    name seeded with the partition number; members ranked by weight are the
    partition's preference order. Rendezvous moves no more than it must: a
    joining member takes only the slots where it outranks the current
    owners, and a leaving member's slots pass to the next in rank.
  - Hashing alone is uneven at this scale: a member's load is binomial, and
    over N=3..50 at R=1 the busiest member held up to 1.54 times its fair
    share. So loads are bounded (consistent hashing with bounded loads,
    Mirrokni, Thorup and Zadimoghaddam, 2018): no member holds more than
    L{LOAD_BOUND} times its fair share of replicas, nor of primaries. The
    (member, partition) pairs are taken heaviest first, skipping members
    that are full, so a member that hashing would overload keeps the
    partitions where it weighs most and passes on those where it weighs
    least. Only such members are ever passed over, so the table stays close
    to plain rendezvous, and so does the movement (figures in
    C{bench/placement}).
  - When members carry several zone labels, a partition's replicas go to
    distinct zones first (as many as there are, up to R), then the remaining
    slots go by weight. The load bound wins over zone spreading: a zone too
    small to hold a replica of every partition within its members' bound
    (fewer than about N / (1.25 R) members) covers only the partitions where
    its members weigh most, and the rest span fewer zones, rather than its
    members holding everything. Members without a label share the zone "".

Pure: no I/O, no clock, no randomness beyond the fixed-seed hashes.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, TypeAlias

import xxhash

from disperse.store.partition import PARTITION_COUNT, partitionOf

# Weighted (member, partition) pairs keep the partition in their low bits.
_PARTITION_BITS = PARTITION_COUNT.bit_length() - 1
_PARTITION_MASK = PARTITION_COUNT - 1

# The most a member may hold, as a multiple of its fair share, of replicas
# and separately of primaries. Loads are whole partitions, so when the fair
# share is below 4 (N > 256 at R=1, N > 768 at R=3) the cap may have to
# round up past this multiple.
LOAD_BOUND = Fraction(5, 4)

# Folded into the digest so that nodes running different placement code see
# different digests even where their tables happen to agree. 2: keys hash to
# partitions by their Redis Cluster slot (CRC16), no longer by xxh64.
PLACEMENT_VERSION = 2

Replicas: TypeAlias = int | Literal["all"]

_xxh64 = xxhash.xxh64_intdigest


def parseReplicas(text: str) -> Replicas:
    """
    The replication factor named by C{text}, as C{--replicas} takes it: a
    positive integer, or C{all} for every member holding every key.

    @raise ValueError: for anything else.
    """
    if text.strip().lower() == "all":
        return "all"
    count = int(text)
    if count < 1:
        raise ValueError(f"replicas must be at least 1, not {count}")
    return count


@dataclass(frozen=True, order=True)
class MemberSpec:
    """
    What placement needs to know of a member.

    @ivar name: the member's name in the membership view; unique.
    @ivar zone: its zone (rack, data centre) label; members that carry none
        share the zone C{""}.
    """

    name: str
    zone: str = ""


class PartitionTable:
    """
    The owners of every partition, for one membership view and replication
    factor. Build it with L{PartitionTable.build}; immutable; equal tables
    have equal digests.

    @ivar members: the members, sorted by name.
    @ivar replicas: the replicas each partition has: the replication factor
        capped at the number of members (0 when there are none).
    """

    __slots__ = ("_digest", "_held", "_owners", "members", "replicas")

    def __init__(
        self,
        members: Sequence[MemberSpec],
        replicas: int,
        owners: Sequence[tuple[str, ...]],
    ) -> None:
        # For build, which computed the owners from the members.
        if len(owners) != PARTITION_COUNT:
            raise ValueError(f"{len(owners)} owner lists for {PARTITION_COUNT}")
        self.members = tuple(sorted(members))
        self.replicas = replicas
        self._owners = tuple(owners)
        held: dict[str, set[int]] = {m.name: set() for m in self.members}
        for partition, names in enumerate(self._owners):
            for name in names:
                held[name].add(partition)
        self._held: Mapping[str, frozenset[int]] = {
            name: frozenset(partitions) for name, partitions in held.items()
        }
        self._digest: str | None = None

    @classmethod
    def build(cls, members: Iterable[MemberSpec], replicas: Replicas) -> PartitionTable:
        """
        The table for C{members} at replication factor C{replicas}: a
        positive integer (capped at the number of members) or C{"all"}.
        Depends on nothing but the set of members and the factor.

        @raise ValueError: when two members share a name, or C{replicas} is
            neither positive nor C{"all"}.
        """
        specs = sorted(set(members))
        names = [m.name for m in specs]
        if len(set(names)) != len(names):
            raise ValueError("two members with the same name")
        if replicas != "all" and replicas < 1:
            raise ValueError(f"replicas must be at least 1 or 'all', not {replicas}")
        n = len(specs)
        count = n if replicas == "all" else min(replicas, n)
        if n == 0:
            return cls((), 0, [()] * PARTITION_COUNT)
        zoneOf = [m.zone for m in specs]
        indices = _assign(names, zoneOf, count)
        nameOf = names.__getitem__
        owners = [tuple(map(nameOf, chosen)) for chosen in indices]
        return cls(specs, count, owners)

    def owners(self, partition: int) -> tuple[str, ...]:
        """
        The owners of C{partition} in preference order, the primary first;
        empty when there are no members.
        """
        return self._owners[partition]

    def ownersOf(self, key: str) -> tuple[str, ...]:
        """
        The owners of the partition of C{key}, the primary first.
        """
        return self._owners[partitionOf(key)]

    def partitionsOf(self, member: str) -> frozenset[int]:
        """
        The partitions C{member} holds a replica of; empty for a stranger.
        """
        return self._held.get(member, frozenset())

    def digest(self) -> str:
        """
        A fingerprint of the table, its inputs and the placement code's
        version: nodes that agree on it agree on every owner.
        """
        if self._digest is None:
            self._digest = xxhash.xxh3_128_hexdigest(self._canonical())
        return self._digest

    def _canonical(self) -> bytes:
        # Length-prefixed, so that no name can forge a boundary; the owners
        # as indices into the sorted members.
        numbers = [PLACEMENT_VERSION, PARTITION_COUNT, self.replicas]
        texts = [t.encode() for m in self.members for t in (m.name, m.zone)]
        numbers.append(len(self.members))
        numbers.extend(len(t) for t in texts)
        index = {m.name: i for i, m in enumerate(self.members)}
        for names in self._owners:
            numbers.append(len(names))
            numbers.extend(index[name] for name in names)
        return struct.pack(f">{len(numbers)}I", *numbers) + b"".join(texts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PartitionTable):
            return NotImplemented
        return (self.members, self.replicas, self._owners) == (
            other.members,
            other.replicas,
            other._owners,
        )

    def __hash__(self) -> int:
        return hash(self.digest())

    def __repr__(self) -> str:
        return (
            f"<PartitionTable members={len(self.members)}"
            f" replicas={self.replicas} digest={self.digest()}>"
        )


def moves(
    old: PartitionTable, new: PartitionTable
) -> dict[int, tuple[tuple[str, ...], tuple[str, ...]]]:
    """
    The partitions whose owners differ between C{old} and C{new}, with the
    owners before and after. A change of order alone (a new primary) counts:
    whoever coordinates the partition changes. The replicas to stream are
    the names in the new owners and not in the old.
    """
    return {
        partition: (before, after)
        for partition, (before, after) in enumerate(
            zip(old._owners, new._owners, strict=True)
        )
        if before != after
    }


def _cap(total: int, members: int) -> int:
    """
    The most one member may hold of C{total} slots shared by C{members}:
    L{LOAD_BOUND} times the fair share, rounded down, but never below the
    fair share rounded up (so the slots always fit) nor above one per
    partition.
    """
    fair = Fraction(total, members)
    return min(PARTITION_COUNT, max(math.ceil(fair), math.floor(fair * LOAD_BOUND)))


def _assign(names: Sequence[str], zoneOf: Sequence[str], count: int) -> list[list[int]]:
    """
    The owners of every partition, as indices into C{names} (sorted), each
    partition holding C{count} distinct members.

    Every (member, partition) pair has its weight, and the passes of
    L{_greedy} walk the pairs from the heaviest down, taking a pair when its
    partition still needs an owner of that kind and its member is under its
    caps. Without caps that is plain rendezvous: each partition takes its
    heaviest members. With them, a member that runs out of room keeps the
    partitions where it weighs most and gives up those where it weighs
    least, the same ones whatever the rest of the cluster looks like, which
    is what keeps the movement close to rendezvous's. (Assigning partitions
    in index order instead, each to its heaviest members with room, is
    simpler but makes a capped member keep the lowest-numbered partitions,
    a set that shifts whenever its cap does: measured, twice the extra
    movement with two zones, and more with three.)

    The passes rarely go deeper than the heaviest few pairs per partition,
    so they first run on the heaviest L{_prefixDepth} pairs per partition
    only, sorting far fewer, and again on all of them if that was not
    enough. A pass that completes within the prefix stops where it would
    have stopped on the whole list, so the result is the same.
    """
    n = len(names)
    encoded = [name.encode() for name in names]
    share = Fraction(_prefixDepth(count), n)
    if share < 1:
        owners = _greedy(_pairsByWeight(encoded, share), zoneOf, count, None)
        if owners is not None:
            return owners
    owners = _greedy(_pairsByWeight(encoded, Fraction(1)), zoneOf, count, encoded)
    assert owners is not None
    return owners


def _prefixDepth(count: int) -> int:
    """
    How many pairs per partition the first attempt of L{_assign} takes, in
    expectation. Measured, the passes go deepest where caps bind hardest:
    at R=1 up to 8 pairs for N=3..50 and up to 20 at N=400; with three zones
    at R=3, up to 22.
    """
    return 12 + 6 * count


def _greedy(
    order: Sequence[int],
    zoneOf: Sequence[str],
    count: int,
    encoded: Sequence[bytes] | None,
) -> list[list[int]] | None:
    """
    The passes of L{_assign} over C{order}, the packed pairs heaviest first,
    all of them when C{encoded} (the members' names) is given; otherwise
    only the heaviest, and C{None} when those were not enough.
    """
    n = len(zoneOf)
    replicaCap = _cap(PARTITION_COUNT * count, n)
    primaryCap = _cap(PARTITION_COUNT, n)
    spread = min(count, len(set(zoneOf)))
    memberMask = (1 << _memberBits(n)) - 1
    load = [0] * n
    primaries = [0] * n
    owners: list[list[int]] = [[] for _ in range(PARTITION_COUNT)]
    # The pairs taken so far, for the last pass: a member may own a
    # partition once, and testing the pair beats searching the owners.
    taken: set[int] = set()

    # The primaries first, so that their bound is met before replicas fill
    # the members up. On the whole list this always completes: while a
    # partition lacks one, some member is short of its share of primaries,
    # and so of replicas, and that member's pair is still to come.
    missing = PARTITION_COUNT
    for pair in order:
        chosen = owners[pair & _PARTITION_MASK]
        if chosen:
            continue
        i = (pair >> _PARTITION_BITS) & memberMask
        if primaries[i] < primaryCap and load[i] < replicaCap:
            chosen.append(i)
            taken.add(pair)
            primaries[i] += 1
            load[i] += 1
            missing -= 1
            if not missing:
                break
    if missing:
        return None

    # Then one replica in each further zone, until the partition spans
    # `spread` zones. Zones too small for that within their members' caps
    # leave some partitions spanning fewer.
    if spread > 1:
        zones = [{zoneOf[chosen[0]]} for chosen in owners]
        missing = PARTITION_COUNT * (spread - 1)
        for pair in order:
            partition = pair & _PARTITION_MASK
            chosen = owners[partition]
            if len(chosen) == spread:
                continue
            i = (pair >> _PARTITION_BITS) & memberMask
            zone = zoneOf[i]
            if load[i] < replicaCap and zone not in zones[partition]:
                chosen.append(i)
                taken.add(pair)
                zones[partition].add(zone)
                load[i] += 1
                missing -= 1
                if not missing:
                    break
        if missing and encoded is None:
            return None

    # Then the rest, wherever there is room.
    missing = sum(count - len(chosen) for chosen in owners)
    if missing:
        for pair in order:
            chosen = owners[pair & _PARTITION_MASK]
            if len(chosen) == count:
                continue
            i = (pair >> _PARTITION_BITS) & memberMask
            if load[i] < replicaCap and pair not in taken:
                chosen.append(i)
                load[i] += 1
                missing -= 1
                if not missing:
                    break
    if missing:
        if encoded is None:
            return None
        _fillShort(owners, count, replicaCap, load, encoded)
    return owners


def _fillShort(
    owners: list[list[int]],
    count: int,
    cap: int,
    load: list[int],
    encoded: Sequence[bytes],
) -> None:
    """
    Complete the partitions the passes left short of C{count} owners, without
    taking any member past its cap.

    A partition ends short when zones too small to hold their spread filled
    their members up in overlapping places (3 zones of 2, 1 and 1 members at
    R=3, say). Every member with room is then already an owner of every
    short partition (the last pass offered it each of them), so for a short
    partition C{p}, a member C{m} at its cap outside it and a member C{r}
    with room: C{m} holds more partitions than C{r}, so one of them, C{q},
    lacks C{r}. C{r} takes C{m}'s place in C{q} and C{m} joins C{p}: no load
    goes past its cap and C{p} gains an owner. Rare, so simply searched: the
    heaviest C{m} for C{p}, and the C{q} where C{m} weighs least and is not
    the primary, so that no primary changes.
    """

    def weight(member: int, partition: int) -> int:
        return _xxh64(encoded[member], partition)

    members = range(len(encoded))
    for partition, chosen in enumerate(owners):
        while len(chosen) < count:
            # Not empty: the loads add up to less than the caps.
            roomy = [i for i in chosen if load[i] < cap]
            m = max(
                (i for i in members if i not in chosen),
                key=lambda i: weight(i, partition),
            )
            _, _, q = min(
                (others[0] == m, weight(m, q), q)
                for q, others in enumerate(owners)
                if m in others and not all(r in others for r in roomy)
            )
            r = next(r for r in roomy if r not in owners[q])
            owners[q][owners[q].index(m)] = r
            load[r] += 1
            chosen.append(m)


def _memberBits(members: int) -> int:
    return max(1, (members - 1).bit_length())


def _pairsByWeight(encoded: Sequence[bytes], share: Fraction) -> list[int]:
    """
    The heaviest C{share} of the (member, partition) pairs (in expectation:
    those whose weight is in the top C{share} of the range), heaviest first.

    Each pair is packed into one integer, the weight's top bits, then the
    member's index, then the partition, so that the sort is one of plain
    integers, several times faster than of tuples. The weight keeps 64 - 10
    - log2(N) bits (48 at N=50), so ties are rare, and they fall to member
    and partition order, deterministically.
    """
    lowBits = _memberBits(len(encoded)) + _PARTITION_BITS
    weightMask = ((1 << 64) - 1) >> lowBits << lowBits
    floor = (1 << 64) - (share.numerator << 64) // share.denominator
    partitions = range(PARTITION_COUNT)
    order: list[int] = []
    for index, raw in enumerate(encoded):
        base = index << _PARTITION_BITS
        order.extend(
            [
                (weight & weightMask) | base | p
                for p in partitions
                if (weight := _xxh64(raw, p)) >= floor
            ]
        )
    order.sort(reverse=True)
    return order
