"""
What a node does about damaged records: the counters of those found, by
where (L{IntegrityCounters}), the one log line each gets (L{reportDamaged}),
and the scrub that re-checks stored entries a slice at a time
(L{Scrub}). Pure: the scrub's schedule is L{disperse.store.scrubber}'s.

A record is damaged when its value no longer matches the content hash in
its header (L{disperse.store.record.intact}). Wherever one is found it is
discarded, never served: a copy from a peer is not merged nor returned, an
entry of this store is removed (anti-entropy, whose Merkle trees then
differ, brings the key back from another replica), a record read from disk
is not loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeAlias

from disperse.logs import fingerprint, logger
from disperse.store.partition import PARTITION_COUNT

if TYPE_CHECKING:
    # Only for annotations: the store keeps its counters here.
    from disperse.store.store import Store

Source: TypeAlias = Literal["peer", "scrub", "disk"]
# Where damaged records are found: in a copy another node sent (a replica
# write, a read's answer, a repair, a hint, a hand-off); in this node's
# memory, by the scrub or by a read or hint delivery that checked a copy
# held here before the scrub reached it; in what this node read back from
# its disk.
SOURCES: tuple[Source, ...] = ("peer", "scrub", "disk")

# Entries the scrub checks a second unless told otherwise (--scrub-rate):
# a pass over a million entries in under two minutes, in steps of a
# thousand entries ten times a second.
DEFAULT_SCRUB_RATE = 10_000

log = logger()


@dataclass
class IntegrityCounters:
    """
    Damaged records found, by where (L{SOURCES}), and what the scrub did.
    One per node, on its store (C{Store.integrity}); whoever finds a
    damaged record counts it here, through L{reportDamaged}.

    @ivar peer: damaged copies received from other nodes.
    @ivar scrub: damaged records found in this node's memory: entries of
        its store (by the scrub, or by a read that asked several replicas),
        and hints about to be delivered.
    @ivar disk: damaged records read back from this node's disk.
    @ivar scrubbed: entries the scrub checked.
    @ivar scrubPasses: passes of the scrub over the whole store.
    @ivar replaced: damaged entries of this store that an intact copy
        replaced before the scrub reached them (a repair, whatever its
        version).
    @ivar leavesResummed: leaves of this store's Merkle trees found not to
        sum their entries (by an exchange that found them differing from a
        peer's while no record did) and summed again: what an entry
        damaged in memory leaves behind once it is overwritten, expired or
        evicted before the scrub found it.
    """

    peer: int = 0
    scrub: int = 0
    disk: int = 0
    scrubbed: int = 0
    scrubPasses: int = 0
    replaced: int = 0
    leavesResummed: int = 0

    def failures(self) -> dict[Source, int]:
        """
        The damaged records found, by source.
        """
        return {source: getattr(self, source) for source in SOURCES}


def reportDamaged(
    counters: IntegrityCounters,
    source: Source,
    key: str,
    what: str,
    member: str | None = None,
) -> None:
    """
    Count and log one damaged record of C{key}, found in C{source} while
    doing C{what} (C{"apply"}, C{"read"}, C{"range"}, C{"scrub"}, ...); for
    a copy from another node, C{member} names it (its name, or its address
    where the name is not known). The key is logged as a fingerprint.
    """
    setattr(counters, source, getattr(counters, source) + 1)
    log.warn(
        "discarded a damaged record of key {key} from {member} (found by"
        " {source}, {what}): its value does not match its content hash",
        key=fingerprint(key.encode("utf-8", "surrogatepass")),
        member="this node" if member is None else member,
        source=source,
        what=what,
    )


class Scrub:
    """
    A walk over every entry of a store, partition after partition, that
    re-checks each entry's value against its content hash and removes the
    damaged ones: the pure core of the background scrub. Each L{step}
    checks up to a budget of entries; the keys of the partition being
    walked are listed when the walk reaches it, so the store may change
    between steps (an entry gone meanwhile is skipped, one written
    meanwhile waits for the next pass).
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._partition = -1
        self._keys: list[str] = []

    @property
    def partition(self) -> int:
        """
        The partition being walked (-1 before the first step).
        """
        return self._partition

    def step(self, budget: int) -> int:
        """
        Check up to C{budget} entries, going on from where the last step
        stopped, and remove (counted and logged) those found damaged.

        @return: how many entries were checked.
        """
        store = self._store
        counters = store.integrity
        checked = 0
        # An empty store still ends its pass: at most one pass a step.
        partitions = PARTITION_COUNT
        visited = 0
        while checked < budget:
            if not self._keys:
                if visited == partitions:
                    break
                visited += 1
                self._partition += 1
                if self._partition == partitions:
                    self._partition = 0
                    counters.scrubPasses += 1
                self._keys = store.partitionKeyList(self._partition)
                # Checked from the end (pop): the order does not matter.
                continue
            take = min(budget - checked, len(self._keys))
            keys = self._keys[-take:]
            del self._keys[-take:]
            for key in store.dropDamaged(self._partition, keys):
                reportDamaged(counters, "scrub", key, "scrub")
            checked += take
        counters.scrubbed += checked
        return checked
