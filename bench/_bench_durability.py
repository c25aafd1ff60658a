"""
The persistence benchmark behind C{bench/durability}: what C{--data-dir}
costs and what it buys, next to the same node in memory and to
C{redis-server} in the same run. Four parts: write throughput in memory,
with C{--fsync everysec} and with C{--fsync always}; restart time after a
clean stop and after a kill -9, against Redis loading an RDB and an AOF of
the same keys; bytes on disk per live byte after a snapshot; and the
longest stall a snapshot causes, seen from a client pinging the node.
Servers on one CPU, clients on the other; medians, spreads, ratios and
goals. The method is described in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import hiredis

from bench._bench_common import (
    BenchError,
    BenchRun,
    Goal,
    Node,
    Pinning,
    add_node_options,
    bench_parser,
    check_ranges,
    choose_pinning,
    code_version,
    format_table,
    goals_table,
    print_log_problems,
    ratio_goal,
    scan_logs,
    start_node,
    subset,
)
from bench._bench_resp import (
    REDIS_TOOLS_HINT,
    SHARED_CORE_PCT,
    Latency,
    Load,
    Run,
    Target,
    check_target,
    latency_table,
    medians,
    paired,
    ratio_cell,
    resp_args,
    run_benchmark,
    run_latency,
    saturated_table,
    sized,
    wait_resp,
)
from bench._launch import REPO_DIR
from bench._resp_load import LOOPBACK, command, encode
from disperse.testing.cluster import (
    ClusterError,
    NodeProcess,
    ProcessSet,
    checkNodePlugin,
    freePorts,
    getJSON,
    httpRequest,
    logEvents,
)

PARTS = ("throughput", "restart", "space", "stalls")
MODES = ("memory", "everysec", "always")
MODE_TITLES = {
    "memory": "in memory",
    "everysec": "--fsync everysec",
    "always": "--fsync always",
}
VALUE_BYTES = 100
CONNECTIONS = 50
KEYSPACE = 100_000  # the throughput runs' SETs: random keys over this many
KEY_COUNTS = (100_000, 1_000_000)
QUICK_KEY_COUNTS = (10_000, 100_000)
SNAPSHOT_KEYS = 1_000_000
QUICK_SNAPSHOT_KEYS = 100_000
# Enough for 1M keys of 100 bytes without evicting one.
MAX_MEMORY = "4GB"
WARMUP_REQUESTS = 10_000
# The open-loop runs offer this share of the slowest mode's median req/s:
# a load all three carry (a write with --fsync always that waits over the
# replica timeout for its sync is answered NOREPLICAS).
LATENCY_FRACTION = 0.5
SAMPLE_KEYS = 200  # read back after a restart
POLL_S = 0.01  # how often a restarting server is asked whether it serves
GIVE_UP_S = 5.0  # loading ended, the key count short and still for this long
SYNC_SETTLE_S = 2.0  # --fsync everysec: the last acknowledged write is synced
STOP_TIMEOUT_S = 120.0
FILL_BATCH = 1000
FILL_WINDOW = 2  # batches in flight
PLOT_FLOOR_S = 1e-3
LISTENING = re.compile(r"HTTP API listening on")
PING_INTERVAL_S = 0.001
PING_LEAD_S = 0.5  # pings before and after a snapshot, around its window
SNAPSHOT_TIMEOUT_S = 600.0

# Goals (issue 16).
GOAL_EVERYSEC = 0.9
GOAL_ALWAYS = 0.5
GOAL_VS_REDIS = 3.0
GOAL_REPLAY_PER_S = 400_000.0
GOAL_SPACE = 1.5
GOAL_STALL_MS = 10.0

DATA_DIR_MISSING = (
    "this node has no --data-dir option (`twistd disperse --help` does not list "
    "it): persistence is not built in this checkout. `--parts restart --redis-only` "
    "runs the Redis side alone."
)


# --- keys and loads --------------------------------------------------------------


def key_name(i: int) -> bytes:
    return b"dur:%010d" % i


def value_of(i: int, generation: int = 0) -> bytes:
    """
    The C{generation}th value of key C{i}: distinct per key and write,
    L{VALUE_BYTES} long.
    """
    head = b"%010d.%d." % (i, generation)
    return head + b"v" * (VALUE_BYTES - len(head))


def live_bytes(count: int) -> int:
    """
    Key bytes plus value bytes of C{count} keys.
    """
    return sum(len(key_name(i)) for i in range(count)) + count * VALUE_BYTES


def fill(port: int, count: int, generation: int = 0, timeout: float = 900.0) -> float:
    """
    C{SET} keys 0 .. C{count} - 1 to their C{generation}th value over one
    connection, L{FILL_WINDOW} batches of L{FILL_BATCH} in flight; every
    answer must be C{OK}. The seconds it took.
    """
    started = time.monotonic()
    deadline = started + timeout
    limit = FILL_WINDOW * FILL_BATCH
    with socket.create_connection((LOOPBACK, port), timeout=60.0) as sock:
        reader = hiredis.Reader()
        sent = answered = 0
        while answered < count:
            while sent < count and sent - answered < limit:
                n = min(FILL_BATCH, count - sent)
                sock.sendall(
                    b"".join(
                        encode(b"SET", key_name(j), value_of(j, generation))
                        for j in range(sent, sent + n)
                    )
                )
                sent += n
            data = sock.recv(1 << 20)
            if not data:
                raise BenchError(f"port {port} closed the connection while filling")
            reader.feed(data)
            reply = reader.gets()
            while reply is not False:
                if reply != b"OK":
                    raise BenchError(f"SET on port {port} answered {reply!r}")
                answered += 1
                reply = reader.gets()
            if time.monotonic() > deadline:
                raise BenchError(
                    f"writing {count} keys to port {port} took over {timeout:.0f} s"
                )
    return time.monotonic() - started


def sample_of(count: int, size: int, seed: int) -> list[int]:
    """
    Up to C{size} of the key indexes 0 .. C{count} - 1, with the first and
    the last.
    """
    if count == 0:
        return []
    rng = random.Random(seed)
    chosen = {0, count - 1, *rng.sample(range(count), min(size, count))}
    return sorted(chosen)


def sample_reads_back(port: int, sample: Sequence[int], generation: int) -> str:
    """
    C{MGET} of the C{sample} keys; "" when each has its C{generation}th
    value, else what is wrong. With an empty sample, a missing key must
    read as nil (the same round trip).
    """
    keys = [key_name(i) for i in sample] or [key_name(-1)]
    try:
        reply = command(port, b"MGET", *keys, timeout=5.0)
    except OSError as e:
        return repr(e)
    if isinstance(reply, hiredis.ReplyError) or not isinstance(reply, list):
        return f"MGET answered {reply!r}"[:200]
    want: list[bytes | None] = [value_of(i, generation) for i in sample] or [None]
    wrong = sum(1 for got, value in zip(reply, want, strict=False) if got != value)
    if wrong or len(reply) != len(want):
        return f"{wrong} of {len(want)} sampled keys wrong or missing"
    return ""


def disk_bytes(path: Path) -> tuple[int, int]:
    """
    The files under C{path}: their sizes summed, and the space allocated to
    them (st_blocks).
    """
    apparent = allocated = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue  # deleted while we walked
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


class Scratch:
    """
    Fresh directories under one parent (C{--dir}), each removed when done
    with, and all that are left when the run ends, however it ends.
    """

    def __init__(self, parent: Path) -> None:
        self.parent = parent
        self._made: list[Path] = []

    def make(self, label: str) -> Path:
        path = Path(
            tempfile.mkdtemp(prefix=f"disperse-bench-{label}-", dir=self.parent)
        )
        self._made.append(path)
        return path

    def remove(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
        if path in self._made:
            self._made.remove(path)

    def close(self) -> None:
        for path in list(self._made):
            self.remove(path)

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- Disperse ---------------------------------------------------------------------


def persistence_supported() -> bool:
    """
    Whether C{twistd disperse} takes C{--data-dir}.
    """
    return "--data-dir" in checkNodePlugin()


@dataclass
class Plan:
    """
    What every part shares: the processes, pinning, logs, scratch space
    and the nodes' extra options.
    """

    procs: ProcessSet
    pinning: Pinning
    log_dir: Path
    scratch: Scratch
    extra: list[str]
    restart_timeout: float
    starts: int = 0
    node_logs: list[Path] = field(default_factory=list)

    def log(self, label: str) -> Path:
        self.starts += 1
        return self.log_dir / f"{self.starts:03d}-{label}.log"


@dataclass
class DNode:
    """
    A Disperse node of this benchmark: its ports (kept across restarts),
    data directory (C{None}: in memory), fsync mode, and the process of
    its latest start.
    """

    label: str
    gossip_port: int
    http_port: int
    resp_port: int
    data_dir: Path | None
    fsync: str | None
    node: Node | None = None

    def args(self, extra: Sequence[str]) -> list[str]:
        argv = [*resp_args(self.resp_port), "--max-memory", MAX_MEMORY]
        if self.data_dir is not None:
            argv += ["--data-dir", str(self.data_dir)]
            if self.fsync is not None:
                argv += ["--fsync", self.fsync]
        return [*argv, *extra]

    @property
    def proc(self) -> NodeProcess:
        assert self.node is not None
        return self.node.proc

    def start(self, plan: Plan, label: str) -> NodeProcess:
        ports = (self.gossip_port, self.http_port)
        log = plan.log(label)
        plan.node_logs.append(log)
        self.node = start_node(
            plan.procs,
            plan.pinning,
            log,
            self.label,
            ports,
            None,
            self.args(plan.extra),
            precise=True,
        )
        return self.node.proc

    def wait_ready(self) -> None:
        assert self.node is not None
        self.node.wait_ready()
        wait_resp(self.node.proc, self.resp_port)

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = getJSON(self.http_port, "/stats", timeout=10.0)
        return stats

    def stop(self, plan: Plan, kill: bool = False) -> tuple[float, int | None]:
        """
        SIGKILL, or SIGTERM (SIGKILL after L{STOP_TIMEOUT_S}); the seconds
        until it exited and its status (C{None}: it had to be killed).
        """
        proc = self.proc
        started = time.monotonic()
        if kill:
            proc.kill()
            status = None
        else:
            status = proc.terminate(STOP_TIMEOUT_S)
        took = time.monotonic() - started
        plan.procs.forget(proc)
        return took, status


def new_node(plan: Plan, label: str, mode: str) -> DNode:
    """
    A node on fresh ports: in memory, or with a fresh data directory and
    C{--fsync mode}.
    """
    gossip, http, resp = freePorts(3)
    data_dir = None if mode == "memory" else plan.scratch.make(label)
    fsync = None if mode == "memory" else mode
    return DNode(label, gossip, http, resp, data_dir, fsync)


def persistence_of(stats: Mapping[str, Any]) -> dict[str, Any]:
    section = stats.get("persistence")
    return dict(section) if isinstance(section, Mapping) else {}


def replay_rate(persistence: Mapping[str, Any]) -> float | None:
    """
    Records read per second while the data directory loaded at the last
    start (C{/stats} C{persistence.load}); C{None} when not reported.
    """
    load = persistence.get("load")
    if not isinstance(load, Mapping):
        return None
    rate = load.get("recordsPerSecond")
    if isinstance(rate, (int, float)) and rate > 0:
        return float(rate)
    records, seconds = load.get("records"), load.get("seconds")
    if isinstance(records, int) and isinstance(seconds, (int, float)) and seconds > 0:
        return records / seconds
    return None


@dataclass
class Served:
    """
    A restart: from the process's start until it served every key
    (C{serve_s}; C{None}: not within the timeout, C{problem} says why).
    """

    serve_s: float | None
    first_answer_s: float | None
    loaded_s: float | None
    keys: int
    problem: str = ""


def wait_serving(
    proc: NodeProcess,
    probe: Callable[[], tuple[bool, int, str]],
    sample_check: Callable[[], str],
    expected: int,
    timeout: float,
) -> Served:
    """
    Every L{POLL_S}: C{probe} says whether the server answers and has
    ended loading, and how many keys it holds; once loading ended and it
    holds C{expected} keys, C{sample_check} must find the sample read back.
    Times are from the process's start.
    """
    started = proc.started
    first = loaded = None
    keys = -1
    last = "no answer"
    changed = (keys, started)  # the key count, and since when
    next_poll = time.monotonic()
    while time.monotonic() < started + timeout:
        proc.check()
        answered, keys, problem = probe()
        now = time.monotonic()
        if answered and first is None:
            first = now - started
        if keys != changed[0]:
            changed = (keys, now)
        if answered and not problem:
            if loaded is None:
                loaded = now - started
            if keys == expected:
                problem = sample_check()
                if not problem:
                    return Served(time.monotonic() - started, first, loaded, keys)
            else:
                problem = f"{keys} keys of {expected}"
                if now - changed[1] > GIVE_UP_S:
                    # Loading ended and nothing else will bring the rest
                    # back to a node alone.
                    break
        last = problem
        next_poll = max(next_poll + POLL_S, time.monotonic())
        time.sleep(max(0.0, next_poll - time.monotonic()))
    waited = time.monotonic() - started
    return Served(None, first, loaded, keys, f"after {waited:.0f} s: {last}")


def node_probe(node: DNode) -> Callable[[], tuple[bool, int, str]]:
    def probe() -> tuple[bool, int, str]:
        try:
            status, body = httpRequest(node.http_port, "GET", "/stats", timeout=2.0)
        except OSError as e:
            return False, -1, repr(e)
        if status != 200:
            return True, -1, f"/stats answered {status}"
        stats = json.loads(body)
        if persistence_of(stats).get("loading"):
            return True, int(stats.get("keys", -1)), "loading"
        return True, int(stats.get("keys", -1)), ""

    return probe


def redis_probe(port: int) -> Callable[[], tuple[bool, int, str]]:
    def probe() -> tuple[bool, int, str]:
        try:
            reply = command(port, b"DBSIZE", timeout=2.0)
        except OSError as e:
            return False, -1, repr(e)
        if isinstance(reply, hiredis.ReplyError):
            return True, -1, str(reply)[:80]  # -LOADING while it loads
        return True, int(reply), ""

    return probe


# --- Redis --------------------------------------------------------------------------


def redis_argv(port: int, directory: Path, kind: str) -> list[str]:
    """
    Debian's redis-server in the foreground, no RDB save points; C{kind}
    C{aof}: append-only, fsync every second, a pure AOF (no RDB preamble,
    no automatic rewrite); C{rdb}: no AOF, so that it loads the
    C{dump.rdb} a C{SAVE} left.
    """
    argv = [
        shutil.which("redis-server") or "redis-server",
        *("--port", str(port), "--bind", LOOPBACK, "--daemonize", "no"),
        *("--dir", str(directory), "--logfile", "", "--save", ""),
    ]
    if kind == "aof":
        argv += [
            *("--appendonly", "yes", "--appendfsync", "everysec"),
            *("--aof-use-rdb-preamble", "no", "--auto-aof-rewrite-percentage", "0"),
        ]
    else:
        argv += ["--appendonly", "no"]
    return argv


def start_redis(plan: Plan, port: int, directory: Path, kind: str) -> NodeProcess:
    argv = plan.pinning.server(redis_argv(port, directory, kind))
    return plan.procs.start(f"redis-{kind}", argv, plan.log(f"redis-{kind}"))


# --- part 1: throughput ---------------------------------------------------------------


@dataclass
class ThroughputRun:
    run: Run
    persistence: dict[str, Any]
    disk_bytes: int


def throughput_run(
    plan: Plan, load: Load, mode: str, rep: int, seconds: int, warmup: int
) -> ThroughputRun:
    """
    A fresh node in C{mode}: checked, warmed up with C{warmup} SETs (which
    size the run to about C{seconds}), then the measured run.
    """
    node = new_node(plan, f"tp-{mode}", mode)
    try:
        node.start(plan, f"throughput-{mode}-rep{rep}")
        node.wait_ready()
        target = Target(mode, node.resp_port, [node.proc.pid], node.http_port)
        check_target(target, value_of(0))
        warm = run_benchmark(load, target, "set", 1, warmup, 0)
        count = sized(warm.requests_per_sec, seconds)
        run = run_benchmark(load, target, "set", 1, count, rep)
        persistence = persistence_of(node.stats())
        on_disk = disk_bytes(node.data_dir)[0] if node.data_dir else 0
        node.stop(plan)
    finally:
        if node.data_dir is not None:
            plan.scratch.remove(node.data_dir)
    return ThroughputRun(run, persistence, on_disk)


def latency_run(
    plan: Plan, load: Load, mode: str, rate: float, seconds: int, rep: int
) -> Latency:
    node = new_node(plan, f"lat-{mode}", mode)
    try:
        node.start(plan, f"latency-{mode}-rep{rep}")
        node.wait_ready()
        target = Target(mode, node.resp_port, [node.proc.pid], node.http_port)
        result = run_latency(load, target, "set", 1, rate, seconds, rep)
        node.stop(plan)
    finally:
        if node.data_dir is not None:
            plan.scratch.remove(node.data_dir)
    return result


def describe_throughput(t: ThroughputRun, reps: int) -> str:
    r = t.run
    problems = list(r.warnings)
    if r.server_cpu_pct < SHARED_CORE_PCT:
        problems.append(
            f"the node got {r.server_cpu_pct:.0f}% of its core: it shared it, "
            "or the load generator was the limit"
        )
    flags = "  !! " + "; ".join(problems) if problems else ""
    return (
        f"rep {r.rep}/{reps} SET -P 1 {MODE_TITLES[r.server]:17} "
        f"{r.requests_per_sec:9.0f} req/s  p50 {r.p50_ms:6.3f} ms  "
        f"p99 {r.p99_ms:6.3f} ms  server CPU {r.server_cpu_pct:3.0f}% "
        f"{r.cpu_us_per_request:5.1f} us/req  on disk {t.disk_bytes / 1e6:.1f} MB"
        f"{flags}"
    )


# --- part 2: restart ------------------------------------------------------------------


@dataclass
class Restart:
    """
    One restart of a server holding C{keys} keys (0: an empty start).
    C{system}: disperse or redis; C{how}: clean (SIGTERM), kill (SIGKILL),
    rdb, aof or empty-*.
    """

    system: str
    how: str
    keys: int
    rep: int
    served: Served
    fill_s: float = 0.0
    stop_s: float | None = None
    disk_bytes: int = 0
    replay_per_s: float | None = None
    persistence: dict[str, Any] = field(default_factory=dict)
    listen_s: float | None = None  # from the start to "HTTP API listening"
    node_load_s: float | None = None  # the node's own loading time (/stats)


def disperse_restart(plan: Plan, keys: int, how: str, rep: int) -> Restart:
    """
    A node with a fresh data dir (C{--fsync everysec}) gets C{keys} keys,
    is stopped (C{how}: clean, kill; empty: nothing written) and started
    again on the same directory and ports.
    """
    node = new_node(plan, f"restart-{how}", "everysec")
    assert node.data_dir is not None
    sample = sample_of(keys, SAMPLE_KEYS, rep)
    fill_s = 0.0
    stop_s: float | None = None
    try:
        if how != "empty":
            node.start(plan, f"restart-{keys}-{how}-fill-rep{rep}")
            node.wait_ready()
            fill_s = fill(node.resp_port, keys)
            if how == "kill":
                # Everything acknowledged has been synced by now: what the
                # restart must bring back is every key.
                time.sleep(SYNC_SETTLE_S)
            took, _ = node.stop(plan, kill=how == "kill")
            stop_s = None if how == "kill" else took
        on_disk = disk_bytes(node.data_dir)[0]
        proc = node.start(plan, f"restart-{keys}-{how}-rep{rep}")
        served = wait_serving(
            proc,
            node_probe(node),
            lambda: sample_reads_back(node.resp_port, sample, 0),
            keys,
            plan.restart_timeout,
        )
        persistence = persistence_of(node.stats())
        node.stop(plan)
    finally:
        plan.scratch.remove(node.data_dir)
    load = persistence.get("load")
    return Restart(
        "disperse",
        how,
        keys,
        rep,
        served,
        fill_s,
        stop_s,
        on_disk,
        replay_rate(persistence),
        persistence,
        listen_s=listened(node),
        node_load_s=load.get("seconds") if isinstance(load, Mapping) else None,
    )


def listened(node: DNode) -> float | None:
    """
    When the node's latest start logged that its HTTP API listens, from
    the start (its log has microsecond timestamps).
    """
    proc = node.proc
    if proc.logPath is None:
        return None
    found = logEvents(proc.logPath, LISTENING)
    return found[0][0] - proc.started if found else None


def redis_restart(plan: Plan, keys: int, kind: str, rep: int) -> Restart:
    """
    redis-server (C{kind} rdb or aof) on a fresh directory gets C{keys}
    keys (an RDB: then C{SAVE}), stops (SIGTERM; with an AOF it syncs it)
    and starts again on the same directory.
    """
    directory = plan.scratch.make(f"redis-{kind}")
    (port,) = freePorts(1)
    sample = sample_of(keys, SAMPLE_KEYS, rep)
    fill_s = 0.0
    stop_s: float | None = None
    try:
        if keys:
            proc = start_redis(plan, port, directory, kind)
            wait_resp(proc, port)
            fill_s = fill(port, keys)
            if kind == "rdb":
                reply = command(port, b"SAVE", timeout=STOP_TIMEOUT_S)
                if reply != b"OK":
                    raise BenchError(f"redis SAVE answered {reply!r}")
            started = time.monotonic()
            if proc.terminate(STOP_TIMEOUT_S) is None:
                raise BenchError("redis-server did not stop on SIGTERM")
            stop_s = time.monotonic() - started
            plan.procs.forget(proc)
        on_disk = disk_bytes(directory)[0]
        proc = start_redis(plan, port, directory, kind)
        served = wait_serving(
            proc,
            redis_probe(port),
            lambda: sample_reads_back(port, sample, 0),
            keys,
            plan.restart_timeout,
        )
        plan.procs.forget(proc)
    finally:
        plan.scratch.remove(directory)
    how = kind if keys else f"empty-{kind}"
    return Restart("redis", how, keys, rep, served, fill_s, stop_s, on_disk)


def describe_restart(r: Restart, reps: int) -> str:
    s = r.served
    what = f"{r.system} {r.how}"
    took = f"{s.serve_s:7.3f} s" if s.serve_s is not None else "   none"
    extra = ""
    if r.keys:
        extra += f"  written in {r.fill_s:5.1f} s"
    if r.stop_s is not None:
        extra += f", stopped in {r.stop_s:5.2f} s"
    if r.disk_bytes:
        extra += f", {r.disk_bytes / 1e6:6.1f} MB on disk"
    if r.listen_s is not None:
        extra += f", listening at {r.listen_s:.3f} s"
    if r.node_load_s is not None:
        extra += f", loaded in {r.node_load_s:.3f} s"
    if r.replay_per_s is not None:
        extra += f" ({r.replay_per_s / 1000:.0f}k records/s)"
    flag = f"  !! {s.problem}" if s.problem else ""
    return (
        f"rep {r.rep}/{reps} {r.keys:>9,} keys {what:16} serves all in {took}"
        f"{extra}{flag}"
    )


EMPTY_OF = {
    ("disperse", "clean"): "empty",
    ("disperse", "kill"): "empty",
    ("redis", "rdb"): "empty-rdb",
    ("redis", "aof"): "empty-aof",
}
RESTART_TITLES = {
    ("disperse", "clean"): "disperse, clean stop",
    ("disperse", "kill"): "disperse, kill -9",
    ("redis", "rdb"): "redis-server, RDB",
    ("redis", "aof"): "redis-server, AOF",
}


def net_restarts(
    restarts: Sequence[Restart],
) -> dict[tuple[str, str, int], list[float]]:
    """
    Per (system, how, keys): each repetition's time to serve all keys less
    the median of the same system's empty starts (one a repetition: the
    median is steadier than any one of them, and start-up does not drift
    the way req/s does).
    """
    empties: dict[tuple[str, str], list[float]] = {}
    for r in restarts:
        if r.keys == 0 and r.served.serve_s is not None:
            empties.setdefault((r.system, r.how), []).append(r.served.serve_s)
    out: dict[tuple[str, str, int], list[float]] = {}
    for r in restarts:
        if r.keys == 0 or r.served.serve_s is None:
            continue
        same = empties.get((r.system, EMPTY_OF[(r.system, r.how)]))
        base = statistics.median(same) if same else 0.0
        out.setdefault((r.system, r.how, r.keys), []).append(r.served.serve_s - base)
    return out


def restart_table(restarts: Sequence[Restart]) -> str:
    nets = net_restarts(restarts)
    rows = []
    for (system, how), title in RESTART_TITLES.items():
        empties = [
            r.served.serve_s
            for r in restarts
            if r.system == system
            and r.how == EMPTY_OF[(system, how)]
            and r.served.serve_s is not None
        ]
        for keys in sorted({r.keys for r in restarts if r.keys}):
            mine = [
                r for r in restarts if (r.system, r.how, r.keys) == (system, how, keys)
            ]
            if not mine:
                continue
            gross = [r.served.serve_s for r in mine if r.served.serve_s is not None]
            net = nets.get((system, how, keys), [])
            rates = [r.replay_per_s for r in mine if r.replay_per_s is not None]
            listens = [r.listen_s for r in mine if r.listen_s is not None]
            own = [r.node_load_s for r in mine if r.node_load_s is not None]
            failed = len(mine) - len(gross)
            rows.append(
                [
                    title,
                    f"{keys:,}",
                    _med(gross, "{:.3f}"),
                    _med(empties, "{:.3f}"),
                    _med(net, "{:.3f}"),
                    f"{min(net):.3f}..{max(net):.3f}" if net else "-",
                    f"{keys / statistics.median(net) / 1000:.0f}k"
                    if net and statistics.median(net) > 0
                    else "-",
                    _med(listens, "{:.3f}"),
                    _med(own, "{:.3f}"),
                    f"{statistics.median(rates) / 1000:.0f}k" if rates else "-",
                    _med([r.disk_bytes / 1e6 for r in mine], "{:.1f}"),
                    str(failed) if failed else "",
                ]
            )
    headers = [
        "server",
        "keys",
        "serves all s",
        "empty s",
        "load s",
        "min-max",
        "keys/s",
        "listen s",
        "node load s",
        "replay/s",
        "disk MB",
        "failed",
    ]
    return format_table(headers, rows, left=1)


def _med(values: Sequence[float], spec: str) -> str:
    return spec.format(statistics.median(values)) if values else "-"


def plot_restarts(path: Path, restarts: Sequence[Restart]) -> Path | None:
    """
    Load time (time to serve all keys less the empty start, medians, with
    the min-max as error bars) against the key count, log-log, to C{path};
    C{None} when nothing was measured.
    """
    nets = net_restarts(restarts)
    if not nets:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (system, how), title in RESTART_TITLES.items():
        points = sorted(
            (keys, values)
            for (s, h, keys), values in nets.items()
            if (s, h) == (system, how) and values
        )
        if not points:
            continue
        xs = [k for k, _ in points]
        # A log axis: a load time at or below zero (the empty start's
        # noise) is drawn at the floor.
        clipped = [[max(x, PLOT_FLOOR_S) for x in v] for _, v in points]
        mids = [statistics.median(v) for v in clipped]
        lows = [m - min(v) for m, v in zip(mids, clipped, strict=True)]
        highs = [max(v) - m for m, v in zip(mids, clipped, strict=True)]
        ax.errorbar(
            xs,
            mids,
            yerr=[lows, highs],
            marker="o",
            capsize=3,
            label=title,
            linestyle="--" if system == "redis" else "-",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"keys ({VALUE_BYTES}-byte values)")
    ax.set_ylabel("load time, s (serves all keys, less an empty start)")
    ax.set_title("bench/durability: restart time")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- parts 3 and 4: a snapshot's size and stalls -----------------------------------


@dataclass
class Pings:
    """
    A pinger's samples in one window: how many, p50, p99 and max latency.
    """

    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, latencies: Sequence[float]) -> Pings:
        if not latencies:
            return cls(0, 0.0, 0.0, 0.0)
        ordered = sorted(latencies)

        def at(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

        return cls(len(ordered), at(0.5), at(0.99), ordered[-1] * 1000)


@contextmanager
def pinger(plan: Plan, port: int, label: str) -> Iterator[list[list[float]]]:
    """
    L{bench._resp_ping} on the client CPU for the duration of the block;
    its samples (sent, latency) fill the list yielded, once the block ends.
    """
    argv = [
        sys.executable,
        *("-m", "bench._resp_ping", "--port", str(port)),
        *("--interval", str(PING_INTERVAL_S), "--duration", str(SNAPSHOT_TIMEOUT_S)),
    ]
    log = plan.log(label)
    proc = plan.procs.start(label, plan.pinning.client(argv), log)
    samples: list[list[float]] = []
    try:
        time.sleep(PING_LEAD_S)
        proc.check()
        yield samples
        time.sleep(PING_LEAD_S)
        proc.signal(signal.SIGINT)
        try:
            proc.wait(30.0)
        except subprocess.TimeoutExpired as e:
            raise BenchError("the pinger did not stop on SIGINT") from e
        lines = [
            line
            for line in log.read_text(errors="replace").splitlines()
            if line.startswith("{")
        ]
        if not lines:
            raise BenchError(f"the pinger printed no result; log {log}")
        result = json.loads(lines[-1])
        if result["error"]:
            raise BenchError(f"the pinger failed: {result['error']}")
        samples.extend(result["samples"])
    finally:
        plan.procs.forget(proc)


def in_window(samples: Sequence[Sequence[float]], start: float, end: float) -> Pings:
    return Pings.of([lat for sent, lat in samples if start <= sent <= end])


@dataclass
class Snapshot:
    """
    One C{POST /persistence/snapshot}: its answer, how long it took from
    outside, the pings during it and during a quiet window before.
    """

    rep: int
    seconds: float
    answer: dict[str, Any]
    during: Pings
    quiet: Pings
    node_longest_ms: float | None
    disk_after: tuple[int, int] | None = None
    disk_settled: tuple[int, int] | None = None


def node_longest_ms(answer: Mapping[str, Any]) -> float | None:
    """
    The snapshot's longest reactor slice as the node reports it, in ms
    (a name with "longest" or "slice"; "ms" in it, else seconds).
    """
    for words in (("longest",), ("slice",)):
        for name, value in answer.items():
            if (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and all(w in name.lower() for w in words)
            ):
                return float(value) if "ms" in name.lower() else float(value) * 1000
    return None


def take_snapshot(node: DNode) -> tuple[float, dict[str, Any], float, float]:
    """
    C{POST /persistence/snapshot}, which must answer 200 with JSON; how
    long it took, the answer, and when it was sent and answered.
    """
    started = time.monotonic()
    try:
        status, body = httpRequest(
            node.http_port,
            "POST",
            "/persistence/snapshot",
            timeout=SNAPSHOT_TIMEOUT_S,
        )
    except OSError as e:
        raise BenchError(f"POST /persistence/snapshot failed: {e!r}") from e
    ended = time.monotonic()
    if status != 200:
        raise BenchError(
            f"POST /persistence/snapshot answered {status}: {body[:300]!r}"
        )
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {"raw": body[:300].decode(errors="replace")}
    return ended - started, answer if isinstance(answer, dict) else {}, started, ended


def settled_disk(path: Path, timeout: float = 10.0) -> tuple[int, int]:
    """
    The data directory's size once two readings 0.5 s apart agree (old
    segments may be deleted after the snapshot answered), C{timeout} s at
    most.
    """
    last = disk_bytes(path)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        time.sleep(0.5)
        now = disk_bytes(path)
        if now == last:
            return now
        last = now
    return last


@dataclass
class SnapshotPart:
    keys: int
    live_bytes: int
    fill_s: float
    overwrite_s: float
    snapshots: list[Snapshot]
    persistence: dict[str, Any]


def snapshot_part(
    plan: Plan, keys: int, reps: int, quiet_s: float, stalls: bool
) -> SnapshotPart:
    """
    A node (C{--fsync everysec}, fresh data dir) gets C{keys} keys, then
    each a second value; then C{reps} times: the pinger alone for
    C{quiet_s}, then the pinger while a snapshot is taken (without the
    pinger when not C{stalls}). The data dir is measured after the first.
    """
    node = new_node(plan, "snapshot", "everysec")
    assert node.data_dir is not None
    snapshots: list[Snapshot] = []
    try:
        node.start(plan, f"snapshot-{keys}")
        node.wait_ready()
        fill_s = fill(node.resp_port, keys)
        overwrite_s = fill(node.resp_port, keys, generation=1)
        time.sleep(SYNC_SETTLE_S)
        for rep in range(1, reps + 1):
            quiet = during = Pings.of([])
            if stalls:
                with pinger(plan, node.resp_port, f"ping-quiet-rep{rep}") as samples:
                    started = time.monotonic()
                    time.sleep(quiet_s)
                    ended = time.monotonic()
                quiet = in_window(samples, started, ended)
                with pinger(plan, node.resp_port, f"ping-snapshot-rep{rep}") as samples:
                    took, answer, started, ended = take_snapshot(node)
                during = in_window(samples, started, ended)
            else:
                took, answer, _, _ = take_snapshot(node)
            snap = Snapshot(rep, took, answer, during, quiet, node_longest_ms(answer))
            if rep == 1:
                snap.disk_after = disk_bytes(node.data_dir)
                snap.disk_settled = settled_disk(node.data_dir)
            snapshots.append(snap)
            print(describe_snapshot(snap, reps, stalls), flush=True)
        persistence = persistence_of(node.stats())
        node.stop(plan)
    finally:
        plan.scratch.remove(node.data_dir)
    return SnapshotPart(
        keys, live_bytes(keys), fill_s, overwrite_s, snapshots, persistence
    )


def describe_snapshot(s: Snapshot, reps: int, stalls: bool) -> str:
    text = f"snapshot {s.rep}/{reps}: {s.seconds:.2f} s"
    if s.node_longest_ms is not None:
        text += f", node's longest slice {s.node_longest_ms:.1f} ms"
    if stalls:
        text += (
            f"; pings during it: {s.during.count}, p99 {s.during.p99_ms:.2f} ms, "
            f"max {s.during.max_ms:.2f} ms; quiet: p99 {s.quiet.p99_ms:.2f} ms, "
            f"max {s.quiet.max_ms:.2f} ms"
        )
    if s.disk_settled is not None:
        text += f"; on disk {s.disk_settled[0] / 1e6:.1f} MB"
    return text


# --- goals ----------------------------------------------------------------------------


def throughput_goals(runs: Sequence[Run]) -> tuple[list[Goal], list[list[str]]]:
    goals: list[Goal] = []
    rows: list[list[str]] = []
    for mode, floor in (("everysec", GOAL_EVERYSEC), ("always", GOAL_ALWAYS)):
        mine, theirs = (mode, 1, "set"), ("memory", 1, "set")
        ratios = paired(runs, mine, theirs)
        if not ratios:
            continue
        rows.append(
            [
                f"{MODE_TITLES[mode]} ÷ in memory",
                ratio_cell(ratios),
                ratio_cell(paired(runs, mine, theirs, True)),
            ]
        )
        goals.append(
            ratio_goal(
                f"SET req/s, {MODE_TITLES[mode]} vs in memory",
                statistics.median(ratios),
                floor,
            )
        )
    return goals, rows


def restart_goals(restarts: Sequence[Restart]) -> tuple[list[Goal], list[list[str]]]:
    nets = net_restarts(restarts)
    goals: list[Goal] = []
    rows: list[list[str]] = []
    counts = sorted({r.keys for r in restarts if r.keys})
    for keys in counts:
        for how in ("clean", "kill"):
            mine = nets.get(("disperse", how, keys))
            expected = [
                r
                for r in restarts
                if (r.system, r.how, r.keys) == ("disperse", how, keys)
            ]
            if expected and (
                not mine or any(r.served.serve_s is None for r in expected)
            ):
                goals.append(
                    Goal(
                        f"{keys:,} keys after {how} stop: all served",
                        f"{len(mine or [])} of {len(expected)}",
                        "every restart",
                        False,
                    )
                )
            if not mine:
                continue
            for kind in ("rdb", "aof"):
                ref = nets.get(("redis", kind, keys))
                if not ref:
                    continue
                ratio = statistics.median(mine) / max(statistics.median(ref), 1e-3)
                title = f"{keys:,} keys, {'kill -9' if how == 'kill' else 'clean stop'}"
                rows.append(
                    [
                        f"{title} ÷ Redis {kind.upper()}",
                        f"{statistics.median(mine):.3f} s",
                        f"{statistics.median(ref):.3f} s",
                        f"{ratio:.2f}x",
                    ]
                )
                goals.append(
                    Goal(
                        f"load time, {title}, vs Redis {kind.upper()}",
                        f"{ratio:.2f}x",
                        f"<= {GOAL_VS_REDIS:.2f}x",
                        ratio <= GOAL_VS_REDIS,
                    )
                )
    if counts:
        top = counts[-1]
        rates = [
            r.replay_per_s
            for r in restarts
            if r.system == "disperse" and r.how == "kill" and r.keys == top
        ]
        known = [x for x in rates if x is not None]
        if rates:
            rate = statistics.median(known) if known else 0.0
            goals.append(
                Goal(
                    f"replay rate after kill -9, {top:,} keys (/stats)",
                    f"{rate / 1000:.0f}k records/s" if known else "not reported",
                    f">= {GOAL_REPLAY_PER_S / 1000:.0f}k records/s",
                    bool(known) and rate >= GOAL_REPLAY_PER_S,
                )
            )
    return goals, rows


def snapshot_goals(part: SnapshotPart, stalls: bool, space: bool) -> list[Goal]:
    goals: list[Goal] = []
    first = part.snapshots[0] if part.snapshots else None
    if space and first is not None and first.disk_settled is not None:
        ratio = first.disk_settled[0] / part.live_bytes
        goals.append(
            Goal(
                f"bytes on disk per live byte, {part.keys:,} keys after a snapshot",
                f"{ratio:.2f}x",
                f"<= {GOAL_SPACE:.2f}x",
                0 < ratio <= GOAL_SPACE,  # nothing on disk: nothing persisted
            )
        )
    if stalls and part.snapshots:
        worst = statistics.median(s.during.max_ms for s in part.snapshots)
        goals.append(
            Goal(
                f"longest ping during a snapshot of {part.keys:,} keys (median of max)",
                f"{worst:.2f} ms",
                f"<= {GOAL_STALL_MS:g} ms",
                worst <= GOAL_STALL_MS,
            )
        )
        own = [
            s.node_longest_ms for s in part.snapshots if s.node_longest_ms is not None
        ]
        if own:
            longest = max(own)
            goals.append(
                Goal(
                    "the node's longest snapshot slice (its answer, max)",
                    f"{longest:.2f} ms",
                    f"<= {GOAL_STALL_MS:g} ms",
                    longest <= GOAL_STALL_MS,
                )
            )
    return goals


def snapshot_table(part: SnapshotPart) -> str:
    rows = []
    for s in part.snapshots:
        rows.append(
            [
                str(s.rep),
                f"{s.seconds:.2f}",
                "-" if s.node_longest_ms is None else f"{s.node_longest_ms:.2f}",
                str(s.during.count),
                f"{s.during.p50_ms:.2f}",
                f"{s.during.p99_ms:.2f}",
                f"{s.during.max_ms:.2f}",
                str(s.quiet.count),
                f"{s.quiet.p99_ms:.2f}",
                f"{s.quiet.max_ms:.2f}",
            ]
        )
    headers = [
        "rep",
        "snapshot s",
        "node slice ms",
        "pings",
        "p50 ms",
        "p99 ms",
        "max ms",
        "quiet pings",
        "quiet p99",
        "quiet max",
    ]
    return format_table(headers, rows)


# --- the run ------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = bench_parser(
        "bench/durability",
        "What persistence costs and buys: SET throughput in memory, with "
        "--fsync everysec and with --fsync always; restart time after a clean "
        "stop and a kill -9 next to redis-server loading an RDB and an AOF; "
        "bytes on disk per live byte; reactor stalls during a snapshot.",
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated subset of {','.join(PARTS)}",
    )
    parser.add_argument(
        "--reps",
        type=int,
        help="repetitions of every measurement (default 3; --quick: 2)",
    )
    parser.add_argument(
        "--duration",
        type=int,
        help="seconds each throughput run lasts, about (default 10; --quick: 3)",
    )
    parser.add_argument(
        "--latency-reps",
        type=int,
        default=1,
        help=f"open-loop SET runs at {LATENCY_FRACTION * 100:.0f}%% of the slowest "
        "mode's req/s, per mode (default 1; 0: none)",
    )
    parser.add_argument(
        "--keys",
        help="comma-separated key counts of the restarts (default "
        f"{','.join(str(k) for k in KEY_COUNTS)}; --quick: "
        f"{','.join(str(k) for k in QUICK_KEY_COUNTS)})",
    )
    parser.add_argument(
        "--snapshot-keys",
        type=int,
        help=f"keys held while snapshots are measured (default {SNAPSHOT_KEYS}; "
        f"--quick: {QUICK_SNAPSHOT_KEYS})",
    )
    parser.add_argument(
        "--quiet",
        type=float,
        help="seconds of pings with no snapshot, per repetition (default 5; "
        "--quick: 3)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=CONNECTIONS,
        help=f"redis-benchmark -c of the throughput runs (default {CONNECTIONS})",
    )
    parser.add_argument(
        "--keyspace",
        type=int,
        default=KEYSPACE,
        help=f"redis-benchmark -r of the throughput runs (default {KEYSPACE})",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where the data directories are made (default: the temp dir)",
    )
    parser.add_argument(
        "--restart-timeout",
        type=float,
        default=300.0,
        help="seconds a restart may take to serve all keys (default 300)",
    )
    parser.add_argument(
        "--redis-only",
        action="store_true",
        help="restarts of redis-server alone (no node)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 reps, 3 s runs, 10k and 100k keys, snapshots of 100k: a smoke test",
    )
    add_node_options(parser, ("debug", "info", "warn", "error"))
    args = parser.parse_args(argv)
    args.parts = subset(parser, "--parts", args.parts, PARTS)
    # --quick changes the defaults, not what was given.
    for name, normal, quick in (
        ("reps", 3, 2),
        ("duration", 10, 3),
        ("quiet", 5.0, 3.0),
        ("snapshot_keys", SNAPSHOT_KEYS, QUICK_SNAPSHOT_KEYS),
        ("keys", KEY_COUNTS, QUICK_KEY_COUNTS),
    ):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else normal)
    if isinstance(args.keys, str):
        try:
            args.keys = [int(k) for k in args.keys.split(",") if k.strip()]
        except ValueError:
            parser.error("--keys: comma-separated numbers")
    args.keys = sorted(set(args.keys))
    if not args.keys or not all(1 <= k <= 10_000_000 for k in args.keys):
        parser.error("--keys must be 1..10000000 each")
    check_ranges(
        parser,
        args,
        {
            "reps": (1, 20),
            "duration": (1, 120),
            "latency_reps": (0, 20),
            "snapshot_keys": (1, 10_000_000),
            "quiet": (0.5, 120),
            "connections": (1, 1000),
            "keyspace": (1, 10_000_000),
            "restart_timeout": (5, 3600),
        },
    )
    if args.redis_only and args.parts != ["restart"]:
        parser.error("--redis-only goes with --parts restart")
    if not args.dir.is_dir():
        parser.error(f"--dir {args.dir}: not a directory")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    needs_redis = "restart" in args.parts
    tools = ["redis-server"] if needs_redis else []
    if "throughput" in args.parts:
        tools.append("redis-benchmark")
    if any(shutil.which(t) is None for t in tools):
        print(REDIS_TOOLS_HINT, file=sys.stderr)
        return 2
    with_node = not args.redis_only
    try:
        if with_node and not persistence_supported():
            print(f"bench/durability: {DATA_DIR_MISSING}", file=sys.stderr)
            return 2
    except ClusterError as e:
        print(f"bench/durability: {e}", file=sys.stderr)
        return 2
    pinning = choose_pinning(not args.no_pin)
    load = Load(pinning, args.connections, args.keyspace, VALUE_BYTES)
    settings = {
        "parts": args.parts,
        "reps": args.reps,
        "duration_s": args.duration,
        "latency_reps": args.latency_reps,
        "latency_fraction": LATENCY_FRACTION,
        "connections": args.connections,
        "keyspace": args.keyspace,
        "value_bytes": VALUE_BYTES,
        "keys": args.keys,
        "snapshot_keys": args.snapshot_keys,
        "quiet_s": args.quiet,
        "data_dirs_under": str(args.dir),
        "redis_only": args.redis_only,
        "poll_s": POLL_S,
        "sync_settle_s": SYNC_SETTLE_S,
        "log_level": args.log_level,
        "node_args": args.node_arg,
        "pinning": pinning.describe(),
        "redis_server": subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if needs_redis
        else None,
        "code": code_version(),
    }
    # Before this process moves to the client CPU (the machine's CPUs).
    bench = BenchRun("durability", args.output, settings)
    results, log_dir = bench.results, bench.log_dir
    if pinning.client_cpu is not None:
        # This process writes the keys and polls restarts: a client.
        os.sched_setaffinity(0, {pinning.client_cpu})
    print(
        f"bench/durability: {', '.join(args.parts)}; {args.reps} reps; "
        f"data directories under {args.dir}."
    )
    print(bench.describe_start())
    runs: list[ThroughputRun] = []
    latencies: list[Latency] = []
    restarts: list[Restart] = []
    snap: SnapshotPart | None = None
    plan: Plan | None = None
    with bench:
        log_dir.mkdir(parents=True, exist_ok=True)
        with ProcessSet(cwd=REPO_DIR) as procs, Scratch(args.dir) as scratch:
            extra = ["--log-level", args.log_level, *args.node_arg]
            plan = Plan(procs, pinning, log_dir, scratch, extra, args.restart_timeout)
            if "throughput" in args.parts:
                print(
                    f"\n1. Throughput: redis-benchmark -t set -P 1 -c "
                    f"{args.connections} -r {args.keyspace} -d {VALUE_BYTES}, "
                    f"about {args.duration} s a run, a fresh node each.",
                    flush=True,
                )
                for rep in range(1, args.reps + 1):
                    k = (rep - 1) % len(MODES)
                    for mode in MODES[k:] + MODES[:k]:
                        t = throughput_run(
                            plan, load, mode, rep, args.duration, WARMUP_REQUESTS
                        )
                        runs.append(t)
                        print(describe_throughput(t, args.reps), flush=True)
                    bench.load(f"after throughput rep {rep}")
                saturated = medians([t.run for t in runs])
                if saturated and args.latency_reps:
                    slowest = min(c["requests_per_sec"] for c in saturated.values())
                    rate = LATENCY_FRACTION * slowest
                    for rep in range(1, args.latency_reps + 1):
                        for mode in MODES:
                            x = latency_run(plan, load, mode, rate, args.duration, rep)
                            latencies.append(x)
                            r = x.result
                            flag = (
                                "" if r["kept_up"] else "  !! the generator fell behind"
                            )
                            if r["errors"]:
                                flag += f"  !! {r['errors']} error replies"
                            print(
                                f"open loop {rep}/{args.latency_reps} SET "
                                f"{MODE_TITLES[mode]:17} {r['offered_per_sec']:8.0f} "
                                f"offered {r['achieved_per_sec']:8.0f}/s  p50 "
                                f"{r['p50_ms']:6.3f} ms  p99 {r['p99_ms']:6.3f} ms  "
                                f"p99.9 {r['p999_ms']:6.3f} ms{flag}",
                                flush=True,
                            )
            if "restart" in args.parts:
                print(
                    f"\n2. Restart: {', '.join(f'{k:,}' for k in args.keys)} keys of "
                    f"{VALUE_BYTES} bytes.",
                    flush=True,
                )
                for rep in range(1, args.reps + 1):
                    steps: list[tuple[str, str, int]] = []
                    for keys in [0, *args.keys]:
                        if with_node:
                            hows = ["empty"] if keys == 0 else ["clean", "kill"]
                            steps += [("disperse", h, keys) for h in hows]
                        steps += [("redis", kind, keys) for kind in ("rdb", "aof")]
                    if rep % 2 == 0:
                        steps.reverse()
                    for system, how, keys in steps:
                        if system == "disperse":
                            done = disperse_restart(plan, keys, how, rep)
                        else:
                            done = redis_restart(plan, keys, how, rep)
                        restarts.append(done)
                        print(describe_restart(done, args.reps), flush=True)
                    bench.load(f"after restart rep {rep}")
            space, stalls = "space" in args.parts, "stalls" in args.parts
            if space or stalls:
                print(
                    f"\n3/4. Snapshots of {args.snapshot_keys:,} keys, each written "
                    "twice: "
                    + ("bytes on disk; " if space else "")
                    + (
                        f"a RESP PING every {PING_INTERVAL_S * 1000:g} ms during "
                        f"the snapshot and for {args.quiet:g} s without."
                        if stalls
                        else ""
                    ),
                    flush=True,
                )
                snap = snapshot_part(
                    plan, args.snapshot_keys, args.reps, args.quiet, stalls
                )
                bench.load("after snapshots")
    throughput = [t.run for t in runs]
    goals, ratio_rows = throughput_goals(throughput)
    more, restart_rows = restart_goals(restarts)
    goals += more
    if snap is not None:
        goals += snapshot_goals(snap, "stalls" in args.parts, "space" in args.parts)
    plot = None
    if restarts:
        try:
            plot = plot_restarts(bench.output.with_suffix(".png"), restarts)
        except (ValueError, OSError) as e:
            print(f"The restart plot failed: {e!r}", file=sys.stderr)
    log_problems = scan_logs(plan.node_logs if plan else [], log_dir)
    results.update(
        throughput=[asdict(t) for t in runs],
        throughput_medians={s: c for (s, _, _), c in medians(throughput).items()},
        latency=[asdict(x) for x in latencies],
        restarts=[asdict(r) for r in restarts],
        restart_load_s={
            f"{s} {h} {k}": v for (s, h, k), v in net_restarts(restarts).items()
        },
        restart_plot=str(plot) if plot else None,
        snapshots=asdict(snap) if snap else None,
        goals=[asdict(g) for g in goals],
        log_problems=log_problems,
    )
    bench.save()
    print()
    bench.partial()
    if throughput:
        print(
            "Throughput (redis-benchmark, closed loop: p50/p99 are mostly queueing;"
            " medians over repetitions, min-max of req/s; server CPU: % of one core):"
        )
        print()
        print(saturated_table(medians(throughput)))
    if ratio_rows:
        print(
            "\nRatios (the median of each repetition's ratio, then each one's;"
            " 'by CPU/req': the inverse ratio of CPU per request):\n"
        )
        print(format_table(["", "req/s", "by CPU/req"], ratio_rows))
        shared = [t for t in throughput if t.server_cpu_pct < SHARED_CORE_PCT]
        if shared:
            print(
                f"\n{len(shared)} of {len(throughput)} runs had less than"
                f" {SHARED_CORE_PCT:.0f}% of the server core: their req/s is"
                " what the core's share allowed, which hides what each mode"
                " costs; the 'by CPU/req' column does not."
            )
    if latencies:
        print(
            f"\nLatency at {LATENCY_FRACTION:.0%} of the slowest mode's median req/s"
            " (open loop, Poisson arrivals, from the scheduled time):\n"
        )
        print(latency_table(latencies))
    if restarts:
        print(
            "\nRestarts (medians; 'serves all': from the process's start until"
            " it answers, has ended loading, holds every key and a sample of"
            f" {SAMPLE_KEYS} reads back; 'load': that less the median of the same"
            " server's empty starts; 'listen': from the start to the node's"
            " 'HTTP API listening' line; 'node load' and 'replay/s': the node's"
            " own figures for loading its data directory, /stats):\n"
        )
        print(restart_table(restarts))
        if restart_rows:
            print()
            print(
                format_table(["load time", "disperse", "redis", "ratio"], restart_rows)
            )
        if plot:
            print(f"\nPlot: {plot}")
    if snap is not None and snap.snapshots:
        first = snap.snapshots[0]
        if first.disk_settled is not None and "space" in args.parts:
            settled, allocated = first.disk_settled
            print(
                f"\nDisk: {snap.keys:,} keys written twice, {snap.live_bytes / 1e6:.1f}"
                f" MB live (keys + values); after a snapshot {settled / 1e6:.1f} MB"
                f" in the data dir ({allocated / 1e6:.1f} MB allocated), "
                f"{settled / snap.live_bytes:.2f}x."
            )
        if "stalls" in args.parts:
            print(
                f"\nStalls: a RESP PING every {PING_INTERVAL_S * 1000:g} ms from the"
                " client CPU, latency from when it was sent; 'quiet': the same"
                " pinger with no snapshot:\n"
            )
            print(snapshot_table(snap))
    if goals:
        print("\nGoals:\n")
        print(goals_table(goals))
    if plan is not None and plan.node_logs:
        print_log_problems(log_dir, log_problems)
    print(bench.describe_loads())
    print(f"Raw results: {bench.output}")
    return bench.exit_status(args.strict, goals)
