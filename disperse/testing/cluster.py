"""
Real node processes, for the benchmarks in C{bench/}, the integration tests
and the fault bed: the one place that starts a C{twistd disperse} (with an
optional wrapper such as C{taskset -c 0} or C{ip netns exec NS}), keeps or
follows its log, waits until it listens, answers C{/health} and agrees with
its peers on the membership, and stops it (SIGTERM, then SIGKILL after a
deadline).

Apart from L{NodeProcess} and L{ProcessSet}, which control processes, the
helpers here are small and pure: free ports, one-shot HTTP, log timestamps.
Every wait is bounded in time.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from twisted.logger import FileLogObserver, textFileLogObserver

# The processes this module starts run in real time, so its waits, polls
# and timestamps do too: the one deliberate use of the real clock in the
# package, taken here once.
_monotonic = time.monotonic  # wall-clock ok
_sleep = time.sleep  # wall-clock ok

LOOPBACK = "127.0.0.1"
DEADLINE = 30.0

# Variables that would make one interpreter slower than another for reasons
# unrelated to its code; children do not inherit them.
_SKEWING_ENV = ("PYTHONDEVMODE", "PYTHONTRACEMALLOC", "PYTHONMALLOC", "PYTHONPROFILE")

_HTTP = re.compile(r"HTTP API listening on (?P<host>[^\s]+):(?P<port>\d+)")
_GOSSIP = re.compile(r"gossip listening on (?P<host>[^\s]+):(?P<port>\d+)")
_REDIS = re.compile(r"Redis protocol port listening on (?P<host>[^\s]+):(?P<port>\d+)")
_PEER = re.compile(
    r"node-to-node API(?: \(TLS\))? listening on (?P<host>[^\s]+):(?P<port>\d+)"
)
# twistd's text log tags each event with its namespace and level
# ("[disperse.cluster.peer.server.PeerAPI#warn]").
LOG_PROBLEM = re.compile(r"#(warn|error|critical)\]|Traceback|Unhandled")


class ClusterError(Exception):
    """
    A node did not start, answer or converge in time, or exited; the
    message says which and carries the end of its log.
    """


# --- commands ---------------------------------------------------------------------


def tool(name: str) -> str:
    """
    A console script (C{twistd}) installed beside the running interpreter,
    else the one on C{PATH}.
    """
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ClusterError(
            f"{name} not found next to {sys.executable} nor on PATH; "
            "install the project (pip install -e .[test])"
        )
    return found


# Disperse nodes log through this factory when a harness asks for it
# (twistd --logger): twistd's text log with microseconds in the timestamps,
# so that event times come from the node, not from when a harness read them.
PRECISE_LOGGER = "disperse.testing.cluster.preciseLogObserver"
PRECISE_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f%z"
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d{4}) ")
# Wall clock to the monotonic clock, for the timestamps of precise logs.
_MONOTONIC_OFFSET = time.time() - _monotonic()  # wall-clock ok


def preciseLogObserver() -> FileLogObserver:
    """
    For C{twistd --logger}: the default text log on stdout, with timestamps
    to the microsecond.
    """
    return textFileLogObserver(sys.stdout, timeFormat=PRECISE_TIME_FORMAT)


def logTime(line: str) -> float | None:
    """
    A precise log line's timestamp on the monotonic clock.
    """
    m = _LOG_TIME.match(line)
    if m is None:
        return None
    wall = datetime.strptime(m.group(1), PRECISE_TIME_FORMAT).timestamp()
    return wall - _MONOTONIC_OFFSET


def logEvents(
    path: Path, pattern: re.Pattern[str], since: float | None = None
) -> list[tuple[float, re.Match[str]]]:
    """
    The lines of a precise log matching C{pattern}, with their time (as
    the monotonic clock), at or after C{since}.
    """
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        m = pattern.search(line)
        at = None if m is None else logTime(line)
        if m is not None and at is not None and (since is None or at >= since):
            found.append((at, m))
    return found


def loopbackArgs(gossipPort: int = 0, httpPort: int = 0) -> list[str]:
    """
    The flags of a node on 127.0.0.1 (port 0: the system chooses).
    """
    return [
        "--bind",
        LOOPBACK,
        "--port",
        str(gossipPort),
        "--http-port",
        f"tcp:{httpPort}:interface={LOOPBACK}",
    ]


def nodeCommand(
    args: Iterable[str], wrapper: Sequence[str] = (), precise: bool = False
) -> list[str]:
    """
    The documented way to run one node in the foreground, C{args} being its
    flags, behind C{wrapper} (C{taskset -c 0}, C{ip netns exec NS}).
    """
    logger = [f"--logger={PRECISE_LOGGER}"] if precise else []
    return [
        *wrapper,
        tool("twistd"),
        *logger,
        "--nodaemon",
        "--pidfile=",
        "disperse",
        *args,
    ]


def childEnv(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """
    Our environment minus the variables that slow an interpreter down, with
    unbuffered output (logs are read while the node runs).
    """
    env = {k: v for k, v in os.environ.items() if k not in _SKEWING_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def checkNodePlugin() -> str:
    """
    Fail early, with a readable message, when C{twistd disperse} cannot run;
    its C{--help} text (the options this checkout's node takes).
    """
    argv = [tool("twistd"), "disperse", "--help"]
    try:
        done = subprocess.run(  # noqa: S603
            argv, capture_output=True, timeout=60, check=False, env=childEnv()
        )
    except subprocess.TimeoutExpired as e:
        raise ClusterError("`twistd disperse --help` did not answer in 60 s") from e
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).decode(errors="replace").strip()
        raise ClusterError(
            f"`{' '.join(argv)}` failed (exit {done.returncode}); is the disperse "
            "package installed?\n" + "\n".join(tail.splitlines()[-8:])
        )
    return done.stdout.decode(errors="replace")


def freePorts(count: int) -> list[int]:
    """
    C{count} distinct loopback ports free for both TCP and UDP (a node's
    gossip port is both). All are held open until all are chosen, so the
    system cannot hand out one twice.
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
        raise ClusterError("could not find free loopback ports")
    return ports


def cpuSeconds(pid: int) -> float:
    """
    User + system CPU of a process so far, from /proc/<pid>/stat (clock
    ticks, 10 ms on most kernels).
    """
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        # The command name (field 2) may hold spaces; count after its ")".
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def schedSeconds(pid: int) -> float | None:
    """
    Time on CPU of all current threads of a process from their schedstat
    (nanoseconds, finer than L{cpuSeconds}' clock ticks); C{None} when the
    kernel keeps no schedstat.
    """
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            if tid == str(pid):
                return None
    return total / 1e9


def _statusBytes(pid: int, name: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise ClusterError(f"/proc/{pid}/status has no {name}")


def residentBytes(pid: int) -> int:
    """
    Resident set size of a process (VmRSS).
    """
    return _statusBytes(pid, "VmRSS")


def peakResidentBytes(pid: int) -> int:
    """
    Peak resident set size of a process (VmHWM, kept by the kernel).
    """
    return _statusBytes(pid, "VmHWM")


def pinThreads(pid: int, cpu: int) -> None:
    """
    Move every thread of a process to C{cpu} (threads it starts later
    inherit its main thread's affinity).
    """
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return
    for tid in tids:
        with contextlib.suppress(ProcessLookupError, FileNotFoundError):
            os.sched_setaffinity(int(tid), {cpu})


# --- HTTP -------------------------------------------------------------------------


def httpRequest(
    port: int,
    method: str,
    path: str,
    *,
    host: str = LOOPBACK,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    """
    One request on a fresh connection; (status, body).
    """
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def getJSON(port: int, path: str, host: str = LOOPBACK, timeout: float = 5.0) -> Any:
    """
    C{GET path}, which must answer 200 with JSON.
    """
    try:
        status, body = httpRequest(port, "GET", path, host=host, timeout=timeout)
    except (OSError, http.client.HTTPException) as e:
        raise ClusterError(f"GET {path} on {host}:{port} failed: {e!r}") from e
    if status != 200:
        raise ClusterError(f"GET {path} on {host}:{port} answered {status}")
    return json.loads(body)


class Refused(OSError):
    """
    The connection could not be made: nothing was sent.
    """


class Lost(OSError):
    """
    The connection failed once the request may have been sent.
    """


class KeepAlive:
    """
    A keep-alive connection to one node, opened again after an error.
    """

    def __init__(self, port: int, timeout: float = 5.0, host: str = LOOPBACK) -> None:
        self.port = port
        self._host = host
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """
        (status, headers in lower case, body).

        @raise Refused: if the connection could not be made.
        @raise Lost: if it failed once the request may have been sent.
        """
        if self._conn is None:
            conn = http.client.HTTPConnection(self._host, self.port, self._timeout)
            try:
                conn.connect()
            except OSError as e:
                conn.close()
                raise Refused(repr(e)) from e
            self._conn = conn
        try:
            self._conn.request(method, path, body=body, headers=dict(headers or {}))
            response = self._conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise Lost(repr(e)) from e
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def json(self, path: str) -> Any:
        """
        C{GET path}, which must answer 200 with JSON.
        """
        try:
            status, _, body = self.request("GET", path)
        except OSError as e:
            raise ClusterError(f"GET {path} on port {self.port} failed: {e!r}") from e
        if status != 200:
            raise ClusterError(f"GET {path} on port {self.port} answered {status}")
        return json.loads(body)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


_T = TypeVar("_T")


def waitUntil(
    check: Callable[[], _T | bool | None],
    what: str,
    deadline: float = DEADLINE,
    interval: float = 0.05,
) -> _T:
    """
    Call C{check} every C{interval} seconds until it returns something
    other than C{None} or C{False}, for at most C{deadline} seconds; what it
    returned.

    @param what: what was awaited, for the error should time run out.
    @raise AssertionError: when C{deadline} passes first.
    """
    end = _monotonic() + deadline
    while True:
        result = check()
        if result is not None and result is not False:
            return result  # type: ignore[return-value]
        if _monotonic() >= end:
            raise AssertionError(f"gave up after {deadline:g} s waiting for {what}")
        _sleep(interval)


def clusterView(port: int, host: str = LOOPBACK) -> tuple[set[str], int]:
    """
    The members a node believes alive, and how many members its partition
    table has.
    """
    members = getJSON(port, "/cluster/members", host)
    table = int(getJSON(port, "/stats", host)["replication"]["members"])
    return {m["name"] for m in members if m.get("state") == "alive"}, table


def waitConverged(
    ports: Mapping[str, int],
    timeout: float = DEADLINE,
    check: Callable[[], None] = lambda: None,
    host: str = LOOPBACK,
) -> float:
    """
    Wait until each node (name -> HTTP port) sees exactly these names alive
    and has built its partition table over them; the seconds it took.
    C{check} runs on every round (to fail at once when a process exited).
    """
    want = set(ports)
    started = _monotonic()
    views: dict[str, tuple[set[str], int]] = {}
    while _monotonic() - started < timeout:
        check()
        views = {name: clusterView(port, host) for name, port in ports.items()}
        if all(alive == want and table == len(want) for alive, table in views.values()):
            return _monotonic() - started
        _sleep(0.1)
    seen = "; ".join(
        f"{name} sees {sorted(alive)} (table {table})"
        for name, (alive, table) in views.items()
    )
    raise ClusterError(f"cluster did not converge in {timeout:.0f} s: {seen}")


# --- processes --------------------------------------------------------------------


class NodeProcess:
    """
    One child in its own process group (a Ctrl-C in the terminal does not
    reach it, and a signal reaches all it spawned), startable again after
    it stopped.

    Its output goes either straight to C{logPath} (C{follow=False}: nothing
    in this process reads it, so a busy node never waits for us), or through
    a reader thread that keeps every line with the time it was read on
    C{clock} (C{follow=True}: L{waitFor} wakes on each line), and appends
    it to C{logPath} if given, prefixed by that time when C{stampLog}.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        name: str = "node",
        logPath: Path | None = None,
        follow: bool = False,
        stampLog: bool = False,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = _monotonic,
        cwd: Path | None = None,
        start: bool = True,
    ) -> None:
        self.command = list(command)
        self.name = name
        self.logPath = logPath
        self.lines: list[str] = []
        self.stamps: list[float] = []
        self.starts = 0
        self.started = 0.0
        self.httpPort = self.gossipPort = self.peerPort = self.redisPort = 0
        self._follow = follow or logPath is None
        self._stampLog = stampLog
        self._env = childEnv() if env is None else dict(env)
        self._clock = clock
        self._cwd = cwd
        self._changed = threading.Condition()
        self._reader: threading.Thread | None = None
        self._log: IO[bytes] | None = None
        self._tail: IO[bytes] | None = None
        self._partial = b""
        self.process: subprocess.Popen[bytes] | None = None
        if start:
            self.start()

    def start(self) -> None:
        logFile: IO[bytes] | None = None
        if self.logPath is not None:
            logFile = self.logPath.open("ab" if self._stampLog else "wb")
            if self._stampLog:
                logFile.write(b"--- start %d at %.3f\n" % (self.starts, self._clock()))
                logFile.flush()
        self.started = _monotonic()
        try:
            self.process = subprocess.Popen(  # noqa: S603
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if self._follow else logFile,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self._cwd,
                start_new_session=True,
            )
        except BaseException:
            if logFile is not None:
                logFile.close()
            raise
        self.starts += 1
        if self._follow:
            self._reader = threading.Thread(
                target=self._read, args=(self.process, logFile), daemon=True
            )
            self._reader.start()
        else:
            self._log = logFile

    def _read(
        self, process: subprocess.Popen[bytes], logFile: IO[bytes] | None
    ) -> None:
        assert process.stdout is not None
        try:
            for raw in process.stdout:
                stamp = self._clock()
                if logFile is not None:
                    # The harness's time, finer than twistd's seconds.
                    logFile.write(b"[%8.3f] " % stamp if self._stampLog else b"")
                    logFile.write(raw)
                    logFile.flush()
                with self._changed:
                    self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                    self.stamps.append(stamp)
                    self._changed.notify_all()
        finally:
            if logFile is not None:
                logFile.close()
            with self._changed:
                self._changed.notify_all()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.httpPort}"

    def exited(self) -> int | None:
        """
        The exit status, or C{None} while it runs.
        """
        return None if self.process is None else self.process.poll()

    def wait(self, timeout: float) -> int:
        """
        The exit status, once it exits within C{timeout} seconds.

        @raise subprocess.TimeoutExpired: if it does not.
        """
        assert self.process is not None
        return self.process.wait(timeout)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check(self) -> None:
        """
        Raise L{ClusterError}, with the end of the log, if it exited.
        """
        code = self.exited()
        if code is not None:
            raise ClusterError(
                f"{self.name} exited with status {code}; log "
                f"{self.logPath or '(kept in memory)'}:\n{self.logTail()}"
            )

    # --- the log ---

    def logTail(self, count: int = 30) -> str:
        if self._follow:
            with self._changed:
                return "\n".join(self.lines[-count:])
        assert self.logPath is not None
        try:
            text = self.logPath.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-count:])

    def newLines(self) -> list[str]:
        """
        The complete lines the log file gained since the last call (for a
        process that is not followed).
        """
        if self._tail is None:
            assert self.logPath is not None
            try:
                self._tail = self.logPath.open("rb")
            except FileNotFoundError:
                return []
        data = self._tail.read()
        if not data:
            return []
        *lines, self._partial = (self._partial + data).split(b"\n")
        return [line.decode(errors="replace") for line in lines]

    def mark(self) -> int:
        """
        A position in the log, for L{waitFor} to search from.
        """
        with self._changed:
            return len(self.lines)

    def waitPast(self, mark: int, timeout: float) -> None:
        """
        Return once the node logged anything after C{mark}, after C{timeout}
        seconds, or when it exited.
        """
        with self._changed:
            self._changed.wait_for(
                lambda: len(self.lines) > mark or not self.running, timeout
            )

    def waitFor(
        self, pattern: re.Pattern[str], deadline: float = DEADLINE, since: int = 0
    ) -> re.Match[str]:
        """
        The first line (from line C{since} on) matching C{pattern}, waiting
        up to C{deadline} seconds for it to appear.
        """
        end = _monotonic() + deadline
        seen = since
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    match = pattern.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                remaining = end - _monotonic()
                reading = self._reader is not None and self._reader.is_alive()
                if remaining <= 0 or (not self.running and not reading):
                    raise ClusterError(
                        f"{self.name}: no log line matching {pattern.pattern!r}; "
                        "log:\n" + "\n".join(self.lines)
                    )
                self._changed.wait(remaining)

    def linesMatching(
        self, pattern: re.Pattern[str]
    ) -> list[tuple[float, re.Match[str]]]:
        """
        Every line so far matching C{pattern}, with the time it was read.
        """
        with self._changed:
            lines = list(zip(self.stamps, self.lines, strict=True))
        found = []
        for stamp, line in lines:
            match = pattern.search(line)
            if match:
                found.append((stamp, match))
        return found

    def shiftTimes(self, delta: float) -> None:
        """
        Move the times of the lines read so far by C{delta} (the clock was
        reset).
        """
        with self._changed:
            self.stamps[:] = [stamp + delta for stamp in self.stamps]

    # --- readiness ---

    def waitListening(self, deadline: float = DEADLINE) -> NodeProcess:
        """
        Read the node's HTTP, node-to-node and gossip ports from its log.
        """
        self.httpPort = int(self.waitFor(_HTTP, deadline).group("port"))
        self.peerPort = int(self.waitFor(_PEER, deadline).group("port"))
        self.gossipPort = int(self.waitFor(_GOSSIP, deadline).group("port"))
        return self

    def waitRedis(self, deadline: float = DEADLINE) -> int:
        """
        The port of the node's Redis protocol port (C{--redis-port}), once
        its log says it listens.
        """
        self.redisPort = int(self.waitFor(_REDIS, deadline).group("port"))
        return self.redisPort

    def waitHealthy(
        self,
        port: int,
        path: str = "/health",
        statuses: Sequence[int] = (200,),
        timeout: float = 60.0,
        host: str = LOOPBACK,
        interval: float = 0.1,
    ) -> float:
        """
        Poll C{path} until it answers one of C{statuses}; the seconds it
        took. Raises L{ClusterError} when the process exits or time is up.
        """
        started = _monotonic()
        last = "no answer"
        while _monotonic() < started + timeout:
            self.check()
            try:
                status, _ = httpRequest(port, "GET", path, host=host, timeout=1.0)
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
            else:
                if status in statuses:
                    return _monotonic() - started
                last = f"HTTP {status}"
            _sleep(interval)
        raise ClusterError(
            f"{self.name} not ready after {timeout:.0f} s on GET {path} ({last}); "
            f"log {self.logPath}:\n{self.logTail()}"
        )

    # --- stopping ---

    def signal(self, number: signal.Signals) -> None:
        """
        Signal the process group, only while its leader is not reaped (the
        group id cannot have been reused yet).
        """
        if self.running:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, number)

    def kill(self) -> None:
        """
        SIGKILL, as a crash, and reap.
        """
        self.signal(signal.SIGKILL)
        self._reap(DEADLINE)

    def terminate(self, deadline: float = DEADLINE) -> int | None:
        """
        SIGTERM, as an operator would, and SIGKILL if it is still running
        after C{deadline} seconds; the status of the graceful exit, or
        C{None} if it had to be killed.
        """
        # A stopped process cannot handle SIGTERM until it continues.
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        if self._reap(deadline):
            return self.exited()
        self.kill()
        return None

    def _reap(self, deadline: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(deadline)
        except subprocess.TimeoutExpired:
            return False
        if self._reader is not None:
            self._reader.join(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        return True


def startNode(
    args: Iterable[str],
    *,
    wrapper: Sequence[str] = (),
    precise: bool = False,
    **options: Any,
) -> NodeProcess:
    """
    A C{twistd disperse} with flags C{args}; C{options} as L{NodeProcess}'s.
    """
    return NodeProcess(nodeCommand(args, wrapper, precise), **options)


def startLoopbackNode(*args: str, deadline: float = DEADLINE) -> NodeProcess:
    """
    A followed node on 127.0.0.1 with ports the system chose, once it said
    where it listens.
    """
    node = startNode([*loopbackArgs(), *args], follow=True)
    try:
        return node.waitListening(deadline)
    except BaseException:
        node.kill()
        raise


def terminateAll(processes: Sequence[NodeProcess], deadline: float) -> None:
    """
    SIGTERM every process at once, then SIGKILL those still running after
    C{deadline} seconds.
    """
    for process in processes:
        process.signal(signal.SIGCONT)
        process.signal(signal.SIGTERM)
    end = _monotonic() + deadline
    for process in processes:
        if not process._reap(max(0.0, end - _monotonic())):
            process.kill()


class ProcessSet:
    """
    Processes started for one run; leaving the C{with} block, however it is
    left, stops all that are still there.
    """

    def __init__(self, deadline: float = 5.0, cwd: Path | None = None) -> None:
        self.processes: list[NodeProcess] = []
        self._deadline = deadline
        self._cwd = cwd

    def add(self, process: NodeProcess) -> NodeProcess:
        self.processes.append(process)
        return process

    def start(
        self, name: str, command: Sequence[str], logPath: Path, **options: Any
    ) -> NodeProcess:
        options.setdefault("cwd", self._cwd)
        return self.add(NodeProcess(command, name=name, logPath=logPath, **options))

    def check(self) -> None:
        """
        Raise L{ClusterError} if any of them exited.
        """
        for process in self.processes:
            process.check()

    def forget(self, process: NodeProcess) -> None:
        """
        Stop C{process} if it still runs, and drop it from the set.
        """
        try:
            process.terminate(self._deadline)
        finally:
            with contextlib.suppress(ValueError):
                self.processes.remove(process)

    def close(self) -> None:
        processes, self.processes = self.processes, []
        terminateAll(processes, self._deadline)

    def __enter__(self) -> ProcessSet:
        return self

    def __exit__(
        self,
        excType: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.contextmanager
def runningNode(*args: str) -> Iterator[NodeProcess]:
    """
    L{startLoopbackNode} for the duration of a block, killed at its end.
    """
    node = startLoopbackNode(*args)
    try:
        yield node
    finally:
        node.kill()
