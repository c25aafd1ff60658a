"""
The replicated-cluster HTTP benchmark behind C{bench/cluster-http}: one
Disperse node next to a 3-node cluster (R=3, quorum writes and reads), both
on the same server CPU, under wrk (GET hit, JSON PUT): saturated runs,
interleaved and paired per repetition, then paced runs at a fixed offered
load. The method and the goals are described in bench/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import resource
import shutil
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench._bench_common import (
    CONSISTENCY,
    MISS_KEY,
    REPLICAS,
    VALUE_SIZE,
    WRK_COLUMNS,
    WRK_INSTALL_HINT,
    BenchError,
    BenchRun,
    Goal,
    Node,
    Pinning,
    Run,
    Server,
    WrkPlan,
    add_node_options,
    add_wrk_options,
    bench_parser,
    boot_nodes,
    ceiling_goal,
    check_and_preload,
    check_ranges,
    choose_pinning,
    code_version,
    combine,
    finish_wrks,
    format_table,
    goals_table,
    keyed_value,
    loadavg,
    median_of,
    medians_table,
    nodes_cpu,
    print_log_problems,
    put_body,
    ratio_goal,
    run_wrk,
    scan_logs,
    start_reference,
    start_wrks,
    subset,
    wait_converged,
    write_cycle_script,
    write_put_script,
    wrk_version,
)
from bench._launch import REPO_DIR
from disperse.testing.cluster import (
    ClusterError,
    ProcessSet,
    checkNodePlugin,
    getJSON,
    pinThreads,
)

CONFIGS = ("single", "cluster")
WORKLOADS = ("get-hit", "put")
WORKLOAD_TITLES = {"get-hit": "GET hit", "put": "PUT"}

CLUSTER_NODES = ("c1", "c2", "c3")
SINGLE_NODE = "single"
CONNECTIONS = 48  # in total: -c48 on the single node, -c16 on each cluster node
HIT_KEYS = 1000  # GET hit cycles over hit-1 .. hit-<HIT_KEYS>
SAMPLE_KEYS = 50  # preloaded keys read back from every node before measuring

# Goals (replication: cost of a quorum cluster next to one node, same CPU).
GOAL_PUT_VS_SINGLE = 0.40
GOAL_GET_VS_SINGLE = 0.50
GOAL_CLUSTER_P99_MS = 25.0
# The paced runs offer this share of the cluster's saturated throughput, to
# both configurations: latency at a load the cluster carries, rather than
# the queueing of 48 connections on a saturated core (Little's law puts
# the mean there near 48 / throughput, whatever the code does).
PACED_FRACTION = 0.5

# Below this share of the server CPU (%), a run's loaded nodes were not the
# only thing running on it; its req/s are not comparable.
SHARED_CORE_PCT = 85.0
REPLICATED_TIMEOUT = 10.0

REPLICATION_COLUMNS = (
    "writes",
    "reads",
    "remoteFailures",
    "writesUnderReplicated",
    "readsUnderReplicated",
    "readRepairs",
    "applied",
    "hintsQueued",
    "hintsDelivered",
    "hintsDropped",
    "hintsPending",
)
GOSSIP_COLUMNS = (
    "alive",
    "suspect",
    "dead",
    "probesFailed",
    "suspicions",
    "refutations",
    "healthScore",
)


# --- nodes ------------------------------------------------------------------------


def calibrate(
    procs: ProcessSet, pinning: Pinning, log_dir: Path, seconds: int, connections: int
) -> dict[str, float]:
    """
    The machine's speed in this run: GET req/s of bench/http's bare
    twisted.web reference on the server CPU, at the same concurrency. The
    p99 goal is absolute, and a shared machine's speed varies from day to
    day; the ratios are not affected.
    """
    proc, port = start_reference(procs, pinning, log_dir, "twisted.web", "web_ref")
    try:
        took = proc.waitHealthy(port, f"/cache/{MISS_KEY}", (404,))
        check_and_preload(Server("twisted.web", port, proc.pid, took), "x" * VALUE_SIZE)
        # GET hit only: no PUT script.
        plan = WrkPlan(pinning, connections, Path(os.devnull))
        result, _ = run_wrk(plan, port, "get-hit", seconds)
    finally:
        # Not one of the processes the run checks on.
        procs.forget(proc)
    return {"requests_per_sec": result.requests_per_sec, "p99_ms": result.p99_ms}


# --- preload and checks ------------------------------------------------------------


def preload(nodes: Sequence[Node], keys: int, base: str, replicas: int) -> float:
    """
    PUT C{hit-1} .. C{hit-<keys>} at the nodes' default consistency
    (quorum), coordinators taken in turn; every answer must be 200 with
    C{replicas} replicas and at least a quorum of acks. Returns seconds.
    """
    clients = [n.client() for n in nodes]
    quorum = replicas // 2 + 1
    started = time.monotonic()
    try:
        for i in range(1, keys + 1):
            client = clients[i % len(clients)]
            status, headers, body = client.request(
                "PUT",
                f"/cache/hit-{i}",
                body=put_body(keyed_value(i, base)),
                headers={"Content-Type": "application/json"},
            )
            acks = int(headers.get("x-disperse-acks", "0"))
            got = int(headers.get("x-disperse-replicas", "0"))
            if status != 200 or got != replicas or acks < quorum:
                raise BenchError(
                    f"preload PUT hit-{i} on port {client.port}: {status} "
                    f"{body[:200]!r}, replicas {got} (want {replicas}), "
                    f"acks {acks} (want >= {quorum})"
                )
    except (OSError, http.client.HTTPException) as e:
        raise BenchError(f"preload failed: {e!r}") from e
    finally:
        for client in clients:
            client.close()
    return time.monotonic() - started


def check_readable(
    nodes: Sequence[Node], keys: int, base: str, replicas: int, rng: random.Random
) -> dict[str, Any]:
    """
    Read a sample of the preloaded keys back from every node, at quorum
    (200, right value, a quorum answered) and, for the cluster, from each
    node's own store (C{X-Is-Sync: true}), so that every replica holds every
    key (the third replica of a quorum write gets it just after the answer,
    hence the bounded retry).
    """
    sample = sorted(rng.sample(range(1, keys + 1), min(SAMPLE_KEYS, keys)))
    quorum = replicas // 2 + 1
    deadline = time.monotonic() + REPLICATED_TIMEOUT
    local_checks = 0
    for node in nodes:
        client = node.client()
        try:
            for i in sample:
                want = keyed_value(i, base).encode()
                status, headers, body = client.request("GET", f"/cache/hit-{i}")
                answered = int(headers.get("x-disperse-answered", "0"))
                if status != 200 or body != want or answered < quorum:
                    raise BenchError(
                        f"{node.name}: GET hit-{i} at quorum answered {status} "
                        f"{body[:80]!r}, {answered} replicas answered "
                        f"(want {want!r}, >= {quorum})"
                    )
                if len(nodes) == 1:
                    continue
                while True:
                    status, _, body = client.request(
                        "GET", f"/cache/hit-{i}", headers={"X-Is-Sync": "true"}
                    )
                    if status == 200 and body == want:
                        local_checks += 1
                        break
                    if time.monotonic() > deadline:
                        raise BenchError(
                            f"{node.name} does not hold hit-{i} itself after "
                            f"{REPLICATED_TIMEOUT:.0f} s ({status} {body[:80]!r})"
                        )
                    time.sleep(0.05)
        except (OSError, http.client.HTTPException) as e:
            raise BenchError(f"{node.name}: reading the sample failed: {e!r}") from e
        finally:
            client.close()
    return {"sample": len(sample), "nodes": len(nodes), "local_checks": local_checks}


def write_get_script(directory: Path, keys: int) -> Path:
    """
    The wrk script for GET hit: keys cycling over C{hit-1..hit-<keys>}.
    """
    request = 'wrk.format("GET", "/cache/hit-" .. i)'
    path = directory / "get-hit.lua"
    return write_cycle_script(path, "bench/cluster-http", 1, keys, request)


def write_paced_script(script: Path, rate: float, connections: int) -> Path:
    """
    C{script} with a think time before each request: exponential, with the
    mean that makes C{connections} connections offer C{rate} req/s in total
    (a little less in practice: each also waits for its answers).
    """
    paced = script.with_name(f"paced-{script.name}")
    mean_ms = connections / rate * 1000.0
    paced.write_text(
        script.read_text()
        + f"""
-- paced by bench/cluster-http: {rate:.0f} req/s over {connections} connections
math.randomseed(os.time() + math.floor(os.clock() * 1000000))
local mean_delay_ms = {mean_ms:.3f}
delay = function()
  return math.floor(-mean_delay_ms * math.log(1 - math.random()))
end
"""
    )
    return paced


# --- wrk, several at once ----------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    pinning: Pinning
    connections: int  # in total, split evenly over the targets
    scripts: Mapping[str, Path]
    tmpdir: Path
    single: Node
    cluster: Sequence[Node]


@dataclass
class Measured:
    """
    One configuration x workload x repetition: the combined figures (in
    C{run}, bench/http's record) and what each wrk and each node did.
    """

    run: Run
    per_node: dict[str, dict[str, Any]]
    server_cpu_pct: dict[str, float]  # every node, loaded or idle
    cpu_us_per_request: float  # CPU of the loaded nodes / requests served
    wrk_cpu_pct: float
    loadavg: str
    notes: list[str] = field(default_factory=list)

    @property
    def loaded_cpu_pct(self) -> float:
        loaded = [SINGLE_NODE] if self.run.server == "single" else CLUSTER_NODES
        return sum(self.server_cpu_pct.get(name, 0.0) for name in loaded)

    @property
    def idle_cpu_pct(self) -> float:
        """
        What the other configuration's nodes used meanwhile, unloaded.
        """
        return sum(self.server_cpu_pct.values()) - self.loaded_cpu_pct


def place_nodes(pinning: Pinning, loaded: Sequence[Node], idle: Sequence[Node]) -> None:
    """
    The loaded configuration's nodes on the server CPU, the idle one's on
    the load generator's: an idle cluster still gossips and runs
    anti-entropy, and must not take CPU from the single node under test.
    """
    if pinning.server_cpu is None or pinning.client_cpu is None:
        return
    for node in loaded:
        pinThreads(node.pid, pinning.server_cpu)
    for node in idle:
        pinThreads(node.pid, pinning.client_cpu)


def measure(
    plan: Plan, config: str, workload: str, rep: int, seconds: int, paced: bool = False
) -> Measured:
    """
    One wrk per node of C{config}, all at once, each with its share of the
    connections, and the CPU time of every node and of the wrks meanwhile.
    """
    every_node = [plan.single, *plan.cluster]
    targets = [plan.single] if config == "single" else list(plan.cluster)
    place_nodes(plan.pinning, targets, [n for n in every_node if n not in targets])
    per_target = plan.connections // len(targets)
    before_cpu = nodes_cpu(every_node)
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    jobs = [(node, plan.scripts[workload]) for node in targets]
    with ProcessSet(cwd=REPO_DIR) as wrks:
        outputs = start_wrks(wrks, plan.pinning, jobs, per_target, seconds, plan.tmpdir)
        results = finish_wrks(outputs, seconds + 30)
    wall = time.monotonic() - started
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    after_cpu = nodes_cpu(every_node)
    wrk_cpu = (after_children.ru_utime - before_children.ru_utime) + (
        after_children.ru_stime - before_children.ru_stime
    )
    server_cpu = {name: after_cpu[name] - before_cpu[name] for name in before_cpu}
    combined = combine([r for r, _ in results])
    raw = "\n".join(
        f"== {n.name} ==\n{text}" for n, (_, text) in zip(targets, results, strict=True)
    )
    run = Run.of(config, workload, rep, combined, raw)
    per_node = {n.name: asdict(r) for n, (r, _) in zip(targets, results, strict=True)}
    busy = sum(server_cpu[n.name] for n in targets)
    per_request = busy / combined.requests * 1e6 if combined.requests else 0.0
    measured = Measured(
        run,
        per_node,
        {name: cpu / wall * 100 for name, cpu in server_cpu.items()},
        per_request,
        wrk_cpu / wall * 100,
        loadavg(),
    )
    if not paced and measured.loaded_cpu_pct < SHARED_CORE_PCT:
        # 48 connections keep the server core busy; if the loaded nodes got
        # less of it, something else ran there (or the run was too short).
        measured.notes.append(
            f"loaded nodes got only {measured.loaded_cpu_pct:.0f}% of the server "
            "CPU: was it shared?"
        )
    return measured


# --- report -------------------------------------------------------------------------


def summarize(
    measured: Sequence[Measured], offered: Mapping[str, float] | None = None
) -> dict[str, dict[str, dict[str, float]]]:
    """
    Medians by workload and configuration (non-2xx and requests: totals),
    with the rate C{offered} to the paced runs.
    """
    runs = [m.run for m in measured]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for workload in WORKLOADS:
        for config in CONFIGS:
            mine = [
                m
                for m in measured
                if m.run.server == config and m.run.workload == workload
            ]
            if not mine:
                continue
            cell = median_of(runs, config, workload)
            cell["non_2xx"] = sum(m.run.non_2xx for m in mine)
            cell["requests"] = sum(m.run.requests for m in mine)
            cell["server_cpu_pct"] = statistics.median(m.loaded_cpu_pct for m in mine)
            cell["idle_cpu_pct"] = statistics.median(m.idle_cpu_pct for m in mine)
            cell["cpu_us_per_request"] = statistics.median(
                m.cpu_us_per_request for m in mine
            )
            cell["wrk_cpu_pct"] = statistics.median(m.wrk_cpu_pct for m in mine)
            if offered is not None:
                cell["offered_per_sec"] = offered[workload]
            out.setdefault(workload, {})[config] = cell
    return out


def paired_ratios(runs: Sequence[Run]) -> dict[str, list[float]]:
    """
    Cluster req/s / single-node req/s of each repetition, by workload, in
    repetition order: each cluster run beside the single-node run next to
    it, so that a machine that speeds up or slows down during the benchmark
    moves both sides of each ratio (a ratio of the two medians can pair a
    fast moment with a slow one).
    """
    out: dict[str, list[float]] = {}
    for workload in WORKLOADS:
        byRep: dict[int, dict[str, float]] = {}
        for run in runs:
            if run.workload == workload:
                byRep.setdefault(run.rep, {})[run.server] = run.requests_per_sec
        ratios = [
            pair["cluster"] / pair["single"]
            for _, pair in sorted(byRep.items())
            if pair.get("single") and "cluster" in pair
        ]
        if ratios:
            out[workload] = ratios
    return out


# The columns of the medians tables: header, figure, format.
SATURATED_COLUMNS = (
    *WRK_COLUMNS,
    ("non-2xx", "non_2xx", "{:.0f}"),
    ("server CPU", "server_cpu_pct", "{:.0f}%"),
    ("CPU us/req", "cpu_us_per_request", "{:.0f}"),
    ("wrk CPU", "wrk_cpu_pct", "{:.0f}%"),
    ("idle CPU", "idle_cpu_pct", "{:.0f}%"),
)
RATIO_HEADERS = (
    "workload",
    "req/s, paired",
    "each rep",
    "req/s",
    "p50",
    "p99",
    "CPU us/req",
)
PACED_COLUMNS = (
    ("offered", "offered_per_sec", "{:.0f}"),
    ("req/s", "requests_per_sec", "{:.0f}"),
    ("p50 ms", "p50_ms", "{:.2f}"),
    ("p99 ms", "p99_ms", "{:.2f}"),
    ("non-2xx", "non_2xx", "{:.0f}"),
)


def paced_report(paced: dict[str, dict[str, dict[str, float]]]) -> str:
    return (
        f"Latency at a fixed offered load ({PACED_FRACTION:.0%} of the cluster's"
        " saturated req/s, offered to both configurations; medians; cluster: p50"
        " and p99 of the worst node):\n\n"
        + medians_table(paced, WORKLOAD_TITLES, "config", PACED_COLUMNS)
    )


def evaluate_goals(
    medians: dict[str, dict[str, dict[str, float]]],
    paced: dict[str, dict[str, dict[str, float]]] | None = None,
    pairs: dict[str, list[float]] | None = None,
) -> list[Goal]:
    """
    The goals, met or not. A req/s ratio is the median of the per-repetition
    ratios in C{pairs} when there are any, else the ratio of the medians.
    """
    goals = []
    for workload, floor, what in (
        ("put", GOAL_PUT_VS_SINGLE, "PUT"),
        ("get-hit", GOAL_GET_VS_SINGLE, "GET hit (quorum)"),
    ):
        ratios = (pairs or {}).get(workload)
        cells = medians.get(workload, {})
        if ratios:
            ratio = statistics.median(ratios)
        elif "single" in cells and "cluster" in cells:
            single = cells["single"]["requests_per_sec"]
            ratio = cells["cluster"]["requests_per_sec"] / single if single else 0.0
        else:
            continue
        goals.append(ratio_goal(f"cluster {what} req/s vs single node", ratio, floor))
    for table in (medians, paced or {}):
        for workload in WORKLOADS:
            cell = table.get(workload, {}).get("cluster")
            if not cell:
                continue
            load = "saturated"
            if "offered_per_sec" in cell:
                load = f"{cell['offered_per_sec']:.0f} req/s offered"
            name = f"cluster {WORKLOAD_TITLES[workload]} p99 (worst node), {load}"
            goals.append(ceiling_goal(name, cell["p99_ms"], GOAL_CLUSTER_P99_MS, "ms"))
    return goals


def report(
    medians: dict[str, dict[str, dict[str, float]]],
    goals: list[Goal],
    pairs: dict[str, list[float]] | None = None,
) -> str:
    ratio_rows = []
    for workload in WORKLOADS:
        cells = medians.get(workload, {})
        if "single" not in cells or "cluster" not in cells:
            continue
        row = [WORKLOAD_TITLES[workload]]
        ratios = (pairs or {}).get(workload, [])
        row.append(f"{statistics.median(ratios):.2f}" if ratios else "-")
        row.append(" ".join(f"{r:.2f}" for r in ratios) or "-")
        for metric in ("requests_per_sec", "p50_ms", "p99_ms", "cpu_us_per_request"):
            base = cells["single"][metric]
            row.append(f"{cells['cluster'][metric] / base:.2f}" if base else "-")
        ratio_rows.append(row)
    return "\n".join(
        [
            "Medians over repetitions (cluster: req/s summed over its 3 nodes, p50 "
            "and p99 of the worst node; non-2xx: total over repetitions; server "
            "CPU: the loaded nodes, % of one core; CPU us/req: their CPU per "
            "request served; idle CPU: the other configuration's nodes meanwhile, "
            "on the load generator's CPU):",
            "",
            medians_table(
                medians, WORKLOAD_TITLES, "config", SATURATED_COLUMNS, left=2
            ),
            "",
            "Cluster / single node (req/s, paired: the median of each repetition's"
            " ratio, the goal's figure, and each repetition's; then ratios of the"
            " medians. req/s: higher is better; latency and CPU per request: lower"
            " is better):",
            "",
            format_table(RATIO_HEADERS, ratio_rows),
            "",
            "Goals:",
            "",
            goals_table(goals),
        ]
    )


def counters_table(
    stats: Mapping[str, Mapping[str, Any]],
    counters: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    columns: Sequence[str] = (),
) -> str | None:
    """
    The C{counters} of each node's C{/stats}: C{columns}, or whichever the
    nodes report; C{None} when there are none.
    """
    found = {name: counters(s) for name, s in stats.items()}
    columns = columns or list(dict.fromkeys(k for c in found.values() for k in c))
    if not columns:
        return None
    rows = [[name, *(str(c.get(k, "-")) for k in columns)] for name, c in found.items()]
    return format_table(["node", *columns], rows)


def gossip_counters(stats: Mapping[str, Any]) -> Mapping[str, Any]:
    gossip = stats.get("gossip", {})
    return {**gossip.get("members", {}), **gossip}


def node_stats(nodes: Sequence[Node]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for node in nodes:
        try:
            out[node.name] = getJSON(node.http_port, "/stats")
        except ClusterError as e:
            out[node.name] = {"error": str(e)}
    return out


def order(rep: int, workloads: Sequence[str]) -> list[tuple[str, str]]:
    """
    Both configurations for each workload, their order alternating from one
    repetition to the next.
    """
    configs = CONFIGS if rep % 2 else CONFIGS[::-1]
    return [(workload, config) for workload in workloads for config in configs]


# --- the run ---------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = bench_parser(
        "bench/cluster-http",
        "Req/s and latency of one Disperse node next to a 3-node cluster "
        "(R=3, quorum writes and reads) on the same CPU, with wrk: GET hit "
        "and JSON PUT.",
    )
    add_wrk_options(
        parser,
        "configs interleaved",
        "config",
        "3 s runs, 2 reps, 1 s warm-up",
        WORKLOADS,
    )
    add_node_options(parser, ("debug", "info", "warn", "error"))
    parser.add_argument(
        "--connections",
        type=int,
        default=CONNECTIONS,
        help=(
            f"wrk connections in total, a multiple of 3 (default {CONNECTIONS}: "
            f"-c{CONNECTIONS} on the single node, -c{CONNECTIONS // 3} on each "
            "cluster node)"
        ),
    )
    parser.add_argument(
        "--keys",
        type=int,
        default=HIT_KEYS,
        help=f"preloaded keys GET hit cycles over (default {HIT_KEYS})",
    )
    parser.add_argument(
        "--paced-reps",
        type=int,
        default=2,
        help=(
            "repetitions of the fixed-load latency runs, after the saturated ones"
            f" ({PACED_FRACTION * 100:.0f}%% of the cluster's req/s;"
            " default 2, 0: none)"
        ),
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.reps, args.warmup = 3, 2, 1
        args.paced_reps = min(args.paced_reps, 1)
    args.workloads = subset(parser, "--workloads", args.workloads, WORKLOADS)
    check_ranges(
        parser,
        args,
        {
            "duration": (1, 600),
            "reps": (1, 20),
            "warmup": (0, 60),
            "paced_reps": (0, 20),
            "connections": (len(CLUSTER_NODES), 999),
            "keys": (SAMPLE_KEYS, 100_000),
        },
    )
    if args.connections % len(CLUSTER_NODES):
        parser.error(f"--connections must be a multiple of {len(CLUSTER_NODES)}")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print(WRK_INSTALL_HINT, file=sys.stderr)
        return 2
    pinning = choose_pinning(not args.no_pin)
    rng = random.Random(1)
    base = "".join(rng.choices(string.ascii_letters, k=VALUE_SIZE))
    measured: list[Measured] = []
    paced: list[Measured] = []
    rates: dict[str, float] = {}
    settings = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "reps": args.reps,
        "connections_total": args.connections,
        "connections_per_cluster_node": args.connections // len(CLUSTER_NODES),
        "workloads": args.workloads,
        "hit_keys": args.keys,
        "value_size": VALUE_SIZE,
        "replicas": REPLICAS,
        "write_consistency": CONSISTENCY,
        "read_consistency": CONSISTENCY,
        "log_level": args.log_level,
        "node_args": args.node_arg,
        "pinning": pinning.describe(),
        "wrk": wrk_version(),
        "code": code_version(),
    }
    bench = BenchRun("cluster-http", args.output, settings)
    results, log_dir = bench.results, bench.log_dir
    per_config = len(args.workloads) * (args.duration * args.reps + args.warmup)
    total = len(CONFIGS) * per_config
    print(
        f"bench/cluster-http: single node vs {len(CLUSTER_NODES)}-node cluster "
        f"(R={REPLICAS}, {CONSISTENCY} writes and reads) x "
        f"{', '.join(args.workloads)}; {args.reps} reps of {args.duration} s, "
        f"{args.warmup} s warm-up; about {total // 60} min {total % 60} s of load."
    )
    print(bench.describe_start())
    nodes: list[Node] = []
    log_problems: dict[str, list[str]] = {}
    with bench:
        checkNodePlugin()
        log_dir.mkdir(parents=True, exist_ok=True)
        with (
            tempfile.TemporaryDirectory(prefix="disperse-bench-") as tmp,
            ProcessSet(cwd=REPO_DIR) as procs,
        ):
            tmpdir = Path(tmp)
            # The single node, then the cluster (c1, the others joining it).
            extra = ["--log-level", args.log_level, *args.node_arg]
            [single] = boot_nodes(procs, pinning, log_dir, [SINGLE_NODE], extra)
            cluster = boot_nodes(procs, pinning, log_dir, CLUSTER_NODES, extra)
            nodes = [single, *cluster]
            results["nodes"] = {
                n.name: {
                    "http_port": n.http_port,
                    "gossip_port": n.gossip_port,
                    "pid": n.pid,
                    "startup_s": n.startup_s,
                }
                for n in nodes
            }
            took = wait_converged(cluster, procs.check)
            wait_converged([single], procs.check)
            print(f"Cluster converged {took:.1f} s after the last node answered.")
            loaded = {
                "single": preload([single], args.keys, base, 1),
                "cluster": preload(cluster, args.keys, base, REPLICAS),
            }
            checks = {
                "single": check_readable([single], args.keys, base, 1, rng),
                "cluster": check_readable(cluster, args.keys, base, REPLICAS, rng),
            }
            results["preload"] = {"seconds": loaded, "checks": checks}
            print(
                f"Preloaded {args.keys} keys: single node {loaded['single']:.1f} s, "
                f"cluster (quorum) {loaded['cluster']:.1f} s; {SAMPLE_KEYS} read "
                "back from every node at quorum and, in the cluster, from each "
                "replica's own store."
            )
            speed = calibrate(procs, pinning, log_dir, args.duration, args.connections)
            results["calibration"] = {"twisted.web": speed}
            print(
                "Machine speed: a bare twisted.web server (bench/http's reference)"
                f" answers {speed['requests_per_sec']:.0f} GET/s on the server CPU"
                f" (p99 {speed['p99_ms']:.2f} ms at {args.connections} connections)."
            )
            results["stats_before"] = node_stats(nodes)
            scripts = {
                "get-hit": write_get_script(tmpdir, args.keys),
                "put": write_put_script(tmpdir, base),
            }
            plan = Plan(pinning, args.connections, scripts, tmpdir, single, cluster)
            if args.warmup:
                print("Warming up ...", flush=True)
                for workload, config in order(1, args.workloads):
                    measure(plan, config, workload, 0, args.warmup)
                    procs.check()
            wait_converged(cluster, procs.check)
            for rep in range(1, args.reps + 1):
                for workload, config in order(rep, args.workloads):
                    m = measure(plan, config, workload, rep, args.duration)
                    measured.append(m)
                    run = m.run
                    problems = run.warnings + m.notes
                    note = f"  !! {'; '.join(problems)}" if problems else ""
                    print(
                        f"rep {rep}/{args.reps} {WORKLOAD_TITLES[workload]:8} "
                        f"{config:8} {run.requests_per_sec:8.0f} req/s  "
                        f"p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms  "
                        f"non-2xx {run.non_2xx}  "
                        f"CPU {m.cpu_us_per_request:4.0f} us/req{note}",
                        flush=True,
                    )
                    if config == "cluster":
                        print(
                            "    per node: "
                            + ", ".join(
                                f"{name} {d['requests_per_sec']:.0f} req/s "
                                f"p99 {d['p99_ms']:.2f} ms"
                                for name, d in m.per_node.items()
                            ),
                            flush=True,
                        )
                    procs.check()
                bench.load(f"after rep {rep}")
            if args.paced_reps:
                saturated = summarize(measured)
                rates = {
                    w: PACED_FRACTION * saturated[w]["cluster"]["requests_per_sec"]
                    for w in args.workloads
                }
                pacedPlan = replace(
                    plan,
                    scripts={
                        w: write_paced_script(scripts[w], rates[w], args.connections)
                        for w in args.workloads
                    },
                )
                for rep in range(1, args.paced_reps + 1):
                    for workload, config in order(rep, args.workloads):
                        m = measure(
                            pacedPlan, config, workload, rep, args.duration, paced=True
                        )
                        paced.append(m)
                        print(
                            f"paced {rep}/{args.paced_reps} "
                            f"{WORKLOAD_TITLES[workload]:8} {config:8} "
                            f"{rates[workload]:6.0f} offered "
                            f"{m.run.requests_per_sec:6.0f} req/s  "
                            f"p50 {m.run.p50_ms:6.2f} ms  "
                            f"p99 {m.run.p99_ms:6.2f} ms  "
                            f"non-2xx {m.run.non_2xx}",
                            flush=True,
                        )
                        procs.check()
            results["stats_after"] = node_stats(nodes)
            results["converged_at_end"] = True
            try:
                wait_converged(cluster, procs.check)
            except ClusterError as e:
                results["converged_at_end"] = str(e)
                print(f"\nWarning: after the load, {e}", file=sys.stderr)
    medians = summarize(measured)
    pacedMedians = summarize(paced, rates)
    pairs = paired_ratios([m.run for m in measured])
    goals = evaluate_goals(medians, pacedMedians, pairs)
    log_problems = scan_logs([log_dir / f"{n.name}.log" for n in nodes], log_dir)
    results["runs"] = [asdict(m) for m in measured]
    results["medians"] = medians
    results["paired_ratios"] = pairs
    results["paced"] = {
        "fraction": PACED_FRACTION,
        "runs": [
            {"offered_per_sec": rates[m.run.workload], **asdict(m)} for m in paced
        ],
        "medians": pacedMedians,
    }
    results["goals"] = [asdict(g) for g in goals]
    results["log_problems"] = log_problems
    if measured or nodes:
        bench.save()
    if measured:
        print()
        bench.partial()
        if pacedMedians:
            print(paced_report(pacedMedians))
            print()
        print(report(medians, goals, pairs))
    stats = results.get("stats_after")
    if stats:
        print(
            "\nReplication counters at the end (GET /stats, since each node started):\n"
        )
        print(
            counters_table(
                stats, lambda s: s.get("replication", {}), REPLICATION_COLUMNS
            )
        )
        anti_entropy = counters_table(stats, lambda s: s.get("antiEntropy") or {})
        if anti_entropy:
            print("\nAnti-entropy at the end (GET /stats):\n")
            print(anti_entropy)
        print("\nGossip at the end:\n")
        print(counters_table(stats, gossip_counters, GOSSIP_COLUMNS))
    if nodes:
        print_log_problems(log_dir, log_problems)
    print(bench.describe_loads())
    if measured:
        warned = [m for m in measured if m.run.warnings]
        if warned:
            print(f"Warning: {len(warned)} run(s) got unexpected answers (see JSON).")
        shared = [m for m in measured if m.notes]
        if shared:
            print(
                f"Warning: in {len(shared)} run(s) the loaded nodes got less than "
                f"{SHARED_CORE_PCT:.0f}% of the server CPU: something else ran "
                "there. Their req/s and latencies are not comparable; CPU us/req "
                "is less affected. Rerun on a quiet machine."
            )
        print(f"Raw results: {bench.output}")
    return bench.exit_status(args.strict, goals)
