"""
Hosts on one machine: a Linux bridge in the root namespace, one network
namespace per node joined to it by a veth pair, each with its own address,
and one C{twistd disperse} per namespace bound to that address.

Every name made here starts with L{PREFIX}, so that L{cleanLeftovers} can
remove what a crashed run left behind without touching anything else.
Needs root and iproute2; the firewall rules of L{disperse.testbed.faults}
need iptables.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from disperse.logs import logger
from disperse.testing import cluster

PREFIX = "dtb-"
BRIDGE = f"{PREFIX}br0"
SUBNET = "10.213.0"
BRIDGE_ADDRESS = f"{SUBNET}.1"
GOSSIP_PORT = 7946
HTTP_PORT = 8000
# Every node of the bed shares it; it is only ever used inside the bed.
CLUSTER_SECRET = "disperse fault bed, never a real cluster"  # noqa: S105

log = logger()


class HostError(RuntimeError):
    """
    A command setting up or changing the hosts failed.
    """


def run(args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """
    Run one command (no shell), raising L{HostError} with its output if it
    fails and C{check} is set.
    """
    result = subprocess.run(  # noqa: S603
        list(args), capture_output=True, text=True, timeout=30, check=False
    )
    if check and result.returncode != 0:
        raise HostError(
            f"{' '.join(args)} exited {result.returncode}: "
            f"{(result.stderr or result.stdout).strip()}"
        )
    return result


def namespaceProblem() -> str | None:
    """
    Why this machine cannot host the bed, or C{None} if it can: it needs
    root, C{ip}, and the right to create a network namespace.
    """
    if os.geteuid() != 0:
        return "not running as root"
    if shutil.which("ip") is None:
        return "iproute2 (the ip command) is not installed"
    probe = f"{PREFIX}probe{os.getpid()}"
    result = run(["ip", "netns", "add", probe], check=False)
    if result.returncode != 0:
        return f"cannot create a network namespace: {result.stderr.strip()}"
    run(["ip", "netns", "del", probe], check=False)
    return None


LOCK_PATH = Path("/run/disperse-testbed.lock")


@contextmanager
def exclusive(path: Path = LOCK_PATH) -> Iterator[None]:
    """
    Hold the bed's lock for a block: two runs on one machine would remove
    each other's hosts as leftovers.

    @raise HostError: if another run holds it.
    """
    with path.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HostError(f"another fault bed run holds {path}") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def cleanLeftovers() -> list[str]:
    """
    Remove namespaces and links of ours left by an earlier run that did not
    finish; the names removed.
    """
    removed = []
    for line in run(["ip", "netns", "list"], check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(PREFIX):
            _killNamespace(name)
            run(["ip", "netns", "del", name], check=False)
            removed.append(name)
    links = run(["ip", "-o", "link", "show"], check=False).stdout
    for match in re.finditer(r"^\d+:\s+([^:@\s]+)", links, re.MULTILINE):
        name = match.group(1)
        if name.startswith(PREFIX):
            run(["ip", "link", "del", name], check=False)
            removed.append(name)
    return removed


def _killNamespace(name: str) -> None:
    # Processes left in a namespace keep it alive and hold its addresses.
    pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


@dataclass(frozen=True)
class Host:
    index: int

    @property
    def name(self) -> str:
        return f"n{self.index}"

    @property
    def namespace(self) -> str:
        return f"{PREFIX}n{self.index}"

    @property
    def address(self) -> str:
        return f"{SUBNET}.{10 + self.index}"

    @property
    def url(self) -> str:
        return f"http://{self.address}:{HTTP_PORT}"

    def execArgs(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *args]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(self.execArgs(*args), check=check)


class Network:
    """
    The bridge and one namespace per host. L{create} builds them, L{destroy}
    removes them whatever state they are in.
    """

    def __init__(self, count: int) -> None:
        self.hosts = [Host(i) for i in range(count)]

    def create(self) -> None:
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        run(["ip", "addr", "add", f"{BRIDGE_ADDRESS}/24", "dev", BRIDGE])
        run(["ip", "link", "set", BRIDGE, "up"])
        for host in self.hosts:
            outside, inside = f"{PREFIX}h{host.index}", f"{PREFIX}c{host.index}"
            run(["ip", "netns", "add", host.namespace])
            run(["ip", "link", "add", outside, "type", "veth", "peer", "name", inside])
            run(["ip", "link", "set", inside, "netns", host.namespace])
            run(["ip", "link", "set", outside, "master", BRIDGE])
            run(["ip", "link", "set", outside, "up"])
            host.run("ip", "link", "set", "lo", "up")
            host.run("ip", "link", "set", inside, "name", "eth0")
            host.run("ip", "addr", "add", f"{host.address}/24", "dev", "eth0")
            host.run("ip", "link", "set", "eth0", "up")
        log.info(
            "bed network up: {count} hosts on {bridge}",
            count=len(self.hosts),
            bridge=BRIDGE,
        )

    def destroy(self) -> None:
        for host in self.hosts:
            _killNamespace(host.namespace)
            run(["ip", "netns", "del", host.namespace], check=False)
            run(["ip", "link", "del", f"{PREFIX}h{host.index}"], check=False)
        run(["ip", "link", "del", BRIDGE], check=False)


class NodeProcess(cluster.NodeProcess):
    """
    One C{twistd disperse} in a host's namespace, started by L{start} (and
    again after a stop). Its output goes to a log file, and each line is
    also kept with the time it was read on the bed's monotonic clock, so
    that membership changes can be dated precisely.
    """

    def __init__(
        self,
        host: Host,
        peers: Sequence[Host],
        logDirectory: Path,
        clock: Callable[[], float],
        clockOffset: float = 0.0,
        extraArgs: Sequence[str] = (),
    ) -> None:
        self.host = host
        self._peers = peers
        self._extraArgs = list(extraArgs)
        env: dict[str, str] = dict(os.environ)
        if clockOffset:
            env["DISPERSE_CLOCK_OFFSET"] = str(clockOffset)
        super().__init__(
            cluster.nodeCommand(
                self.args(),
                wrapper=["/usr/bin/nice", "-n", "5", *host.execArgs()],
            ),
            name=host.name,
            logPath=logDirectory / f"{host.name}.log",
            follow=True,
            stampLog=True,
            env=env,
            clock=clock,
            start=False,
        )

    def args(self) -> list[str]:
        args = [
            "--node-name",
            self.host.name,
            "--bind",
            self.host.address,
            "--advertise",
            self.host.address,
            "--port",
            str(GOSSIP_PORT),
            "--http-port",
            str(HTTP_PORT),
            "--cluster-secret",
            CLUSTER_SECRET,
            # Repairs within seconds, so that a run settles quickly.
            "--anti-entropy-interval",
            "2s",
            *self._extraArgs,
        ]
        for peer in self._peers:
            if peer != self.host:
                args += ["--peer", f"{peer.address}:{GOSSIP_PORT}"]
        return args

    def terminate(self, deadline: float = 15.0) -> int | None:
        return super().terminate(deadline)

    def shiftTimes(self, delta: float) -> None:
        """
        Move the times of the lines read so far by C{delta}: the bed's clock
        was reset to zero when the workload began.
        """
        super().shiftTimes(delta)
        assert self.logPath is not None
        with self.logPath.open("a", encoding="utf-8") as logFile:
            logFile.write("--- the workload starts: times from here on are its own\n")
