"""
Tests for L{disperse.testbed.verdict} and L{disperse.testbed.report}: which
deaths faults explain, who has not rejoined, which replicas diverge, and
the report's text and series.
"""

from __future__ import annotations

import json
from pathlib import Path

from disperse.testbed.report import perSecond, suiteText, writeReport
from disperse.testbed.scenario import Window
from disperse.testbed.verdict import (
    DEATH,
    DETECTION,
    Death,
    Divergence,
    Verdict,
    divergentPartitions,
    falseDeaths,
    notRejoined,
)
from disperse.testing.history import History, check, operations

KILL = Window(10, 20, "kill", frozenset({1}), "kill n1 at 10s for 10s")
PARTITION = Window(30, 40, "partition", frozenset({2}), "partition n2")
LOSS = Window(0, 60, "loss", frozenset(), "loss 10%")


def test_deathLogLine() -> None:
    line = (
        "2026-11-26T09:54:33+0000 [disperse.node.Node#info] member n1 failed "
        "(10.213.0.11:7946, incarnation 1)"
    )
    match = DEATH.search(line)
    assert match is not None and match.group("subject") == "n1"
    assert DEATH.search(line.replace("failed", "joined")) is None


def test_deathsExplainedByFaults() -> None:
    windows = [KILL, PARTITION, LOSS]
    deaths = [
        Death(15, "n0", "n1"),  # killed
        Death(27, "n0", "n1"),  # within the grace after its restart
        Death(35, "n0", "n2"),  # cut off
        Death(36, "n2", "n3"),  # the cut-off node's view of the others
        Death(45, "n0", "n3"),  # nothing happened to n3: false
        Death(50, "n1", "n0"),  # loss silences nobody: false
    ]
    assert falseDeaths(deaths, windows, grace=8) == deaths[4:]
    assert falseDeaths([Death(29, "n0", "n1")], windows, grace=8) == [
        Death(29, "n0", "n1")
    ]


def test_notRejoined() -> None:
    views = {
        "n0": {"n0": "alive", "n1": "alive", "n2": "dead"},
        "n1": {"n0": "alive", "n1": "alive", "n2": "alive"},
        "n2": {},
    }
    assert notRejoined(views, ["n0", "n1", "n2"]) == {
        "n0": ["n2"],
        "n1": ["n2"],
        "n2": ["n0"],
    }
    healthy = {n: dict.fromkeys(("n0", "n1"), "alive") for n in ("n0", "n1")}
    assert notRejoined(healthy, ["n0", "n1"]) == {}


def test_divergentPartitions() -> None:
    views = {
        "n0": [
            {"partition": 0, "held": True, "root": "aa"},
            {"partition": 1, "held": True, "root": "bb"},
        ],
        "n1": [
            {"partition": 0, "held": True, "root": "aa"},
            {"partition": 1, "held": True, "root": "cc"},
        ],
        # Not an owner any more: what it still holds does not count.
        "n2": [{"partition": 0, "held": False, "root": "ff"}],
    }
    assert divergentPartitions(views) == [Divergence(1, {"n0": "bb", "n1": "cc"})]
    assert Divergence(1, {"n1": "cc" * 8, "n0": "bb"}).describe() == (
        "partition 1: n0=bb, n1=cccccccc"
    )


def history() -> History:
    h = History()
    h.invoke(0, "write", "k", value="v1", consistency="quorum", time=0.1)
    h.ok(0, time=0.2)
    h.invoke(1, "read", "k", consistency="quorum", time=1.5)
    h.ok(1, time=1.6, value="v1")
    h.invoke(0, "write", "k", value="v2", consistency="quorum", time=2.0)
    h.timeout(0, time=2.5)
    h.invoke(1, "delete", "k", consistency="one", time=2.6)
    h.fail(1, time=2.7)
    return h


def verdict(**changes: object) -> Verdict:
    fields: dict[str, object] = {
        "scenario": "crash",
        "description": "a crash",
        "history": check(history(), replicas=3, settledAt=3.0),
        "windows": [KILL],
        "deaths": [Death(15, "n0", "n1")],
        "falseDeaths": [],
        "notRejoined": {},
        "divergent": [],
        "durations": {"workload": 3, "settle": 1.5, "total": 9},
        "settled": True,
    }
    fields.update(changes)
    return Verdict(**fields)  # type: ignore[arg-type]


def test_perSecond() -> None:
    series = perSecond(operations(history().events), 3.2)
    assert series == {
        "read": [0, 1, 0, 0],
        "write": [1, 0, 0, 0],
        "delete": [0, 0, 0, 0],
        "fail": [0, 0, 1, 0],
        "timeout": [0, 0, 1, 0],
    }


def test_passingVerdictText() -> None:
    text = verdict().toText()
    assert text.splitlines() == [
        "PASS crash: a crash",
        "  workload 3s, settled in 1.5s, run 9s; 4 ops (2 ok, 1 fail, 1 timeout)",
        "  lost-writes 0, stale-quorum-reads 0, unwritten-values 0, false-deaths 0, "
        "not-rejoined 0, divergent-partitions 0",
        "  deaths declared: 1 (1 explained by faults)",
    ]


def test_notesAreReportedWithoutFailing() -> None:
    """
    What a run measured beyond the history (how long a node took to
    recover) is reported, and passes.
    """
    noted = verdict(notes=["n1 healthy 0.6s after its disk had room"])
    assert noted.passed
    assert (
        noted.toText().splitlines()[-1] == "  n1 healthy 0.6s after its disk had room"
    )
    assert noted.toDict()["notes"] == ["n1 healthy 0.6s after its disk had room"]


def test_failingVerdict() -> None:
    failing = verdict(
        falseDeaths=[Death(15, "n0", "n1")],
        notRejoined={"n1": ["n0"]},
        divergent=[Divergence(7, {"n0": "aa", "n1": "bb"})],
        settled=False,
        problems=["not settled 60s after healing"],
    )
    assert not failing.passed
    text = failing.toText()
    assert text.startswith("FAIL crash")
    for expected in (
        "false death: n0 declared n1 dead at 15.0s",
        "never rejoined: n1 (not alive for n0)",
        "divergent: partition 7: n0=aa, n1=bb",
        "problem: not settled 60s after healing",
    ):
        assert expected in text
    assert failing.counts()["false-deaths"] == 1


def test_suiteReport(tmp_path: Path) -> None:
    text = writeReport(tmp_path, [verdict(), verdict(scenario="other")], 120.4)
    assert text.endswith(
        "2 of 2 scenarios passed in 120s; lost-writes 0, stale-quorum-reads 0, "
        "unwritten-values 0, false-deaths 0, not-rejoined 0, divergent-partitions 0"
    )
    assert (tmp_path / "report.txt").read_text() == text + "\n"
    document = json.loads((tmp_path / "report.json").read_text())
    assert document["passed"] is True
    assert [s["scenario"] for s in document["scenarios"]] == ["crash", "other"]
    assert document["scenarios"][0]["faults"][0]["nodes"] == ["n1"]


def test_skippedReport() -> None:
    text = suiteText([], 0.0, skipped="not running as root")
    assert "SKIPPED: not running as root" in text


def test_staleReadsWithOneAreNotCounted() -> None:
    """
    A read at "all" that misses a write at "one" is listed but does not
    fail the run (levels count the replicas of the current table); a
    quorum read missing a quorum write does.
    """
    h = History()
    h.invoke(0, "write", "a", value="a1", consistency="one", time=1)
    h.ok(0, time=2)
    h.invoke(1, "read", "a", consistency="all", time=3)
    h.ok(1, time=4, value=None)
    weak = verdict(history=check(h, replicas=3))
    assert weak.passed
    assert weak.weakStaleReads() == 1
    assert "not counted: 1 stale reads pairing a level with 'one'" in weak.toText()
    # With no node silenced and no death around it (a join, say), the
    # replicas do not shrink: the pair must meet.
    JOIN = Window(2, 2, "join", frozenset(), "join n3 at 2s")
    calm = verdict(history=check(h, replicas=3), windows=[JOIN], deaths=[])
    assert not calm.passed
    assert calm.counts()["stale-quorum-reads"] == 1
    # A death shortly after counts as one.
    assert verdict(
        history=check(h, replicas=3), windows=[], deaths=[Death(9, "n0", "n1")]
    ).passed

    h.invoke(0, "write", "b", value="b1", consistency="quorum", time=5)
    h.ok(0, time=6)
    h.invoke(1, "read", "b", consistency="quorum", time=7)
    h.ok(1, time=8, value=None)
    strong = verdict(history=check(h, replicas=3))
    assert not strong.passed
    assert strong.counts()["stale-quorum-reads"] == 1
    assert [v.key for v in strong.failing()] == ["b"]


def test_detectionLogLine() -> None:
    line = (
        "[  35.317] 2026-11-26T14:19:05+0000 [disperse.gossip.swim.Swim#info] n2:"
        " marking n1 as failed, suspicion timed out (1 confirmations)"
    )
    match = DETECTION.search(line)
    assert match is not None
    assert (match.group("observer"), match.group("subject")) == ("n2", "n1")


def test_relayedDeathJudgedByItsOrigin() -> None:
    """
    The node cut off (n2 in PARTITION, until 40) declares n1 dead as the
    link comes back; n0 and n3 take its word for it. Their relayed
    declarations are explained by n2's; a relay with no explained origin,
    or an own detection by a healthy node, is not.
    """
    origin = Death(40.3, "n2", "n1")
    relays = [Death(40.4, "n0", "n1", relayed=True), Death(40.5, "n3", "n1", True)]
    assert falseDeaths([origin, *relays], [PARTITION], grace=8) == []
    # Too long after the origin to be its echo.
    late = Death(46.0, "n0", "n1", relayed=True)
    assert falseDeaths([origin, late], [PARTITION], grace=8) == [late]
    # Nobody's own suspicion explained it.
    assert falseDeaths(relays, [PARTITION], grace=8) == relays
    # A healthy node's own detection is false even with a relay after it.
    own = Death(45.0, "n0", "n3")
    echo = Death(45.1, "n1", "n3", relayed=True)
    assert falseDeaths([own, echo], [PARTITION], grace=8) == [own, echo]
    assert "(relayed)" in echo.describe()
