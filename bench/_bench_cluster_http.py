"""
The replicated-cluster HTTP benchmark behind C{bench/cluster-http}.

One run starts, side by side:

 - C{single}: one Disperse node on its own (it holds every key: R is capped
   at the cluster size, 1, so quorum is that one replica);
 - C{cluster}: three Disperse nodes joined through the first, R=3, write and
   read consistency quorum (every write waits for one other replica, every
   read asks one other replica).

The nodes under load run on one CPU (C{taskset -c 0}) and every wrk process
runs on the other (C{taskset -c 1}), so both configurations get the same
server CPU: one core. The ratio cluster / single is then the cost of
replication per request, not parallelism that a one-process node could
never use. Meanwhile the other configuration's nodes wait on the wrk CPU:
an idle cluster still gossips and runs anti-entropy.

Workloads (the same Lua scripts for both configurations):

 - C{get-hit}: C{GET /cache/hit-<1..K>}, keys preloaded through the cluster
   at quorum (and into the single node), checked readable before measuring;
 - C{put}: bench/http's JSON PUT script, C{/cache/put-<1..1000>}.

Single node: one C{wrk -t1 -c48}. Cluster: three C{wrk -t1 -c16} at once,
one per node; their req/s are summed and the worst p50 and p99 of the three
are kept. Single and cluster runs are interleaved within each repetition,
and their order alternates from one repetition to the next. The req/s goals
take the median of each repetition's cluster / single ratio: the two runs of
a repetition are seconds apart, so a machine whose speed drifts during the
benchmark moves both.

Those runs saturate the server core, so their latencies are mostly queueing
(48 connections over a core's worth of throughput). The paced runs that
follow offer both configurations the same fixed load, half the cluster's
saturated req/s, with exponential think times between requests, and report
the latency at that load. Both p99s are checked against the goal.
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
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench._bench_common import (
    MISS_KEY,
    VALUE_SIZE,
    WRK_INSTALL_HINT,
    BenchError,
    BenchRun,
    Goal,
    Pinning,
    Run,
    Server,
    WrkPlan,
    WrkResult,
    add_node_options,
    add_wrk_options,
    bench_parser,
    ceiling_goal,
    check_and_preload,
    check_ranges,
    choose_pinning,
    code_version,
    combine,
    describe_code,
    format_table,
    goals_table,
    loadavg,
    median_of,
    parse_wrk,
    print_log_problems,
    put_body,
    ratio_goal,
    run_wrk,
    scan_logs,
    start_reference,
    subset,
    write_put_script,
    wrk_argv,
    wrk_version,
)
from bench._launch import REPO_DIR
from disperse.testing.cluster import (
    LOOPBACK,
    ClusterError,
    KeepAlive,
    NodeProcess,
    ProcessSet,
    checkNodePlugin,
    cpuSeconds,
    freePorts,
    loopbackArgs,
    nodeCommand,
    pinThreads,
    waitConverged,
)

CONFIGS = ("single", "cluster")
WORKLOADS = ("get-hit", "put")
WORKLOAD_TITLES = {"get-hit": "GET hit", "put": "PUT"}

CLUSTER_NODES = ("c1", "c2", "c3")
SINGLE_NODE = "single"
CONNECTIONS = 48  # in total: -c48 on the single node, -c16 on each cluster node
HIT_KEYS = 1000  # GET hit cycles over hit-1 .. hit-<HIT_KEYS>
SAMPLE_KEYS = 50  # preloaded keys read back from every node before measuring
REPLICAS = 3
CONSISTENCY = "quorum"

# Goals (replication: cost of a quorum cluster next to one node, same CPU).
GOAL_PUT_VS_SINGLE = 0.40
GOAL_GET_VS_SINGLE = 0.50
GOAL_CLUSTER_P99_MS = 25.0
# The paced runs offer this share of the cluster's saturated throughput, to
# both configurations: latency at a load the cluster carries, rather than
# the queueing of 48 connections on a saturated core (Little's law puts
# the mean there near 48 / throughput, whatever the code does).
PACED_FRACTION = 0.5

CONVERGE_TIMEOUT = 30.0
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


# --- nodes ------------------------------------------------------------------------


@dataclass
class Node:
    name: str
    http_port: int
    gossip_port: int
    pid: int
    startup_s: float = 0.0
    proc: NodeProcess | None = field(default=None, repr=False)

    def client(self) -> KeepAlive:
        return KeepAlive(self.http_port)


def start_nodes(
    procs: ProcessSet, pinning: Pinning, log_dir: Path, extra: Sequence[str]
) -> tuple[Node, list[Node]]:
    """
    The single node and the cluster's seed first; the two other cluster
    nodes join through the seed once it answers.
    """
    ports = freePorts(2 * (1 + len(CLUSTER_NODES)))
    names = [SINGLE_NODE, *CLUSTER_NODES]
    nodes: list[Node] = []
    for i, name in enumerate(names):
        gossip_port, http_port = ports[2 * i], ports[2 * i + 1]
        seed = [] if i < 2 else ["--peer", f"{LOOPBACK}:{nodes[1].gossip_port}"]
        argv = [
            *loopbackArgs(gossip_port, http_port),
            *("--node-name", name, "--profile", "local"),
            *("--replicas", str(REPLICAS)),
            *("--write-consistency", CONSISTENCY, "--read-consistency", CONSISTENCY),
            *extra,
            *seed,
        ]
        proc = procs.start(
            name, pinning.server(nodeCommand(argv)), log_dir / f"{name}.log"
        )
        nodes.append(Node(name, http_port, gossip_port, proc.pid, proc=proc))
        if i == 1 or i == len(names) - 1:
            # The seed must answer before the others join through it.
            for node in nodes[:2] if i == 1 else nodes[2:]:
                assert node.proc is not None
                node.startup_s = node.proc.waitHealthy(node.http_port)
    return nodes[0], nodes[1:]


def wait_converged(nodes: Sequence[Node], procs: ProcessSet) -> float:
    return waitConverged(
        {n.name: n.http_port for n in nodes}, CONVERGE_TIMEOUT, procs.check
    )


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


def hit_value(i: int, base: str) -> str:
    """
    The value of C{hit-<i>}: distinct per key, L{VALUE_SIZE} characters.
    """
    return f"{i:08d}{base}"[:VALUE_SIZE]


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
                body=put_body(hit_value(i, base)),
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
                want = hit_value(i, base).encode()
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
    The wrk script for GET hit: keys cycling over C{hit-1..hit-<keys>},
    requests formatted once in C{init} (like bench/http's PUT script).
    """
    script = directory / "get-hit.lua"
    script.write_text(
        f"""-- generated by bench/cluster-http
local keyspace = {keys}
local requests = {{}}
local counter = 0

init = function(args)
  for i = 1, keyspace do
    requests[i] = wrk.format("GET", "/cache/hit-" .. i)
  end
end

request = function()
  counter = counter % keyspace + 1
  return requests[counter]
end
"""
    )
    return script


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


def node_cpu_seconds(node: Node) -> float:
    try:
        return cpuSeconds(node.pid)
    except OSError as e:
        raise BenchError(f"{node.name} (pid {node.pid}) is gone: {e}") from e


def run_wrks(
    plan: Plan,
    targets: Sequence[Node],
    every_node: Sequence[Node],
    workload: str,
    seconds: int,
) -> tuple[list[tuple[WrkResult, str]], dict[str, float], float, float]:
    """
    One wrk per target, all at once, each with its share of the
    connections; waits for all (bounded). Returns each wrk's result and
    output, each node's CPU time (s) over the run, the wrks' CPU time (s,
    all of them together) and the run's wall-clock time (s).
    """
    per_target = plan.connections // len(targets)
    before_cpu = {n.name: node_cpu_seconds(n) for n in every_node}
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    outputs = []
    with ProcessSet(cwd=REPO_DIR) as wrks:
        for node in targets:
            url = f"http://{LOOPBACK}:{node.http_port}/"
            argv = wrk_argv(per_target, seconds, url, plan.scripts[workload])
            log = plan.tmpdir / f"wrk-{node.name}.out"
            outputs.append(
                (wrks.start(f"wrk {node.name}", plan.pinning.client(argv), log), log)
            )
        deadline = started + seconds + 30
        for proc, log in outputs:
            left = deadline - time.monotonic()
            try:
                code = proc.wait(max(left, 0.1))
            except subprocess.TimeoutExpired as e:  # the ProcessSet kills them
                raise BenchError(f"wrk did not finish within {seconds + 30} s") from e
            if code != 0:
                text = log.read_text(errors="replace")
                raise BenchError(f"{proc.name} failed (exit {code}):\n{text}")
    wall = time.monotonic() - started
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    after_cpu = {n.name: node_cpu_seconds(n) for n in every_node}
    wrk_cpu = (after_children.ru_utime - before_children.ru_utime) + (
        after_children.ru_stime - before_children.ru_stime
    )
    results = []
    for _, log in outputs:
        text = log.read_text(errors="replace")
        results.append((parse_wrk(text), text))
    server_cpu = {name: after_cpu[name] - before_cpu[name] for name in before_cpu}
    return results, server_cpu, wrk_cpu, wall


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
    plan: Plan,
    config: str,
    workload: str,
    rep: int,
    single: Node,
    cluster: Sequence[Node],
    seconds: int,
    paced: bool = False,
) -> Measured:
    targets = [single] if config == "single" else list(cluster)
    every_node = [single, *cluster]
    place_nodes(plan.pinning, targets, [n for n in every_node if n not in targets])
    results, server_cpu, wrk_cpu, wall = run_wrks(
        plan, targets, every_node, workload, seconds
    )
    combined = combine([r for r, _ in results])
    raw = "\n".join(
        f"== {n.name} ==\n{text}" for n, (_, text) in zip(targets, results, strict=True)
    )
    run = Run.of(config, workload, rep, combined, raw)
    per_node = {
        n.name: {
            "requests_per_sec": r.requests_per_sec,
            "p50_ms": r.p50_ms,
            "p99_ms": r.p99_ms,
            "requests": r.requests,
            "non_2xx": r.non_2xx,
            "socket_errors": r.socket_errors,
        }
        for n, (r, _) in zip(targets, results, strict=True)
    }
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


def summarize(measured: Sequence[Measured]) -> dict[str, dict[str, dict[str, float]]]:
    runs = [m.run for m in measured]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for workload in WORKLOADS:
        for config in CONFIGS:
            cell = median_of(runs, config, workload)
            if not cell:
                continue
            mine = [
                m
                for m in measured
                if m.run.server == config and m.run.workload == workload
            ]
            cell["non_2xx"] = sum(m.run.non_2xx for m in mine)
            cell["requests"] = sum(m.run.requests for m in mine)
            cell["server_cpu_pct"] = statistics.median(m.loaded_cpu_pct for m in mine)
            cell["idle_cpu_pct"] = statistics.median(m.idle_cpu_pct for m in mine)
            cell["cpu_us_per_request"] = statistics.median(
                m.cpu_us_per_request for m in mine
            )
            cell["wrk_cpu_pct"] = statistics.median(m.wrk_cpu_pct for m in mine)
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


def summarize_paced(
    paced: Sequence[tuple[float, Measured]],
) -> dict[str, dict[str, dict[str, float]]]:
    """
    Medians of the paced runs, by workload and configuration, with the rate
    offered.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for workload in WORKLOADS:
        for config in CONFIGS:
            mine = [
                (rate, m)
                for rate, m in paced
                if m.run.server == config and m.run.workload == workload
            ]
            if not mine:
                continue
            out.setdefault(workload, {})[config] = {
                "offered_per_sec": mine[0][0],
                "requests_per_sec": statistics.median(
                    m.run.requests_per_sec for _, m in mine
                ),
                "p50_ms": statistics.median(m.run.p50_ms for _, m in mine),
                "p99_ms": statistics.median(m.run.p99_ms for _, m in mine),
                "non_2xx": sum(m.run.non_2xx for _, m in mine),
                "cpu_us_per_request": statistics.median(
                    m.cpu_us_per_request for _, m in mine
                ),
            }
    return out


def paced_report(paced: dict[str, dict[str, dict[str, float]]]) -> str:
    rows = []
    for workload, configs in paced.items():
        for config, cell in configs.items():
            rows.append(
                [
                    WORKLOAD_TITLES[workload],
                    config,
                    f"{cell['offered_per_sec']:.0f}",
                    f"{cell['requests_per_sec']:.0f}",
                    f"{cell['p50_ms']:.2f}",
                    f"{cell['p99_ms']:.2f}",
                    f"{cell['non_2xx']:.0f}",
                ]
            )
    return (
        f"Latency at a fixed offered load ({PACED_FRACTION:.0%} of the cluster's"
        " saturated req/s, offered to both configurations; medians; cluster: p50"
        " and p99 of the worst node):\n\n"
        + format_table(
            ["workload", "config", "offered", "req/s", "p50 ms", "p99 ms", "non-2xx"],
            rows,
        )
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
    for workload in WORKLOADS:
        title = WORKLOAD_TITLES[workload]
        cell = medians.get(workload, {}).get("cluster")
        if cell:
            name = f"cluster {title} p99 (worst node), saturated"
            goals.append(ceiling_goal(name, cell["p99_ms"], GOAL_CLUSTER_P99_MS, "ms"))
    for workload in WORKLOADS:
        title = WORKLOAD_TITLES[workload]
        cell = (paced or {}).get(workload, {}).get("cluster")
        if cell:
            name = (
                f"cluster {title} p99 (worst node), "
                f"{cell['offered_per_sec']:.0f} req/s offered"
            )
            goals.append(ceiling_goal(name, cell["p99_ms"], GOAL_CLUSTER_P99_MS, "ms"))
    return goals


def report(
    medians: dict[str, dict[str, dict[str, float]]],
    goals: list[Goal],
    pairs: dict[str, list[float]] | None = None,
) -> str:
    rows = []
    for workload in WORKLOADS:
        for config in CONFIGS:
            cell = medians.get(workload, {}).get(config)
            if not cell:
                continue
            rows.append(
                [
                    WORKLOAD_TITLES[workload],
                    config,
                    f"{cell['requests_per_sec']:.0f}",
                    f"{cell['spread_pct']:.0f}%",
                    f"{cell['p50_ms']:.2f}",
                    f"{cell['p99_ms']:.2f}",
                    f"{cell['non_2xx']:.0f}",
                    f"{cell['server_cpu_pct']:.0f}%",
                    f"{cell['cpu_us_per_request']:.0f}",
                    f"{cell['wrk_cpu_pct']:.0f}%",
                    f"{cell['idle_cpu_pct']:.0f}%",
                ]
            )
    out = [
        "Medians over repetitions (cluster: req/s summed over its 3 nodes, p50 "
        "and p99 of the worst node; non-2xx: total over repetitions; server CPU: "
        "the loaded nodes, % of one core; CPU us/req: their CPU per request "
        "served; idle CPU: the other configuration's nodes meanwhile, on the "
        "load generator's CPU):",
        "",
        format_table(
            [
                "workload",
                "config",
                "req/s",
                "spread",
                "p50 ms",
                "p99 ms",
                "non-2xx",
                "server CPU",
                "CPU us/req",
                "wrk CPU",
                "idle CPU",
            ],
            rows,
            left=2,
        ),
    ]
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
    out += [
        "",
        "Cluster / single node (req/s, paired: the median of each repetition's"
        " ratio, the goal's figure, and each repetition's; then ratios of the"
        " medians. req/s: higher is better; latency and CPU per request: lower"
        " is better):",
        "",
        format_table(
            [
                "workload",
                "req/s, paired",
                "each rep",
                "req/s",
                "p50",
                "p99",
                "CPU us/req",
            ],
            ratio_rows,
        ),
        "",
        "Goals:",
        "",
        goals_table(goals),
    ]
    return "\n".join(out)


def replication_table(stats: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for name, s in stats.items():
        counters = s.get("replication", {})
        rows.append([name, *(str(counters.get(c, "-")) for c in REPLICATION_COLUMNS)])
    return format_table(["node", *REPLICATION_COLUMNS], rows)


def anti_entropy_table(stats: Mapping[str, Mapping[str, Any]]) -> str | None:
    """
    Each node's C{/stats} C{antiEntropy} counters, whichever it has; C{None}
    when no node reports any.
    """
    columns: list[str] = []
    for s in stats.values():
        for key in s.get("antiEntropy") or {}:
            if key not in columns:
                columns.append(key)
    if not columns:
        return None
    rows = [
        [name, *(str((s.get("antiEntropy") or {}).get(c, "-")) for c in columns)]
        for name, s in stats.items()
    ]
    return format_table(["node", *columns], rows)


def gossip_table(stats: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for name, s in stats.items():
        gossip = s.get("gossip", {})
        members = gossip.get("members", {})
        rows.append(
            [
                name,
                str(members.get("alive", "-")),
                str(members.get("suspect", "-")),
                str(members.get("dead", "-")),
                str(gossip.get("probesFailed", "-")),
                str(gossip.get("suspicions", "-")),
                str(gossip.get("refutations", "-")),
                str(gossip.get("healthScore", "-")),
            ]
        )
    return format_table(
        [
            "node",
            "alive",
            "suspect",
            "dead",
            "probesFailed",
            "suspicions",
            "refutations",
            "healthScore",
        ],
        rows,
    )


def node_stats(nodes: Sequence[Node]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for node in nodes:
        client = node.client()
        try:
            out[node.name] = client.json("/stats")
        except ClusterError as e:
            out[node.name] = {"error": str(e)}
        finally:
            client.close()
    return out


# --- the run ---------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = bench_parser(
        "bench/cluster-http",
        "Req/s and latency of one Disperse node next to a 3-node cluster "
        "(R=3, quorum writes and reads) on the same CPU, with wrk: GET hit "
        "and JSON PUT.",
    )
    add_wrk_options(
        parser, "configs interleaved", "config", "3 s runs, 2 reps, 1 s warm-up"
    )
    add_node_options(parser, ("debug", "info", "warn", "error"))
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)}",
    )
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
    paced: list[tuple[float, Measured]] = []
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
    print(
        f"{describe_code(settings['code'])} Pinning: {pinning.describe()}."
        f" Load average: {bench.loads[0][1]}."
    )
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
            single, cluster = start_nodes(
                procs, pinning, log_dir, ["--log-level", args.log_level, *args.node_arg]
            )
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
            took = wait_converged(cluster, procs)
            wait_converged([single], procs)
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
            plan = Plan(
                pinning,
                args.connections,
                {
                    "get-hit": write_get_script(tmpdir, args.keys),
                    "put": write_put_script(tmpdir, base),
                },
                tmpdir,
            )
            if args.warmup:
                print("Warming up ...", flush=True)
                for workload in args.workloads:
                    for config in CONFIGS:
                        measure(plan, config, workload, 0, single, cluster, args.warmup)
                        procs.check()
            wait_converged(cluster, procs)
            for rep in range(1, args.reps + 1):
                order = CONFIGS if rep % 2 else CONFIGS[::-1]
                for workload in args.workloads:
                    for config in order:
                        m = measure(
                            plan, config, workload, rep, single, cluster, args.duration
                        )
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
                pacedPlan = Plan(
                    pinning,
                    args.connections,
                    {
                        w: write_paced_script(
                            plan.scripts[w], rates[w], args.connections
                        )
                        for w in args.workloads
                    },
                    tmpdir,
                )
                for rep in range(1, args.paced_reps + 1):
                    order = CONFIGS if rep % 2 else CONFIGS[::-1]
                    for workload in args.workloads:
                        for config in order:
                            m = measure(
                                pacedPlan,
                                config,
                                workload,
                                rep,
                                single,
                                cluster,
                                args.duration,
                                paced=True,
                            )
                            paced.append((rates[workload], m))
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
                wait_converged(cluster, procs)
            except ClusterError as e:
                results["converged_at_end"] = str(e)
                print(f"\nWarning: after the load, {e}", file=sys.stderr)
    medians = summarize(measured)
    pacedMedians = summarize_paced(paced)
    pairs = paired_ratios([m.run for m in measured])
    goals = evaluate_goals(medians, pacedMedians, pairs)
    log_problems = scan_logs([log_dir / f"{n.name}.log" for n in nodes], log_dir)
    results["runs"] = [asdict(m) for m in measured]
    results["medians"] = medians
    results["paired_ratios"] = pairs
    results["paced"] = {
        "fraction": PACED_FRACTION,
        "runs": [{"offered_per_sec": r, **asdict(m)} for r, m in paced],
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
        print(replication_table(stats))
        anti_entropy = anti_entropy_table(stats)
        if anti_entropy:
            print("\nAnti-entropy at the end (GET /stats):\n")
            print(anti_entropy)
        print("\nGossip at the end:\n")
        print(gossip_table(stats))
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
