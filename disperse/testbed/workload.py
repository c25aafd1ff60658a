"""
The bed's clients: threads in the root namespace that write, read and
delete a small set of keys through every node, at every consistency level,
and record each operation in a L{History}. Bounded in operations and in
time; each stops by itself.
"""

from __future__ import annotations

import json
import random
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from disperse.testbed.hosts import Host
from disperse.testing.history import History, OpKind

# Most requests at the default level; some at the others, so that the
# checker sees every pairing of levels.
LEVEL_WEIGHTS = (("quorum", 6), ("one", 2), ("all", 2))
REQUEST_TIMEOUT = 5.0


@dataclass(frozen=True)
class Answer:
    status: int | None
    body: str
    refused: bool = False


def request(
    host: Host,
    method: str,
    key: str,
    value: str | None = None,
    consistency: str | None = None,
    local: bool = False,
    timeout: float = REQUEST_TIMEOUT,
) -> Answer:
    """
    One HTTP request to a node: its status (C{None} when no answer came)
    and body.
    """
    headers = {"Content-Type": "application/json"}
    if consistency:
        headers["X-Consistency"] = consistency
    if local:
        headers["X-Is-Sync"] = "true"
    data = None if value is None else json.dumps({"value": value}).encode()
    req = urllib.request.Request(  # noqa: S310
        f"{host.url}/cache/{key}", data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:  # noqa: S310
            return Answer(response.status, response.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as e:
        return Answer(e.code, e.read().decode("utf-8", "replace"))
    except urllib.error.URLError as e:
        refused = isinstance(e.reason, ConnectionRefusedError)
        return Answer(None, str(e.reason), refused=refused)
    except OSError as e:
        return Answer(None, str(e))


class Workload:
    """
    C{clients} threads, each doing at most C{maxOps} operations until
    L{stop} or C{until} on C{clock}, pausing C{think} seconds between
    operations so that a two-core machine keeps up.
    """

    def __init__(
        self,
        hosts: Sequence[Host],
        history: History,
        clock: Callable[[], float],
        clients: int,
        keys: int,
        seed: int,
        maxOps: int = 5000,
        think: float = 0.02,
    ) -> None:
        # The nodes clients send to, as a load balancer's list: a node that
        # has not joined yet or has left is taken off it (L{withdraw}).
        self._hosts = tuple(hosts)
        self._history = history
        self._clock = clock
        self._clients = clients
        self._keys = [f"k{i}" for i in range(keys)]
        self._seed = seed
        self._maxOps = maxOps
        self._think = think
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.writtenOnce: list[str] = []
        # (client, invoke time) to the node asked, for reading histories.
        self.targets: dict[tuple[int | str, float], str] = {}

    def withdraw(self, name: str) -> None:
        """
        Send no more operations to node C{name}.
        """
        self._hosts = tuple(h for h in self._hosts if h.name != name)

    def serve(self, host: Host) -> None:
        """
        Send operations to C{host} too.
        """
        if host not in self._hosts:
            self._hosts = (*self._hosts, host)

    def start(self, until: float) -> None:
        for client in range(self._clients):
            thread = threading.Thread(
                target=self._client, args=(client, until), daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            # Each request gives up after REQUEST_TIMEOUT.
            thread.join(REQUEST_TIMEOUT * 2)

    def _client(self, client: int, until: float) -> None:
        rng = random.Random(self._seed * 1000 + client)
        levels = [level for level, weight in LEVEL_WEIGHTS for _ in range(weight)]
        for n in range(self._maxOps):
            if self._stop.is_set() or self._clock() >= until:
                return
            key = rng.choice(self._keys)
            host = rng.choice(self._hosts)
            level = rng.choice(levels)
            roll = rng.random()
            if roll < 0.1:
                # A key written once and never again: if the write is lost,
                # no later write hides it from the final reads.
                once = f"once-c{client}-{n}"
                with self._lock:
                    self.writtenOnce.append(once)
                self.perform(client, host, "write", once, f"c{client}-{n}", level)
            elif roll < 0.45:
                self.perform(client, host, "write", key, f"c{client}-{n}", level)
            elif roll < 0.55:
                self.perform(client, host, "delete", key, None, level)
            else:
                self.perform(client, host, "read", key, None, level)
            self._stop.wait(self._think)

    def perform(
        self,
        client: int | str,
        host: Host,
        op: OpKind,
        key: str,
        value: str | None,
        level: str,
    ) -> Answer:
        """
        One operation, recorded: invoke before the request, the outcome
        after it; the answer.
        """
        with self._lock:
            invoked = self._clock()
            self._history.invoke(
                client, op, key, value=value, consistency=level, time=invoked
            )
            self.targets[client, invoked] = host.name
        method = {"write": "PUT", "delete": "DELETE", "read": "GET"}[op]
        answer = request(host, method, key, value, level)
        with self._lock:
            now = self._clock()
            if op == "read":
                if answer.status == 200:
                    self._history.ok(client, time=now, value=answer.body)
                elif answer.status == 404:
                    self._history.ok(client, time=now, value=None)
                else:
                    self._history.fail(client, time=now)
            elif answer.status == 200:
                self._history.ok(client, time=now)
            elif answer.refused or (answer.status is not None and answer.status < 500):
                # Nothing listening, or refused before anything was written.
                self._history.fail(client, time=now)
            else:
                # A 503 (some replicas may hold it), a 507 (with --fsync
                # always, the disk may fail after the write was applied),
                # or no answer at all.
                self._history.timeout(client, time=now)
        return answer
