"""
Runs one scenario on real hosts: builds the network, starts the nodes,
runs the workload while applying the schedule, heals, waits for the
cluster to settle, reads every key back, checks, and always tears the
hosts down again. Waiting on wall time for each phase is the point here.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from disperse.logs import logger
from disperse.testbed.disks import SmallDisk, unmountUnder
from disperse.testbed.faults import Faults, Relay
from disperse.testbed.hosts import (
    Host,
    HostError,
    Network,
    NodeProcess,
    cleanLeftovers,
    exclusive,
)
from disperse.testbed.report import plotTimeline, writeReport
from disperse.testbed.scenario import Scenario, schedule
from disperse.testbed.verdict import (
    DEATH,
    DETECTION,
    Death,
    Verdict,
    divergentPartitions,
    falseDeaths,
    notRejoined,
)
from disperse.testbed.workload import Answer, Workload
from disperse.testing.history import History, check

log = logger()

READY_DEADLINE = 40.0
# A node that joins mid-run is sent requests once it answers, at most this
# long after it started.
JOIN_DEADLINE = 30.0
# A death declared up to this long after a fault ended is still the
# fault's doing: the suspicion it started may take that long to conclude.
GRACE = 12.0
REPLICAS = 3
# How long a node may take to show the effect of a disk fault (degraded
# once its disk filled, writable again once space returned).
DISK_DEADLINE = 15.0


def getJSON(host: Host, path: str, timeout: float = 3.0) -> Any:
    try:
        with urllib.request.urlopen(  # noqa: S310
            f"{host.url}{path}", timeout=timeout
        ) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def memberViews(hosts: Sequence[Host]) -> dict[str, dict[str, str]]:
    views = {}
    for host in hosts:
        members = getJSON(host, "/cluster/members")
        if isinstance(members, list):
            views[host.name] = {m["name"]: m["state"] for m in members}
        else:
            views[host.name] = {}
    return views


def partitionViews(hosts: Sequence[Host]) -> tuple[dict[str, Any], set[str]]:
    views: dict[str, Any] = {}
    tables = set()
    for host in hosts:
        answer = getJSON(host, "/cluster/partitions", timeout=10.0)
        if isinstance(answer, dict):
            views[host.name] = answer.get("partitions", [])
            tables.add(str(answer.get("table")))
        else:
            views[host.name] = []
            tables.add("unanswered")
    return views, tables


@dataclass
class Run:
    verdict: Verdict
    history: History


class ScenarioRunner:
    def __init__(self, scenario: Scenario, directory: Path, seed: int = 1) -> None:
        self.scenario = scenario
        self.directory = directory / scenario.name
        self.seed = seed
        # The bed drives real processes on a real schedule.
        self._start = time.monotonic()  # wall-clock ok
        self._disks: dict[int, SmallDisk] = {}
        # What the checks of disk faults and restarts saw, for the report.
        self._notes: list[str] = []

    def clock(self) -> float:
        return time.monotonic() - self._start  # wall-clock ok

    def run(self) -> Run:
        scenario = self.scenario
        self.directory.mkdir(parents=True, exist_ok=True)
        for old in self.directory.glob("n*.log"):
            old.unlink()
        began = time.monotonic()  # wall-clock ok: run time for the report
        leftovers = cleanLeftovers()
        if leftovers:
            log.info("removed leftovers: {names}", names=" ".join(leftovers))
        network = Network(scenario.nodes)
        relays: list[Relay] = []
        processes: list[NodeProcess] = []
        try:
            network.create()
            hosts = network.hosts
            dataArgs = self._dataDirectories(hosts)
            if scenario.needsRelay:
                relays = [Relay(h, hosts, self.clock) for h in hosts]
                for relay in relays:
                    relay.start()
            processes = [
                NodeProcess(
                    h,
                    hosts,
                    self.directory,
                    self.clock,
                    clockOffset=scenario.clockOffsets.get(h.index, 0.0),
                    extraArgs=dataArgs.get(h.index, ()),
                )
                for h in hosts
            ]
            # Nodes that join later start with the workload's schedule.
            first = [h for h in hosts if h.index not in scenario.joining]
            for process in processes:
                if process.host in first:
                    process.start()
            problems: list[str] = []
            if not self._waitFor(lambda: self._ready(first), READY_DEADLINE):
                problems.append("the cluster did not form before the workload")
            return self._exercise(hosts, processes, relays, problems, began)
        finally:
            for relay in relays:
                relay.stop()
            for process in processes:
                process.kill()
            network.destroy()
            for disk in self._disks.values():
                disk.unmount()

    def _dataDirectories(self, hosts: Sequence[Host]) -> dict[int, list[str]]:
        """
        A fresh data directory for each node of a persistent scenario, a
        small disk of its own for each node whose disk is to fill; each
        node's flags for it.
        """
        scenario = self.scenario
        if not scenario.persistent:
            return {}
        root = (self.directory / "data").resolve()
        unmountUnder(root)
        shutil.rmtree(root, ignore_errors=True)
        args = {}
        for host in hosts:
            path = root / host.name
            if host.index in scenario.smallDisks:
                disk = SmallDisk(path)
                disk.mount()
                self._disks[host.index] = disk
            args[host.index] = [
                "--data-dir",
                str(path),
                "--fsync",
                scenario.fsyncMode,
            ]
        return args

    def _serveWhenHealthy(self, workload: Workload, host: Host) -> None:
        """
        Put C{host} on the workload's list once it answers C{/health}, as a
        load balancer's health check would, without holding up the
        schedule; at most C{JOIN_DEADLINE} seconds after it started.
        """

        def healthy() -> bool:
            return getJSON(host, "/health", timeout=1.0) is not None

        def poll() -> None:
            if self._waitFor(healthy, JOIN_DEADLINE):
                workload.serve(host)

        threading.Thread(target=poll, daemon=True).start()

    def _ready(self, hosts: Sequence[Host]) -> bool:
        # Alive everywhere is not enough: each node rebuilds its partition
        # table a moment after membership changes.
        return self._allAlive(hosts) and len(partitionViews(hosts)[1]) == 1

    def _allAlive(self, hosts: Sequence[Host]) -> bool:
        views = memberViews(hosts)
        names = {h.name for h in hosts}
        return all(
            {n for n, s in view.items() if s == "alive"} >= names
            for view in views.values()
        )

    def _waitFor(
        self, condition: Callable[[], bool], deadline: float, interval: float = 0.5
    ) -> bool:
        # Polls nodes over HTTP: there is nothing to be woken by.
        end = time.monotonic() + deadline  # wall-clock ok
        while time.monotonic() < end:  # wall-clock ok
            if condition():
                return True
            time.sleep(interval)  # wall-clock ok
        return False

    # What disk faults and restarts must show, checked while the run goes on

    def _inBackground(
        self, checks: list[threading.Thread], check: Callable[[], None]
    ) -> None:
        thread = threading.Thread(target=check, daemon=True)
        checks.append(thread)
        thread.start()

    def _healthSays(self, host: Host, status: str) -> bool:
        health = getJSON(host, "/health", timeout=1.0)
        return (
            isinstance(health, dict)
            and health.get("status") == status
            and not health.get("loading")
        )

    def _expectRefusing(
        self,
        host: Host,
        hosts: Sequence[Host],
        workload: Workload,
        problems: list[str],
    ) -> None:
        """
        A node whose disk filled says so on C{/health} once it tried to
        write, refuses writes with 507 and serves reads, while a quorum
        write through another node succeeds.
        """
        began = self.clock()
        if not self._waitFor(
            lambda: self._healthSays(host, "degraded"), DISK_DEADLINE, 0.1
        ):
            problems.append(
                f"{host.name}'s /health did not say degraded within"
                f" {DISK_DEADLINE:g}s of its disk filling"
            )
            return
        noticed = self.clock() - began
        client = f"disk-full-{host.name}"
        refused = workload.perform(
            client, host, "write", f"probe-{host.name}-refused", f"{client}-1", "quorum"
        )
        read = workload.perform(client, host, "read", "k0", None, "quorum")
        other = next(h for h in hosts if h != host)
        key = f"probe-{host.name}-via-{other.name}"
        workload.writtenOnce.append(key)
        elsewhere = workload.perform(
            client, other, "write", key, f"{client}-2", "quorum"
        )
        expected: list[tuple[str, Answer, tuple[int, ...]]] = [
            (f"a write through {host.name}", refused, (507,)),
            (f"a quorum read through {host.name}", read, (200, 404)),
            (f"a quorum write through {other.name}", elsewhere, (200,)),
        ]
        for what, answer, wanted in expected:
            if answer.status not in wanted:
                problems.append(
                    f"disk full: {what} answered {answer.status} ({answer.body[:120]}),"
                    f" not {' or '.join(map(str, wanted))}"
                )
        self._notes.append(
            f"{host.name} degraded {noticed:.1f}s after its disk filled; a write"
            f" through it answered {refused.status}, a quorum read {read.status};"
            f" a quorum write through {other.name} {elsewhere.status}"
        )

    def _expectRecovered(
        self, host: Host, workload: Workload, problems: list[str]
    ) -> None:
        """
        Once its disk has room again, a node says ok on C{/health} and
        takes writes by itself, and writes a snapshot.
        """
        began = self.clock()
        if not self._waitFor(lambda: self._healthSays(host, "ok"), DISK_DEADLINE, 0.1):
            problems.append(
                f"{host.name}'s /health did not say ok again within"
                f" {DISK_DEADLINE:g}s of its disk having room"
            )
            return
        healthy = self.clock() - began
        client = f"disk-freed-{host.name}"
        key = f"probe-{host.name}-freed"
        workload.writtenOnce.append(key)
        answer = workload.perform(client, host, "write", key, f"{client}-1", "quorum")
        if answer.status != 200:
            problems.append(
                f"{host.name} healthy again, but a write through it answered"
                f" {answer.status} ({answer.body[:120]})"
            )

        def snapshot() -> dict[str, Any] | None:
            stats = getJSON(host, "/stats")
            if not isinstance(stats, dict):
                return None
            last = (stats.get("persistence") or {}).get("lastSnapshot")
            return last if isinstance(last, dict) else None

        # The node takes it once its log writes again: within seconds.
        self._waitFor(lambda: snapshot() is not None, DISK_DEADLINE)
        last = snapshot() or {}
        self._notes.append(
            f"{host.name} healthy {healthy:.1f}s after its disk had room, a write"
            f" through it answered {answer.status};"
            + (
                f" snapshot of {last['entries']} entries in {last['seconds']:.3f}s"
                if last
                else " no snapshot taken"
            )
        )

    def _expectBack(
        self,
        hosts: Sequence[Host],
        processes: Sequence[NodeProcess],
        problems: list[str],
    ) -> None:
        """
        After every node was killed, each starts again, loads its data
        directory and serves; how long that took and what they loaded.
        """
        if not self._waitFor(
            lambda: all(p.running for p in processes), self.scenario.duration, 0.05
        ):
            return
        restarted = self.clock()
        if not self._waitFor(
            lambda: all(self._healthSays(h, "ok") for h in hosts), READY_DEADLINE, 0.1
        ):
            problems.append(
                f"not every node served again within {READY_DEADLINE:g}s of the restart"
            )
            return
        back = self.clock() - restarted
        loads = []
        for host in hosts:
            stats = getJSON(host, "/stats")
            persistence = stats.get("persistence") if isinstance(stats, dict) else None
            load = persistence.get("load") if isinstance(persistence, dict) else None
            loads.append(load if isinstance(load, dict) else {})
        entries = "/".join(str(load.get("entries", "?")) for load in loads)
        slowest = max(float(load.get("seconds", 0.0)) for load in loads)
        damaged = sum(len(load.get("damaged") or ()) for load in loads)
        self._notes.append(
            f"all {len(hosts)} nodes serving {back:.1f}s after the restart; loaded"
            f" {entries} entries from disk, in {slowest:.3f}s at most; {damaged}"
            " damaged files or tails"
        )

    def _exercise(
        self,
        hosts: Sequence[Host],
        processes: Sequence[NodeProcess],
        relays: Sequence[Relay],
        problems: list[str],
        began: float,
    ) -> Run:
        scenario = self.scenario
        plan = schedule(scenario)
        faults = Faults(hosts, processes, relays or None, self._disks)
        checks: list[threading.Thread] = []
        history = History()
        previous, self._start = self._start, time.monotonic()  # wall-clock ok
        # Log lines from start-up predate the workload: negative times.
        for process in processes:
            process.shiftTimes(previous - self._start)
        # Nodes that join later are sent requests once they answer.
        workload = Workload(
            [h for h in hosts if h.index not in scenario.joining],
            history,
            self.clock,
            clients=scenario.clients,
            keys=scenario.keys,
            seed=self.seed,
        )
        workload.start(until=scenario.duration)
        try:
            for action in plan.actions:
                wait = action.time - self.clock()
                if wait > 0:
                    time.sleep(wait)  # wall-clock ok: the scenario's schedule
                log.info(
                    "{scenario} at {time:.1f}s: {action}",
                    scenario=scenario.name,
                    time=self.clock(),
                    action=action.describe(),
                )
                if action.verb == "leave" and action.node is not None:
                    workload.withdraw(hosts[action.node].name)
                faults.apply(action)
                node = None if action.node is None else hosts[action.node]
                if action.verb == "fill" and node is not None:
                    self._inBackground(
                        checks,
                        partial(self._expectRefusing, node, hosts, workload, problems),
                    )
                elif action.verb == "free" and node is not None:
                    self._inBackground(
                        checks, partial(self._expectRecovered, node, workload, problems)
                    )
                elif action.verb == "power-off":
                    self._inBackground(
                        checks, partial(self._expectBack, hosts, processes, problems)
                    )
                if (
                    action.verb == "start"
                    and action.node is not None
                    and action.node in scenario.joining
                ):
                    self._serveWhenHealthy(workload, hosts[action.node])
            wait = scenario.duration - self.clock()
            if wait > 0:
                time.sleep(wait)  # wall-clock ok: the scenario's schedule
        finally:
            workload.stop()
            faults.healAll()
            for thread in checks:
                thread.join(READY_DEADLINE + DISK_DEADLINE)
        healedAt = self.clock()
        # The nodes that left for good are judged no more.
        hosts = [h for h in hosts if h.index not in scenario.leaving]

        settled = self._waitFor(lambda: self._settled(hosts), scenario.settleTimeout)
        settledAt = self.clock()
        if not settled:
            problems.append(f"not settled {scenario.settleTimeout:g}s after healing")
        targets = self._finalReads(hosts, history, workload.writtenOnce)
        targets.update(workload.targets)

        views = memberViews(hosts)
        partitions, _ = partitionViews(hosts)
        detected = {
            (process.host.name, match.group("subject"), round(stamp, 1))
            for process in processes
            for stamp, match in process.linesMatching(DETECTION)
        }
        deaths = sorted(
            (
                Death(
                    stamp,
                    process.host.name,
                    match.group("subject"),
                    relayed=not any(
                        (process.host.name, match.group("subject"), round(t, 1))
                        in detected
                        for t in (stamp - 0.1, stamp, stamp + 0.1)
                    ),
                )
                for process in processes
                for stamp, match in process.linesMatching(DEATH)
                if stamp >= 0
            ),
            key=lambda d: d.time,
        )
        report = check(
            history, replicas=REPLICAS, settledAt=settledAt if settled else None
        )
        verdict = Verdict(
            scenario=scenario.name,
            description=scenario.description,
            history=report,
            windows=plan.windows,
            deaths=deaths,
            falseDeaths=falseDeaths(deaths, plan.windows, GRACE),
            notRejoined=notRejoined(views, [h.name for h in hosts]),
            divergent=divergentPartitions(partitions),
            durations={
                "workload": scenario.duration,
                "settle": settledAt - healedAt,
                "total": time.monotonic() - began,  # wall-clock ok
            },
            settled=settled,
            problems=problems,
            notes=self._notes,
        )
        (self.directory / "history.json").write_text(
            json.dumps(
                [
                    {
                        "type": e.type,
                        "client": e.client,
                        "op": e.op,
                        "key": e.key,
                        "value": e.value,
                        "consistency": e.consistency,
                        "time": e.time,
                        "node": targets.get((e.client, e.time))
                        if e.type == "invoke"
                        else None,
                    }
                    for e in history.events
                ]
            ),
            encoding="utf-8",
        )
        why = plotTimeline(self.directory / "timeline.png", verdict, history.events)
        if why is not None:
            verdict.problems.append(f"no plot: {why}")
        return Run(verdict, history)

    def _settled(self, hosts: Sequence[Host]) -> bool:
        if not self._allAlive(hosts):
            return False
        partitions, tables = partitionViews(hosts)
        return len(tables) == 1 and not divergentPartitions(partitions)

    def _finalReads(
        self, hosts: Sequence[Host], history: History, writtenOnce: Sequence[str]
    ) -> dict[tuple[int | str, float], str]:
        """
        Every shared key read from every node, at each level in turn, and
        every key written once read from one node: after settling, each
        must show every write acknowledged before.
        """
        workload = Workload(hosts, history, self.clock, 1, 1, self.seed)
        levels = ("one", "quorum", "all")
        for i in range(self.scenario.keys):
            for host in hosts:
                level = levels[(i + host.index) % len(levels)]
                workload.perform(
                    f"final-{host.name}", host, "read", f"k{i}", None, level
                )
        for i, key in enumerate(writtenOnce):
            host = hosts[i % len(hosts)]
            level = levels[i % len(levels)]
            workload.perform(f"final-{host.name}", host, "read", key, None, level)
        return workload.targets


@dataclass
class SuiteResult:
    verdicts: list[Verdict]
    wallTime: float
    text: str


def runSuite(
    scenarios: Sequence[Scenario], directory: Path, seed: int = 1
) -> SuiteResult:
    """
    Run C{scenarios} one after the other and write the report.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with exclusive():
        return _runSuite(scenarios, directory, seed)


def _runSuite(scenarios: Sequence[Scenario], directory: Path, seed: int) -> SuiteResult:
    began = time.monotonic()  # wall-clock ok: suite time for the report
    verdicts = []
    for scenario in scenarios:
        log.info("scenario {name} starting", name=scenario.name)
        try:
            verdict = ScenarioRunner(scenario, directory, seed).run().verdict
        except HostError as e:
            # The hosts are torn down already; the other scenarios can run.
            verdict = Verdict(
                scenario=scenario.name,
                description=scenario.description,
                history=check(History()),
                windows=(),
                deaths=(),
                falseDeaths=(),
                notRejoined={},
                divergent=(),
                durations={},
                settled=False,
                problems=[f"the bed failed: {e}"],
            )
        log.info(
            "scenario {name}: {result}",
            name=scenario.name,
            result="pass" if verdict.passed else "FAIL",
        )
        verdicts.append(verdict)
        # Each scenario's section lands as soon as it is known.
        writeReport(directory, verdicts, time.monotonic() - began)  # wall-clock ok
    wallTime = time.monotonic() - began  # wall-clock ok
    return SuiteResult(verdicts, wallTime, writeReport(directory, verdicts, wallTime))
