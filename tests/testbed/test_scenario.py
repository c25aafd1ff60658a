"""
Tests for L{disperse.testbed.scenario}: parsing scenarios and faults, and
the schedules and fault windows they expand to.
"""

from __future__ import annotations

import json

import pytest

from disperse.testbed.scenario import (
    Action,
    ScenarioError,
    loadScenario,
    parseFaultArgument,
    parseScenario,
    schedule,
    suite,
)


def scenario(*faults: dict[str, object], **extra: object) -> dict[str, object]:
    return {"name": "s", "nodes": 4, "duration": 60, "faults": list(faults), **extra}


def test_killSchedulesARestart() -> None:
    plan = schedule(
        parseScenario(scenario({"kind": "kill", "node": "n1", "at": 5, "for": 10}))
    )
    assert plan.actions == (Action(5, "kill", node=1), Action(15, "start", node=1))
    [window] = plan.windows
    assert (window.start, window.end, window.kind, window.nodes) == (
        5,
        15,
        "kill",
        frozenset({1}),
    )


def test_repeatedPause() -> None:
    plan = schedule(
        parseScenario(
            scenario(
                {"kind": "pause", "node": 3, "at": 5, "for": 5, "every": 12, "times": 3}
            )
        )
    )
    assert [(a.time, a.verb) for a in plan.actions] == [
        (5, "stop"),
        (10, "cont"),
        (17, "stop"),
        (22, "cont"),
        (29, "stop"),
        (34, "cont"),
    ]
    assert len(plan.windows) == 3


def test_partitionLossOneWayLatency() -> None:
    plan = schedule(
        parseScenario(
            scenario(
                {"kind": "partition", "node": "n2", "at": 1, "for": 30},
                {"kind": "loss", "rate": 0.1, "at": 2, "for": 40},
                {"kind": "one-way", "from": "n0", "to": "n1", "at": 3, "for": 4},
                {"kind": "latency", "node": "n3", "delay": 0.05, "at": 4, "for": 2},
            )
        )
    )
    assert [a.describe() for a in plan.actions] == [
        "isolate n2",
        "loss 0.1",
        "drop n0 -> n1",
        "delay n3 0.05",
        "nodelay n3",
        "undrop n0 -> n1",
        "rejoin n2",
        "noloss",
    ]
    silenced = {w.kind: w.nodes for w in plan.windows}
    assert silenced == {
        "partition": frozenset({2}),
        "loss": frozenset(),
        "one-way": frozenset({0, 1}),
        "latency": frozenset(),
    }


def test_latencyNeedsTheRelay() -> None:
    plain = parseScenario(scenario({"kind": "kill", "node": 0, "at": 1, "for": 1}))
    delayed = parseScenario(
        scenario({"kind": "latency", "node": 0, "delay": 0.1, "at": 1, "for": 1})
    )
    assert (plain.needsRelay, delayed.needsRelay) == (False, True)


def test_rollingRestart() -> None:
    plan = schedule(
        parseScenario(scenario({"kind": "rolling-restart", "at": 4, "every": 8}))
    )
    assert [a.describe() for a in plan.actions] == [
        f"{verb} n{n}" for n in range(4) for verb in ("terminate", "start")
    ]
    assert [a.time for a in plan.actions[::2]] == [4, 12, 20, 28]
    assert [w.label for w in plan.windows] == [f"restart n{n}" for n in range(4)]


def test_joinAndLeave() -> None:
    """
    A node that joins is started at its time, not with the others; a node
    that leaves is stopped gracefully and for good.
    """
    parsed = parseScenario(
        {
            "name": "s",
            "nodes": 5,
            "duration": 30,
            "faults": [
                {"kind": "join", "node": "n3", "at": 4},
                {"kind": "join", "node": "n4", "at": 8},
                {"kind": "leave", "node": "n3", "at": 20},
                {"kind": "leave", "node": "n0", "at": 12},
            ],
        }
    )
    assert parsed.joining == {3, 4}
    assert parsed.leaving == {0, 3}
    plan = schedule(parsed)
    assert [(a.time, a.describe()) for a in plan.actions] == [
        (4, "start n3"),
        (8, "start n4"),
        (12, "leave n0"),
        (20, "leave n3"),
    ]
    # Nobody is silenced: a death declared of a leaving node is a false one.
    assert all(not w.nodes for w in plan.windows)


def test_powerLossKillsEveryNodeAtOnce() -> None:
    """
    A power loss kills every node in one action and starts each again
    when it ends; every node is silenced meanwhile. Its nodes keep their
    data on disk, synced as the scenario says.
    """
    parsed = parseScenario(
        scenario({"kind": "power-loss", "at": 8, "for": 4}, fsync="always")
    )
    assert (parsed.persistent, parsed.fsyncMode) == (True, "always")
    plan = schedule(parsed)
    assert [(a.time, a.describe()) for a in plan.actions] == [
        (8, "power-off"),
        *((12, f"start n{n}") for n in range(4)),
    ]
    [window] = plan.windows
    assert (window.kind, window.nodes) == ("power-loss", frozenset(range(4)))


def test_diskFullFillsAndFrees() -> None:
    """
    A node's disk fills and is freed again; the node stays up (nobody is
    silenced), on a small disk of its own, with a data directory synced
    every second unless the scenario says otherwise.
    """
    parsed = parseScenario(
        scenario({"kind": "disk-full", "node": "n1", "at": 6, "for": 12})
    )
    assert parsed.smallDisks == {1}
    assert (parsed.persistent, parsed.fsyncMode) == (True, "everysec")
    plan = schedule(parsed)
    assert [(a.time, a.describe()) for a in plan.actions] == [
        (6, "fill n1"),
        (18, "free n1"),
    ]
    [window] = plan.windows
    assert (window.kind, window.nodes) == ("disk-full", frozenset())


def test_inMemoryByDefault() -> None:
    parsed = parseScenario(scenario({"kind": "kill", "node": 1, "at": 1, "for": 1}))
    assert (parsed.persistent, parsed.smallDisks) == (False, frozenset())


def test_clockOffsets() -> None:
    parsed = parseScenario(scenario(clockOffsets={"n1": 0.25, "2": -1}))
    assert parsed.clockOffsets == {1: 0.25, 2: -1.0}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"name": "s", "duration": 10, "nodes": 2}, "'nodes'"),
        ({"nodes": 4, "duration": 10}, "needs a 'name'"),
        (scenario({"kind": "smash", "at": 1}), "fault kind 'smash'"),
        (scenario({"kind": "kill", "node": "n4", "at": 1, "for": 1}), "n4 is not"),
        (scenario({"kind": "kill", "node": "x", "at": 1, "for": 1}), "not a node"),
        (scenario({"kind": "kill", "node": 1, "at": 1}), "needs 'for'"),
        (scenario({"kind": "kill", "node": 1, "at": -1, "for": 1}), "negative"),
        (scenario({"kind": "loss", "rate": 2, "at": 1, "for": 1}), "rate"),
        (
            scenario({"kind": "one-way", "from": 1, "to": 1, "at": 1, "for": 1}),
            "itself",
        ),
        (scenario({"kind": "kill", "node": 1, "at": 50, "for": 20}), "past the"),
        (
            scenario(
                {"kind": "pause", "node": 1, "at": 1, "for": 5, "every": 5, "times": 2}
            ),
            "repeats every",
        ),
        (scenario({"kind": "kill", "node": 1, "at": 1, "for": 1, "bogus": 1}), "bogus"),
        (scenario({"kind": "kill", "node": 1, "at": "soon", "for": 1}), "number"),
        (
            scenario(
                {"kind": "join", "node": 1, "at": 1},
                {"kind": "join", "node": 1, "at": 2},
            ),
            "join only once",
        ),
        (
            scenario(
                {"kind": "join", "node": 3, "at": 5},
                {"kind": "leave", "node": 3, "at": 2},
            ),
            "leaves before it joins",
        ),
        (
            scenario({"kind": "join", "node": 1, "at": 1}, nodes=3),
            "at least 3 nodes must start",
        ),
        (
            scenario({"kind": "leave", "node": 1, "at": 1}, nodes=3),
            "at least 3 nodes must end",
        ),
        (scenario(fsync="sometimes"), "'fsync' must be one of"),
        (scenario({"kind": "disk-full", "at": 1, "for": 1}), "disk-full node"),
        (
            scenario(
                {"kind": "power-loss", "at": 1, "for": 1},
                {"kind": "join", "node": 3, "at": 5},
            ),
            "power-loss restarts every node",
        ),
    ],
)
def test_badScenarios(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parseScenario(raw)


def test_loadScenarioJSON() -> None:
    text = json.dumps(scenario({"kind": "restart", "node": "n0", "at": 3}))
    assert loadScenario(text).faults[0].describe() == "restart n0 at 3s"
    with pytest.raises(ScenarioError, match="not JSON"):
        loadScenario("{")


def test_faultArgument() -> None:
    fault = parseFaultArgument("kill,node=n1,at=10,for=15", nodes=3)
    assert (fault.kind, fault.node, fault.at, fault.duration) == ("kill", 1, 10, 15)
    loss = parseFaultArgument("loss, rate=0.1, at=5, for=60", nodes=3)
    assert loss.describe() == "loss 10% at 5s for 60s"
    with pytest.raises(ScenarioError, match="key=value"):
        parseFaultArgument("kill,n1", nodes=3)
    with pytest.raises(ScenarioError, match="not a number"):
        parseFaultArgument("kill,node=n1,at=x,for=1", nodes=3)


def test_suiteCoversTheIssueWithinItsTimeBound() -> None:
    """
    The built-in suite has every scenario asked for, and its workloads
    leave room within ten minutes for start-up and settling.
    """
    scenarios = suite()
    assert [s.name for s in scenarios] == [
        "crash-replica",
        "partition-one",
        "loss-10pct",
        "pause-repeated",
        "flapping-node",
        "rolling-restart",
        "scale-out-in",
        "power-loss",
        "disk-full",
    ]
    assert all(3 <= s.nodes <= 5 for s in scenarios)
    assert sum(s.duration for s in scenarios) <= 360
