"""
Faults on the hosts of the bed: signals to node processes, and iptables
rules inside each node's namespace (every namespace has its own tables, so
a rule there touches nothing outside the bed). Latency goes through the
relay (L{disperse.testbed.relay}): the kernel here has no C{tc netem}.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence

from disperse.logs import logger
from disperse.testbed.disks import SmallDisk
from disperse.testbed.hosts import GOSSIP_PORT, HTTP_PORT, Host, NodeProcess, run
from disperse.testbed.scenario import Action

log = logger()

# Where the relay listens in each namespace, for gossip and for HTTP.
RELAY_GOSSIP_PORT = 17946
RELAY_HTTP_PORT = 18000


def iptablesProblem() -> str | None:
    if shutil.which("iptables") is None:
        return "iptables is not installed (apt-get install -y iptables)"
    return None


def _dropRule(peer: Host, chain: str) -> list[str]:
    direction = "-s" if chain == "INPUT" else "-d"
    return [chain, direction, peer.address, "-j", "DROP"]


class Faults:
    """
    Applies the L{Action}s of a schedule to the bed's hosts and processes,
    and undoes whatever is still in force with L{healAll}.
    """

    def __init__(
        self,
        hosts: Sequence[Host],
        processes: Sequence[NodeProcess],
        relays: Sequence[Relay] | None = None,
        disks: Mapping[int, SmallDisk] | None = None,
    ) -> None:
        self._hosts = list(hosts)
        self._disks = dict(disks or {})
        self._processes = list(processes)
        self._relays = relays
        # (host index, iptables rule) for every rule added and not removed.
        self._rules: list[tuple[int, list[str]]] = []
        # Nodes that left for good: the end of the faults does not bring
        # them back.
        self._gone: set[int] = set()

    def apply(self, action: Action) -> None:
        verb = action.verb
        node = action.node
        process = None if node is None else self._processes[node]
        if verb == "kill":
            assert process is not None
            process.kill()
        elif verb == "terminate":
            assert process is not None
            process.terminate()
        elif verb == "start":
            assert process is not None
            if not process.running:
                process.start()
        elif verb == "leave":
            assert process is not None and node is not None
            self._gone.add(node)
            process.terminate()
        elif verb == "power-off":
            # Every signal first, then the reaping: all die at one moment.
            for each in self._processes:
                each.signal(signal.SIGKILL)
            for each in self._processes:
                each.kill()
        elif verb == "fill":
            assert node is not None
            filled = self._disks[node].fill()
            log.info("filled n{node}'s disk: {size} bytes", node=node, size=filled)
        elif verb == "free":
            assert node is not None
            self._disks[node].free()
        elif verb == "stop":
            assert process is not None
            process.signal(signal.SIGSTOP)
        elif verb == "cont":
            assert process is not None
            process.signal(signal.SIGCONT)
        elif verb == "isolate":
            assert node is not None
            for peer in self._peers(node):
                self._add(node, _dropRule(peer, "INPUT"))
                self._add(node, _dropRule(peer, "OUTPUT"))
        elif verb == "rejoin":
            assert node is not None
            for peer in self._peers(node):
                self._remove(node, _dropRule(peer, "INPUT"))
                self._remove(node, _dropRule(peer, "OUTPUT"))
        elif verb in ("drop", "undrop"):
            assert node is not None and action.peer is not None
            # What the source sends to the target never arrives: dropped on
            # the way out of the source.
            rule = _dropRule(self._hosts[action.peer], "OUTPUT")
            if verb == "drop":
                self._add(node, rule)
            else:
                self._remove(node, rule)
        elif verb == "loss":
            for host in self._hosts:
                for peer in self._peers(host.index):
                    self._add(host.index, self._lossRule(peer, action.value))
        elif verb == "noloss":
            for index, rule in list(self._rules):
                if "statistic" in rule:
                    self._remove(index, rule)
        elif verb in ("delay", "nodelay"):
            assert node is not None
            if self._relays is None:
                raise RuntimeError("latency needs the relay, which is not running")
            self._relays[node].setDelay(action.value if verb == "delay" else 0.0)
        else:
            raise ValueError(f"unknown action {verb!r}")

    def _peers(self, node: int) -> list[Host]:
        return [h for h in self._hosts if h.index != node]

    def _lossRule(self, peer: Host, rate: float) -> list[str]:
        return [
            "INPUT",
            "-s",
            peer.address,
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            f"{rate:.4f}",
            "-j",
            "DROP",
        ]

    def _add(self, index: int, rule: list[str]) -> None:
        self._hosts[index].run("iptables", "-A", *rule)
        self._rules.append((index, rule))

    def _remove(self, index: int, rule: list[str]) -> None:
        if (index, rule) in self._rules:
            self._rules.remove((index, rule))
            self._hosts[index].run("iptables", "-D", *rule, check=False)

    def healAll(self) -> None:
        """
        Remove every rule, continue every paused node, start every stopped
        one, free every filled disk, and take latency away: the end of all
        faults.
        """
        for disk in self._disks.values():
            disk.free()
        for index, rule in list(self._rules):
            self._remove(index, rule)
        if self._relays is not None:
            for relay in self._relays:
                relay.setDelay(0.0)
        for index, process in enumerate(self._processes):
            if index in self._gone:
                continue
            process.signal(signal.SIGCONT)
            if not process.running:
                process.start()


class Relay:
    """
    The delaying relay of one host, running in its namespace: traffic that
    other nodes send to the host's gossip and HTTP ports is redirected (by
    a nat rule in the namespace) to the relay, which forwards it after the
    delay it is told on its standard input.
    """

    def __init__(self, host: Host, peers: Sequence[Host], clock: Callable[[], float]):
        self.host = host
        self._peers = [p for p in peers if p != host]
        self._process: subprocess.Popen[str] | None = None
        self._clock = clock

    def start(self) -> None:
        for peer in self._peers:
            for proto, port, relayPort in (
                ("udp", GOSSIP_PORT, RELAY_GOSSIP_PORT),
                ("tcp", GOSSIP_PORT, RELAY_GOSSIP_PORT),
                ("tcp", HTTP_PORT, RELAY_HTTP_PORT),
            ):
                self.host.run(
                    "iptables",
                    "-t",
                    "nat",
                    "-A",
                    "PREROUTING",
                    "-s",
                    peer.address,
                    "-p",
                    proto,
                    "--dport",
                    str(port),
                    "-j",
                    "REDIRECT",
                    "--to-ports",
                    str(relayPort),
                )
        self._process = subprocess.Popen(  # noqa: S603
            self.host.execArgs(
                sys.executable,
                "-m",
                "disperse.testbed.relay",
                "--address",
                self.host.address,
                "--udp",
                f"{RELAY_GOSSIP_PORT}:{GOSSIP_PORT}",
                "--tcp",
                f"{RELAY_GOSSIP_PORT}:{GOSSIP_PORT}",
                "--tcp",
                f"{RELAY_HTTP_PORT}:{HTTP_PORT}",
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )

    def setDelay(self, seconds: float) -> None:
        if self._process is None or self._process.stdin is None:
            return
        try:
            self._process.stdin.write(f"delay {seconds:.6f}\n")
            self._process.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            log.warn("relay of {host} gone: {error}", host=self.host.name, error=e)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(10)


__all__ = ["Faults", "Relay", "iptablesProblem", "run"]
