"""
The verdict on one scenario run: the history checker's findings
(L{disperse.testing.history}) plus what only the bed can see: healthy nodes
declared dead, nodes that never rejoined, replicas still divergent after
healing. Pure: it is handed what the run observed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from disperse.testbed.scenario import DEFAULT_GRACE, Window
from disperse.testing.history import Report, Violation

# A node's log line saying it declared another one dead.
DEATH = re.compile(r"member (?P<subject>\S+) failed ")
# A node's log line saying its own suspicion of another ran out: the
# declaration started there, rather than arriving in another's notice.
DETECTION = re.compile(r"(?P<observer>\S+): marking (?P<subject>\S+) as failed")
# A declaration passed on by gossip reaches the others within this long.
RELAY_WINDOW = 5.0


@dataclass(frozen=True, slots=True)
class Death:
    """
    C{observer} declared C{subject} dead at C{time}; C{relayed} when it took
    another member's word for it (no suspicion of its own ran out).
    """

    time: float
    observer: str
    subject: str
    relayed: bool = False

    def describe(self) -> str:
        relayed = " (relayed)" if self.relayed else ""
        return (
            f"{self.observer} declared {self.subject} dead at {self.time:.1f}s{relayed}"
        )


@dataclass(frozen=True, slots=True)
class Divergence:
    """
    Replicas of a partition whose Merkle roots still differ after healing.
    """

    partition: int
    roots: Mapping[str, str]

    def describe(self) -> str:
        roots = ", ".join(f"{n}={r[:8]}" for n, r in sorted(self.roots.items()))
        return f"partition {self.partition}: {roots}"


def excused(death: Death, windows: Iterable[Window], grace: float) -> bool:
    """
    Whether a fault explains C{death}: its subject was silenced (killed,
    paused, restarting, cut off) at the time, or shortly before, or its
    observer was cut off from it.
    """
    for window in windows:
        if not window.start <= death.time <= window.end + grace:
            continue
        names = {f"n{n}" for n in window.nodes}
        if death.subject in names:
            return True
        if window.kind in ("partition", "one-way") and death.observer in names:
            return True
    return False


def falseDeaths(
    deaths: Iterable[Death], windows: Sequence[Window], grace: float
) -> list[Death]:
    """
    The deaths no fault explains. A relayed declaration is judged by where
    it came from: it is explained when, shortly before, a member whose own
    suspicion ran out declared the same subject dead and a fault explains
    that (a node cut off for a while, say, whose suspicion of a healthy
    member ran out just as the link came back: its notice reaches the
    others before the member's refutation does).
    """
    deaths = list(deaths)
    origins = [d for d in deaths if not d.relayed and excused(d, windows, grace)]
    return [
        d
        for d in deaths
        if not excused(d, windows, grace)
        and not (
            d.relayed
            and any(
                o.subject == d.subject
                and o.observer != d.observer
                and d.time - RELAY_WINDOW <= o.time <= d.time
                for o in origins
            )
        )
    ]


def notRejoined(
    views: Mapping[str, Mapping[str, str]], nodes: Iterable[str]
) -> dict[str, list[str]]:
    """
    For each node some other node does not see alive, the nodes that do
    not: C{views} maps an observer to what it says of each member.
    """
    missing: dict[str, list[str]] = {}
    for subject in nodes:
        for observer, view in sorted(views.items()):
            if observer != subject and view.get(subject) != "alive":
                missing.setdefault(subject, []).append(observer)
    return missing


def divergentPartitions(
    views: Mapping[str, Sequence[Mapping[str, Any]]],
) -> list[Divergence]:
    """
    Partitions whose holders disagree on the Merkle root; C{views} maps a
    node to its C{/cluster/partitions} list.
    """
    roots: dict[int, dict[str, str]] = {}
    for node, partitions in views.items():
        for info in partitions:
            if info.get("held"):
                roots.setdefault(int(info["partition"]), {})[node] = str(info["root"])
    return [
        Divergence(partition, byNode)
        for partition, byNode in sorted(roots.items())
        if len(set(byNode.values())) > 1
    ]


# Levels that need a majority of the replicas: a read at one of them must see
# a write acknowledged at one of them. Pairs with "one" intersect only while
# the set of replicas stays put; levels count the replicas of the current
# partition table, which shrinks when a member is declared dead. Around a
# fault that silences a node, or a death, such pairs are excused; around a
# join or a graceful leave, which nodes coordinate across, they are not.
MAJORITY_LEVELS = ("quorum", "all")


def isMajorityPair(violation: Violation) -> bool:
    """
    Whether a stale read broke the quorum/quorum promise (read and missed
    write both at quorum or above), rather than a pairing with C{one}.
    """
    missed = violation.missed
    return (
        violation.read.consistency in MAJORITY_LEVELS
        and missed is not None
        and missed.consistency in MAJORITY_LEVELS
    )


@dataclass
class Verdict:
    scenario: str
    description: str
    history: Report
    windows: Sequence[Window]
    deaths: Sequence[Death]
    falseDeaths: Sequence[Death]
    notRejoined: Mapping[str, Sequence[str]]
    divergent: Sequence[Divergence]
    durations: Mapping[str, float]
    settled: bool
    problems: list[str] = field(default_factory=list)
    grace: float = DEFAULT_GRACE
    # What the run measured beyond the history: recovery times, loads.
    notes: list[str] = field(default_factory=list)

    def failing(self) -> list[Violation]:
        """
        The history's violations that fail the run: all but stale reads
        that pair a level with C{one} near a silencing fault or a death.
        """
        return [
            v
            for v in self.history.violations
            if v.kind != "stale-read" or isMajorityPair(v) or not self._shrinking(v)
        ]

    def _shrinking(self, violation: Violation) -> bool:
        """
        Whether some table may have lost a replica while C{violation}'s write
        and read ran: a fault silenced a node, or a death was declared,
        within the grace of either.
        """
        begun = violation.missed.invoked if violation.missed else violation.read.invoked
        start, end = begun - self.grace, violation.read.completed + self.grace
        return any(
            w.nodes and w.start <= end and start <= w.end for w in self.windows
        ) or any(start <= d.time <= end for d in self.deaths)

    def weakStaleReads(self) -> int:
        return len(self.history.violations) - len(self.failing())

    def counts(self) -> dict[str, int]:
        kinds = self.history.byKind()
        return {
            "lost-writes": kinds["lost-write"],
            "stale-quorum-reads": kinds["stale-read"] - self.weakStaleReads(),
            "unwritten-values": kinds["unwritten-value"],
            "false-deaths": len(self.falseDeaths),
            "not-rejoined": len(self.notRejoined),
            "divergent-partitions": len(self.divergent),
        }

    @property
    def passed(self) -> bool:
        return self.settled and not self.problems and not any(self.counts().values())

    def toDict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "description": self.description,
            "passed": self.passed,
            "settled": self.settled,
            "counts": self.counts(),
            "staleReadsWithOne": self.weakStaleReads(),
            "durations": dict(self.durations),
            "faults": [
                {
                    "kind": w.kind,
                    "label": w.label,
                    "start": w.start,
                    "end": w.end,
                    "nodes": sorted(f"n{n}" for n in w.nodes),
                }
                for w in self.windows
            ],
            "deaths": [d.describe() for d in self.deaths],
            "falseDeaths": [d.describe() for d in self.falseDeaths],
            "notRejoined": {k: list(v) for k, v in self.notRejoined.items()},
            "divergent": [d.describe() for d in self.divergent],
            "problems": list(self.problems),
            "notes": list(self.notes),
            "history": self.history.toDict(),
        }

    def toText(self) -> str:
        ops = self.history.counts
        total = sum(sum(o.values()) for o in ops.values())
        okCount = sum(o.get("ok", 0) for o in ops.values())
        timeouts = sum(o.get("timeout", 0) + o.get("pending", 0) for o in ops.values())
        failed = sum(o.get("fail", 0) for o in ops.values())
        status = "PASS" if self.passed else "FAIL"
        d = self.durations
        lines = [
            f"{status} {self.scenario}: {self.description}",
            f"  workload {d.get('workload', 0):.0f}s, settled in "
            f"{d.get('settle', math.nan):.1f}s, run {d.get('total', 0):.0f}s; "
            f"{total} ops ({okCount} ok, {failed} fail, {timeouts} timeout)",
        ]
        counts = self.counts()
        lines.append("  " + ", ".join(f"{name} {n}" for name, n in counts.items()))
        weak = self.weakStaleReads()
        if weak:
            lines.append(
                f"  not counted: {weak} stale reads pairing a level with 'one' "
                "near a fault or death (levels count the replicas of the current "
                "table)"
            )
        if self.deaths:
            excusedCount = len(self.deaths) - len(self.falseDeaths)
            lines.append(
                f"  deaths declared: {len(self.deaths)} ({excusedCount} explained "
                "by faults)"
            )
        for death in self.falseDeaths[:10]:
            lines.append(f"  false death: {death.describe()}")
        for subject, observers in self.notRejoined.items():
            lines.append(
                f"  never rejoined: {subject} (not alive for {', '.join(observers)})"
            )
        for divergence in self.divergent[:10]:
            lines.append(f"  divergent: {divergence.describe()}")
        for note in self.notes:
            lines.append(f"  {note}")
        for problem in self.problems:
            lines.append(f"  problem: {problem}")
        # The counted violations; the others are in the JSON report.
        for violation in self.failing()[:5]:
            lines.append(f"  {violation.kind} on {violation.key!r}:")
            lines.append(f"    {violation.message}")
        return "\n".join(lines)
