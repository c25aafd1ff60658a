"""
The real-process gossip benchmark behind C{bench/gossip-cluster}: Disperse
nodes (C{twistd disperse --profile local}) and HashiCorp memberlist nodes
(our Go peer, C{DefaultLocalConfig}) measured side by side in one run, as
separate clusters on 127.0.0.1.

 1. Boot: N nodes (20) started through one seed. The seed starts first; the
    others start together as soon as it listens. Time from the seed's start
    until every node sees all N alive, and from the last node listening.
 2. Steady state: over a window (30 s), each node's CPU time from
    C{/proc/PID/stat} (utime + stime), as ms of CPU per second, median and
    max; the same from C{/proc/PID/task/*/schedstat} (nanoseconds); for
    Disperse also the UDP bytes and packets sent per second, from C{/stats}.
 3. Crash detection: in clusters of 10, one node is killed with SIGKILL;
    time until every survivor reports it failed (Disperse: the log line
    C{member X failed}; Go: the C{leave} event). The victim is then replaced
    by a fresh node, and the next repetition kills another original member.

Membership is followed from each node's output, read every 20 ms: Disperse's
C{member NAME joined|updated|failed|left} log lines (info level), the Go
peer's JSON events (C{-events}). After boot, Disperse's view is checked
against C{GET /cluster/members} on every node.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from bench._bench_common import (
    BenchError,
    BenchRun,
    Goal,
    bench_parser,
    ceiling_goal,
    format_table,
    goals_table,
    loadavg,
)
from bench._launch import REPO_DIR
from disperse.testing.cluster import (
    LOOPBACK,
    NodeProcess,
    ProcessSet,
    checkNodePlugin,
    childEnv,
    cpuSeconds,
    httpRequest,
    logTime,
    loopbackArgs,
    nodeCommand,
    schedSeconds,
)

Kind = Literal["disperse", "go"]

GO_PEER = REPO_DIR / "build" / "memberlist-peer"

GOAL_CPU_MS_PER_S = 5.0
# Derived goals (not hard requirements): parity with Go measured in the
# same run, and bench/gossip's simulated boot goal (p50, N=50).
CRASH_PARITY = 1.2
BOOT_GOAL_S = 2.0

POLL_INTERVAL = 0.02
STOP_GRACE = 8.0  # Disperse lets its "left" notice spread for up to 5 s
MEMBERLIST_DEAD = 2  # memberlist.StateDead
MEMBERLIST_LEFT = 3  # memberlist.StateLeft
# Changes that take a member out of the alive set. "leave" is a Go event
# that does not say which of the other two it was (see Node._feed_go).
GONE = ("failed", "left", "leave")

_DISPERSE_MEMBER = re.compile(r"\] member (\S+) (joined|updated|failed|left) \(")
_DISPERSE_GOSSIP = re.compile(r"\] gossip listening on (\S+):(\d+) \(UDP and TCP\)")
_DISPERSE_HTTP = re.compile(r"\] HTTP API listening on (\S+):(\d+)")


# --- the Go peer ------------------------------------------------------------------


def ensure_go_peer(path: Path) -> Path:
    """
    The Go memberlist peer, built with C{make build/memberlist-peer} when
    missing (offline, against Debian's packages, as C{make interop} does).
    """
    if path.exists():
        return path
    if path != GO_PEER:
        raise BenchError(f"--go-peer {path} does not exist")
    argv = ["make", "-C", str(REPO_DIR), "build/memberlist-peer"]
    print(f"Building the Go peer: {' '.join(argv)}", flush=True)
    try:
        done = subprocess.run(
            argv, env=childEnv(), capture_output=True, timeout=600, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BenchError(f"`{' '.join(argv)}` did not finish: {e}") from e
    if done.returncode != 0 or not path.exists():
        out = (done.stderr or done.stdout).decode(errors="replace").strip()
        raise BenchError(
            f"{path} is missing and cannot be built: it needs make, `go` and "
            "Debian's golang-github-hashicorp-memberlist-dev (`make interop` "
            f"installs them and builds the peer):\n{out[-2000:]}"
        )
    return path


@dataclass
class Change:
    at: float  # time.monotonic() when the harness read it
    member: str
    change: str  # joined, updated, failed, left


@dataclass
class Node:
    """
    One process we started, and what its output says it sees.
    """

    kind: Kind
    name: str
    proc: NodeProcess
    listening: float | None = None
    gossip_addr: str | None = None
    http_port: int | None = None
    killed: float | None = None
    join_error: str | None = None
    view: dict[str, str] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def started(self) -> float:
        return self.proc.started

    def alive_view(self) -> set[str]:
        return {m for m, state in self.view.items() if state == "alive"}

    def feed(self, lines: Sequence[str], now: float) -> None:
        for line in lines:
            if self.kind == "disperse":
                self._feed_disperse(line, now)
            else:
                self._feed_go(line, now)

    def _record(self, now: float, member: str, change: str) -> None:
        self.changes.append(Change(now, member, change))
        self.view[member] = "alive" if change in ("joined", "updated") else change

    def _feed_disperse(self, line: str, now: float) -> None:
        now = logTime(line) or now
        m = _DISPERSE_MEMBER.search(line)
        if m is not None:
            self._record(now, m.group(1), m.group(2))
            return
        m = _DISPERSE_GOSSIP.search(line)
        if m is not None:
            self.gossip_addr = f"{m.group(1)}:{m.group(2)}"
            self.listening = now
            return
        m = _DISPERSE_HTTP.search(line)
        if m is not None:
            self.http_port = int(m.group(2))

    def _feed_go(self, line: str, now: float) -> None:
        if not line.startswith("{"):
            return  # memberlist's own log lines (stderr)
        try:
            event = json.loads(line)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("event")
        if kind in ("join", "update"):
            self._record(now, str(event["name"]), "joined")
        elif kind == "leave":
            # Debian's memberlist 0.2.2 hands NotifyLeave a Node whose State
            # is still alive (0), so a leave does not tell a death from a
            # departure; newer versions say dead (2) or left (3).
            state = event.get("state")
            if state == MEMBERLIST_DEAD:
                change = "failed"
            elif state == MEMBERLIST_LEFT:
                change = "left"
            else:
                change = "leave"
            self._record(now, str(event["name"]), change)
        elif kind == "ready":
            self.gossip_addr = f"{event['addr']}:{event['port']}"
            self.listening = now
        elif kind == "joined" and not event.get("count"):
            self.join_error = str(event.get("error"))


class Cluster:
    """
    The nodes of one implementation, started, followed and stopped together.
    """

    def __init__(self, kind: Kind, prefix: str, log_dir: Path, go_peer: Path) -> None:
        self.kind = kind
        self.prefix = prefix
        self.log_dir = log_dir
        self.go_peer = go_peer
        # Disperse lets its "left" notice spread for up to 5 s.
        self.procs = ProcessSet(STOP_GRACE, cwd=REPO_DIR)
        self.nodes: list[Node] = []

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def title(self) -> str:
        return "Disperse" if self.kind == "disperse" else "Go memberlist"

    def running(self) -> list[Node]:
        return [n for n in self.nodes if n.killed is None]

    def start(self, seed: str | None) -> Node:
        name = f"{self.prefix}{len(self.nodes):02d}"
        log_path = self.log_dir / f"{name}.log"
        argv: list[str]
        if self.kind == "disperse":
            args = [
                *loopbackArgs(),
                "--node-name",
                name,
                "--profile",
                "local",
                "--log-level",
                "info",
            ]
            if seed is not None:
                args += ["--peer", seed]
            argv = nodeCommand(args, precise=True)
        else:
            argv = [
                str(self.go_peer),
                "-bind",
                LOOPBACK,
                "-port",
                "0",
                "-name",
                name,
                "-events",
            ]
            if seed is not None:
                argv += ["-join", seed]
        node = Node(self.kind, name, self.procs.start(name, argv, log_path))
        self.nodes.append(node)
        return node

    def poll(self) -> None:
        """
        Read what every running node printed; fail if one exited or (Go)
        could not join.
        """
        for node in self.running():
            node.feed(node.proc.newLines(), time.monotonic())
            code = node.proc.exited()
            if code is not None:
                raise BenchError(
                    f"{self.title} node {node.name} exited with status {code}; "
                    f"log {node.proc.logPath}:\n{node.proc.logTail()}"
                )
            if node.join_error is not None:
                raise BenchError(
                    f"Go node {node.name} could not join: {node.join_error}; "
                    f"log {node.proc.logPath}"
                )

    def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float,
        what: str,
        diagnose: Callable[[], str] | None = None,
    ) -> float:
        """
        Poll until C{predicate} holds; returns the time.monotonic() it was
        first seen to hold. Raises L{BenchError} after C{timeout} seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            now = time.monotonic()
            if predicate():
                return now
            if now >= deadline:
                detail = diagnose() if diagnose is not None else ""
                raise BenchError(
                    f"{self.title}: {what} not reached in {timeout:.0f} s. "
                    f"{detail} Logs: {self.log_dir}"
                )
            time.sleep(POLL_INTERVAL)

    def converged(self) -> bool:
        """
        Every running node sees exactly the running nodes alive.
        """
        names = {n.name for n in self.running()}
        return all(n.alive_view() == names for n in self.running())

    def describe_views(self) -> str:
        names = {n.name for n in self.running()}
        lagging = []
        for node in self.running():
            seen = node.alive_view()
            if seen != names:
                missing = sorted(names - seen)
                extra = sorted(seen - names)
                lagging.append(
                    f"{node.name} sees {len(seen & names)}/{len(names)}"
                    + (f" (missing {', '.join(missing[:5])})" if missing else "")
                    + (f" (still alive: {', '.join(extra)})" if extra else "")
                )
        return "; ".join(lagging[:8]) + ("." if lagging else "")

    def settle(self, seconds: float) -> None:
        settle([self], seconds)

    def kill(self, node: Node) -> float:
        """
        SIGKILL C{node} (its process group); returns when it was sent.
        """
        if node.proc.exited() is not None:
            raise BenchError(f"{node.name} already exited")
        at = time.monotonic()
        node.killed = at
        node.proc.kill()
        node.feed(node.proc.newLines(), time.monotonic())
        return at

    def stop(self) -> None:
        """
        SIGTERM every node at once, SIGKILL those still running after
        L{STOP_GRACE} seconds.
        """
        self.procs.close()


def settle(clusters: Sequence[Cluster], seconds: float) -> None:
    """
    Wait, still reading the nodes' output (and noticing exits).
    """
    deadline = time.monotonic() + seconds
    while True:
        for cluster in clusters:
            cluster.poll()
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(0.1, left))


# --- 1. boot ----------------------------------------------------------------------


@dataclass
class BootResult:
    rep: int
    nodes: int
    from_first_start_s: float
    from_seed_listening_s: float
    from_last_listening_s: float
    last_listening_after_start_s: float
    # The sighting that completed convergence: who saw whom, when.
    last_observer: str
    last_member: str
    http_check: str = ""


def boot(cluster: Cluster, n: int, timeout: float, rep: int = 1) -> BootResult:
    """
    Start a seed, then, once it listens, the other C{n - 1} at once; wait
    until all see all C{n} alive.
    """
    t0 = time.monotonic()
    seed = cluster.start(None)
    cluster.wait_for(lambda: seed.gossip_addr is not None, timeout, "seed listening")
    assert seed.gossip_addr is not None
    for _ in range(n - 1):
        cluster.start(seed.gossip_addr)
    done = cluster.wait_for(
        lambda: (
            cluster.converged()
            and all(node.listening is not None for node in cluster.nodes)
        ),
        timeout,
        f"all {n} seeing all {n} alive",
        cluster.describe_views,
    )
    listened = [node.listening for node in cluster.nodes if node.listening is not None]
    assert seed.listening is not None
    # Every node's latest change to each member is the one that made it
    # alive; the latest of those all completed convergence. With Disperse's
    # own timestamps it may come before the poll that noticed it.
    last = max(
        (
            (ch.at, node.name, ch.member)
            for node in cluster.nodes
            for ch in node.changes
        ),
        default=(done, "", ""),
    )
    done = min(done, max(last[0], *listened))
    return BootResult(
        rep=rep,
        nodes=n,
        from_first_start_s=done - t0,
        from_seed_listening_s=done - seed.listening,
        from_last_listening_s=done - max(listened),
        last_listening_after_start_s=max(listened) - t0,
        last_observer=last[1],
        last_member=last[2],
    )


def check_disperse_members(cluster: Cluster) -> str:
    """
    Ask every Disperse node's C{GET /cluster/members} how many it lists
    alive; the answer should match what its log said.
    """
    expected = len(cluster.running())
    wrong = []
    for node in cluster.running():
        if node.http_port is None:
            wrong.append(f"{node.name}: HTTP port unknown")
            continue
        try:
            status, body = httpRequest(node.http_port, "GET", "/cluster/members")
        except OSError as e:
            wrong.append(f"{node.name}: {e}")
            continue
        if status != 200:
            wrong.append(f"{node.name}: HTTP {status}")
            continue
        alive = sum(1 for m in json.loads(body) if m.get("state") == "alive")
        if alive != expected:
            wrong.append(f"{node.name}: {alive} alive")
    if wrong:
        return f"MISMATCH (expected {expected} alive): " + "; ".join(wrong[:8])
    return f"ok: every node lists {expected} alive"


# --- 2. steady state --------------------------------------------------------------


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class CpuSample:
    at: float
    ticks_s: float
    sched_s: float | None


def sample_cpu(node: Node) -> CpuSample:
    return CpuSample(time.monotonic(), cpuSeconds(node.pid), schedSeconds(node.pid))


@dataclass
class StatsSample:
    at: float
    gossip: dict[str, Any]


def sample_stats(node: Node) -> StatsSample:
    if node.http_port is None:
        raise BenchError(f"{node.name}: HTTP port unknown")
    try:
        status, body = httpRequest(node.http_port, "GET", "/stats")
    except OSError as e:
        raise BenchError(f"{node.name}: GET /stats failed: {e}") from e
    if status != 200:
        raise BenchError(f"{node.name}: GET /stats answered {status}")
    gossip: dict[str, Any] = json.loads(body)["gossip"]
    return StatsSample(time.monotonic(), gossip)


@dataclass
class NodeSteady:
    name: str
    cpu_ms_per_s: float
    sched_ms_per_s: float | None
    udp_bytes_out_per_s: float | None = None
    udp_packets_out_per_s: float | None = None
    streams_out_per_s: float | None = None
    alive_before: int | None = None
    alive_after: int | None = None


@dataclass
class SteadyResult:
    nodes: int
    window_s: float
    per_node: list[NodeSteady]
    failures_during_window: int

    def cpu(self) -> list[float]:
        return [n.cpu_ms_per_s for n in self.per_node]

    def sched(self) -> list[float]:
        return [n.sched_ms_per_s for n in self.per_node if n.sched_ms_per_s is not None]

    def udp_packets(self) -> list[float]:
        return [
            n.udp_packets_out_per_s
            for n in self.per_node
            if n.udp_packets_out_per_s is not None
        ]

    def udp_bytes(self) -> list[float]:
        return [
            n.udp_bytes_out_per_s
            for n in self.per_node
            if n.udp_bytes_out_per_s is not None
        ]


def steady_state(
    clusters: Sequence[Cluster], window: float
) -> dict[Kind, SteadyResult]:
    """
    Measure every node of every cluster over the same window. The harness
    only sleeps inside it; /stats is read just before and just after.
    """
    stats_before: dict[str, StatsSample] = {}
    for cluster in clusters:
        cluster.poll()
        if cluster.kind == "disperse":
            for node in cluster.running():
                stats_before[node.name] = sample_stats(node)
    changes_before = {
        node.name: len(node.changes) for c in clusters for node in c.running()
    }
    cpu_before = {node.name: sample_cpu(node) for c in clusters for node in c.running()}
    time.sleep(window)
    cpu_after = {node.name: sample_cpu(node) for c in clusters for node in c.running()}
    stats_after: dict[str, StatsSample] = {}
    for cluster in clusters:
        if cluster.kind == "disperse":
            for node in cluster.running():
                stats_after[node.name] = sample_stats(node)
    results: dict[Kind, SteadyResult] = {}
    for cluster in clusters:
        cluster.poll()
        per_node = []
        failures = 0
        for node in cluster.running():
            b, a = cpu_before[node.name], cpu_after[node.name]
            elapsed = a.at - b.at
            sched = (
                (a.sched_s - b.sched_s) * 1000 / elapsed
                if a.sched_s is not None and b.sched_s is not None
                else None
            )
            entry = NodeSteady(
                node.name, (a.ticks_s - b.ticks_s) * 1000 / elapsed, sched
            )
            if node.name in stats_before:
                sb, sa = stats_before[node.name], stats_after[node.name]
                span = sa.at - sb.at
                entry.udp_bytes_out_per_s = (
                    sa.gossip["bytesOut"] - sb.gossip["bytesOut"]
                ) / span
                entry.udp_packets_out_per_s = (
                    sa.gossip["packetsOut"] - sb.gossip["packetsOut"]
                ) / span
                entry.streams_out_per_s = (
                    sa.gossip["streamsOut"] - sb.gossip["streamsOut"]
                ) / span
                entry.alive_before = sb.gossip["members"]["alive"]
                entry.alive_after = sa.gossip["members"]["alive"]
            per_node.append(entry)
            failures += sum(
                1
                for ch in node.changes[changes_before[node.name] :]
                if ch.change in GONE
            )
        results[cluster.kind] = SteadyResult(len(per_node), window, per_node, failures)
    return results


# --- 3. crash detection -----------------------------------------------------------


@dataclass
class CrashRep:
    rep: int
    victim: str
    survivors: int
    all_detected_s: float
    first_detected_s: float
    median_detected_s: float
    kinds: list[str]


def crash_rep(
    cluster: Cluster, rep: int, seed: Node, timeout: float, settle: float
) -> CrashRep:
    """
    Kill the oldest non-seed member with SIGKILL, time until every survivor
    reports it failed, then replace it with a fresh node and wait until the
    cluster has converged again.
    """
    size = len(cluster.running())
    cluster.settle(settle)
    victim = next(n for n in cluster.running() if n is not seed)
    survivors = [n for n in cluster.running() if n is not victim]
    marks = {n.name: len(n.changes) for n in survivors}
    killed = cluster.kill(victim)

    def detection(node: Node) -> Change | None:
        for ch in node.changes[marks[node.name] :]:
            if ch.member == victim.name and ch.change in GONE:
                return ch
        return None

    def undetected() -> str:
        late = [n.name for n in survivors if detection(n) is None]
        return (
            f"{len(late)} survivors still see {victim.name} alive: {', '.join(late)}."
        )

    cluster.wait_for(
        lambda: all(detection(n) is not None for n in survivors),
        timeout,
        f"every survivor reporting {victim.name} failed",
        undetected,
    )
    found = [detection(n) for n in survivors]
    times = [ch.at - killed for ch in found if ch is not None]
    kinds = sorted({ch.change for ch in found if ch is not None})
    result = CrashRep(
        rep,
        victim.name,
        len(survivors),
        max(times),
        min(times),
        statistics.median(times),
        kinds,
    )
    # Back to `size` members for the next repetition.
    assert seed.gossip_addr is not None
    cluster.start(seed.gossip_addr)
    cluster.wait_for(
        lambda: cluster.converged() and len(cluster.running()) == size,
        timeout,
        f"the replacement of {victim.name} seen by all",
        cluster.describe_views,
    )
    return result


# --- report -----------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _ratio(d: float | None, g: float | None) -> str:
    if d is None or g is None or g == 0:
        return "n/a"
    return f"{d / g:.2f}x"


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _max(values: Sequence[float]) -> float | None:
    return max(values) if values else None


def report_rows(
    boots: dict[Kind, list[BootResult]],
    steady: dict[Kind, SteadyResult],
    crashes: dict[Kind, list[CrashRep]],
) -> list[list[str]]:
    rows: list[list[str]] = []

    def row(label: str, values: dict[Kind, float | None], spec: str) -> None:
        d, g = values.get("disperse"), values.get("go")
        rows.append([label, _fmt(d, spec), _fmt(g, spec), _ratio(d, g)])

    if steady:
        n = next(iter(steady.values())).nodes
        w = next(iter(steady.values())).window_s
        row(
            f"steady CPU/node, N={n}, {w:g} s, median (ms/s)",
            {k: _median(s.cpu()) for k, s in steady.items()},
            ".2f",
        )
        row(
            "steady CPU/node, max (ms/s)",
            {k: _max(s.cpu()) for k, s in steady.items()},
            ".2f",
        )
        row(
            "  same from schedstat (ns), median",
            {k: _median(s.sched()) for k, s in steady.items()},
            ".2f",
        )
        row(
            "  same from schedstat (ns), max",
            {k: _max(s.sched()) for k, s in steady.items()},
            ".2f",
        )
        row(
            "UDP bytes out/node, median (B/s)",
            {k: _median(s.udp_bytes()) for k, s in steady.items()},
            ".0f",
        )
        row(
            "UDP packets out/node, median (1/s)",
            {k: _median(s.udp_packets()) for k, s in steady.items()},
            ".1f",
        )
        row(
            "members failed/left during window",
            {k: float(s.failures_during_window) for k, s in steady.items()},
            ".0f",
        )
    if crashes:
        some = next(iter(crashes.values()))
        if some:
            survivors = some[0].survivors
            row(
                f"crash seen by all {survivors} survivors, p50 (s)",
                {k: _median([r.all_detected_s for r in c]) for k, c in crashes.items()},
                ".2f",
            )
            row(
                "  max over reps (s)",
                {k: _max([r.all_detected_s for r in c]) for k, c in crashes.items()},
                ".2f",
            )
            row(
                "  first survivor, p50 (s)",
                {
                    k: _median([r.first_detected_s for r in c])
                    for k, c in crashes.items()
                },
                ".2f",
            )
    some_boots = next(iter(boots.values()), [])
    if some_boots:
        n = some_boots[0].nodes
        reps = max(len(b) for b in boots.values())
        p50 = "p50" if reps > 1 else f"{reps} run"
        row(
            f"boot N={n} via one seed, from first start, {p50} (s)",
            {k: _median([r.from_first_start_s for r in b]) for k, b in boots.items()},
            ".2f",
        )
        if reps > 1:
            row(
                "  max over runs (s)",
                {k: _max([r.from_first_start_s for r in b]) for k, b in boots.items()},
                ".2f",
            )
        row(
            f"  from the last node listening, {p50} (s)",
            {
                k: _median([r.from_last_listening_s for r in b])
                for k, b in boots.items()
            },
            ".2f",
        )
        if reps > 1:
            row(
                "  from the last node listening, max (s)",
                {
                    k: _max([r.from_last_listening_s for r in b])
                    for k, b in boots.items()
                },
                ".2f",
            )
        row(
            f"  last node listening after first start, {p50} (s)",
            {
                k: _median([r.last_listening_after_start_s for r in b])
                for k, b in boots.items()
            },
            ".2f",
        )
    return rows


def evaluate_goals(
    boots: dict[Kind, list[BootResult]],
    steady: dict[Kind, SteadyResult],
    crashes: dict[Kind, list[CrashRep]],
) -> list[Goal]:
    goals = []
    if "disperse" in steady:
        cpu = steady["disperse"].cpu()
        med, top = statistics.median(cpu), max(cpu)
        for what, value in (("median", med), ("max", top)):
            name = f"Disperse steady CPU per node, {what}"
            goals.append(ceiling_goal(name, value, GOAL_CPU_MS_PER_S, "ms/s"))
    if crashes.get("disperse") and crashes.get("go"):
        d = statistics.median([r.all_detected_s for r in crashes["disperse"]])
        g = statistics.median([r.all_detected_s for r in crashes["go"]])
        goals.append(
            Goal(
                "crash detection p50, parity with Go (derived)",
                f"{d:.2f} s",
                f"<= {CRASH_PARITY:g} x Go = {CRASH_PARITY * g:.2f} s",
                d <= CRASH_PARITY * g,
            )
        )
    if boots.get("disperse"):
        b = statistics.median([r.from_last_listening_s for r in boots["disperse"]])
        goals.append(
            Goal(
                "boot p50, from last node listening (derived)",
                f"{b:.2f} s",
                f"<= {BOOT_GOAL_S:g} s (bench/gossip's simulated goal)",
                b <= BOOT_GOAL_S,
            )
        )
    return goals


# --- main -------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = bench_parser(
        "bench/gossip-cluster",
        "Real-process gossip figures, Disperse (--profile local) against Go "
        "memberlist (DefaultLocalConfig): steady-state CPU and UDP bytes per "
        "node, crash detection, boot through one seed.",
    )
    parser.add_argument(
        "--window", type=float, default=30.0, help="steady-state window, s (30)"
    )
    parser.add_argument(
        "--reps", type=int, default=3, help="crash repetitions per implementation (3)"
    )
    parser.add_argument(
        "--boot-reps",
        type=int,
        default=3,
        help="boots of --nodes per implementation; the first is kept running "
        "for the steady state (3)",
    )
    parser.add_argument(
        "--nodes", type=int, default=20, help="nodes for boot and steady state (20)"
    )
    parser.add_argument(
        "--crash-nodes", type=int, default=10, help="cluster size for crashes (10)"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=5.0,
        help="s between convergence and the steady window (5)",
    )
    parser.add_argument(
        "--crash-settle",
        type=float,
        default=3.0,
        help="s between convergence and each kill (3)",
    )
    parser.add_argument(
        "--timeout", type=float, default=90.0, help="deadline of every wait, s (90)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="10 s window, 1 boot and 1 crash per implementation, shorter settling",
    )
    parser.add_argument(
        "--skip-crash", action="store_true", help="only boot and steady state"
    )
    parser.add_argument(
        "--go-peer",
        type=Path,
        default=GO_PEER,
        help=f"Go memberlist peer binary (default {GO_PEER.relative_to(REPO_DIR)})",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.window, args.reps, args.settle, args.crash_settle = 10.0, 1, 2.0, 2.0
        args.boot_reps = 1
    if args.nodes < 2 or args.crash_nodes < 3:
        parser.error("--nodes must be >= 2 and --crash-nodes >= 3")
    if not 1 <= args.reps <= args.crash_nodes - 1:
        parser.error("--reps must be between 1 and --crash-nodes - 1")
    if args.boot_reps < 1:
        parser.error("--boot-reps must be at least 1")
    if args.window <= 0 or args.timeout <= 0:
        parser.error("--window and --timeout must be positive")
    return args


def run(
    args: argparse.Namespace,
    log_dir: Path,
    results: dict[str, Any],
    boots: dict[Kind, list[BootResult]],
    steady: dict[Kind, SteadyResult],
    crashes: dict[Kind, list[CrashRep]],
) -> None:
    go_peer = ensure_go_peer(args.go_peer)
    checkNodePlugin()
    n = args.nodes
    phase = time.monotonic()

    def booted(cluster: Cluster, rep: int) -> None:
        b = boot(cluster, n, args.timeout, rep)
        boots.setdefault(cluster.kind, []).append(b)
        print(
            f"  {cluster.kind:8} boot {rep}: all see {n} alive "
            f"{b.from_first_start_s:.2f} s after the first start, "
            f"{b.from_last_listening_s:.2f} s after the last node listened "
            f"(last: {b.last_observer} saw {b.last_member})",
            flush=True,
        )

    def done(what: str) -> None:
        nonlocal phase
        now = time.monotonic()
        print(f"  ({what}: {now - phase:.0f} s)", flush=True)
        phase = now

    # Disperse boots first, on a quiet machine; the Go cluster boots next to
    # the settled Disperse nodes, which cost it little.
    print(f"Boot and steady state: {n} nodes of each, through one seed ...")
    with (
        Cluster("disperse", "d", log_dir, go_peer) as disperse,
        Cluster("go", "g", log_dir, go_peer) as go,
    ):
        for cluster in (disperse, go):
            booted(cluster, 1)
        check = check_disperse_members(disperse)
        boots["disperse"][0].http_check = check
        print(f"  Disperse GET /cluster/members: {check}", flush=True)
        settle((disperse, go), args.settle)
        results["loadavg_before_window"] = loadavg()
        print(
            f"  measuring the CPU of all {2 * n} nodes over {args.window:g} s "
            f"(load average {results['loadavg_before_window']}) ...",
            flush=True,
        )
        steady.update(steady_state([disperse, go], args.window))
        results["loadavg_after_window"] = loadavg()
        for kind, s in steady.items():
            print(
                f"  {kind:8} CPU median {statistics.median(s.cpu()):.2f} ms/s, "
                f"max {max(s.cpu()):.2f} ms/s; {s.failures_during_window} "
                "members failed/left in the window",
                flush=True,
            )
    done("boot and steady state")
    for rep in range(2, args.boot_reps + 1):
        for kind in ("disperse", "go"):
            with Cluster(kind, f"{kind[0]}b{rep}_", log_dir, go_peer) as cluster:
                booted(cluster, rep)
    if args.boot_reps > 1:
        done("more boots")
    if args.skip_crash:
        return
    print(f"Crash detection: {args.crash_nodes} nodes of each ...", flush=True)
    with (
        Cluster("disperse", "dc", log_dir, go_peer) as disperse,
        Cluster("go", "gc", log_dir, go_peer) as go,
    ):
        clusters = (disperse, go)
        for cluster in clusters:
            boot(cluster, args.crash_nodes, args.timeout)
            crashes[cluster.kind] = []
        # Interleaved, so that a slow patch on the machine hits both alike.
        for rep in range(1, args.reps + 1):
            for cluster in clusters:
                r = crash_rep(
                    cluster, rep, cluster.nodes[0], args.timeout, args.crash_settle
                )
                crashes[cluster.kind].append(r)
                print(
                    f"  {cluster.kind:8} crash {rep}/{args.reps}: killed {r.victim}; "
                    f"first survivor {r.first_detected_s:.2f} s, all "
                    f"{r.survivors} {r.all_detected_s:.2f} s",
                    flush=True,
                )
    done("crash detection")


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    boots: dict[Kind, list[BootResult]] = {}
    steady: dict[Kind, SteadyResult] = {}
    crashes: dict[Kind, list[CrashRep]] = {}
    config = {
        "nodes": args.nodes,
        "crash_nodes": args.crash_nodes,
        "window_s": args.window,
        "reps": args.reps,
        "boot_reps": args.boot_reps,
        "settle_s": args.settle,
        "crash_settle_s": args.crash_settle,
        "timeout_s": args.timeout,
        "quick": args.quick,
        "disperse_profile": "local",
        "go_config": "memberlist.DefaultLocalConfig",
        "clock_ticks_per_s": CLOCK_TICKS,
    }
    bench = BenchRun("gossip-cluster", args.output, config)
    results = bench.results
    results["loadavg_start"] = bench.loads[0][1]
    bench.log_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"bench/gossip-cluster: Disperse vs Go memberlist, real processes on "
        f"{LOOPBACK}; load average {results['loadavg_start']}; logs in "
        f"{bench.log_dir}",
        flush=True,
    )
    started = time.monotonic()
    with bench:
        run(args, bench.log_dir, results, boots, steady, crashes)
    goals = evaluate_goals(boots, steady, crashes)
    results["loadavg_end"] = bench.loads[-1][1]
    results["wall_s"] = time.monotonic() - started
    if boots:
        bench.save(
            boot={k: [asdict(r) for r in v] for k, v in boots.items()},
            steady={k: asdict(v) for k, v in steady.items()},
            crash={k: [asdict(r) for r in v] for k, v in crashes.items()},
            goals=[asdict(g) for g in goals],
        )
        print()
        bench.partial()
        rows = report_rows(boots, steady, crashes)
        print(format_table(["", "disperse", "go", "disperse/go"], rows))
        print()
        if goals:
            print(goals_table(goals))
            print()
        print(
            f"Load average: start {results['loadavg_start']}, window "
            f"{results.get('loadavg_before_window', 'n/a')} -> "
            f"{results.get('loadavg_after_window', 'n/a')}, end "
            f"{results['loadavg_end']}. {results['wall_s']:.0f} s wall."
        )
        print(f"Results: {bench.output}")
    return bench.exit_status(args.strict, goals)
