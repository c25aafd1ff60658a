"""
The Redis front end's benchmark behind C{bench/resp}: a Disperse node's RESP
port under C{redis-benchmark} next to its references in the same run (a
bare Twisted RESP server, L{bench._refs.resp_ref}, and Debian's
C{redis-server} with persistence off), the node's own HTTP GET under wrk,
a 3-node cluster (R=3, quorum) through cluster-aware routing, and the
latency of each at half its saturated rate (L{bench._resp_load}, open
loop). Servers on one CPU, load generators on the other; medians, spreads,
ratios and goals. The method is described in bench/README.md.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import hiredis

from bench._bench_cluster_http import place_nodes
from bench._bench_common import (
    CONSISTENCY,
    MISS_KEY,
    REPLICAS,
    VALUE_SIZE,
    WRK_INSTALL_HINT,
    BenchError,
    BenchRun,
    Goal,
    Node,
    Pinning,
    Server,
    WrkPlan,
    add_node_options,
    bench_parser,
    check_and_preload,
    check_ranges,
    choose_pinning,
    code_version,
    format_table,
    goals_table,
    print_log_problems,
    ratio_goal,
    run_wrk,
    scan_logs,
    start_node,
    start_reference,
    subset,
    wait_converged,
    wrk_version,
)
from bench._launch import REPO_DIR
from bench._resp_load import command
from disperse.testing.cluster import (
    LOOPBACK,
    NodeProcess,
    ProcessSet,
    checkNodePlugin,
    cpuSeconds,
    freePorts,
    httpRequest,
)

SERVERS = ("disperse", "twisted-resp", "redis")
SERVER_TITLES = {
    "disperse": "disperse",
    "twisted-resp": "bare Twisted RESP",
    "redis": "redis-server",
    "cluster": "3-node cluster",
}
TESTS = ("set", "get")
PIPELINES = (1, 16)
CLUSTER_PIPELINE = 16
CLUSTER_NODES = ("c1", "c2", "c3")
CONNECTIONS = 50
KEYSPACE = 10_000  # redis-benchmark -r: keys key:000000000000 .. key:000000009999
CHECK_KEY = b"bench-resp-check"

# Goals (issue 15).
GOAL_P1_VS_TWISTED = 0.70
GOAL_P16_VS_TWISTED = 0.60
GOAL_RESP_VS_HTTP = 3.0
GOAL_CLUSTER_VS_SINGLE = 0.40
LATENCY_FRACTION = 0.5  # the latency runs offer half the saturated rate

# Below this share of one core (%), a saturated run's server was not the
# bottleneck, or shared its CPU.
SHARED_CORE_PCT = 85.0
RESP_READY_TIMEOUT = 30.0

REDIS_TOOLS_HINT = (
    "redis-benchmark or redis-server is missing. They are Debian packages: "
    "`apt-get install -y redis-server redis-tools` (as root), or run "
    "`make bench-resp`, which installs them."
)


# --- servers ---------------------------------------------------------------------


@dataclass
class Target:
    """
    Something redis-benchmark runs against: a server, or the cluster (its
    processes, the port the benchmark starts from).
    """

    name: str
    resp_port: int
    pids: list[int]
    http_port: int = 0


def wait_resp(
    proc: NodeProcess, port: int, timeout: float = RESP_READY_TIMEOUT
) -> None:
    """
    Poll C{PING} on C{port} until it answers C{PONG}.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        proc.check()
        try:
            reply = command(port, b"PING", timeout=1.0)
        except OSError as e:
            last = repr(e)
        else:
            if reply == b"PONG":
                return
            last = repr(reply)
        time.sleep(0.05)
    raise BenchError(
        f"{proc.name}: no PONG on RESP port {port} after {timeout:.0f} s ({last}); "
        f"log {proc.logPath}:\n{proc.logTail()}"
    )


def resp_args(port: int) -> list[str]:
    return ["--redis-port", f"tcp:{port}:interface={LOOPBACK}"]


def start_disperse(
    procs: ProcessSet,
    pinning: Pinning,
    log_dir: Path,
    names: Sequence[str],
    extra: Sequence[str],
) -> list[tuple[Node, int]]:
    """
    Nodes the documented way (C{--profile local}, R=3, quorum; a node alone
    caps R at 1) with a RESP port each, the first alone, the others joining
    through it; each node and its RESP port once both ports answer.
    """
    ports = freePorts(3 * len(names))
    started: list[tuple[Node, int]] = []
    for i, name in enumerate(names):
        gossip, http, redis = ports[3 * i : 3 * i + 3]
        seed = started[0][0] if started else None
        node = start_node(
            procs,
            pinning,
            log_dir / f"{name}.log",
            name,
            (gossip, http),
            seed,
            [*resp_args(redis), *extra],
        )
        started.append((node, redis))
        if i == 0:
            node.wait_ready()
    for node, redis in started:
        node.wait_ready()
        wait_resp(node.proc, redis)
    return started


def start_redis(
    procs: ProcessSet, pinning: Pinning, log_dir: Path, workdir: Path
) -> tuple[NodeProcess, int]:
    """
    Debian's redis-server on the server CPU, persistence off, in the
    foreground (so that the harness stops it).
    """
    (port,) = freePorts(1)
    argv = [
        shutil.which("redis-server") or "redis-server",
        *("--port", str(port), "--bind", LOOPBACK),
        *("--save", "", "--appendonly", "no", "--daemonize", "no"),
        *("--dir", str(workdir), "--logfile", ""),
    ]
    proc = procs.start("redis", pinning.server(argv), log_dir / "redis.log")
    wait_resp(proc, port)
    return proc, port


def check_target(target: Target, value: bytes) -> None:
    """
    SET answers OK, GET the value back, GET of a missing key nil; on a
    node, the same key reads back over HTTP.
    """
    port = target.resp_port
    got = command(port, b"SET", CHECK_KEY, value)
    if got != b"OK":
        raise BenchError(f"{target.name}: SET answered {got!r}")
    got = command(port, b"GET", CHECK_KEY)
    if got != value:
        raise BenchError(f"{target.name}: GET after SET answered {got!r}")
    got = command(port, b"GET", MISS_KEY.encode())
    if got is not None:
        raise BenchError(f"{target.name}: GET of a missing key answered {got!r}")
    if target.http_port:
        status, body = httpRequest(
            target.http_port, "GET", f"/cache/{CHECK_KEY.decode()}"
        )
        if status != 200 or body != value:
            raise BenchError(
                f"{target.name}: the key SET over RESP reads back over HTTP as "
                f"{status} {body[:80]!r}"
            )


def cluster_masters(port: int) -> list[str]:
    """
    The master lines of C{CLUSTER NODES} on C{port} (what redis-benchmark
    C{--cluster} reads at start-up).
    """
    reply = command(port, b"CLUSTER", b"NODES")
    if isinstance(reply, hiredis.ReplyError) or not isinstance(reply, bytes):
        raise BenchError(f"CLUSTER NODES on port {port} answered {reply!r}")
    lines = reply.decode(errors="replace").splitlines()
    return [line for line in lines if "master" in line.split()[2:3][0]]


# --- redis-benchmark ---------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """
    What every redis-benchmark run shares.
    """

    pinning: Pinning
    connections: int
    keyspace: int
    value_size: int


@dataclass
class Run:
    """
    One redis-benchmark run: a target, a pipeline depth, a test (SET or
    GET), a repetition; its figures and the CPU the target and the
    benchmark used.
    """

    server: str
    pipeline: int
    test: str
    rep: int
    requests_per_sec: float
    p50_ms: float
    p99_ms: float
    requests: int
    seconds: float
    server_cpu_pct: float
    cpu_us_per_request: float
    client_cpu_pct: float
    warnings: list[str] = field(default_factory=list)
    output: str = ""


def benchmark_argv(
    load: Load, port: int, test: str, pipeline: int, requests: int, cluster: bool
) -> list[str]:
    argv = [
        *("redis-benchmark", "-h", LOOPBACK, "-p", str(port)),
        *("-c", str(load.connections), "-n", str(requests)),
        *("-r", str(load.keyspace), "-d", str(load.value_size)),
        *("-P", str(pipeline), "-t", test, "--csv", "--precision", "3"),
    ]
    if cluster:
        argv.append("--cluster")
    return argv


def parse_csv(output: str, test: str) -> tuple[float, float, float]:
    """
    req/s, p50 and p99 (ms) of C{test} from C{redis-benchmark --csv}.
    """
    for row in csv.reader(io.StringIO(output)):
        if row and row[0] == test.upper() and len(row) >= 7:
            return float(row[1]), float(row[4]), float(row[6])
    raise BenchError(f"cannot find {test.upper()} in redis-benchmark output:\n{output}")


def run_benchmark(
    load: Load,
    target: Target,
    test: str,
    pipeline: int,
    requests: int,
    rep: int,
    cluster: bool = False,
) -> Run:
    argv = load.pinning.client(
        benchmark_argv(load, target.resp_port, test, pipeline, requests, cluster)
    )
    before = sum(cpuSeconds(pid) for pid in target.pids)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=600, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"redis-benchmark did not finish in 600 s: {argv}") from e
    wall = time.monotonic() - started
    after = sum(cpuSeconds(pid) for pid in target.pids)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise BenchError(
            f"redis-benchmark failed on {target.name} (exit {done.returncode}):\n"
            f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    rps, p50, p99 = parse_csv(done.stdout, test)
    client = (children_after.ru_utime - children.ru_utime) + (
        children_after.ru_stime - children.ru_stime
    )
    server_cpu = after - before
    run = Run(
        target.name,
        pipeline,
        test,
        rep,
        rps,
        p50,
        p99,
        requests,
        wall,
        server_cpu / wall * 100,
        server_cpu / requests * 1e6,
        client / wall * 100,
        output=done.stdout + done.stderr,
    )
    if "Error" in done.stderr or "error" in done.stdout.lower():
        run.warnings.append("errors in redis-benchmark output")
    return run


def sized(rate: float, seconds: int) -> int:
    """
    A request count that lasts about C{seconds} at C{rate}, in thousands.
    """
    return max(1000, int(rate * seconds / 1000) * 1000)


# --- open-loop latency ------------------------------------------------------------


@dataclass
class Latency:
    """
    One open-loop run at a fixed offered rate (L{bench._resp_load}).
    """

    server: str
    pipeline: int
    test: str
    rep: int
    result: dict[str, Any]
    server_cpu_pct: float


def run_latency(
    load: Load,
    target: Target,
    test: str,
    pipeline: int,
    rate: float,
    seconds: int,
    rep: int,
    cluster: bool = False,
) -> Latency:
    argv = [
        sys.executable,
        *("-m", "bench._resp_load", "--port", str(target.resp_port)),
        *("--rate", f"{rate:.0f}", "--test", test, "--pipeline", str(pipeline)),
        *("--connections", str(load.connections), "--duration", str(seconds)),
        *("--keyspace", str(load.keyspace), "--value-size", str(load.value_size)),
        *(["--cluster"] if cluster else []),
    ]
    before = sum(cpuSeconds(pid) for pid in target.pids)
    started = time.monotonic()
    try:
        done = subprocess.run(
            load.pinning.client(argv),
            capture_output=True,
            text=True,
            timeout=seconds + 120,
            check=False,
            cwd=REPO_DIR,
        )
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"the latency run did not finish: {argv}") from e
    wall = time.monotonic() - started
    server_cpu = sum(cpuSeconds(pid) for pid in target.pids) - before
    if done.returncode != 0:
        raise BenchError(
            f"bench._resp_load failed on {target.name} (exit {done.returncode}):\n"
            f"{done.stderr[-3000:]}"
        )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return Latency(target.name, pipeline, test, rep, result, server_cpu / wall * 100)


# --- summaries ----------------------------------------------------------------------

Key = tuple[str, int, str]  # server, pipeline, test


def medians(runs: Sequence[Run]) -> dict[Key, dict[str, float]]:
    out: dict[Key, dict[str, float]] = {}
    keys = dict.fromkeys((r.server, r.pipeline, r.test) for r in runs)
    for key in keys:
        mine = [r for r in runs if (r.server, r.pipeline, r.test) == key]
        rps = [r.requests_per_sec for r in mine]
        out[key] = {
            "requests_per_sec": statistics.median(rps),
            "min": min(rps),
            "max": max(rps),
            "p50_ms": statistics.median(r.p50_ms for r in mine),
            "p99_ms": statistics.median(r.p99_ms for r in mine),
            "server_cpu_pct": statistics.median(r.server_cpu_pct for r in mine),
            "cpu_us_per_request": statistics.median(r.cpu_us_per_request for r in mine),
            "client_cpu_pct": statistics.median(r.client_cpu_pct for r in mine),
            "reps": len(mine),
        }
    return out


def paired(
    runs: Sequence[Run], mine: Key, theirs: Key, by_cpu: bool = False
) -> list[float]:
    """
    C{mine} req/s / C{theirs} req/s in each repetition that has both,
    in repetition order: runs seconds apart, so that the machine's drift
    moves both sides of each ratio. C{by_cpu}: the inverse ratio of their
    CPU per request instead, the req/s ratio each would reach with a core
    to itself (on a shared machine a server gets whatever share of its
    core the other processes leave it, while its CPU per request moves
    much less).
    """
    byRep: dict[int, dict[Key, float]] = {}
    for r in runs:
        figure = 1.0 / r.cpu_us_per_request if by_cpu else r.requests_per_sec
        if r.cpu_us_per_request or not by_cpu:
            byRep.setdefault(r.rep, {})[(r.server, r.pipeline, r.test)] = figure
    return [
        cells[mine] / cells[theirs]
        for _, cells in sorted(byRep.items())
        if cells.get(theirs) and mine in cells
    ]


def kilo(n: float) -> str:
    return f"{n / 1000:.1f}k"


def saturated_table(cells: Mapping[Key, Mapping[str, float]]) -> str:
    rows = []
    for (server, pipeline, test), c in cells.items():
        rows.append(
            [
                f"-P {pipeline}",
                test.upper(),
                SERVER_TITLES.get(server, server),
                f"{c['requests_per_sec']:.0f}",
                f"{kilo(c['min'])}-{kilo(c['max'])}",
                f"{c['p50_ms']:.2f}",
                f"{c['p99_ms']:.2f}",
                f"{c['server_cpu_pct']:.0f}%",
                f"{c['cpu_us_per_request']:.1f}",
                f"{c['client_cpu_pct']:.0f}%",
            ]
        )
    headers = [
        "pipeline",
        "test",
        "server",
        "req/s",
        "min-max",
        "p50 ms",
        "p99 ms",
        "server CPU",
        "CPU us/req",
        "bench CPU",
    ]
    return format_table(headers, rows, left=3)


def ratio_cell(ratios: Sequence[float]) -> str:
    if not ratios:
        return "-"
    each = " ".join(f"{r:.2f}" for r in ratios)
    return f"{statistics.median(ratios):.2f} ({each})"


def latency_table(latencies: Sequence[Latency]) -> str:
    rows = []
    keys = dict.fromkeys((x.server, x.pipeline, x.test) for x in latencies)
    for key in keys:
        mine = [x for x in latencies if (x.server, x.pipeline, x.test) == key]

        def med(name: str, mine: list[Latency] = mine) -> float:
            return statistics.median(float(x.result[name]) for x in mine)

        kept = all(x.result["kept_up"] for x in mine)
        errors = sum(int(x.result["errors"]) for x in mine)
        server, pipeline, test = key
        rows.append(
            [
                SERVER_TITLES.get(server, server),
                f"-P {pipeline}",
                test.upper(),
                f"{med('offered_per_sec'):.0f}",
                f"{med('achieved_per_sec'):.0f}",
                f"{med('p50_ms'):.2f}",
                f"{med('p99_ms'):.2f}",
                f"{med('p999_ms'):.2f}",
                f"{statistics.median(x.server_cpu_pct for x in mine):.0f}%",
                f"{med('lateness_p99_ms'):.2f}",
                str(errors),
                "yes" if kept else "NO",
            ]
        )
    headers = [
        "server",
        "pipeline",
        "test",
        "offered/s",
        "answered/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "server CPU",
        "late p99 ms",
        "errors",
        "kept up",
    ]
    return format_table(headers, rows, left=3)


@dataclass
class HttpRun:
    """
    One wrk run of the node's HTTP GET.
    """

    rep: int
    requests_per_sec: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    cpu_us_per_request: float
    output: str = ""


def evaluate(
    runs: Sequence[Run], http: Sequence[HttpRun]
) -> tuple[list[Goal], list[list[str]]]:
    """
    The goals and the rows of the ratios table.
    """
    goals: list[Goal] = []
    rows: list[list[str]] = []
    for pipeline, floor in ((1, GOAL_P1_VS_TWISTED), (16, GOAL_P16_VS_TWISTED)):
        for test in TESTS:
            mine = ("disperse", pipeline, test)
            vs_twisted = paired(runs, mine, ("twisted-resp", pipeline, test))
            vs_redis = paired(runs, mine, ("redis", pipeline, test))
            for ref, vs in (("twisted-resp", vs_twisted), ("redis", vs_redis)):
                if vs:
                    theirs = (ref, pipeline, test)
                    rows.append(
                        [
                            f"disperse -P {pipeline} {test.upper()}"
                            f" ÷ {SERVER_TITLES[ref]}",
                            ratio_cell(vs),
                            ratio_cell(paired(runs, mine, theirs, True)),
                        ]
                    )
            if vs_twisted:
                goals.append(
                    ratio_goal(
                        f"-P {pipeline} {test.upper()} vs bare Twisted RESP",
                        statistics.median(vs_twisted),
                        floor,
                    )
                )
    for test in TESTS:
        ratios = paired(
            runs, ("cluster", CLUSTER_PIPELINE, test), ("disperse", 16, test)
        )
        if ratios:
            by_cpu = paired(
                runs,
                ("cluster", CLUSTER_PIPELINE, test),
                ("disperse", 16, test),
                True,
            )
            rows.append(
                [
                    f"cluster -P 16 {test.upper()} ÷ single node -P 16",
                    ratio_cell(ratios),
                    ratio_cell(by_cpu),
                ]
            )
            goals.append(
                ratio_goal(
                    f"cluster -P 16 {test.upper()} vs single node",
                    statistics.median(ratios),
                    GOAL_CLUSTER_VS_SINGLE,
                )
            )
    gets = {
        r.rep: r
        for r in runs
        if r.server == "disperse" and r.pipeline == 1 and r.test == "get"
    }
    by_http = [
        gets[h.rep].requests_per_sec / h.requests_per_sec
        for h in http
        if h.rep in gets and h.requests_per_sec
    ]
    http_cpu = [
        h.cpu_us_per_request / gets[h.rep].cpu_us_per_request
        for h in http
        if h.rep in gets and gets[h.rep].cpu_us_per_request
    ]
    if by_http:
        rows.append(
            [
                "disperse RESP GET -P 1 ÷ its HTTP GET",
                ratio_cell(by_http),
                ratio_cell(http_cpu),
            ]
        )
        goals.append(
            ratio_goal(
                "RESP GET -P 1 vs the node's HTTP GET",
                statistics.median(by_http),
                GOAL_RESP_VS_HTTP,
            )
        )
    return goals, rows


# --- the run ---------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = bench_parser(
        "bench/resp",
        "Req/s and latency of a Disperse node's Redis front end under "
        "redis-benchmark, next to a bare Twisted RESP server and redis-server "
        "in the same run, the node's own HTTP GET, and a 3-node cluster "
        "through cluster-aware routing.",
    )
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"comma-separated subset of {','.join(SERVERS)}",
    )
    parser.add_argument(
        "--duration",
        type=int,
        default=5,
        help="seconds each redis-benchmark run lasts, about (-n is sized from "
        "a warm-up run; default 5)",
    )
    parser.add_argument(
        "--reps", type=int, default=3, help="repetitions, servers interleaved (3)"
    )
    parser.add_argument(
        "--latency-reps",
        type=int,
        default=1,
        help="repetitions of the open-loop runs at half the saturated rate "
        "(default 1; 0: none)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=CONNECTIONS,
        help=f"redis-benchmark -c, wrk -c (default {CONNECTIONS})",
    )
    parser.add_argument(
        "--keyspace",
        type=int,
        default=KEYSPACE,
        help=f"redis-benchmark -r: random keys over this many (default {KEYSPACE})",
    )
    parser.add_argument(
        "--value-size",
        type=int,
        default=VALUE_SIZE,
        help=f"redis-benchmark -d: SET value bytes (default {VALUE_SIZE})",
    )
    parser.add_argument(
        "--skip-cluster", action="store_true", help="no 3-node cluster runs"
    )
    parser.add_argument(
        "--skip-http", action="store_true", help="no wrk run of the node's HTTP GET"
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 s runs, 2 reps: a smoke test"
    )
    add_node_options(parser, ("debug", "info", "warn", "error"))
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.reps = 2, 2
    args.servers = subset(parser, "--servers", args.servers, SERVERS)
    check_ranges(
        parser,
        args,
        {
            "duration": (1, 120),
            "reps": (1, 20),
            "latency_reps": (0, 20),
            "connections": (1, 1000),
            "keyspace": (1, 10_000_000),
            "value_size": (1, 1_000_000),
        },
    )
    return args


def placement(pinning: Pinning, loaded: Sequence[Node], every: Sequence[Node]) -> None:
    """
    The nodes under load on the server CPU, every other node (idle, but
    still gossiping) on the load generator's.
    """
    place_nodes(pinning, loaded, [n for n in every if n not in loaded])


def describe_run(run: Run, reps: int) -> str:
    flags = list(run.warnings)
    if run.server_cpu_pct < SHARED_CORE_PCT:
        flags.append(
            f"server at {run.server_cpu_pct:.0f}% of a core: the load generator "
            "was the limit, or the core was shared"
        )
    note = f"  !! {'; '.join(flags)}" if flags else ""
    return (
        f"rep {run.rep}/{reps} -P {run.pipeline:<2} {run.test.upper()} "
        f"{SERVER_TITLES.get(run.server, run.server):17} "
        f"{run.requests_per_sec:9.0f} req/s  p50 {run.p50_ms:6.3f} ms  "
        f"p99 {run.p99_ms:6.3f} ms  server CPU {run.server_cpu_pct:3.0f}% "
        f"{run.cpu_us_per_request:5.1f} us/req  bench CPU "
        f"{run.client_cpu_pct:3.0f}%{note}"
    )


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    missing = [
        tool
        for tool, needed in (
            ("redis-benchmark", True),
            ("redis-server", "redis" in args.servers),
        )
        if needed and shutil.which(tool) is None
    ]
    if missing:
        print(REDIS_TOOLS_HINT, file=sys.stderr)
        return 2
    use_http = "disperse" in args.servers and not args.skip_http
    if use_http and shutil.which("wrk") is None:
        print(WRK_INSTALL_HINT, file=sys.stderr)
        return 2
    use_cluster = "disperse" in args.servers and not args.skip_cluster
    pinning = choose_pinning(not args.no_pin)
    load = Load(pinning, args.connections, args.keyspace, args.value_size)
    value = b"v" * args.value_size
    version = subprocess.run(
        ["redis-benchmark", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    settings = {
        "duration_s": args.duration,
        "reps": args.reps,
        "latency_reps": args.latency_reps,
        "latency_fraction": LATENCY_FRACTION,
        "connections": args.connections,
        "keyspace": args.keyspace,
        "value_size": args.value_size,
        "servers": args.servers,
        "pipelines": list(PIPELINES),
        "cluster": use_cluster,
        "cluster_pipeline": CLUSTER_PIPELINE,
        "replicas": REPLICAS,
        "consistency": CONSISTENCY,
        "log_level": args.log_level,
        "node_args": args.node_arg,
        "pinning": pinning.describe(),
        "redis_benchmark": version,
        "wrk": wrk_version() if use_http else None,
        "code": code_version(),
    }
    bench = BenchRun("resp", args.output, settings)
    results, log_dir = bench.results, bench.log_dir
    print(
        f"bench/resp: {', '.join(args.servers)}"
        + (", a 3-node cluster" if use_cluster else "")
        + f"; redis-benchmark -c {args.connections} -r {args.keyspace} "
        f"-d {args.value_size}, SET then GET at -P 1 and -P 16;"
        f" {args.reps} reps of about {args.duration} s per run."
    )
    print(bench.describe_start())
    runs: list[Run] = []
    http: list[HttpRun] = []
    latencies: list[Latency] = []
    nodes: list[Node] = []
    single: Node | None = None
    cluster: list[Node] = []
    with bench:
        log_dir.mkdir(parents=True, exist_ok=True)
        with ProcessSet(cwd=REPO_DIR) as procs:
            extra = ["--log-level", args.log_level, *args.node_arg]
            targets: dict[str, Target] = {}
            if "disperse" in args.servers:
                checkNodePlugin()
                [(single, port)] = start_disperse(
                    procs, pinning, log_dir, ["single"], extra
                )
                targets["disperse"] = Target(
                    "disperse", port, [single.pid], single.http_port
                )
                nodes.append(single)
            if "twisted-resp" in args.servers:
                proc, port = start_reference(
                    procs, pinning, log_dir, "twisted-resp", "resp_ref"
                )
                wait_resp(proc, port)
                targets["twisted-resp"] = Target("twisted-resp", port, [proc.pid])
            if "redis" in args.servers:
                workdir = log_dir / "redis-dir"
                workdir.mkdir()
                proc, port = start_redis(procs, pinning, log_dir, workdir)
                targets["redis"] = Target("redis", port, [proc.pid])
            cluster_target: Target | None = None
            if use_cluster:
                started = start_disperse(procs, pinning, log_dir, CLUSTER_NODES, extra)
                cluster = [n for n, _ in started]
                nodes += cluster
                took = wait_converged(cluster, procs.check)
                print(f"Cluster converged {took:.1f} s after the last node answered.")
                c1, c1_port = started[0]
                try:
                    masters = cluster_masters(c1_port)
                except (BenchError, OSError) as e:
                    results["cluster_skipped"] = str(e)
                    print(f"Cluster runs skipped: {e}", file=sys.stderr)
                else:
                    print(f"CLUSTER NODES on c1: {len(masters)} masters.")
                    cluster_target = Target(
                        "cluster", c1_port, [n.pid for n in cluster], c1.http_port
                    )
            for target in [*targets.values(), *filter(None, [cluster_target])]:
                check_target(target, value)
            if single is not None and use_http:
                check_and_preload(
                    Server("disperse", single.http_port, single.pid, 0.0),
                    value.decode(),
                )
            wrk_plan = WrkPlan(pinning, args.connections, Path(os.devnull))
            results["targets"] = {n: asdict(t) for n, t in targets.items()}

            def place(name: str) -> None:
                loaded = (
                    cluster
                    if name == "cluster"
                    else [single]
                    if name == "disperse" and single is not None
                    else []
                )
                placement(pinning, loaded, nodes)

            # Warm-up runs size each later run: -n for about --duration s.
            print("Warming up and sizing the runs ...", flush=True)
            counts: dict[Key, int] = {}
            for name, target in targets.items():
                place(name)
                for pipeline in PIPELINES:
                    for test in TESTS:
                        run = run_benchmark(
                            load, target, test, pipeline, 10_000 * pipeline, 0
                        )
                        counts[(name, pipeline, test)] = sized(
                            run.requests_per_sec, args.duration
                        )
            if cluster_target is not None:
                place("cluster")
                for test in TESTS:
                    run = run_benchmark(
                        load, cluster_target, test, CLUSTER_PIPELINE, 100_000, 0, True
                    )
                    counts[("cluster", CLUSTER_PIPELINE, test)] = sized(
                        run.requests_per_sec, args.duration
                    )
            if single is not None and use_http:
                place("disperse")
                run_wrk(wrk_plan, single.http_port, "get-hit", 1)
            results["requests_per_run"] = {
                f"{s} -P {p} {t}": n for (s, p, t), n in counts.items()
            }
            names = list(targets)
            for rep in range(1, args.reps + 1):
                k = (rep - 1) % len(names)
                order = names[k:] + names[:k]
                for pipeline in PIPELINES:
                    for name in order:
                        place(name)
                        for test in TESTS:
                            run = run_benchmark(
                                load,
                                targets[name],
                                test,
                                pipeline,
                                counts[(name, pipeline, test)],
                                rep,
                            )
                            runs.append(run)
                            print(describe_run(run, args.reps), flush=True)
                            procs.check()
                if single is not None and use_http:
                    place("disperse")
                    before = cpuSeconds(single.pid)
                    result, raw = run_wrk(
                        wrk_plan, single.http_port, "get-hit", args.duration
                    )
                    cpu = cpuSeconds(single.pid) - before
                    http.append(
                        HttpRun(
                            rep,
                            result.requests_per_sec,
                            result.p50_ms,
                            result.p99_ms,
                            result.requests,
                            result.non_2xx,
                            cpu / max(result.requests, 1) * 1e6,
                            raw,
                        )
                    )
                    print(
                        f"rep {rep}/{args.reps} HTTP GET (wrk)   disperse          "
                        f"{result.requests_per_sec:9.0f} req/s  p50 "
                        f"{result.p50_ms:6.3f} ms  p99 {result.p99_ms:6.3f} ms"
                        + (f"  !! non-2xx {result.non_2xx}" if result.non_2xx else ""),
                        flush=True,
                    )
                if cluster_target is not None:
                    place("cluster")
                    for test in TESTS:
                        key = ("cluster", CLUSTER_PIPELINE, test)
                        run = run_benchmark(
                            load,
                            cluster_target,
                            test,
                            CLUSTER_PIPELINE,
                            counts[key],
                            rep,
                            True,
                        )
                        runs.append(run)
                        print(describe_run(run, args.reps), flush=True)
                        procs.check()
                bench.load(f"after rep {rep}")
            saturated = medians(runs)
            every = {
                **targets,
                **({"cluster": cluster_target} if cluster_target else {}),
            }
            for rep in range(1, args.latency_reps + 1):
                for (name, pipeline, test), cell in saturated.items():
                    place(name)
                    rate = LATENCY_FRACTION * cell["requests_per_sec"]
                    x = run_latency(
                        load,
                        every[name],
                        test,
                        pipeline,
                        rate,
                        args.duration,
                        rep,
                        cluster=name == "cluster",
                    )
                    latencies.append(x)
                    r = x.result
                    flag = "" if r["kept_up"] else "  !! the generator fell behind"
                    if r["errors"]:
                        flag += f"  !! {r['errors']} error replies"
                    print(
                        f"half-rate {rep}/{args.latency_reps} -P {pipeline:<2} "
                        f"{test.upper()} {SERVER_TITLES.get(name, name):17} "
                        f"{r['offered_per_sec']:8.0f} offered "
                        f"{r['achieved_per_sec']:8.0f}/s  p50 {r['p50_ms']:6.3f} ms"
                        f"  p99 {r['p99_ms']:6.3f} ms  p99.9 {r['p999_ms']:6.3f} ms"
                        f"  server CPU {x.server_cpu_pct:3.0f}%{flag}",
                        flush=True,
                    )
                    procs.check()
            stats = {}
            for node in nodes:
                status, body = httpRequest(node.http_port, "GET", "/stats")
                if status == 200:
                    stats[node.name] = json.loads(body)
            results["stats_after"] = stats
    cells = medians(runs)
    goals, ratio_rows = evaluate(runs, http)
    results["runs"] = [asdict(r) for r in runs]
    results["medians"] = {f"{s} -P {p} {t}": c for (s, p, t), c in cells.items()}
    results["http_get"] = [asdict(h) for h in http]
    results["latency"] = [asdict(x) for x in latencies]
    results["goals"] = [asdict(g) for g in goals]
    log_problems = scan_logs([log_dir / f"{n.name}.log" for n in nodes], log_dir)
    results["log_problems"] = log_problems
    bench.save()
    print()
    bench.partial()
    if runs:
        print(
            "Saturated (redis-benchmark, closed loop: p50/p99 are mostly queueing;"
            " medians over repetitions, min-max of req/s; server CPU: % of one"
            " core, summed over the cluster's nodes; bench CPU: redis-benchmark's):"
        )
        print()
        print(saturated_table(cells))
    if http:
        rps = [h.requests_per_sec for h in http]
        print(
            f"\nThe node's HTTP GET (wrk -c{args.connections}, bench/http's get-hit):"
            f" median {statistics.median(rps):.0f} req/s, "
            f"{kilo(min(rps))}-{kilo(max(rps))}, p99 "
            f"{statistics.median(h.p99_ms for h in http):.2f} ms, "
            f"{statistics.median(h.cpu_us_per_request for h in http):.1f} CPU us/req."
        )
    if ratio_rows:
        print(
            "\nRatios (the median of each repetition's ratio, then each"
            " repetition's; 'by CPU/req': the inverse ratio of CPU per request,"
            " what the req/s ratio would be with a core each; the goals use"
            " req/s):\n"
        )
        print(format_table(["", "req/s", "by CPU/req"], ratio_rows))
    if latencies:
        print(
            f"\nLatency at {LATENCY_FRACTION:.0%} of each one's saturated req/s"
            " (open loop, Poisson arrivals, latency from the scheduled time;"
            " 'late p99': how late the generator itself wrote, at p99;"
            " 'kept up' no: the generator fell behind and the figures are not"
            " the server's):\n"
        )
        print(latency_table(latencies))
    if goals:
        print("\nGoals:\n")
        print(goals_table(goals))
    if nodes:
        print_log_problems(log_dir, log_problems)
    print(bench.describe_loads())
    print(f"Raw results: {bench.output}")
    return bench.exit_status(args.strict, goals)
