"""
The replication-repair benchmark behind C{bench/cluster-repair}, on fresh
3-node clusters (R=3, quorum writes and reads): 1. how long a restarted,
empty C{c3} takes to hold the K keys written while it was down, next to the
rate at which a single node takes the same keys; 2. C{kill -9} of C{c3}
under continuous quorum load, checked with L{disperse.testing.history}. The
method and the goals are described in bench/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import random
import re
import shutil
import statistics
import string
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench._bench_common import (
    CONSISTENCY,
    DURATION_NS,
    REPLICAS,
    VALUE_SIZE,
    WRK_INSTALL_HINT,
    BenchError,
    BenchRun,
    Goal,
    Node,
    Pinning,
    add_node_options,
    bench_parser,
    boot_nodes,
    check_ranges,
    choose_pinning,
    code_version,
    combine,
    finish_wrks,
    format_table,
    goals_table,
    keyed_value,
    lua_quote,
    nodes_cpu,
    print_log_problems,
    put_body,
    scan_logs,
    start_node,
    start_wrks,
    subset,
    wait_converged,
    write_cycle_script,
    wrk_version,
)
from bench._launch import REPO_DIR
from disperse.testing.cluster import (
    ClusterError,
    KeepAlive,
    Lost,
    ProcessSet,
    Refused,
    checkNodePlugin,
    getJSON,
    httpRequest,
    logEvents,
)
from disperse.testing.history import ClientId, History, OpKind, check

NODES = ("c1", "c2", "c3")
VICTIM = "c3"
SURVIVORS = ("c1", "c2")
SINGLE = "single"
PARTS = ("repair", "kill")

# Part 1.
KEYS = 100_000
QUICK_KEYS = 20_000
KEY_PREFIX = "rk-"
CONNECTIONS_PER_NODE = 16  # wrk -c16 per surviving node; -c32 on the single node
REPAIR_GOAL_S = 10.0
REPAIR_TIMEOUT = 120.0
STATS_POLL_S = 0.1  # c3's /stats during the repair
LOAD_POLL_S = 0.2  # the loaded nodes' /stats during a load
SAMPLE_KEYS = 200

# Part 2.
KILL_DURATION = 30
QUICK_KILL_DURATION = 15
CLIENTS = 16
WRITE_SHARE = 0.5
RECENT_READS = 200  # half the reads pick among the latest acknowledged keys
CLIENT_TIMEOUT = 5.0
BUCKET_S = 0.1
ERROR_SLACK_S = 1.0
READBACK_TIMEOUT = 300.0

DETECT_TIMEOUT = 30.0

_FAILED = re.compile(rf"\] member {VICTIM} failed \(")
_REBUILT_2 = re.compile(r"\] partition table rebuilt for 2 members")
_REBUILT_3 = re.compile(r"\] partition table rebuilt for 3 members")
_CATCHING_UP = re.compile(r"\] catching up (\d+) partitions from (\d+) members")
_CAUGHT_UP = re.compile(r"\] caught up: (\d+) keys pulled")
_HTTP_LISTENING = re.compile(r"\] HTTP API listening on (\S+):(\d+)")
_HINTS = re.compile(r"\] delivered (\d+) hints to (\S+)")


# --- nodes ------------------------------------------------------------------------


def check_running(nodes: Sequence[Node]) -> None:
    for node in nodes:
        node.proc.check()


def boot_cluster(
    procs: ProcessSet, pinning: Pinning, log_dir: Path, extra: Sequence[str]
) -> list[Node]:
    """
    C{c1}, then C{c2} and C{c3} joining through it, with microsecond log
    timestamps (the event times below come from the nodes' own logs);
    returns once they converged.
    """
    nodes = boot_nodes(procs, pinning, log_dir, NODES, extra, precise=True)
    wait_converged(nodes, procs.check)
    return nodes


def kill9(procs: ProcessSet, node: Node) -> float:
    """
    SIGKILL the node's process group; returns the time.monotonic() of the
    signal. The process is reaped and forgotten by C{procs}.
    """
    if not node.proc.running:
        raise BenchError(f"{node.name} had already exited before the kill")
    at = time.monotonic()
    node.proc.kill()
    procs.forget(node.proc)
    return at


# --- logs -------------------------------------------------------------------------


def first_event(
    path: Path, pattern: re.Pattern[str], since: float | None = None
) -> float | None:
    found = logEvents(path, pattern, since)
    return found[0][0] if found else None


def found_at(
    found: Sequence[tuple[float, re.Match[str]]], origin: float | None, **groups: int
) -> dict[str, Any] | None:
    """
    The C{groups} (name: group number) of the first of these log lines, as
    integers, and its time from C{origin}; C{None} when there is none.
    """
    if not found:
        return None
    at, m = found[0]
    figures: dict[str, Any] = {k: int(m.group(g)) for k, g in groups.items()}
    return {**figures, "from_listening_s": _rel(at, origin)}


# --- part 1: loading K keys with wrk ------------------------------------------------


def key_name(i: int) -> str:
    return f"{KEY_PREFIX}{i}"


def write_load_script(
    directory: Path, name: str, first: int, last: int, base: str
) -> Path:
    """
    A wrk script PUTting keys C{first..last} in order, then again from the
    start (same values), as JSON bodies like bench/http's PUT workload.
    """
    value = f'string.format("%08d", i) .. {lua_quote(base[: VALUE_SIZE - 8])}'
    body = f"""'{{"value": "' .. {value} .. '", "duration": "{DURATION_NS}"}}'"""
    request = f'wrk.format("PUT", "/cache/{KEY_PREFIX}" .. i, headers, {body})'
    path = directory / f"load-{name}.lua"
    return write_cycle_script(path, "bench/cluster-repair", first, last, request)


@dataclass
class Load:
    """
    K keys written through some nodes: the time until every loaded node's
    own store held all of them, and what each wrk said.
    """

    targets: list[str]
    keys: int
    connections: int
    seconds: float
    keys_per_sec: float
    wrk_requests: int
    wrk_requests_per_sec: float
    wrk_p99_ms: float
    non_2xx: int
    socket_errors: dict[str, int]
    wrk_outputs: dict[str, str] = field(repr=False)

    def describe(self, how: str = "") -> str:
        return (
            f"{self.keys} keys{how} in {self.seconds:.1f} s = {self.keys_per_sec:.0f}"
            f" keys/s (wrk {self.wrk_requests_per_sec:.0f} req/s, non-2xx "
            f"{self.non_2xx})"
        )


def run_load(
    pinning: Pinning,
    tmpdir: Path,
    targets: Sequence[tuple[Node, Path]],
    keys: int,
    timeout: float,
) -> Load:
    """
    One wrk per (node, script), all at once, C{-c16} each (C{-c32} when
    alone); stopped (SIGINT, so that it prints its figures) once every one
    of these nodes holds C{keys} keys. Bounded by C{timeout}.
    """
    watched = [node for node, _ in targets]
    started = time.monotonic()
    deadline = started + timeout
    done_at: float | None = None
    connections = CONNECTIONS_PER_NODE * (2 if len(targets) == 1 else 1)
    bound = math.ceil(timeout) + 5
    with ProcessSet(cwd=REPO_DIR) as wrks:
        outputs = start_wrks(wrks, pinning, targets, connections, bound, tmpdir)
        seen: dict[str, int] = {}
        while time.monotonic() < deadline:
            time.sleep(LOAD_POLL_S)
            check_running(watched)
            for proc, log in outputs:
                code = proc.exited()
                if code is not None:
                    text = log.read_text(errors="replace")
                    raise BenchError(f"{proc.name} exited early ({code}):\n{text}")
            seen = {
                n.name: int(getJSON(n.http_port, "/stats", timeout=2.0)["keys"])
                for n in watched
            }
            if all(count >= keys for count in seen.values()):
                done_at = time.monotonic()
                break
        if done_at is None:
            raise BenchError(
                f"after {timeout:.0f} s of load the nodes hold {seen} keys, not "
                f"{keys}: writes are being lost or the machine is far too slow"
            )
        results = finish_wrks(outputs, 15, interrupt=True)
    total = combine([r for r, _ in results])
    texts = {n.name: text for (n, _), (_, text) in zip(targets, results, strict=True)}
    seconds = done_at - started
    return Load(
        targets=[n.name for n, _ in targets],
        keys=keys,
        connections=connections * len(targets),
        seconds=seconds,
        keys_per_sec=keys / seconds,
        wrk_requests=total.requests,
        wrk_requests_per_sec=total.requests_per_sec,
        wrk_p99_ms=total.p99_ms,
        non_2xx=total.non_2xx,
        socket_errors=total.socket_errors,
        wrk_outputs=texts,
    )


def sample_problems(
    nodes: Sequence[Node],
    keys: int,
    base: str,
    rng: random.Random,
    local: bool,
) -> list[str]:
    """
    Read L{SAMPLE_KEYS} random keys back, taking C{nodes} in turn: at the
    default consistency (quorum), or from each node's own store. Returns
    the wrong answers (empty when all were right); at quorum, where a wrong
    answer voids the load, raises L{BenchError} instead.
    """
    sample = rng.sample(range(1, keys + 1), min(SAMPLE_KEYS, keys))
    headers = {"X-Is-Sync": "true"} if local else {}
    where = "its own store" if local else "quorum"
    problems = []
    for n, i in enumerate(sample):
        node = nodes[n % len(nodes)]
        try:
            status, body = httpRequest(
                node.http_port, "GET", f"/cache/{key_name(i)}", headers=headers
            )
        except (OSError, http.client.HTTPException) as e:
            raise BenchError(f"{node.name}: GET {key_name(i)} failed: {e!r}") from e
        want = keyed_value(i, base).encode()
        if status != 200 or body != want:
            problems.append(
                f"{node.name} ({where}): GET {key_name(i)} answered {status} "
                f"{body[:80]!r}, want {want!r}"
            )
    if problems and not local:
        raise BenchError(
            f"{len(problems)} of {SAMPLE_KEYS} keys read back wrong after the "
            "load, e.g. " + "; ".join(problems[:3])
        )
    return problems


# --- part 1: one repetition ---------------------------------------------------------


@dataclass
class RepairRep:
    rep: int
    keys: int
    cluster_load: dict[str, Any]
    single_load: dict[str, Any]
    detection_s: dict[str, float | None]  # kill -> "member c3 failed", per survivor
    rebuilt_s: dict[str, float | None]  # kill -> "table rebuilt for 2 members"
    restart_to_listening_s: float | None
    restart_to_first_answer_s: float | None
    repaired: bool
    repair_from_listening_s: float | None
    repair_from_start_s: float | None
    keys_at_end: int
    nodes_cpu_pct: float | None  # c1+c2+c3 CPU from c3's first answer to all K
    keys_timeline: list[tuple[float, int]]  # (s since restart, c3 keys)
    c3_table_rebuilt_s: float | None  # from listening, "rebuilt for 3 members"
    catching_up: dict[str, Any] | None
    caught_up: dict[str, Any] | None
    hints_delivered: dict[str, int]
    keys_pushed: dict[str, int]  # c1's and c2's antiEntropy.keysPushed
    rounds: dict[str, int]  # c1's and c2's periodic anti-entropy rounds
    hint_lines: int
    keys_pulled: int
    applied: int
    local_sample_problems: list[str]  # wrong answers from c3's own store
    stats_after: dict[str, Any] = field(repr=False)


def _rel(at: float | None, origin: float | None) -> float | None:
    return None if at is None or origin is None else at - origin


def _latest(times: Sequence[float | None], origin: float) -> float | None:
    """
    The last of C{times} relative to C{origin}; C{None} if any is missing.
    """
    present = [t for t in times if t is not None]
    if not present or len(present) != len(times):
        return None
    return max(present) - origin


def restart_and_time(
    procs: ProcessSet,
    pinning: Pinning,
    log_dir: Path,
    old: Node,
    seed: Node,
    others: Sequence[Node],
    keys: int,
    timeout: float,
    extra: Sequence[str],
) -> tuple[Node, dict[str, Any]]:
    """
    Start C{c3} again, empty, with its old name and ports, and poll its
    C{/stats} C{keys} every L{STATS_POLL_S} until it holds C{keys}
    (bounded by C{timeout}). Also measures the CPU time all three nodes
    used from its first answer until then.
    """
    log_path = log_dir / f"{old.name}-restart.log"
    ports = (old.gossip_port, old.http_port)
    node = start_node(
        procs, pinning, log_path, old.name, ports, seed, extra, precise=True
    )
    deadline = node.proc.started + timeout
    first_answer: float | None = None
    done: float | None = None
    timeline: list[tuple[float, int]] = []
    count = 0
    cpu_from: dict[str, float] = {}
    cpu_to: dict[str, float] = {}
    next_poll = time.monotonic()
    while time.monotonic() < deadline:
        check_running([node])
        try:
            count = int(getJSON(node.http_port, "/stats", timeout=1.0)["keys"])
        except ClusterError:
            pass
        else:
            now = time.monotonic()
            if first_answer is None:
                first_answer = now
                cpu_from = nodes_cpu([node, *others])
            if not timeline or timeline[-1][1] != count:
                timeline.append((round(now - node.proc.started, 3), count))
            if count >= keys:
                done = now
                cpu_to = nodes_cpu([node, *others])
                break
        # Every STATS_POLL_S; a slow answer delays the next poll, never
        # bunches them up.
        next_poll = max(next_poll + STATS_POLL_S, time.monotonic())
        time.sleep(max(0.0, next_poll - time.monotonic()))
    cpu_pct = None
    if first_answer is not None and done is not None and done > first_answer:
        used = sum(cpu_to.values()) - sum(cpu_from.values())
        cpu_pct = used / (done - first_answer) * 100
    return node, {
        "cpu_pct": cpu_pct,
        "first_answer": first_answer,
        "done": done,
        "keys_at_end": count,
        "timeline": timeline,
    }


def repair_rep(
    rep: int,
    args: argparse.Namespace,
    pinning: Pinning,
    log_root: Path,
    tmpdir: Path,
    base: str,
    rng: random.Random,
    extra: Sequence[str],
) -> RepairRep:
    keys: int = args.keys
    load_timeout = 60.0 + keys / 250.0
    log_dir = log_root / f"repair-{rep}"
    log_dir.mkdir(parents=True, exist_ok=True)
    half = keys // 2
    scripts = {
        "c1": write_load_script(tmpdir, "c1", 1, half, base),
        "c2": write_load_script(tmpdir, "c2", half + 1, keys, base),
        "all": write_load_script(tmpdir, "all", 1, keys, base),
    }
    single_first = rep % 2 == 0

    def reference() -> Load:
        with ProcessSet(cwd=REPO_DIR) as procs:
            [single] = boot_nodes(procs, pinning, log_dir, [SINGLE], extra, True)
            wait_converged([single], procs.check)
            jobs = [(single, scripts["all"])]
            load = run_load(pinning, tmpdir, jobs, keys, load_timeout)
            sample_problems([single], keys, base, rng, local=False)
            print(f"  single node: {load.describe()}", flush=True)
            procs.forget(single.proc)
            return load

    single_load = reference() if single_first else None
    with ProcessSet(cwd=REPO_DIR) as procs:
        nodes = boot_cluster(procs, pinning, log_dir, extra)
        c1, c2, c3 = nodes
        killed = kill9(procs, c3)
        survivors = [c1, c2]
        jobs = [(c1, scripts["c1"]), (c2, scripts["c2"])]
        load = run_load(pinning, tmpdir, jobs, keys, load_timeout)
        sample_problems(survivors, keys, base, rng, local=False)
        how = " at quorum through c1 and c2"
        print(
            f"  cluster, c3 killed: {load.describe(how)}; {SAMPLE_KEYS} read back"
            " at quorum",
            flush=True,
        )
        # Restart only once both survivors dropped c3 from their table: the
        # restart is then a rejoin after a failure, every time.
        seen, dropped = wait_for_rebuild(survivors, killed)
        if not all(dropped.values()):
            raise BenchError(
                f"the survivors did not drop {VICTIM} from their tables "
                f"within {DETECT_TIMEOUT:.0f} s of the end of the load"
            )
        detected = {n: _rel(at, killed) for n, at in seen.items()}
        rebuilt = {n: _rel(at, killed) for n, at in dropped.items()}
        new, polled = restart_and_time(
            procs, pinning, log_dir, c3, c1, [c1, c2], keys, args.repair_timeout, extra
        )
        listening = first_event(new.log_path, _HTTP_LISTENING)
        if listening is None:
            listening = polled["first_answer"]
        done = polled["done"]
        # Wait (bounded) for c3 to say its catch-up is over.
        caught_deadline = new.proc.started + args.repair_timeout
        caught: list[tuple[float, re.Match[str]]] = []
        while time.monotonic() < caught_deadline:
            caught = logEvents(new.log_path, _CAUGHT_UP)
            if caught:
                break
            check_running([new])
            time.sleep(0.1)
        catching = logEvents(new.log_path, _CATCHING_UP)
        table3 = first_event(new.log_path, _REBUILT_3)
        local_problems = sample_problems([new], keys, base, rng, local=True)
        everyone = [c1, c2, new]
        stats = {n.name: getJSON(n.http_port, "/stats") for n in everyone}
        hint_lines = sum(
            len(logEvents(n.log_path, _HINTS, new.proc.started)) for n in survivors
        )
        for node in everyone:
            procs.forget(node.proc)
    if single_load is None:
        single_load = reference()
    result = RepairRep(
        rep=rep,
        keys=keys,
        cluster_load=asdict(load),
        single_load=asdict(single_load),
        detection_s=detected,
        rebuilt_s=rebuilt,
        restart_to_listening_s=_rel(listening, new.proc.started),
        restart_to_first_answer_s=_rel(polled["first_answer"], new.proc.started),
        repaired=done is not None,
        repair_from_listening_s=_rel(done, listening),
        repair_from_start_s=_rel(done, new.proc.started),
        keys_at_end=polled["keys_at_end"],
        nodes_cpu_pct=polled["cpu_pct"],
        keys_timeline=polled["timeline"],
        c3_table_rebuilt_s=_rel(table3, listening),
        catching_up=found_at(catching, listening, partitions=1, sources=2),
        caught_up=found_at(caught, listening, keys_pulled=1),
        hints_delivered={
            n: int(stats[n]["replication"]["hintsDelivered"]) for n in SURVIVORS
        },
        hint_lines=hint_lines,
        keys_pushed={n: int(stats[n]["antiEntropy"]["keysPushed"]) for n in SURVIVORS},
        rounds={n: int(stats[n]["antiEntropy"]["rounds"]) for n in SURVIVORS},
        keys_pulled=int(stats[VICTIM]["antiEntropy"]["keysPulled"]),
        applied=int(stats[VICTIM]["replication"].get("applied", 0)),
        local_sample_problems=local_problems,
        stats_after=stats,
    )
    print(f"  {describe_rep(result)}", flush=True)
    return result


def _s(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else f"{value:{spec}}"


def describe_rep(r: RepairRep) -> str:
    wrong = ""
    if r.local_sample_problems:
        wrong = (
            f"; {len(r.local_sample_problems)} of {SAMPLE_KEYS} sampled keys WRONG "
            f"in c3's own store, e.g. {r.local_sample_problems[0]}"
        )
    if not r.repaired:
        return (
            f"c3 NOT repaired within the bound: it holds {r.keys_at_end} of "
            f"{r.keys} keys{wrong}"
        )
    caught = r.caught_up or {}
    return (
        f"c3 restarted: listening after {_s(r.restart_to_listening_s, '.2f')} s, "
        f"all {r.keys} keys {_s(r.repair_from_listening_s, '.2f')} s later "
        f"({_s(r.repair_from_start_s, '.2f')} s from its start); keysPulled "
        f"{r.keys_pulled}, pushed by c1+c2 {sum(r.keys_pushed.values())}, hints "
        f"delivered {sum(r.hints_delivered.values())}, "
        f"'caught up' {caught.get('keys_pulled', '-')} keys at "
        f"{_s(caught.get('from_listening_s'), '.2f')} s{wrong}"
    )


# --- part 2: kill -9 under quorum load ------------------------------------------------


@dataclass(slots=True)
class Op:
    client: int
    node: str
    op: str  # "write" or "read"
    invoked: float
    completed: float
    result: str  # "ok", "404", "http-<code>", "refused", "lost"

    @property
    def error(self) -> bool:
        return self.result not in ("ok", "404")


class Workload:
    """
    C{clients} threads, each with one operation in flight: a quorum PUT of
    a unique key, or a quorum GET of an acknowledged key. A client starts on
    node C{i % 3}; after a refused or broken connection it moves to another
    node (C{c3}'s clients spread over C{c1} and C{c2}).
    """

    def __init__(self, nodes: Sequence[Node], clients: int, base: str) -> None:
        self.nodes = list(nodes)
        self.clients = clients
        self.base = base
        self.history = History()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ops: list[Op] = []
        self.acked: list[tuple[str, str]] = []
        self.errors: list[str] = []

    def run_client(self, index: int, until: float) -> None:
        rng = random.Random(index)
        current = index % len(self.nodes)
        conns = {n.name: KeepAlive(n.http_port, CLIENT_TIMEOUT) for n in self.nodes}
        hop = 1 + index % (len(self.nodes) - 1)
        try:
            for n in range(1, 1_000_000):
                if self.stop.is_set() or time.monotonic() >= until:
                    return
                node = self.nodes[current]
                with self.lock:
                    acked = len(self.acked)
                value = None
                if acked == 0 or rng.random() < WRITE_SHARE:
                    key = f"kw{index}-{n}"
                    value = f"w{index}-{n}-{self.base}"[:VALUE_SIZE]
                else:
                    with self.lock:
                        if rng.random() < 0.5:
                            pick = rng.randrange(max(0, acked - RECENT_READS), acked)
                        else:
                            pick = rng.randrange(acked)
                        key = self.acked[pick][0]
                ok, _, _ = self.call(index, node, conns[node.name], key, value)
                if not ok:
                    current = (current + hop) % len(self.nodes)
        except Exception as e:  # reported; the run is then void
            with self.lock:
                self.errors.append(f"client {index}: {e!r}")
        finally:
            for conn in conns.values():
                conn.close()

    def call(
        self,
        index: ClientId,
        node: Node,
        conn: KeepAlive,
        key: str,
        value: str | None = None,
    ) -> tuple[bool, str, str | None]:
        """
        One quorum PUT of C{value}, or GET when it is C{None}, recorded;
        returns whether the connection held, the result (C{ok}, C{404},
        C{http-<code>}, C{refused}, C{lost}) and the value read. Only the
        workload's clients (integer ids) go into L{ops}.
        """
        op: OpKind = "read" if value is None else "write"
        with self.lock:
            invoked = time.monotonic()
            self.history.invoke(
                index, op, key, value=value, consistency=CONSISTENCY, time=invoked
            )
        status, data, held = 0, b"", True
        try:
            if value is None:
                status, _, data = conn.request("GET", f"/cache/{key}")
            else:
                headers = {"Content-Type": "application/json"}
                body = put_body(value)
                status, _, data = conn.request("PUT", f"/cache/{key}", body, headers)
        except (Refused, Lost) as e:
            held, result = False, "refused" if isinstance(e, Refused) else "lost"
        read = None
        with self.lock:
            now = time.monotonic()
            if not held:
                # A write broken after sending may have taken effect.
                if op == "write" and result == "lost":
                    self.history.timeout(index, time=now)
                else:
                    self.history.fail(index, time=now)
            elif status == 200:
                result = "ok"
                if value is None:
                    read = data.decode()
                    self.history.ok(index, time=now, value=read)
                else:
                    self.history.ok(index, time=now)
                    self.acked.append((key, value))
            elif status == 404 and value is None:
                result = "404"
                self.history.ok(index, time=now, value=None)
            else:
                result = f"http-{status}"
                if op == "write" and not 400 <= status < 500:
                    # A 503: the replicas that took it keep it; it may show up.
                    self.history.timeout(index, time=now)
                else:
                    self.history.fail(index, time=now)
            if isinstance(index, int):
                self.ops.append(Op(index, node.name, op, invoked, now, result))
        return held, result, read


def read_back(
    workload: Workload, survivors: Sequence[Node], threads: int
) -> dict[str, Any]:
    """
    Read every acknowledged key at quorum from each survivor, recorded into
    the history (after the settling point, so the checker's lost-write rule
    applies). Counts keys missing (404), wrong values and failed reads.
    """
    jobs = [(node, key, value) for node in survivors for key, value in workload.acked]
    deadline = time.monotonic() + READBACK_TIMEOUT
    counts = {"read": 0, "missing": 0, "wrong": 0, "failed": 0}
    examples: list[str] = []
    cursor = [0]

    def reader(j: int) -> None:
        conns = {n.name: KeepAlive(n.http_port, CLIENT_TIMEOUT) for n in survivors}
        client = f"readback-{j}"
        try:
            while time.monotonic() < deadline:
                with workload.lock:
                    if cursor[0] >= len(jobs):
                        return
                    node, key, value = jobs[cursor[0]]
                    cursor[0] += 1
                _, result, got = workload.call(client, node, conns[node.name], key)
                with workload.lock:
                    counts["read"] += 1
                    problem = None
                    if result == "404":
                        counts["missing"] += 1
                        problem = "missing (404)"
                    elif result != "ok":
                        counts["failed"] += 1
                        problem = result
                    elif got != value:
                        counts["wrong"] += 1
                        problem = f"wrong value {got!r}"
                    if problem and len(examples) < 10:
                        examples.append(f"{node.name} {key}: {problem}")
        finally:
            for c in conns.values():
                c.close()

    workers = [threading.Thread(target=reader, args=(j,)) for j in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(READBACK_TIMEOUT + CLIENT_TIMEOUT + 5)
    counts["not_read"] = len(jobs) - counts["read"]
    return {"keys": len(workload.acked), **counts, "examples": examples}


def phase_rates(
    ops: Sequence[Op], start: float, kill: float, rebuilt: float | None, end: float
) -> dict[str, dict[str, float]]:
    """
    Successful operations per second and errors (on the survivors, on c3)
    before the kill, from the kill until the survivors rebuilt their table
    and after that, by completion time.
    """
    bounds = {"before": (start, kill)}
    if rebuilt is None:
        bounds["during"] = (kill, end)
    else:
        bounds["during"] = (kill, rebuilt)
        bounds["after"] = (rebuilt, end)
    out: dict[str, dict[str, float]] = {}
    for name, (lo, hi) in bounds.items():
        chosen = [op for op in ops if lo <= op.completed < hi]
        seconds = max(hi - lo, 1e-9)
        ok = sum(1 for op in chosen if not op.error)
        out[name] = {
            "seconds": hi - lo,
            "ok_per_sec": ok / seconds,
            "ok": ok,
            "errors_survivors": sum(
                1 for op in chosen if op.error and op.node != VICTIM
            ),
            "errors_c3": sum(1 for op in chosen if op.error and op.node == VICTIM),
        }
    return out


def wait_for_rebuild(
    survivors: Sequence[Node], killed: float
) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """
    Wait (up to L{DETECT_TIMEOUT}) until every survivor logged its table
    rebuilt for 2 members after the kill; when each logged C{c3} failed and
    its table rebuilt (C{None}: not yet).
    """
    deadline = time.monotonic() + DETECT_TIMEOUT
    while True:
        check_running(survivors)
        detected = {n.name: first_event(n.log_path, _FAILED, killed) for n in survivors}
        rebuilt = {
            n.name: first_event(n.log_path, _REBUILT_2, killed) for n in survivors
        }
        if all(rebuilt.values()) or time.monotonic() > deadline:
            return detected, rebuilt
        time.sleep(0.2)


def kill_under_load(
    args: argparse.Namespace,
    pinning: Pinning,
    log_root: Path,
    base: str,
    extra: Sequence[str],
) -> dict[str, Any]:
    log_dir = log_root / "kill"
    log_dir.mkdir(parents=True, exist_ok=True)
    duration: float = args.duration
    with ProcessSet(cwd=REPO_DIR) as procs:
        nodes = boot_cluster(procs, pinning, log_dir, extra)
        c1, c2, c3 = nodes
        workload = Workload(nodes, args.clients, base)
        cpu_before = nodes_cpu(nodes)
        client_before = time.process_time()
        started = time.monotonic()
        until = started + duration
        threads = [
            threading.Thread(target=workload.run_client, args=(i, until))
            for i in range(args.clients)
        ]
        for t in threads:
            t.start()
        try:
            time.sleep(max(0.0, started + duration / 3 - time.monotonic()))
            c3_cpu = nodes_cpu([c3])[VICTIM] - cpu_before[VICTIM]
            killed = kill9(procs, c3)
            print(
                f"  kill -9 {VICTIM} at {killed - started:.1f} s of {duration:.0f} s",
                flush=True,
            )
            while time.monotonic() < until:
                check_running([c1, c2])
                time.sleep(0.2)
        finally:
            workload.stop.set()
            for t in threads:
                t.join(CLIENT_TIMEOUT + 10)
        ended = time.monotonic()
        client_cpu = time.process_time() - client_before
        cpu_after = nodes_cpu([c1, c2])
        node_cpu = {n: cpu_after[n] - cpu_before[n] for n in SURVIVORS}
        node_cpu[VICTIM] = c3_cpu
        if any(t.is_alive() for t in threads):
            raise BenchError("a client thread did not stop")
        if workload.errors:
            raise BenchError("client threads failed: " + "; ".join(workload.errors))
        settled = ended
        survivors = [c1, c2]
        detected, rebuilt = wait_for_rebuild(survivors, killed)
        print(
            f"  workload over: {len(workload.ops)} operations, "
            f"{len(workload.acked)} acknowledged writes; reading them all back "
            "from c1 and c2 ...",
            flush=True,
        )
        back = read_back(workload, survivors, args.clients)
        report = check(workload.history, replicas=REPLICAS, settledAt=settled)
        stats = {n.name: getJSON(n.http_port, "/stats") for n in survivors}
        members = {n.name: getJSON(n.http_port, "/cluster/members") for n in survivors}
    detection_s = _latest(list(detected.values()), killed)
    rebuild_s = _latest(list(rebuilt.values()), killed)
    rebuilt_at = None if rebuild_s is None else killed + rebuild_s
    survivor_errors = [op for op in workload.ops if op.error and op.node != VICTIM]
    after_kill = [op for op in survivor_errors if op.completed >= killed]
    buckets = Counter(
        math.floor((op.completed - killed) / BUCKET_S) for op in survivor_errors
    )
    by_result = Counter(f"{op.node} {op.op} {op.result}" for op in survivor_errors)
    last_error_s = max((op.completed - killed for op in after_kill), default=None)
    first_error_s = min((op.completed - killed for op in after_kill), default=None)
    last_error_invoked_s = max((op.invoked - killed for op in after_kill), default=None)
    c3_ops = [op for op in workload.ops if op.node == VICTIM]
    workload_results = Counter(f"{op.op} {op.result}" for op in workload.ops)
    kinds = report.byKind()
    return {
        "duration_s": duration,
        "clients": args.clients,
        "kill_at_s": killed - started,
        "operations": len(workload.ops),
        "acknowledged_writes": len(workload.acked),
        "workload_results": dict(workload_results),
        "checker_counts": {op: dict(o) for op, o in report.counts.items()},
        "violations": kinds,
        "violation_examples": [v.toDict() for v in report.violations[:10]],
        "readback": back,
        "detection_s": {n: _rel(v, killed) for n, v in detected.items()},
        "rebuilt_s": {n: _rel(v, killed) for n, v in rebuilt.items()},
        "detection_max_s": detection_s,
        "rebuild_max_s": rebuild_s,
        "errors_survivors": len(survivor_errors),
        "errors_survivors_before_kill": len(survivor_errors) - len(after_kill),
        "errors_survivors_by_kind": dict(by_result),
        "errors_c3": sum(1 for op in c3_ops if op.error),
        "ops_c3_after_kill": sum(1 for op in c3_ops if op.invoked >= killed),
        "first_error_s": first_error_s,
        "last_error_s": last_error_s,
        "last_error_invoked_s": last_error_invoked_s,
        "error_buckets": {
            f"{b * BUCKET_S:+.1f}": n for b, n in sorted(buckets.items())
        },
        "cpu_pct": {
            "nodes_total": sum(node_cpu.values()) / (ended - started) * 100,
            "per_node_s": node_cpu,
            "client": client_cpu / (ended - started) * 100,
        },
        "phases": phase_rates(workload.ops, started, killed, rebuilt_at, ended),
        "stats_after": stats,
        "members_after": members,
    }


# --- report -------------------------------------------------------------------------


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def figures(r: RepairRep) -> dict[str, float | None]:
    """
    The figures of one repetition that the summary takes the median of.
    """
    return {
        "repair_from_listening_s": r.repair_from_listening_s,
        "repair_from_start_s": r.repair_from_start_s,
        "restart_to_listening_s": r.restart_to_listening_s,
        "repaired_per_sec": r.keys / s if (s := r.repair_from_listening_s) else None,
        "cluster_keys_per_sec": r.cluster_load["keys_per_sec"],
        "single_keys_per_sec": r.single_load["keys_per_sec"],
        "caught_up_s": (r.caught_up or {}).get("from_listening_s"),
        "nodes_cpu_pct": r.nodes_cpu_pct,
        "keys_pulled": float(r.keys_pulled),
        "hints_delivered": float(sum(r.hints_delivered.values())),
    }


def repair_summary(reps: Sequence[RepairRep]) -> dict[str, Any]:
    each = [figures(r) for r in reps]
    return {
        "reps": len(reps),
        "all_repaired": all(r.repaired for r in reps),
        "local_sample_wrong": sum(len(r.local_sample_problems) for r in reps),
        **{name: _median([f[name] for f in each]) for name in each[0]},
    }


# The timings table's columns: header, figure, format, unit.
TIMING_COLUMNS = (
    ("written/s 1 node", "single_keys_per_sec", ".0f", ""),
    ("written/s cluster", "cluster_keys_per_sec", ".0f", ""),
    ("repaired/s", "repaired_per_sec", ".0f", ""),
    ("start->listen s", "restart_to_listening_s", ".2f", ""),
    ("listen->all K s", "repair_from_listening_s", ".2f", ""),
    ("start->all K s", "repair_from_start_s", ".2f", ""),
    ("listen->caught-up s", "caught_up_s", ".2f", ""),
    ("nodes CPU", "nodes_cpu_pct", ".0f", "%"),
)


def repair_table(reps: Sequence[RepairRep], summary: Mapping[str, Any]) -> str:
    """
    Timings, one row per repetition and the medians.
    """

    def cells(f: Mapping[str, Any], repaired: bool = True) -> list[str]:
        return [
            "NOT DONE"
            if name == "repair_from_listening_s" and not repaired
            else _s(f[name], spec) + unit
            for _, name, spec, unit in TIMING_COLUMNS
        ]

    rows = [[str(r.rep), str(r.keys), *cells(figures(r), r.repaired)] for r in reps]
    rows.append(["median", "", *cells(summary)])
    return format_table(["rep", "K", *(c[0] for c in TIMING_COLUMNS)], rows)


def sources_table(reps: Sequence[RepairRep]) -> str:
    """
    How the keys reached c3, per repetition (counters overlap: a key can
    come both ways, and merges of older versions are not counted).
    """
    rows = []
    for r in reps:
        caught = r.caught_up or {}
        catching = r.catching_up or {}
        rows.append(
            [
                str(r.rep),
                f"{catching.get('partitions', '-')} partitions from "
                f"{catching.get('sources', '-')}",
                str(r.keys_pulled),
                str(caught.get("keys_pulled", "-")),
                f"{sum(r.keys_pushed.values())} (rounds: {sum(r.rounds.values())})",
                str(sum(r.hints_delivered.values())),
                str(r.applied),
                str(r.keys_at_end),
            ]
        )
    return format_table(
        [
            "rep",
            "catching up",
            "c3 keysPulled",
            "caught-up N",
            "c1+c2 keysPushed",
            "c1+c2 hintsDelivered",
            "c3 applied",
            "c3 keys",
        ],
        rows,
    )


def kill_table(k: Mapping[str, Any]) -> str:
    phases = k["phases"]

    def phase(name: str) -> str:
        p = phases.get(name)
        if p is None:
            return "-"
        return (
            f"{p['ok_per_sec']:.0f} ok/s over {p['seconds']:.1f} s, "
            f"{p['errors_survivors']} errors on c1/c2, {p['errors_c3']} on c3"
        )

    def after_kill(times: Mapping[str, float | None]) -> str:
        c1, c2 = (_s(times.get(n), ".2f") for n in SURVIVORS)
        return f"{c1} s, {c2} s after the kill"

    back = k["readback"]
    rows = [
        [
            "workload operations",
            f"{k['operations']}: "
            + ", ".join(
                f"{what} {n}" for what, n in sorted(k["workload_results"].items())
            ),
        ],
        [
            "CPU over the run (% of one core)",
            f"nodes {k['cpu_pct']['nodes_total']:.0f}% (c3 until its kill), "
            f"clients (this process) {k['cpu_pct']['client']:.0f}%",
        ],
        ["throughput before the kill", phase("before")],
        ["  kill -> table rebuilt", phase("during")],
        ["  after the rebuild", phase("after")],
        ["member c3 failed (c1, c2)", after_kill(k["detection_s"])],
        ["table rebuilt for 2 members (c1, c2)", after_kill(k["rebuilt_s"])],
        [
            "errors on c1/c2 (whole run)",
            f"{k['errors_survivors']} ({k['errors_survivors_before_kill']} before "
            "the kill)",
        ],
        [
            "error window on c1/c2 after the kill",
            "none"
            if k["last_error_s"] is None
            else f"{k['first_error_s']:+.2f} s .. {k['last_error_s']:+.2f} s "
            f"(last one sent at {k['last_error_invoked_s']:+.2f} s)",
        ],
        ["failed ops sent to dead c3", f"{k['errors_c3']}"],
        [
            "checker: lost-write / stale-read / unwritten",
            f"{k['violations']['lost-write']} / {k['violations']['stale-read']} / "
            f"{k['violations']['unwritten-value']}",
        ],
        [
            "read-back of acked keys from c1 and c2",
            f"{back['keys']} keys x 2: {back['missing']} missing, {back['wrong']} "
            f"wrong, {back['failed']} failed, {back['not_read']} not read",
        ],
    ]
    return format_table(["measure", "value"], rows, left=2)


def error_histogram(k: Mapping[str, Any], limit: int = 40) -> str:
    buckets: dict[str, int] = k["error_buckets"]
    if not buckets:
        return "  (no errors on c1/c2)"
    items = list(buckets.items())
    text = ", ".join(f"{t} s: {n}" for t, n in items[:limit])
    if len(items) > limit:
        text += f", ... ({len(items) - limit} more buckets)"
    kinds = ", ".join(
        f"{what} x{n}" for what, n in k["errors_survivors_by_kind"].items()
    )
    return f"  {text}\n  by kind: {kinds}"


def evaluate_goals(
    reps: Sequence[RepairRep],
    summary: Mapping[str, Any] | None,
    kill: Mapping[str, Any] | None,
) -> list[Goal]:
    goals = []
    if reps and summary is not None:
        med = summary["repair_from_listening_s"]
        ok = summary["all_repaired"] and med is not None and med <= REPAIR_GOAL_S
        missing = "" if summary["all_repaired"] else " (a rep did not finish)"
        name = "restarted c3 holds all K keys (median, from listening)"
        target = f"<= {REPAIR_GOAL_S:.0f} s"
        goals.append(Goal(name, f"{_s(med, '.2f')} s{missing}", target, bool(ok)))
        wrong = summary["local_sample_wrong"]
        name = "sampled keys wrong in restarted c3's own store"
        of = f"{wrong} (of {SAMPLE_KEYS * len(reps)})"
        goals.append(Goal(name, of, "0", wrong == 0))
    if kill is not None:
        v = kill["violations"]
        back = kill["readback"]
        lost = v["lost-write"] + back["missing"] + back["wrong"]
        read = back["not_read"] == 0 and back["failed"] == 0
        name = "acknowledged writes lost (checker + read-back)"
        goals.append(Goal(name, f"{lost}", "0", lost == 0 and read))
        stale = v["stale-read"] + v["unwritten-value"]
        goals.append(Goal("stale reads (checker)", f"{stale}", "0", stale == 0))
        rebuild = kill["rebuild_max_s"]
        last = kill["last_error_s"]
        name = "errors on c1/c2 end by the table rebuild + 1 s"
        if rebuild is None:
            goals.append(Goal(name, "table never rebuilt", "rebuilt", False))
        else:
            end = rebuild + ERROR_SLACK_S
            measured = "no errors" if last is None else f"last at {last:+.2f} s"
            ok = last is None or last <= end
            goals.append(Goal(name, measured, f"<= {end:+.2f} s", ok))
    return goals


# --- the run -------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = bench_parser(
        "bench/cluster-repair",
        "Repair of a restarted replica (time until it holds every key it "
        "missed, next to the write throughput of the same keys) and kill -9 "
        "of a replica under continuous quorum load (lost writes, stale "
        "reads, detection time, error window), on 3-node clusters.",
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated subset of {','.join(PARTS)} (default: both)",
    )
    parser.add_argument(
        "--keys",
        type=int,
        help=f"keys written while c3 is down (default {KEYS}; --quick {QUICK_KEYS})",
    )
    parser.add_argument(
        "--reps",
        type=int,
        help="repetitions of the repair measurement (default 3; --quick 1)",
    )
    parser.add_argument(
        "--repair-timeout",
        type=float,
        default=REPAIR_TIMEOUT,
        help=f"bound on the wait for c3 to hold all keys ({REPAIR_TIMEOUT:.0f} s)",
    )
    parser.add_argument(
        "--duration",
        type=int,
        help=(
            f"seconds of load in the kill run (default {KILL_DURATION}; --quick "
            f"{QUICK_KILL_DURATION}); c3 is killed at a third"
        ),
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=CLIENTS,
        help=f"client threads in the kill run (default {CLIENTS})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"1 rep with {QUICK_KEYS} keys, {QUICK_KILL_DURATION} s kill run",
    )
    add_node_options(parser, ("info", "debug"))
    args = parser.parse_args(argv)
    args.parts = subset(parser, "--parts", args.parts, PARTS)
    if args.keys is None:
        args.keys = QUICK_KEYS if args.quick else KEYS
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    if args.duration is None:
        args.duration = QUICK_KILL_DURATION if args.quick else KILL_DURATION
    check_ranges(
        parser,
        args,
        {
            "keys": (SAMPLE_KEYS, 1_000_000),
            "reps": (1, 20),
            "duration": (3, 600),
            "clients": (1, 256),
            "repair_timeout": (1, 3600),
        },
    )
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if "repair" in args.parts and shutil.which("wrk") is None:
        print(WRK_INSTALL_HINT, file=sys.stderr)
        return 2
    began = time.monotonic()
    pinning = choose_pinning(not args.no_pin)
    extra = ["--log-level", args.log_level, *args.node_arg]
    settings = {
        "parts": args.parts,
        "keys": args.keys,
        "reps": args.reps,
        "repair_timeout_s": args.repair_timeout,
        "kill_duration_s": args.duration,
        "clients": args.clients,
        "value_size": VALUE_SIZE,
        "replicas": REPLICAS,
        "consistency": CONSISTENCY,
        "connections_per_node": CONNECTIONS_PER_NODE,
        "node_args": extra,
        "pinning": pinning.describe(),
        "wrk": wrk_version() if "repair" in args.parts else None,
        "code": code_version(),
    }
    # Before this process moves to the client CPU (the machine's CPUs).
    bench = BenchRun("cluster-repair", args.output, settings)
    results, log_root = bench.results, bench.log_dir
    if pinning.client_cpu is not None:
        # This process is the load generator of the kill run, and polls.
        os.sched_setaffinity(0, {pinning.client_cpu})
    rng = random.Random(1)
    base = "".join(rng.choices(string.ascii_letters, k=VALUE_SIZE))
    reps: list[RepairRep] = []
    kill: dict[str, Any] | None = None
    est, plan = 0, ""
    if "repair" in args.parts:
        est += args.reps * (2 * args.keys // 2500 + 25)
        plan += f"repair: {args.reps} rep(s) of {args.keys} keys; "
    if "kill" in args.parts:
        est += args.duration + 40
        plan += f"kill: {args.clients} clients for {args.duration} s; "
    print(
        f"bench/cluster-repair: {', '.join(args.parts)}; {plan}"
        f"roughly {est // 60} min {est % 60} s."
    )
    print(bench.describe_start(), flush=True)
    with bench:
        checkNodePlugin()
        log_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="disperse-bench-") as tmp:
            if "repair" in args.parts:
                print(
                    f"\n1. Repair of a restarted node (K={args.keys}, "
                    f"{args.reps} rep(s))",
                    flush=True,
                )
                for rep in range(1, args.reps + 1):
                    print(f" rep {rep}/{args.reps}", flush=True)
                    reps.append(
                        repair_rep(
                            rep, args, pinning, log_root, Path(tmp), base, rng, extra
                        )
                    )
                    bench.load(f"after repair rep {rep}")
            if "kill" in args.parts:
                print(
                    f"\n2. kill -9 under quorum load ({args.clients} clients, "
                    f"{args.duration} s)",
                    flush=True,
                )
                kill = kill_under_load(args, pinning, log_root, base, extra)
                bench.load("after kill run")
    summary = repair_summary(reps) if reps else None
    goals = evaluate_goals(reps, summary, kill)
    problems = scan_logs(sorted(log_root.glob("*/*.log")), log_root)
    wall = time.monotonic() - began
    results["wall_s"] = wall
    results["repair"] = {"reps": [asdict(r) for r in reps], "summary": summary}
    results["kill"] = kill
    results["goals"] = [asdict(g) for g in goals]
    results["log_problems"] = problems
    if reps or kill is not None or log_root.exists():
        bench.save()
    if reps or kill:
        bench.partial()
    if reps and summary is not None:
        print(
            "\nRepair of a restarted node. written/s: K keys / time until every "
            "loaded node held them (single node: -c32; cluster: at quorum through "
            "c1 and c2, -c16 each, c3 down). listen->all K: from c3's \"HTTP API "
            'listening" line to its /stats keys = K (polled every 0.1 s); '
            'repaired/s = K / that. caught-up: c3\'s "caught up: N keys pulled" '
            "line. nodes CPU: c1+c2+c3 from c3's first /stats answer until it "
            "held all K, in % of one core (well below 100%: the core was shared, "
            "or the repair waited on something else).\n"
        )
        print(repair_table(reps, summary))
        print(
            "\nHow the keys reached c3 (c3's catch-up pulls; the pushes of c1's "
            "and c2's periodic anti-entropy rounds, every 30 s by default; hints "
            "queued while c3 was down and not yet declared failed; c3 applied: "
            "records it took from peers' pushes and hints):\n"
        )
        print(sources_table(reps))
    if kill is not None:
        print(
            "\nkill -9 c3 under quorum load (times relative to the kill; errors "
            "by completion time; ops sent to c3 itself are not counted as c1/c2 "
            "errors):\n"
        )
        print(kill_table(kill))
        print(
            f"\nErrors on c1/c2 per {BUCKET_S * 1000:.0f} ms bucket (start of bucket):"
        )
        print(error_histogram(kill))
    if goals:
        print("\nGoals:\n")
        print(goals_table(goals))
    if log_root.exists():
        print_log_problems(log_root, results.get("log_problems", {}))
    print(bench.describe_loads())
    print(f"Wall time: {results['wall_s']:.0f} s. Raw results: {bench.output}")
    return bench.exit_status(args.strict, goals)
