"""
Plumbing shared by the single-node benchmark scripts (C{bench/http},
C{bench/memory}): locating the virtualenv, free loopback ports, CPU pinning,
child processes that are always stopped, tiny HTTP helpers, RSS readers and
plain-text tables.

Everything here talks to 127.0.0.1 only, and every wait is bounded in time.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
REFS_DIR = BENCH_DIR / "_refs"
LOOPBACK = "127.0.0.1"
MIB = 1024 * 1024

# Environment variables that would make one server slower than another for
# reasons unrelated to its code; the harness strips them for every child.
_SKEWING_ENV = ("PYTHONDEVMODE", "PYTHONTRACEMALLOC", "PYTHONMALLOC", "PYTHONPROFILE")


class BenchError(Exception):
    """
    The benchmark cannot go on (a server did not start, a tool is missing).
    The message is meant for the person running the script.
    """


def reexec_in_venv(script: str) -> None:
    """
    Make C{./bench/http} work from any shell: when the interpreter running
    the script is not one with Twisted and C{twistd} installed beside it
    (say C{/usr/bin/python3}) but the project's C{.venv} exists, replace
    this process with the same script under the venv's python.
    """
    here = Path(sys.executable).parent
    if (here / "twistd").exists() and importlib.util.find_spec("klein") is not None:
        return
    venv_python = REPO_DIR / ".venv" / "bin" / "python"
    if os.environ.get("DISPERSE_BENCH_REEXEC") or not venv_python.exists():
        return
    os.environ["DISPERSE_BENCH_REEXEC"] = "1"
    os.execv(str(venv_python), [str(venv_python), script, *sys.argv[1:]])


def venv_tool(name: str) -> str:
    """
    The path of a console script (C{twistd}) installed next to the running
    interpreter, falling back to C{PATH}.
    """
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise BenchError(
            f"{name} not found next to {sys.executable} nor on PATH; "
            "run `make bench-http` (it creates .venv) or `pip install -e .[test]`"
        )
    return found


def child_env() -> dict[str, str]:
    """
    The environment every server child gets: ours, minus variables that
    would slow one interpreter down (dev mode, tracemalloc, debug malloc).
    """
    env = {k: v for k, v in os.environ.items() if k not in _SKEWING_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def utc_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


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


# --- ports -----------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """
    C{count} distinct loopback ports the OS says are free for both TCP and
    UDP (the node's gossip port is UDP). All are held open until all are
    chosen, so the OS cannot hand out the same one twice.
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(count * 20):
            if len(ports) == count:
                break
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(tcp)
            tcp.bind((LOOPBACK, 0))
            port: int = tcp.getsockname()[1]
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held.append(udp)
            try:
                udp.bind((LOOPBACK, port))
            except OSError:
                continue
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    if len(ports) < count:
        raise BenchError("could not find free loopback ports")
    return ports


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


# --- child processes -------------------------------------------------------


class ManagedProcess:
    """
    A server child in its own process group (so Ctrl-C in the terminal does
    not reach it before we are ready and so we can stop all it spawned),
    with stdout and stderr going to a log file.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        cwd: Path = REPO_DIR,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        try:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env) if env is not None else child_env(),
                start_new_session=True,
            )
        except BaseException:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exited(self) -> int | None:
        return self.popen.poll()

    def stop(self, grace: float = 5.0) -> None:
        """
        SIGTERM the process group, SIGKILL it after C{grace} seconds. The
        group is only signalled while its leader is not yet reaped, so the
        group id cannot have been reused by someone else's process.
        """
        try:
            if self.popen.poll() is None:
                self._signal_group(signal.SIGTERM)
                try:
                    self.popen.wait(grace)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    self.popen.wait(grace)
        finally:
            self._log.close()

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class ProcessSet:
    """
    Every child the harness started; C{close} (or leaving the C{with}
    block, however it is left) stops all of them, newest first.
    """

    processes: list[ManagedProcess] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> ManagedProcess:
        proc = ManagedProcess(name, argv, log_path, env=env)
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        while self.processes:
            proc = self.processes.pop()
            try:
                proc.stop()
            except Exception as e:  # keep stopping the others
                print(f"warning: stopping {proc.name}: {e}", file=sys.stderr)

    def __enter__(self) -> ProcessSet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- the Disperse node ---------------------------------------------------------


def node_argv(
    gossip_port: int, http_port: int, max_memory: str | None = None
) -> list[str]:
    """
    The documented way to start one node (see the Makefile's C{run}).
    """
    argv = [
        venv_tool("twistd"),
        "--nodaemon",
        "--pidfile=",
        "disperse",
        "--bind",
        LOOPBACK,
        "--port",
        str(gossip_port),
        "--http-port",
        f"tcp:{http_port}:interface={LOOPBACK}",
    ]
    if max_memory is not None:
        argv += ["--max-memory", max_memory]
    return argv


def check_node_plugin() -> None:
    """
    Fail early, with a readable message, when C{twistd disperse} is not
    available yet (plugin or package missing).
    """
    argv = [venv_tool("twistd"), "disperse", "--help"]
    try:
        done = subprocess.run(
            argv,
            cwd=REPO_DIR,
            capture_output=True,
            timeout=60,
            check=False,
            env=child_env(),
        )
    except subprocess.TimeoutExpired as e:
        raise BenchError("`twistd disperse --help` did not answer in 60 s") from e
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).decode(errors="replace").strip()
        tail = "\n".join(tail.splitlines()[-8:])
        raise BenchError(
            f"`{' '.join(argv)}` failed (exit {done.returncode}); "
            f"is the disperse package installed (make bench-http does it)?\n{tail}"
        )


# --- HTTP ------------------------------------------------------------------------


def http_request(
    port: int,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    """
    One request on a fresh connection to 127.0.0.1:port; returns
    (status, body).
    """
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_until_ready(
    proc: ManagedProcess,
    port: int,
    path: str,
    ready_statuses: Sequence[int],
    timeout: float = 60.0,
) -> float:
    """
    Poll C{path} until it answers one of C{ready_statuses}; returns the
    seconds it took. Raises L{BenchError} with the log tail when the process
    exits or the deadline passes.
    """
    started = time.monotonic()
    deadline = started + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        code = proc.exited()
        if code is not None:
            raise BenchError(
                f"{proc.name} exited with status {code} while starting; "
                f"log {proc.log_path}:\n{proc.log_tail()}"
            )
        try:
            status, _ = http_request(port, "GET", path, timeout=1.0)
        except OSError as e:
            last = repr(e)
        else:
            if status in ready_statuses:
                return time.monotonic() - started
            last = f"HTTP {status}"
        time.sleep(0.1)
    raise BenchError(
        f"{proc.name} not ready after {timeout:.0f} s on GET {path} ({last}); "
        f"log {proc.log_path}:\n{proc.log_tail()}"
    )


# --- memory ----------------------------------------------------------------------


def _status_field_bytes(pid: int, name: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise BenchError(f"/proc/{pid}/status has no {name}")


def process_rss(pid: int) -> int:
    """
    Resident set size of a process, in bytes (VmRSS).
    """
    return _status_field_bytes(pid, "VmRSS")


def process_peak_rss(pid: int) -> int:
    """
    Peak resident set size of a process, in bytes (VmHWM, kept by the kernel).
    """
    return _status_field_bytes(pid, "VmHWM")


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
