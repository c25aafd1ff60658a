"""
Scenarios: what cluster to build, what faults to inject when, how long to
run the workload. A scenario comes from a JSON file, from C{--fault}
arguments, or from the built-in suite, and expands into a L{Schedule}: the
exact actions at their times, and the windows during which each node is
faulty (what the verdict excuses).

Fault kinds, each with C{at} (seconds from the start of the workload) and
most with C{for} (how long the fault lasts):

  - C{kill}: SIGKILL a node, start it again C{for} seconds later;
  - C{restart}: stop a node gracefully (SIGTERM) and start it again at once;
  - C{pause}: SIGSTOP a node, SIGCONT it C{for} seconds later;
  - C{partition}: cut a node off from every other node, both ways;
  - C{one-way}: drop what node C{from} sends to node C{to};
  - C{loss}: drop each packet between nodes with probability C{rate};
  - C{latency}: delay what a node receives by C{delay} seconds (needs the
    relay, which the scenario then turns on from the start);
  - C{rolling-restart}: restart every node in turn, C{every} seconds apart;
  - C{join}: a node not started with the others starts and joins the
    cluster (scaling out);
  - C{leave}: stop a node gracefully (SIGTERM) for good: it hands its
    partitions off and leaves (scaling in);
  - C{power-loss}: SIGKILL every node at the same moment, start them all
    again C{for} seconds later (on their data directories);
  - C{disk-full}: fill the small disk (a tmpfs) holding a node's data
    directory, free it C{for} seconds later.

A scenario with C{fsync} (C{always}, C{everysec} or C{no}) runs its nodes
with a data directory each (C{--data-dir}, C{--fsync}); one with a
C{disk-full} fault does too (C{everysec} unless it says otherwise).

C{every} and C{times} repeat a fault: C{times} occurrences, C{every}
seconds apart. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias, get_args

FaultKind: TypeAlias = Literal[
    "kill",
    "restart",
    "pause",
    "partition",
    "one-way",
    "loss",
    "latency",
    "rolling-restart",
    "join",
    "leave",
    "power-loss",
    "disk-full",
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

# What the machinery does at one instant.
Verb: TypeAlias = Literal[
    "kill",
    "start",
    "terminate",
    "stop",
    "cont",
    "isolate",
    "rejoin",
    "drop",
    "undrop",
    "loss",
    "noloss",
    "delay",
    "nodelay",
    "leave",
    "power-off",
    "fill",
    "free",
]
FSYNC_MODES = ("always", "everysec", "no")

# Faults that make a node unreachable from the others while they last: its
# death may be declared, rightly.
_SILENCING = ("kill", "restart", "pause", "partition", "one-way", "power-loss")
# How long after a node restarts it may still be in the middle of a
# declaration of death made while it was gone.
DEFAULT_GRACE = 10.0


class ScenarioError(ValueError):
    """
    A scenario that cannot run: unknown fault, missing field, node out of
    range, or faults past the end of the workload.
    """


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    at: float
    duration: float = 0.0
    node: int | None = None
    source: int | None = None
    target: int | None = None
    rate: float = 0.0
    delay: float = 0.0
    every: float = 0.0
    times: int = 1

    def describe(self) -> str:
        parts = [self.kind]
        if self.node is not None:
            parts.append(f"n{self.node}")
        if self.source is not None:
            parts.append(f"n{self.source}->n{self.target}")
        if self.rate:
            parts.append(f"{self.rate:.0%}")
        if self.delay:
            parts.append(f"{self.delay * 1000:g} ms")
        when = f"at {self.at:g}s"
        if self.duration:
            when += f" for {self.duration:g}s"
        if self.times > 1:
            when += f", {self.times} times every {self.every:g}s"
        return " ".join(parts) + " " + when


@dataclass(frozen=True, slots=True)
class Action:
    """
    One thing to do at C{time} seconds after the workload starts.
    """

    time: float
    verb: Verb
    node: int | None = None
    peer: int | None = None
    value: float = 0.0

    def describe(self) -> str:
        what: str = self.verb
        if self.node is not None:
            what += f" n{self.node}"
        if self.peer is not None:
            what += f" -> n{self.peer}"
        if self.value:
            what += f" {self.value:g}"
        return what


@dataclass(frozen=True, slots=True)
class Window:
    """
    An interval during which a fault was in force, for the verdict and the
    plot. C{nodes} are the nodes the fault silenced (empty for loss and
    latency, which silence nobody).
    """

    start: float
    end: float
    kind: str
    nodes: frozenset[int]
    label: str


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    nodes: int
    duration: float
    faults: tuple[Fault, ...] = ()
    clients: int = 4
    keys: int = 24
    clockOffsets: Mapping[int, float] = field(default_factory=dict)
    settleTimeout: float = 60.0
    fsync: str | None = None

    @property
    def smallDisks(self) -> frozenset[int]:
        """
        The nodes whose data directory is a small disk, to be filled.
        """
        return frozenset(
            f.node for f in self.faults if f.kind == "disk-full" and f.node is not None
        )

    @property
    def persistent(self) -> bool:
        """
        Whether the nodes run with a data directory each.
        """
        return self.fsync is not None or bool(self.smallDisks)

    @property
    def fsyncMode(self) -> str:
        return self.fsync or "everysec"

    @property
    def needsRelay(self) -> bool:
        return any(f.kind == "latency" for f in self.faults)

    @property
    def joining(self) -> frozenset[int]:
        """
        The nodes not started with the others: they join later.
        """
        return frozenset(
            f.node for f in self.faults if f.kind == "join" and f.node is not None
        )

    @property
    def leaving(self) -> frozenset[int]:
        """
        The nodes that leave for good during the run.
        """
        return frozenset(
            f.node for f in self.faults if f.kind == "leave" and f.node is not None
        )


@dataclass(frozen=True)
class Schedule:
    actions: tuple[Action, ...]
    windows: tuple[Window, ...]


def _occurrences(fault: Fault) -> Iterable[float]:
    for n in range(fault.times):
        yield fault.at + n * fault.every


def schedule(scenario: Scenario) -> Schedule:
    """
    The actions of C{scenario} in time order (ties keep the order of the
    faults), and the window of every fault occurrence.
    """
    actions: list[tuple[float, int, Action]] = []
    windows: list[Window] = []
    order = 0

    def add(time: float, verb: Verb, **kw: Any) -> None:
        nonlocal order
        actions.append((time, order, Action(time, verb, **kw)))
        order += 1

    for fault in scenario.faults:
        for start in _occurrences(fault):
            end = start + fault.duration
            label = fault.describe()
            silenced: frozenset[int] = frozenset()
            kind = fault.kind
            if kind == "kill":
                add(start, "kill", node=fault.node)
                add(end, "start", node=fault.node)
            elif kind == "restart":
                add(start, "terminate", node=fault.node)
                add(start, "start", node=fault.node)
            elif kind == "pause":
                add(start, "stop", node=fault.node)
                add(end, "cont", node=fault.node)
            elif kind == "partition":
                add(start, "isolate", node=fault.node)
                add(end, "rejoin", node=fault.node)
            elif kind == "one-way":
                add(start, "drop", node=fault.source, peer=fault.target)
                add(end, "undrop", node=fault.source, peer=fault.target)
            elif kind == "loss":
                add(start, "loss", value=fault.rate)
                add(end, "noloss")
            elif kind == "latency":
                add(start, "delay", node=fault.node, value=fault.delay)
                add(end, "nodelay", node=fault.node)
            elif kind == "rolling-restart":
                for node in range(scenario.nodes):
                    at = start + node * fault.every
                    add(at, "terminate", node=node)
                    add(at, "start", node=node)
                    windows.append(
                        Window(at, at, "restart", frozenset({node}), f"restart n{node}")
                    )
                continue
            elif kind == "join":
                add(start, "start", node=fault.node)
            elif kind == "leave":
                add(start, "leave", node=fault.node)
            elif kind == "power-loss":
                add(start, "power-off")
                for node in range(scenario.nodes):
                    add(end, "start", node=node)
            elif kind == "disk-full":
                add(start, "fill", node=fault.node)
                add(end, "free", node=fault.node)
            if kind in _SILENCING:
                if kind == "power-loss":
                    silenced = frozenset(range(scenario.nodes))
                elif kind == "one-way":
                    assert fault.source is not None and fault.target is not None
                    silenced = frozenset({fault.source, fault.target})
                else:
                    assert fault.node is not None
                    silenced = frozenset({fault.node})
            windows.append(Window(start, end, kind, silenced, label))
    actions.sort(key=lambda item: (item[0], item[1]))
    windows.sort(key=lambda w: w.start)
    return Schedule(tuple(a for _, _, a in actions), tuple(windows))


def lastFaultEnd(scenario: Scenario) -> float:
    ends = [0.0]
    for fault in scenario.faults:
        last = fault.at + (fault.times - 1) * fault.every + fault.duration
        if fault.kind == "rolling-restart":
            last = fault.at + (scenario.nodes - 1) * fault.every
        ends.append(last)
    return max(ends)


# Parsing


def _node(raw: Any, nodes: int, what: str) -> int:
    text = str(raw)
    if text.startswith("n"):
        text = text[1:]
    try:
        node = int(text)
    except ValueError:
        raise ScenarioError(f"{what}: {raw!r} is not a node (n0, n1, ...)") from None
    if not 0 <= node < nodes:
        raise ScenarioError(f"{what}: n{node} is not one of n0..n{nodes - 1}")
    return node


def _number(raw: Mapping[str, Any], name: str, default: float | None) -> float:
    value = raw.get(name, default)
    if value is None:
        raise ScenarioError(f"{raw.get('kind')} fault needs {name!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"{name!r} must be a number, not {value!r}")
    if value < 0:
        raise ScenarioError(f"{name!r} must not be negative")
    return float(value)


def parseFault(raw: Mapping[str, Any], nodes: int) -> Fault:
    """
    One fault from its JSON form, checked against a cluster of C{nodes}.
    """
    kind = raw.get("kind")
    if kind not in FAULT_KINDS:
        raise ScenarioError(
            f"fault kind {kind!r} is not one of {', '.join(FAULT_KINDS)}"
        )
    known = {"kind", "at", "for", "node", "from", "to", "rate", "delay"}
    known |= {"every", "times"}
    unknown = set(raw) - known
    if unknown:
        raise ScenarioError(f"{kind} fault: unknown fields {sorted(unknown)}")
    at = _number(raw, "at", None)
    times = int(_number(raw, "times", 1))
    every = _number(raw, "every", 0)
    if times < 1:
        raise ScenarioError("'times' must be at least 1")
    needsDuration = kind not in ("restart", "rolling-restart", "join", "leave")
    duration = _number(raw, "for", None) if needsDuration else 0.0
    if times > 1 and every <= duration:
        raise ScenarioError(f"{kind} fault repeats every {every:g}s, not after it ends")
    fault = Fault(kind=kind, at=at, duration=duration, every=every, times=times)
    if kind in ("join", "leave") and times > 1:
        raise ScenarioError(f"a node can {kind} only once")
    if kind in (
        "kill",
        "restart",
        "pause",
        "partition",
        "latency",
        "join",
        "leave",
        "disk-full",
    ):
        fault = replace(fault, node=_node(raw.get("node"), nodes, f"{kind} node"))
    if kind == "one-way":
        source = _node(raw.get("from"), nodes, "one-way from")
        target = _node(raw.get("to"), nodes, "one-way to")
        if source == target:
            raise ScenarioError("one-way fault from a node to itself")
        fault = replace(fault, source=source, target=target)
    if kind == "loss":
        rate = _number(raw, "rate", None)
        if not 0 < rate <= 1:
            raise ScenarioError("loss 'rate' must be in (0, 1]")
        fault = replace(fault, rate=rate)
    if kind == "latency":
        delay = _number(raw, "delay", None)
        if not 0 < delay <= 5:
            raise ScenarioError("latency 'delay' must be in (0, 5] seconds")
        fault = replace(fault, delay=delay)
    if kind == "rolling-restart":
        if every <= 0:
            raise ScenarioError("rolling-restart needs 'every' > 0")
        fault = replace(fault, every=every, times=1)
    return fault


def parseScenario(raw: Mapping[str, Any]) -> Scenario:
    """
    A scenario from its JSON form; see the module docstring.

    @raise ScenarioError: if it does not describe a runnable scenario.
    """
    if not isinstance(raw, Mapping):
        raise ScenarioError("a scenario is a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ScenarioError("a scenario needs a 'name'")
    nodes = raw.get("nodes", 4)
    if not isinstance(nodes, int) or not 3 <= nodes <= 9:
        raise ScenarioError("'nodes' must be an integer from 3 to 9")
    duration = _number(raw, "duration", None)
    faultsRaw = raw.get("faults", [])
    if not isinstance(faultsRaw, list):
        raise ScenarioError("'faults' must be a list")
    faults = tuple(parseFault(f, nodes) for f in faultsRaw)
    offsetsRaw = raw.get("clockOffsets", {})
    if not isinstance(offsetsRaw, Mapping):
        raise ScenarioError("'clockOffsets' maps nodes to seconds")
    offsets = {
        _node(node, nodes, "clock offset"): float(seconds)
        for node, seconds in offsetsRaw.items()
    }
    scenario = Scenario(
        name=name,
        description=str(raw.get("description", "")),
        nodes=nodes,
        duration=duration,
        faults=faults,
        clients=int(_number(raw, "clients", 4)),
        keys=int(_number(raw, "keys", 24)),
        clockOffsets=offsets,
        settleTimeout=_number(raw, "settleTimeout", 60.0),
        fsync=_fsync(raw.get("fsync")),
    )
    if scenario.clients < 1 or scenario.keys < 1:
        raise ScenarioError("'clients' and 'keys' must be at least 1")
    _checkMembership(scenario)
    if lastFaultEnd(scenario) > duration:
        raise ScenarioError(
            f"faults run until {lastFaultEnd(scenario):g}s, past the "
            f"{duration:g}s of the workload"
        )
    return scenario


def _fsync(raw: Any) -> str | None:
    if raw is None:
        return None
    if raw in FSYNC_MODES:
        return str(raw)
    raise ScenarioError(f"'fsync' must be one of {', '.join(FSYNC_MODES)}")


def _checkMembership(scenario: Scenario) -> None:
    """
    Joins and leaves that make sense: each node joins and leaves at most
    once, joins before it leaves, and at least three nodes run throughout
    the workload's start and end.
    """
    for kind in ("join", "leave"):
        nodes = [f.node for f in scenario.faults if f.kind == kind]
        if len(nodes) != len(set(nodes)):
            raise ScenarioError(f"a node can {kind} only once")
    joins = {f.node: f.at for f in scenario.faults if f.kind == "join"}
    for fault in scenario.faults:
        if fault.kind == "leave" and fault.at <= joins.get(fault.node, -1.0):
            raise ScenarioError(f"n{fault.node} leaves before it joins")
    if scenario.nodes - len(scenario.joining) < 3:
        raise ScenarioError("at least 3 nodes must start the run")
    if scenario.nodes - len(scenario.leaving) < 3:
        raise ScenarioError("at least 3 nodes must end the run")
    if any(f.kind == "rolling-restart" for f in scenario.faults) and (
        scenario.joining or scenario.leaving
    ):
        raise ScenarioError("rolling-restart restarts every node: no join or leave")
    if any(f.kind == "power-loss" for f in scenario.faults) and (
        scenario.joining or scenario.leaving
    ):
        raise ScenarioError("power-loss restarts every node: no join or leave")


def loadScenario(text: str) -> Scenario:
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise ScenarioError(f"not JSON: {e}") from None
    return parseScenario(raw)


def parseFaultArgument(text: str, nodes: int) -> Fault:
    """
    A fault from the command line: C{kind,key=value,...}, for example
    C{kill,node=n1,at=10,for=15} or C{loss,rate=0.1,at=5,for=60}.
    """
    kind, _, rest = text.partition(",")
    raw: dict[str, Any] = {"kind": kind.strip()}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ScenarioError(f"--fault {text!r}: {item!r} is not key=value")
        if key in ("node", "from", "to"):
            raw[key] = value
        else:
            try:
                raw[key] = float(value)
            except ValueError:
                raise ScenarioError(
                    f"--fault {text!r}: {key} is not a number"
                ) from None
    return parseFault(raw, nodes)


# The suite run by `make testbed`: every scenario the issue asks for, with
# durations chosen so that the whole suite stays within ten minutes.
SUITE: tuple[dict[str, Any], ...] = (
    {
        "name": "crash-replica",
        "description": "a replica killed with SIGKILL under quorum load, "
        "restarted 15 s later",
        "nodes": 4,
        "duration": 35,
        "faults": [{"kind": "kill", "node": "n1", "at": 8, "for": 15}],
    },
    {
        "name": "partition-one",
        "description": "one node cut off from the others for 30 s, then healed",
        "nodes": 4,
        "duration": 42,
        "faults": [{"kind": "partition", "node": "n2", "at": 5, "for": 30}],
    },
    {
        "name": "loss-10pct",
        "description": "10% of packets between nodes dropped for 60 s",
        "nodes": 4,
        "duration": 64,
        "faults": [{"kind": "loss", "rate": 0.1, "at": 2, "for": 60}],
    },
    {
        "name": "pause-repeated",
        "description": "a node paused (SIGSTOP) for 5 s, three times",
        "nodes": 4,
        "duration": 40,
        "faults": [
            {"kind": "pause", "node": "n3", "at": 5, "for": 5, "every": 12, "times": 3}
        ],
    },
    {
        "name": "flapping-node",
        "description": "a node whose link goes down for 8 s every 12 s, "
        "three times: declared dead and back each time",
        "nodes": 4,
        "duration": 40,
        "faults": [
            {
                "kind": "partition",
                "node": "n1",
                "at": 4,
                "for": 8,
                "every": 12,
                "times": 3,
            }
        ],
    },
    {
        "name": "rolling-restart",
        "description": "every node restarted gracefully, one every 8 s",
        "nodes": 4,
        "duration": 38,
        "faults": [{"kind": "rolling-restart", "at": 4, "every": 8}],
    },
    {
        "name": "scale-out-in",
        "description": "two nodes join a 3-node cluster under load, then two "
        "of the first three leave (SIGTERM)",
        "nodes": 5,
        "duration": 36,
        # Enough clients that requests meet the moments when views differ.
        "clients": 8,
        "faults": [
            {"kind": "join", "node": "n3", "at": 4},
            {"kind": "join", "node": "n4", "at": 10},
            {"kind": "leave", "node": "n0", "at": 18},
            {"kind": "leave", "node": "n1", "at": 26},
        ],
    },
    {
        "name": "power-loss",
        "description": "every node killed at once (SIGKILL) under load, all "
        "started again 4 s later on their data directories (--fsync always)",
        "nodes": 4,
        "duration": 24,
        # A quorum acknowledgment is then two copies on disk: nothing
        # acknowledged may be lost even though no node survives.
        "fsync": "always",
        "faults": [{"kind": "power-loss", "at": 8, "for": 4}],
    },
    {
        "name": "disk-full",
        "description": "the small disk (tmpfs) of n1's data directory full "
        "for 12 s: n1 refuses writes, serves reads, recovers by itself",
        "nodes": 4,
        "duration": 30,
        "faults": [{"kind": "disk-full", "node": "n1", "at": 6, "for": 12}],
    },
)


def suite() -> list[Scenario]:
    return [parseScenario(raw) for raw in SUITE]
