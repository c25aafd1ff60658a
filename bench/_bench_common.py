"""
What the benchmark scripts share, apart from starting and stopping nodes
(L{disperse.testing.cluster}): locating the virtualenv, CPU pinning, the
common command-line options, wrk and its output, RSS readers, the goal
table, results files and plain-text tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from bench._launch import REPO_DIR
from disperse.testing.cluster import (
    LOG_PROBLEM,
    LOOPBACK,
    ClusterError,
    KeepAlive,
    NodeProcess,
    ProcessSet,
    cpuSeconds,
    freePorts,
    httpRequest,
    loopbackArgs,
    nodeCommand,
    waitConverged,
)

RESULTS_DIR = REPO_DIR / "bench" / "results"
MIB = 1024 * 1024
VALUE_SIZE = 64
PUT_KEYSPACE = 1000  # PUTs cycle over this many keys: inserts, then overwrites
DURATION_NS = "9000000000000"  # 9000 s: TTL bookkeeping on, nothing expires
HIT_KEY = "bench-hit"
MISS_KEY = "bench-miss-never-written"
REPLICAS = 3  # the cluster benchmarks' nodes: R=3, quorum writes and reads
CONSISTENCY = "quorum"
CONVERGE_TIMEOUT = 30.0


class BenchError(ClusterError):
    """
    The benchmark cannot go on (a server did not start, a tool is missing).
    The message is meant for the person running the script.
    """


def install_termination_handlers() -> None:
    """
    Turn SIGTERM and SIGHUP into C{SystemExit} so that the C{finally}
    blocks stopping the servers run; SIGINT already raises
    C{KeyboardInterrupt}.
    """

    def _exit(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit)


# --- CPU pinning -------------------------------------------------------------


@dataclass(frozen=True)
class Pinning:
    """
    Which CPU the servers and the load generator run on; C{None} when
    pinning is off or impossible (C{note} says why).
    """

    server_cpu: int | None
    client_cpu: int | None
    note: str

    def _wrap(self, cpu: int | None, argv: Sequence[str]) -> list[str]:
        if cpu is None:
            return list(argv)
        return ["taskset", "-c", str(cpu), *argv]

    def server(self, argv: Sequence[str]) -> list[str]:
        return self._wrap(self.server_cpu, argv)

    def client(self, argv: Sequence[str]) -> list[str]:
        return self._wrap(self.client_cpu, argv)

    def describe(self) -> str:
        if self.server_cpu is None:
            return f"unpinned ({self.note})"
        return (
            f"servers on CPU {self.server_cpu}, load generator on CPU {self.client_cpu}"
        )


def choose_pinning(enabled: bool = True) -> Pinning:
    """
    Servers on the first CPU we may use, the load generator on the second
    (CPUs 0 and 1 on the two-core benchmark machine).
    """
    if not enabled:
        return Pinning(None, None, "--no-pin")
    if shutil.which("taskset") is None:
        return Pinning(None, None, "taskset not found (Debian package util-linux)")
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return Pinning(None, None, f"only {len(cpus)} CPU available")
    return Pinning(cpus[0], cpus[1], "")


# --- nodes -----------------------------------------------------------------------


@dataclass
class Node:
    """
    A node under test: its name, ports and process.
    """

    name: str
    gossip_port: int
    http_port: int
    proc: NodeProcess = field(repr=False)
    startup_s: float = 0.0  # from its start until /health answered

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        assert self.proc.logPath is not None
        return self.proc.logPath

    def client(self) -> KeepAlive:
        return KeepAlive(self.http_port)

    def wait_ready(self) -> None:
        """
        Poll C{/health} until it answers 200 (L{startup_s}: how long it took).
        """
        self.startup_s = self.proc.waitHealthy(self.http_port, interval=0.05)


def start_node(
    procs: ProcessSet,
    pinning: Pinning,
    log_path: Path,
    name: str,
    ports: tuple[int, int],
    seed: Node | None,
    extra: Sequence[str],
    precise: bool = False,
) -> Node:
    """
    One node the documented way, C{--profile local}, R=3, quorum writes
    and reads, on the server CPU, joining through C{seed} if given;
    C{precise}: microsecond log timestamps.
    """
    gossip_port, http_port = ports
    argv = [
        *loopbackArgs(gossip_port, http_port),
        *("--node-name", name, "--profile", "local", "--replicas", str(REPLICAS)),
        *("--write-consistency", CONSISTENCY, "--read-consistency", CONSISTENCY),
        *extra,
    ]
    if seed is not None:
        argv += ["--peer", f"{LOOPBACK}:{seed.gossip_port}"]
    command = pinning.server(nodeCommand(argv, precise=precise))
    return Node(name, gossip_port, http_port, procs.start(name, command, log_path))


def boot_nodes(
    procs: ProcessSet,
    pinning: Pinning,
    log_dir: Path,
    names: Sequence[str],
    extra: Sequence[str],
    precise: bool = False,
) -> list[Node]:
    """
    The first of C{names}, then the others joining through it once it
    answers; returns once all answer (not yet converged).
    """
    ports = freePorts(2 * len(names))
    nodes: list[Node] = []
    for i, name in enumerate(names):
        pair = (ports[2 * i], ports[2 * i + 1])
        seed = nodes[0] if nodes else None
        log = log_dir / f"{name}.log"
        nodes.append(start_node(procs, pinning, log, name, pair, seed, extra, precise))
        if i == 0:
            nodes[0].wait_ready()
    for node in nodes[1:]:
        node.wait_ready()
    return nodes


def nodes_cpu(nodes: Sequence[Node]) -> dict[str, float]:
    """
    utime + stime of each node so far, in seconds.
    """
    try:
        return {n.name: cpuSeconds(n.pid) for n in nodes}
    except OSError as e:
        raise BenchError(f"a node is gone: {e}") from e


def wait_converged(nodes: Sequence[Node], check: Callable[[], None]) -> float:
    return waitConverged({n.name: n.http_port for n in nodes}, CONVERGE_TIMEOUT, check)


# --- memory ----------------------------------------------------------------------


def self_rss() -> int:
    """
    Our own resident set size in bytes, from /proc/self/statm (pages).
    """
    with open("/proc/self/statm", encoding="ascii") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB"


# --- output ------------------------------------------------------------------------


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1
) -> str:
    """
    A plain-text table: the first C{left} columns left-aligned (labels), the
    others right-aligned (numbers).
    """
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        out = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


@dataclass(frozen=True)
class Goal:
    name: str
    measured: str
    target: str
    ok: bool


def ratio_goal(name: str, ratio: float, floor: float) -> Goal:
    """
    A ratio that must reach C{floor}.
    """
    return Goal(name, f"{ratio:.2f}x", f">= {floor:.2f}x", ratio >= floor)


def ceiling_goal(name: str, value: float, ceiling: float, unit: str) -> Goal:
    """
    A figure (in C{unit}) that must stay at or below C{ceiling}.
    """
    return Goal(name, f"{value:.2f} {unit}", f"<= {ceiling:g} {unit}", value <= ceiling)


def goals_table(goals: Sequence[Goal]) -> str:
    return format_table(
        ["goal", "measured", "target", "verdict"],
        [[g.name, g.measured, g.target, verdict(g.ok)] for g in goals],
    )


# --- the command line --------------------------------------------------------------


def bench_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """
    A parser with the options every script takes (C{--output}, C{--strict}).
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--output", type=Path, help="JSON results path (default bench/results/)"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a goal fails"
    )
    return parser


def add_wrk_options(
    parser: argparse.ArgumentParser,
    interleaved: str,
    per: str,
    quick: str,
    workloads: Sequence[str],
) -> None:
    """
    C{--duration}, C{--reps}, C{--warmup}, C{--quick} and C{--workloads}
    (one of C{workloads} or more) of the wrk scripts.
    """
    parser.add_argument(
        "--workloads",
        default=",".join(workloads),
        help=f"comma-separated subset of {','.join(workloads)}",
    )
    parser.add_argument(
        "--duration", type=int, default=10, help="seconds per wrk run (default 10)"
    )
    parser.add_argument(
        "--reps", type=int, default=3, help=f"repetitions, {interleaved} (3)"
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help=f"warm-up seconds per {per} x workload"
    )
    parser.add_argument("--quick", action="store_true", help=quick)


def add_node_options(parser: argparse.ArgumentParser, levels: Sequence[str]) -> None:
    """
    C{--log-level}, C{--node-arg} and C{--no-pin}, for scripts that start
    nodes under taskset.
    """
    parser.add_argument(
        "--log-level",
        default="info",
        choices=levels,
        help="the nodes' --log-level (default info: no per-request lines)",
    )
    parser.add_argument(
        "--node-arg",
        action="append",
        default=[],
        metavar="ARG",
        help=(
            "one more argument for every node, repeatable "
            "(--node-arg=--anti-entropy-interval --node-arg=1h)"
        ),
    )
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")


def subset(
    parser: argparse.ArgumentParser, option: str, value: str, choices: Sequence[str]
) -> list[str]:
    """
    A comma-separated subset of C{choices}, in their order.
    """
    chosen = {w.strip() for w in value.split(",") if w.strip()}
    if not chosen or chosen - set(choices):
        parser.error(f"{option}: choose from {','.join(choices)}")
    return [c for c in choices if c in chosen]


def check_ranges(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    ranges: dict[str, tuple[float, float]],
) -> None:
    for name, (low, high) in ranges.items():
        if not low <= getattr(args, name) <= high:
            flag = "--" + name.replace("_", "-")
            parser.error(f"{flag} must be {low:g}..{high:g}")


# --- the run --------------------------------------------------------------------------


def loadavg() -> str:
    with open("/proc/loadavg", encoding="ascii") as f:
        return " ".join(f.read().split()[:3])


def code_version() -> dict[str, Any]:
    """
    The commit under test and the tracked files that differ from it (read
    only: plumbing commands that leave the index alone).
    """

    def git(*argv: str) -> str:
        try:
            done = subprocess.run(
                ["git", *argv],
                cwd=REPO_DIR,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    changed = git("diff-index", "--name-only", "HEAD")
    return {
        "commit": git("rev-parse", "HEAD") or "unknown",
        "modified": changed.splitlines() if changed else [],
    }


def machine() -> dict[str, Any]:
    """
    Where the run happens, for its results file.
    """
    return {
        "cpus": sorted(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "machine": platform.platform(),
    }


def describe_code(code: dict[str, Any]) -> str:
    dirty = f", {len(code['modified'])} files modified" if code["modified"] else ""
    return f"Code: {code['commit'][:12]}{dirty}."


class BenchRun:
    """
    One run of a script: its results (to L{save} as JSON), its logs
    directory, the load averages along the way, and how it ended. Leaving
    the C{with} block on an error reports it instead of raising: a node
    that failed or a missing tool (status 2), an interruption (SIGINT,
    SIGTERM, SIGHUP), or a bug in the script (its traceback, status 2), so
    that what was measured is still saved and printed.
    """

    def __init__(self, name: str, output: Path | None, config: dict[str, Any]) -> None:
        install_termination_handlers()
        self.prog = f"bench/{name}"
        self.stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.output = output or RESULTS_DIR / f"{name}-{self.stamp}.json"
        self.log_dir = RESULTS_DIR / f"{name}-{self.stamp}-logs"
        self.loads: list[tuple[str, str]] = [("start", loadavg())]
        self.status = 0
        self.results: dict[str, Any] = {
            "benchmark": name,
            "timestamp": self.stamp,
            "complete": False,
            "config": {**config, **machine()},
            "loadavg": self.loads,
            "logs": str(self.log_dir),
        }

    def load(self, when: str) -> str:
        self.loads.append((when, loadavg()))
        return self.loads[-1][1]

    def __enter__(self) -> BenchRun:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        e: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self.load("end")
        if e is None:
            self.results["complete"] = True
        elif isinstance(e, ClusterError):
            print(f"\n{self.prog}: {e}", file=sys.stderr)
            self.status = 2
        elif isinstance(e, (KeyboardInterrupt, SystemExit)):
            print(f"\n{self.prog}: interrupted; processes stopped.", file=sys.stderr)
            code = e.code if isinstance(e, SystemExit) else None
            self.status = code if isinstance(code, int) else 130
        elif isinstance(e, Exception):
            traceback.print_exc()
            print(f"\n{self.prog}: internal error; processes stopped.", file=sys.stderr)
            self.status = 2
        else:
            return False
        return True

    def save(self, **parts: Any) -> None:
        self.results.update(parts)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.output.write_text(json.dumps(self.results, indent=2, default=str) + "\n")

    def partial(self) -> None:
        if not self.results["complete"]:
            print("PARTIAL RESULTS: the run did not finish.\n")

    def describe_start(self) -> str:
        """
        The code under test, the pinning and the load average at the start.
        """
        config = self.results["config"]
        return (
            f"{describe_code(config['code'])} Pinning: {config['pinning']}."
            f" Load average: {self.loads[0][1]}."
        )

    def describe_loads(self) -> str:
        return "Load average (1, 5, 15 min): " + "; ".join(
            f"{w} {v}" for w, v in self.loads
        )

    def exit_status(self, strict: bool, goals: Sequence[Goal]) -> int:
        if self.status == 0 and strict and not all(g.ok for g in goals):
            return 1
        return self.status


def scan_logs(paths: Sequence[Path], root: Path) -> dict[str, list[str]]:
    """
    Warnings, errors and tracebacks in each log, by path under C{root}.
    """
    found: dict[str, list[str]] = {}
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        lines = [line for line in text.splitlines() if LOG_PROBLEM.search(line)]
        found[str(path.relative_to(root).with_suffix(""))] = lines
    return found


def print_log_problems(log_dir: Path, problems: dict[str, list[str]]) -> None:
    print(f"\nNode logs: {log_dir}")
    noisy = {name: lines for name, lines in problems.items() if lines}
    for name, lines in noisy.items():
        print(f"  {name}: {len(lines)} warning/error line(s), e.g.:")
        for line in lines[:3]:
            print(f"    {line[:200]}")
    if not noisy:
        print("  no warnings, errors or tracebacks.")


# --- wrk ------------------------------------------------------------------------------


WRK_INSTALL_HINT = (
    "wrk is not installed. It is a Debian package: `apt-get install -y wrk` "
    "(as root), or run `make bench-http`, which installs it."
)


@dataclass(frozen=True)
class WrkResult:
    requests_per_sec: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_PERCENTILE = re.compile(
    r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M
)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ", re.M)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)


def parse_wrk(output: str) -> WrkResult:
    """
    Requests/sec, the 50th and 99th latency percentiles (in ms), the request
    count, non-2xx responses and socket errors from C{wrk --latency} output.
    """
    rps = _RPS.search(output)
    count = _REQUESTS.search(output)
    percentiles = {
        int(p): float(value) * _UNIT_MS[unit]
        for p, value, unit in _PERCENTILE.findall(output)
    }
    if rps is None or count is None or 50 not in percentiles or 99 not in percentiles:
        raise BenchError(f"cannot parse wrk output:\n{output}")
    non_2xx = _NON_2XX.search(output)
    errors = _SOCKET_ERRORS.search(output)
    names = ("connect", "read", "write", "timeout")
    socket_errors = (
        dict(zip(names, map(int, errors.groups()), strict=True)) if errors else {}
    )
    return WrkResult(
        requests_per_sec=float(rps.group(1)),
        p50_ms=percentiles[50],
        p99_ms=percentiles[99],
        requests=int(count.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors,
    )


def wrk_version() -> str:
    done = subprocess.run(
        ["wrk", "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    lines = (done.stdout or done.stderr).splitlines()
    return lines[0].strip() if lines else "unknown"


def keyed_value(i: int, base: str) -> str:
    """
    The value of the C{i}th key of a preload: distinct per key,
    L{VALUE_SIZE} characters.
    """
    return f"{i:08d}{base}"[:VALUE_SIZE]


def put_body(value: str) -> bytes:
    return json.dumps({"value": value, "duration": DURATION_NS}).encode()


def lua_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_cycle_script(
    path: Path, origin: str, first: int, last: int, request: str
) -> Path:
    """
    A wrk script sending C{request} (a Lua expression of C{i} and of
    C{headers}, a JSON content type) for C{i = first..last} in order, then
    again from the start; requests are formatted once in C{init} so that wrk
    spends nothing per request.
    """
    path.write_text(
        f"""-- generated by {origin}
local first, last = {first}, {last}
local requests = {{}}
local counter = 0

init = function(args)
  local headers = {{}}
  headers["Content-Type"] = "application/json"
  for i = first, last do
    requests[i - first + 1] = {request}
  end
end

request = function()
  counter = counter % (last - first + 1) + 1
  return requests[counter]
end
"""
    )
    return path


def write_put_script(directory: Path, value: str) -> Path:
    """
    The PUT workload: the JSON body Disperse takes, keys cycling over
    L{PUT_KEYSPACE} names.
    """
    body = lua_quote(put_body(value).decode())
    request = f'wrk.format("PUT", "/cache/put-" .. i, headers, {body})'
    return write_cycle_script(
        directory / "put.lua", "bench/http", 1, PUT_KEYSPACE, request
    )


@dataclass(frozen=True)
class WrkPlan:
    """
    What every wrk run of one benchmark shares.
    """

    pinning: Pinning
    connections: int
    put_script: Path


def wrk_argv(
    connections: int, seconds: int, url: str, script: Path | None = None
) -> list[str]:
    """
    One wrk thread keeping C{connections} requests in flight on C{url} for
    C{seconds}, with C{script} if given; latency percentiles on.
    """
    lua = [] if script is None else ["-s", str(script)]
    return ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *lua, url]


def start_wrks(
    wrks: ProcessSet,
    pinning: Pinning,
    jobs: Sequence[tuple[Node, Path]],
    connections: int,
    seconds: int,
    directory: Path,
) -> list[tuple[NodeProcess, Path]]:
    """
    One wrk per (node, script), all at once on the client CPU, with
    C{connections} each; each process and the file its output goes to.
    """
    started = []
    for node, script in jobs:
        url = f"http://{LOOPBACK}:{node.http_port}/"
        argv = pinning.client(wrk_argv(connections, seconds, url, script))
        log = directory / f"wrk-{node.name}.out"
        started.append((wrks.start(f"wrk {node.name}", argv, log), log))
    return started


def finish_wrks(
    outputs: Sequence[tuple[NodeProcess, Path]], timeout: float, interrupt: bool = False
) -> list[tuple[WrkResult, str]]:
    """
    Wait (C{timeout} s in all) for the wrks of L{start_wrks}, first stopped
    with SIGINT (wrk then prints its figures) when C{interrupt}; each one's
    result and output. One that fails or outlives C{timeout} is an error
    (its ProcessSet then kills it).
    """
    if interrupt:
        for proc, _ in outputs:
            proc.signal(signal.SIGINT)
    deadline = time.monotonic() + timeout
    for proc, log in outputs:
        try:
            code = proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired as e:
            raise BenchError(f"{proc.name} did not end within {timeout:.0f} s") from e
        if code != 0 and not interrupt:
            text = log.read_text(errors="replace")
            raise BenchError(f"{proc.name} failed (exit {code}):\n{text}")
    texts = [log.read_text(errors="replace") for _, log in outputs]
    return [(parse_wrk(text), text) for text in texts]


def combine(results: Sequence[WrkResult]) -> WrkResult:
    """
    Several concurrent wrks as one: req/s, requests, non-2xx and socket
    errors summed, the worst p50 and p99.
    """
    errors: dict[str, int] = {}
    for r in results:
        for name, count in r.socket_errors.items():
            errors[name] = errors.get(name, 0) + count
    return WrkResult(
        requests_per_sec=sum(r.requests_per_sec for r in results),
        p50_ms=max(r.p50_ms for r in results),
        p99_ms=max(r.p99_ms for r in results),
        requests=sum(r.requests for r in results),
        non_2xx=sum(r.non_2xx for r in results),
        socket_errors=errors,
    )


def run_wrk(
    plan: WrkPlan, port: int, workload: str, seconds: int
) -> tuple[WrkResult, str]:
    url = f"http://{LOOPBACK}:{port}"
    if workload == "put":
        argv = wrk_argv(plan.connections, seconds, f"{url}/", plan.put_script)
    else:
        key = HIT_KEY if workload == "get-hit" else MISS_KEY
        argv = wrk_argv(plan.connections, seconds, f"{url}/cache/{key}")
    try:
        done = subprocess.run(
            plan.pinning.client(argv),
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"wrk did not finish within {seconds + 30} s") from e
    if done.returncode != 0:
        raise BenchError(f"wrk failed (exit {done.returncode}):\n{done.stderr}")
    return parse_wrk(done.stdout), done.stdout


@dataclass
class Server:
    name: str
    port: int
    pid: int
    startup_s: float


def start_reference(
    procs: ProcessSet, pinning: Pinning, log_dir: Path, name: str, module: str
) -> tuple[NodeProcess, int]:
    """
    One of bench/http's reference servers (C{bench._refs.<module>}) on a
    free port of the server CPU; (its process, its port).
    """
    (port,) = freePorts(1)
    argv = [sys.executable, "-m", f"bench._refs.{module}", "--port", str(port)]
    return procs.start(name, pinning.server(argv), log_dir / f"{name}.log"), port


def check_and_preload(server: Server, value: str) -> None:
    """
    Make sure the server speaks the API the workloads assume (PUT 200, GET
    hit returns the value, GET miss is 404) and leave the hit key in place.
    """
    headers = {"Content-Type": "application/json"}
    status, body = httpRequest(
        server.port, "PUT", f"/cache/{HIT_KEY}", body=put_body(value), headers=headers
    )
    if status != 200:
        raise BenchError(f"{server.name}: PUT answered {status} {body[:200]!r}")
    status, body = httpRequest(server.port, "GET", f"/cache/{HIT_KEY}")
    if status != 200 or body != value.encode():
        raise BenchError(
            f"{server.name}: GET after PUT answered {status} {body[:80]!r}"
        )
    status, body = httpRequest(server.port, "GET", f"/cache/{MISS_KEY}")
    if status != 404:
        raise BenchError(f"{server.name}: GET of a missing key answered {status}")


@dataclass
class Run:
    server: str
    workload: str
    rep: int
    requests_per_sec: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    wrk_output: str = ""

    @classmethod
    def of(cls, server: str, workload: str, rep: int, r: WrkResult, raw: str) -> Run:
        """
        A run from wrk's result, flagged with the answers it should not get.
        """
        problems = unexpected(workload, r)
        return cls(
            server, workload, rep, **asdict(r), warnings=problems, wrk_output=raw
        )


def unexpected(workload: str, result: WrkResult) -> list[str]:
    """
    Answers a workload should not get: non-2xx for a hit or a PUT, 2xx for a
    miss, socket errors anywhere.
    """
    problems = []
    if workload == "get-miss":
        if result.non_2xx != result.requests:
            ok = result.requests - result.non_2xx
            problems.append(f"{ok} of {result.requests} misses answered 2xx")
    elif result.non_2xx:
        problems.append(f"{result.non_2xx} of {result.requests} answers not 2xx")
    errors = {k: v for k, v in result.socket_errors.items() if v}
    if errors:
        problems.append(f"socket errors {errors}")
    return problems


def median_of(runs: Sequence[Run], server: str, workload: str) -> dict[str, float]:
    chosen = [r for r in runs if r.server == server and r.workload == workload]
    if not chosen:
        return {}
    rps = [r.requests_per_sec for r in chosen]
    med = statistics.median(rps)
    return {
        "requests_per_sec": med,
        "p50_ms": statistics.median(r.p50_ms for r in chosen),
        "p99_ms": statistics.median(r.p99_ms for r in chosen),
        "spread_pct": (max(rps) - min(rps)) / med * 100 if med else 0.0,
        "reps": len(chosen),
    }


# The first columns of a medians table: header, figure, format.
WRK_COLUMNS = (
    ("req/s", "requests_per_sec", "{:.0f}"),
    ("spread", "spread_pct", "{:.0f}%"),
    ("p50 ms", "p50_ms", "{:.2f}"),
    ("p99 ms", "p99_ms", "{:.2f}"),
)


def medians_table(
    medians: Mapping[str, Mapping[str, Mapping[str, float]]],
    titles: Mapping[str, str],
    second: str,
    columns: Sequence[tuple[str, str, str]],
    left: int = 1,
) -> str:
    """
    One row per workload (its title) and server or configuration (the
    C{second} column), with the C{columns} of its medians.
    """
    rows = [
        [titles[workload], name, *(f.format(cell[k]) for _, k, f in columns)]
        for workload, cells in medians.items()
        for name, cell in cells.items()
    ]
    headers = ["workload", second, *(h for h, _, _ in columns)]
    return format_table(headers, rows, left)
