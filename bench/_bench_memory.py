"""
The memory benchmark behind C{bench/memory}: the per-entry cost of
L{disperse.store.Store} beyond key and value, in a fresh interpreter per
variant (C{--worker}), and the resident set of a real node written three
times its C{--max-memory} budget. The method is described in
bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import random
import string
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench._bench_common import (
    MIB,
    BenchError,
    BenchRun,
    Pinning,
    bench_parser,
    check_ranges,
    choose_pinning,
    format_table,
    mib,
    self_rss,
    verdict,
)
from bench._launch import REPO_DIR
from disperse.testing.cluster import (
    ClusterError,
    KeepAlive,
    ProcessSet,
    checkNodePlugin,
    childEnv,
    freePorts,
    httpRequest,
    loopbackArgs,
    nodeCommand,
    peakResidentBytes,
    residentBytes,
)

KEY_FORMAT = "key:%09d"  # 13 bytes
VALUE_SIZE = 64
TTL_MS = 3_600_000  # an hour: indexed for expiry, never reached
GOAL_OVERHEAD_BYTES = 200

BUDGET_KEY_FORMAT = "mem:%09d"  # 13 bytes
MAX_CLIENT_ERRORS = 100


# --- 1. in-process -------------------------------------------------------------


def inprocess_worker(variant: str, entries: int) -> dict[str, Any]:
    """
    Fill a fresh L{Store} with C{entries} entries and measure how much the
    resident set grew. Runs in its own interpreter (see L{measure_inprocess}).
    """
    from twisted.internet.task import Clock

    from disperse.store import Store

    rng = random.Random(42)
    randbytes = rng.randbytes
    ttl_ms = TTL_MS if variant == "ttl" else 0
    store = Store(clock=Clock(), nodeId=1, maxBytes=None)
    put = store.put
    gc.collect()
    before = self_rss()
    started = time.perf_counter()
    for i in range(entries):
        put(KEY_FORMAT % i, randbytes(VALUE_SIZE), ttlMs=ttl_ms)
    elapsed = time.perf_counter() - started
    gc.collect()
    after = self_rss()
    if len(store) != entries:
        raise BenchError(f"store holds {len(store)} entries, expected {entries}")
    sample_key = KEY_FORMAT % 0
    payload = len(sample_key) + VALUE_SIZE
    growth = (after - before) / entries
    return {
        "variant": variant,
        "entries": entries,
        "rss_before": before,
        "rss_after": after,
        "growth_per_entry": growth,
        "payload_per_entry": payload,
        "overhead_per_entry": growth - payload,
        # The part no Python store can avoid: the str and bytes headers.
        "object_headers_per_entry": sys.getsizeof(sample_key)
        + sys.getsizeof(b"x" * VALUE_SIZE)
        - payload,
        "puts_per_sec": entries / elapsed if elapsed else 0.0,
    }


def measure_inprocess(variant: str, entries: int) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "bench._bench_memory",
        "--worker",
        variant,
        "--entries",
        str(entries),
    ]
    try:
        done = subprocess.run(
            argv,
            cwd=REPO_DIR,
            env=childEnv(),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"in-process {variant} run took over 900 s") from e
    if done.returncode != 0:
        raise BenchError(
            f"in-process {variant} run failed (exit {done.returncode}):\n"
            f"{done.stderr[-3000:]}"
        )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def inprocess_report(results: Sequence[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        rows.append(
            [
                "no TTL" if r["variant"] == "plain" else "with TTL",
                f"{r['entries']:,}",
                f"{r['growth_per_entry']:.1f}",
                f"{r['payload_per_entry']}",
                f"{r['overhead_per_entry']:.1f}",
                f"{r['object_headers_per_entry']}",
                f"<= {GOAL_OVERHEAD_BYTES}",
                verdict(r["overhead_per_entry"] <= GOAL_OVERHEAD_BYTES),
            ]
        )
    return format_table(
        [
            "store",
            "entries",
            "RSS B/entry",
            "key+value B",
            "overhead B",
            "(str+bytes hdrs)",
            "goal",
            "verdict",
        ],
        rows,
    )


# --- 2. budget ------------------------------------------------------------------


@dataclass
class RssSampler:
    """
    Samples a process's VmRSS every C{interval} seconds on a thread.
    """

    pid: int
    interval: float = 0.05
    samples: list[tuple[float, int]] = field(default_factory=list)
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        last_kept = -1.0
        while not self._stop.is_set():
            try:
                rss = residentBytes(self.pid)
            except (OSError, ClusterError):
                return
            self.peak = max(self.peak, rss)
            now = time.monotonic() - self._started
            if now - last_kept >= 0.5:  # keep a coarse series for the JSON
                self.samples.append((round(now, 2), rss))
                last_kept = now
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


@dataclass
class LoadResult:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    seconds: float = 0.0
    timed_out: bool = False
    last_error: str = ""


def put_load(
    port: int,
    total: int,
    value_size: int,
    connections: int,
    timeout: float,
    progress: Callable[[int, float], None],
) -> LoadResult:
    """
    PUT C{total} distinct keys (C{mem:%09d}) with C{value_size}-byte values
    over C{connections} keep-alive connections, one thread each; stops early
    after C{timeout} seconds or too many errors. C{progress(sent, elapsed)}
    is called every five seconds.
    """
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits
    bodies = [
        json.dumps({"value": "".join(rng.choices(alphabet, k=value_size))}).encode()
        for _ in range(64)
    ]
    headers = {"Content-Type": "application/json"}
    counter = itertools.count()
    stop = threading.Event()
    lock = threading.Lock()
    result = LoadResult()
    started = time.monotonic()
    deadline = started + timeout

    done = [0] * connections  # each thread only writes its own slot

    def worker(slot: int) -> None:
        statuses: Counter[int] = Counter()
        conn = KeepAlive(port, timeout=10)
        try:
            while not stop.is_set():
                i = next(counter)
                if i >= total:
                    break
                if time.monotonic() > deadline:
                    result.timed_out = True
                    break
                path = "/cache/" + BUDGET_KEY_FORMAT % i
                try:
                    status, _, _ = conn.request(
                        "PUT", path, bodies[i % len(bodies)], headers
                    )
                    statuses[status] += 1
                    done[slot] += 1
                except OSError as e:
                    with lock:
                        result.errors += 1
                        result.last_error = repr(e)
                        if result.errors > MAX_CLIENT_ERRORS:
                            stop.set()
        finally:
            conn.close()
            with lock:
                result.statuses.update(statuses)

    threads = [
        threading.Thread(target=worker, args=(slot,), daemon=True)
        for slot in range(connections)
    ]
    for t in threads:
        t.start()
    try:
        next_report = started + 5
        while alive := [t for t in threads if t.is_alive()]:
            alive[0].join(0.5)
            now = time.monotonic()
            if now >= next_report:
                progress(sum(done), now - started)
                next_report += 5
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    result.seconds = time.monotonic() - started
    result.sent = sum(result.statuses.values())
    return result


@dataclass
class BudgetResult:
    max_memory: str
    budget_bytes: int
    data_bytes_target: int
    puts_target: int
    value_size: int
    connections: int
    idle_rss: int
    slack_bytes: int
    limit_bytes: int
    sampled_peak_rss: int = 0
    kernel_peak_rss: int = 0
    final_rss: int = 0
    puts_sent: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    client_errors: int = 0
    load_seconds: float = 0.0
    timed_out: bool = False
    stats: dict[str, Any] = field(default_factory=dict)
    first_key_status: int = 0
    last_key_status: int = 0
    rss_series: list[tuple[float, int]] = field(default_factory=list)

    @property
    def peak_rss(self) -> int:
        return max(self.sampled_peak_rss, self.kernel_peak_rss)

    @property
    def ok(self) -> bool:
        return self.peak_rss <= self.limit_bytes


def measure_budget(
    pinning: Pinning, args: argparse.Namespace, log_dir: Path
) -> BudgetResult:
    """
    The budget run: C{--max-memory}, C{--factor}, C{--value-size},
    C{--connections}, C{--slack-mb} and C{--timeout} come from C{args}.
    """
    from disperse.units import parseSize

    max_memory: str = args.max_memory
    factor: float = args.factor
    value_size: int = args.value_size
    connections: int = args.connections
    budget = parseSize(max_memory)
    entry_bytes = len(BUDGET_KEY_FORMAT % 0) + value_size
    data_target = int(budget * factor)
    puts = math.ceil(data_target / entry_bytes)
    with ProcessSet(cwd=REPO_DIR) as procs:
        port, gossip = freePorts(2)
        node = procs.start(
            "disperse",
            pinning.server(
                nodeCommand([*loopbackArgs(gossip, port), "--max-memory", max_memory])
            ),
            log_dir / "disperse-budget.log",
        )
        node.waitHealthy(port)
        # Idle baseline: settle, then the median of a few samples.
        time.sleep(1.0)
        idle_samples = []
        for _ in range(5):
            idle_samples.append(residentBytes(node.pid))
            time.sleep(0.1)
        idle = sorted(idle_samples)[len(idle_samples) // 2]
        slack = int(args.slack_mb * MIB)
        result = BudgetResult(
            max_memory=max_memory,
            budget_bytes=budget,
            data_bytes_target=data_target,
            puts_target=puts,
            value_size=value_size,
            connections=connections,
            idle_rss=idle,
            slack_bytes=slack,
            limit_bytes=budget + idle + slack,
        )
        print(
            f"Node up (pid {node.pid}), idle RSS {mib(idle)}; writing "
            f"{puts:,} PUTs of {value_size} B values ({mib(data_target)}, "
            f"{factor:g} x budget) over {connections} connections ...",
            flush=True,
        )
        sampler = RssSampler(node.pid)
        sampler.start()
        if pinning.client_cpu is not None:
            # Threads started from here on inherit the load generator's CPU.
            os.sched_setaffinity(0, {pinning.client_cpu})

        def progress(sent: int, elapsed: float) -> None:
            print(
                f"  {elapsed:5.0f} s  {sent:>9,} PUTs  {sent / elapsed:6,.0f}/s  "
                f"node RSS {mib(residentBytes(node.pid))} (max {mib(sampler.peak)})",
                flush=True,
            )

        try:
            load = put_load(port, puts, value_size, connections, args.timeout, progress)
        finally:
            sampler.stop()
        time.sleep(1.0)
        if node.exited() is not None:
            raise BenchError(
                f"the node exited (status {node.exited()}) under load:\n"
                f"{node.logTail()}"
            )
        result.final_rss = residentBytes(node.pid)
        result.sampled_peak_rss = max(sampler.peak, result.final_rss)
        result.kernel_peak_rss = peakResidentBytes(node.pid)
        result.rss_series = sampler.samples
        result.puts_sent = load.sent
        result.statuses = {str(k): v for k, v in sorted(load.statuses.items())}
        result.client_errors = load.errors
        result.load_seconds = load.seconds
        result.timed_out = load.timed_out
        status, body = httpRequest(port, "GET", "/stats")
        if status == 200:
            result.stats = json.loads(body)
        result.first_key_status, _ = httpRequest(
            port, "GET", "/cache/" + BUDGET_KEY_FORMAT % 0
        )
        result.last_key_status, _ = httpRequest(
            port, "GET", "/cache/" + BUDGET_KEY_FORMAT % (load.sent - 1)
        )
        if load.errors:
            print(f"Client errors: {load.errors} (last: {load.last_error})")
    return result


def budget_report(r: BudgetResult) -> str:
    def stat(name: str) -> str:
        value = r.stats.get(name, "?")
        return f"{value:,}" if isinstance(value, int) else str(value)

    rate = r.puts_sent / r.load_seconds if r.load_seconds else 0.0
    rows = [
        [
            "budget (--max-memory)",
            f"{r.max_memory} = {r.budget_bytes:,} B ({mib(r.budget_bytes)})",
        ],
        ["data written", f"{r.puts_sent:,} PUTs x {r.value_size} B ({rate:,.0f}/s)"],
        ["responses", ", ".join(f"{k}: {v:,}" for k, v in r.statuses.items())],
        ["baseline (idle node RSS)", mib(r.idle_rss)],
        ["max RSS (sampled)", mib(r.sampled_peak_rss)],
        ["max RSS (kernel VmHWM)", mib(r.kernel_peak_rss)],
        ["RSS at end", mib(r.final_rss)],
        [
            "limit",
            f"budget + baseline + {mib(r.slack_bytes)} slack = {mib(r.limit_bytes)}",
        ],
        ["/stats keys", stat("keys")],
        ["/stats bytes", stat("bytes")],
        ["/stats evictions", stat("evictions")],
        ["first key / last key", f"HTTP {r.first_key_status} / {r.last_key_status}"],
    ]
    table = format_table(["measure", "value"], rows, left=2)
    complete = r.puts_sent >= r.puts_target and not r.timed_out
    lines = [table, ""]
    if not complete:
        lines.append(
            f"INCOMPLETE: {r.puts_sent:,} of {r.puts_target:,} PUTs sent "
            f"(timed out: {r.timed_out})"
        )
    lines.append(f"max RSS {mib(r.peak_rss)} <= {mib(r.limit_bytes)}: {verdict(r.ok)}")
    return "\n".join(lines)


# --- command line ----------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = bench_parser(
        "bench/memory",
        "Per-entry memory overhead of the store (in-process) and the "
        "resident set of a node writing 3x its --max-memory budget.",
    )
    for flag, kind, default, what in (
        ("--entries", int, 1_000_000, "in-process entries (1e6)"),
        ("--max-memory", str, "64MB", "node budget (64MB)"),
        ("--factor", float, 3.0, "data written / budget (3)"),
        ("--value-size", int, 1024, "budget run value bytes"),
        ("--connections", int, 4, "keep-alive connections (4)"),
        ("--slack-mb", float, 30.0, "MiB allowed over baseline"),
        ("--timeout", float, 600.0, "max seconds of PUT load"),
    ):
        parser.add_argument(flag, type=kind, default=default, help=what)
    parser.add_argument(
        "--quick", action="store_true", help="250,000 in-process entries"
    )
    parser.add_argument("--skip-inprocess", action="store_true")
    parser.add_argument("--skip-budget", action="store_true")
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument("--worker", choices=("plain", "ttl"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.entries = min(args.entries, 250_000)
    check_ranges(
        parser,
        args,
        {
            "entries": (1, 20_000_000),
            "connections": (1, 64),
            "value_size": (1, 1_000_000),
            "timeout": (1, 3600),
        },
    )
    if not 0 < args.factor <= 20:
        parser.error("--factor must be in (0, 20]")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(inprocess_worker(args.worker, args.entries)))
        return 0
    pinning = choose_pinning(not args.no_pin)
    config = {k: v for k, v in vars(args).items() if k not in ("output", "worker")}
    bench = BenchRun("memory", args.output, {**config, "pinning": pinning.describe()})
    passed: list[bool] = []
    with bench:
        if not args.skip_inprocess:
            print(
                f"In-process store: {args.entries:,} entries, keys like "
                f"{KEY_FORMAT % 0!r}, {VALUE_SIZE} random bytes each ...",
                flush=True,
            )
            measured = [measure_inprocess(v, args.entries) for v in ("plain", "ttl")]
            bench.results["inprocess"] = measured
            passed += [m["overhead_per_entry"] <= GOAL_OVERHEAD_BYTES for m in measured]
            print()
            print(inprocess_report(measured))
            print()
        if not args.skip_budget:
            checkNodePlugin()
            bench.log_dir.mkdir(parents=True, exist_ok=True)
            budget = measure_budget(pinning, args, bench.log_dir)
            bench.results["budget"] = asdict(budget) | {
                "peak_rss": budget.peak_rss,
                "ok": budget.ok,
                "logs": str(bench.log_dir),
            }
            passed.append(budget.ok)
            print()
            print(budget_report(budget))
    if "inprocess" in bench.results or "budget" in bench.results:
        bench.save()
        print(f"\nRaw results: {bench.output}")
    if bench.status == 0 and args.strict and not all(passed):
        return 1
    return bench.status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
