"""
The HTTP throughput/latency benchmark behind C{bench/http}: a Disperse node
next to bare Klein and twisted.web references (L{bench._refs}), all on one
CPU, under wrk on another (GET hit, GET miss, PUT), the servers interleaved
within each repetition; medians, ratios and goals. The method is described
in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import string
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from bench._bench_common import (
    MISS_KEY,
    PUT_KEYSPACE,
    VALUE_SIZE,
    WRK_COLUMNS,
    WRK_INSTALL_HINT,
    BenchRun,
    Goal,
    Pinning,
    Run,
    Server,
    WrkPlan,
    add_wrk_options,
    bench_parser,
    ceiling_goal,
    check_and_preload,
    check_ranges,
    choose_pinning,
    format_table,
    goals_table,
    median_of,
    medians_table,
    ratio_goal,
    run_wrk,
    start_reference,
    subset,
    write_put_script,
    wrk_version,
)
from bench._launch import REPO_DIR
from disperse.testing.cluster import (
    ProcessSet,
    checkNodePlugin,
    freePorts,
    httpRequest,
    loopbackArgs,
    nodeCommand,
)

SERVERS = ("disperse", "klein", "twisted.web")
WORKLOADS = ("get-hit", "get-miss", "put")
WORKLOAD_TITLES = {"get-hit": "GET hit", "get-miss": "GET miss", "put": "PUT"}

CONNECTIONS = 50

# Goals (docs: single-node performance targets).
GOAL_GET_HIT_VS_KLEIN = 0.90
GOAL_PUT_VS_KLEIN = 0.85
GOAL_P99_MS = 8.0


# --- servers ----------------------------------------------------------------------


def start_servers(
    procs: ProcessSet, pinning: Pinning, log_dir: Path
) -> dict[str, Server]:
    """
    Start the node and both references (pinned to the server CPU) and wait
    until each answers.
    """
    servers: dict[str, Server] = {}
    node_port, gossip_port = freePorts(2)
    node = procs.start(
        "disperse",
        pinning.server(nodeCommand(loopbackArgs(gossip_port, node_port))),
        log_dir / "disperse.log",
    )
    refs = {"klein": "klein_ref", "twisted.web": "web_ref"}
    started = {
        name: start_reference(procs, pinning, log_dir, name, module)
        for name, module in refs.items()
    }
    took = node.waitHealthy(node_port)
    servers["disperse"] = Server("disperse", node_port, node.pid, took)
    for name, (proc, port) in started.items():
        took = proc.waitHealthy(port, f"/cache/{MISS_KEY}", (404,))
        servers[name] = Server(name, port, proc.pid, took)
    return servers


# --- the run ---------------------------------------------------------------------


def summarize(runs: Sequence[Run]) -> dict[str, dict[str, dict[str, float]]]:
    return {
        w: {s: m for s in SERVERS if (m := median_of(runs, s, w))} for w in WORKLOADS
    }


def evaluate_goals(medians: dict[str, dict[str, dict[str, float]]]) -> list[Goal]:
    goals = []

    def ratio(workload: str) -> float | None:
        cells = medians.get(workload, {})
        if "disperse" not in cells or "klein" not in cells:
            return None
        klein = cells["klein"]["requests_per_sec"]
        return cells["disperse"]["requests_per_sec"] / klein if klein else None

    for workload, floor in (
        ("get-hit", GOAL_GET_HIT_VS_KLEIN),
        ("put", GOAL_PUT_VS_KLEIN),
    ):
        r = ratio(workload)
        if r is not None:
            title = WORKLOAD_TITLES[workload]
            goals.append(ratio_goal(f"{title} req/s vs Klein", r, floor))
    for workload in WORKLOADS:
        cell = medians.get(workload, {}).get("disperse")
        if cell:
            title = WORKLOAD_TITLES[workload]
            goals.append(
                ceiling_goal(f"{title} p99", cell["p99_ms"], GOAL_P99_MS, "ms")
            )
    return goals


def report(medians: dict[str, dict[str, dict[str, float]]], goals: list[Goal]) -> str:
    out = [
        "Medians over repetitions (spread = (max - min) / median of req/s):",
        "",
        medians_table(medians, WORKLOAD_TITLES, "server", WRK_COLUMNS, left=2),
    ]
    ratio_rows = []
    for workload in WORKLOADS:
        cells = medians.get(workload, {})
        if "disperse" not in cells:
            continue
        row = [WORKLOAD_TITLES[workload]]
        for ref in ("klein", "twisted.web"):
            for metric in ("requests_per_sec", "p99_ms"):
                if ref in cells and cells[ref][metric]:
                    row.append(f"{cells['disperse'][metric] / cells[ref][metric]:.2f}")
                else:
                    row.append("-")
        ratio_rows.append(row)
    out += [
        "",
        "Disperse / reference (req/s: higher is better; p99: lower is better):",
        "",
    ]
    out.append(
        format_table(
            ["workload", "req/s ÷ Klein", "p99 ÷ Klein", "req/s ÷ web", "p99 ÷ web"],
            ratio_rows,
        )
    )
    out += ["", "Goals (Disperse):", "", goals_table(goals)]
    return "\n".join(out)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = bench_parser(
        "bench/http",
        "HTTP req/s and latency of a Disperse node against bare Klein and "
        "bare twisted.web references (GET hit, GET miss, JSON PUT), with wrk.",
    )
    add_wrk_options(
        parser, "servers interleaved", "server", "3 s runs, 1 s warm-up", WORKLOADS
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=CONNECTIONS,
        help=f"wrk connections (default {CONNECTIONS}; the goals assume {CONNECTIONS})",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 3, 1
    args.workloads = subset(parser, "--workloads", args.workloads, WORKLOADS)
    check_ranges(
        parser,
        args,
        {
            "duration": (1, 600),
            "reps": (1, 20),
            "warmup": (0, 60),
            "connections": (1, 1000),
        },
    )
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print(WRK_INSTALL_HINT, file=sys.stderr)
        return 2
    pinning = choose_pinning(not args.no_pin)
    value = "".join(random.Random(1).choices(string.ascii_letters, k=VALUE_SIZE))
    runs: list[Run] = []
    config = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "reps": args.reps,
        "threads": 1,
        "connections": args.connections,
        "workloads": args.workloads,
        "put_keyspace": PUT_KEYSPACE,
        "value_size": VALUE_SIZE,
        "pinning": pinning.describe(),
        "wrk": wrk_version(),
    }
    bench = BenchRun("http", args.output, config)
    total = (
        len(SERVERS) * len(args.workloads) * (args.duration * args.reps + args.warmup)
    )
    print(
        f"bench/http: {', '.join(SERVERS)} x {', '.join(args.workloads)}; "
        f"{args.reps} reps of {args.duration} s, {args.warmup} s warm-up; "
        f"about {total // 60} min {total % 60} s of load."
    )
    print(f"Pinning: {pinning.describe()}.")
    with (
        bench,
        tempfile.TemporaryDirectory(prefix="disperse-bench-") as tmp,
        ProcessSet(cwd=REPO_DIR) as procs,
    ):
        checkNodePlugin()
        bench.log_dir.mkdir(parents=True, exist_ok=True)
        tmpdir = Path(tmp)
        servers = start_servers(procs, pinning, bench.log_dir)
        bench.results["servers"] = {name: asdict(s) for name, s in servers.items()}
        for server in servers.values():
            check_and_preload(server, value)
        plan = WrkPlan(pinning, args.connections, write_put_script(tmpdir, value))
        if args.warmup:
            print("Warming up ...", flush=True)
            for workload in args.workloads:
                for name in SERVERS:
                    run_wrk(plan, servers[name].port, workload, args.warmup)
        for rep in range(1, args.reps + 1):
            # Rotate the order each repetition so no server always runs
            # right after the same neighbour.
            k = (rep - 1) % len(SERVERS)
            order = SERVERS[k:] + SERVERS[:k]
            for workload in args.workloads:
                for name in order:
                    port = servers[name].port
                    run = Run.of(
                        name,
                        workload,
                        rep,
                        *run_wrk(plan, port, workload, args.duration),
                    )
                    runs.append(run)
                    note = f"  !! {'; '.join(run.warnings)}" if run.warnings else ""
                    print(
                        f"rep {rep}/{args.reps} {WORKLOAD_TITLES[workload]:8} "
                        f"{name:12} {run.requests_per_sec:9.0f} req/s  "
                        f"p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms{note}",
                        flush=True,
                    )
                    procs.check()
        status_code, body = httpRequest(servers["disperse"].port, "GET", "/stats")
        if status_code == 200:
            bench.results["disperse_stats"] = json.loads(body)
    medians = summarize(runs)
    goals = evaluate_goals(medians)
    if runs:
        bench.save(
            runs=[asdict(r) for r in runs],
            medians=medians,
            goals=[asdict(g) for g in goals],
        )
        print()
        bench.partial()
        print(report(medians, goals))
        if any(not g.ok and "p99" in g.name for g in goals):
            c = args.connections
            print(
                f"\nNote: wrk keeps {c} requests in flight, so mean latency = "
                f"{c} / req/s (Little's law): p99 <= {GOAL_P99_MS:.0f} ms needs "
                f"well over {c / GOAL_P99_MS * 1000:,.0f} req/s on one core. "
                "Compare with the references' p99 above."
            )
        warned = [r for r in runs if r.warnings]
        if warned:
            print(f"\nWarning: {len(warned)} run(s) got unexpected answers (see JSON).")
        print(f"\nRaw results: {bench.output}")
    return bench.exit_status(args.strict, goals)
