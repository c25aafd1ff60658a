"""
Replication across real processes: three nodes on loopback, quorum writes,
a replica killed with SIGKILL, every acknowledged key still readable, and
the restarted replica receiving what it missed.
"""

from __future__ import annotations

import json
import random
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from disperse.testing.cluster import NodeProcess, startLoopbackNode
from disperse.testing.history import History, OpKind, check

pytestmark = pytest.mark.integration

LOCAL = {"X-Is-Sync": "true"}


def call(
    node: NodeProcess,
    method: str,
    key: str,
    value: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, dict[str, str]]:
    data = None if value is None else json.dumps({"value": value}).encode()
    request = urllib.request.Request(
        f"{node.url}/cache/{key}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def start(name: str, *args: str) -> NodeProcess:
    return startLoopbackNode("--profile", "local", "--node-name", name, *args)


def member(name: str, change: str) -> re.Pattern[str]:
    return re.compile(rf"member {re.escape(name)} {change} ")


@pytest.fixture
def cluster() -> Iterator[list[NodeProcess]]:
    nodes: list[NodeProcess] = []
    try:
        nodes.append(start("n0"))
        seed = f"127.0.0.1:{nodes[0].gossipPort}"
        nodes.extend(start(f"n{i}", "--peer", seed) for i in range(1, 3))
        for node in nodes:
            node.waitFor(re.compile(r"partition table rebuilt for 3 members"))
        yield nodes
    finally:
        for node in nodes:
            node.kill()


def test_headAnswersTheLengthOfTheValue(cluster: list[NodeProcess]) -> None:
    """
    C{HEAD} answers the C{Content-Length} the C{GET} would, whichever
    consistency level it is read at.
    """
    n0, n1, _ = cluster
    for key, size in (("small", 5), ("large", 300_000)):
        assert call(n0, "PUT", key, "v" * size)[:2] == (200, "OK")
        for level in ("one", "quorum", "all"):
            status, body, headers = call(
                n1, "HEAD", key, headers={"X-Consistency": level}
            )
            assert (status, body, headers["Content-Length"]) == (200, "", str(size))
            got = call(n1, "GET", key, headers={"X-Consistency": level})
            assert got[2]["Content-Length"] == str(size)


def test_noAcknowledgedWriteLost(cluster: list[NodeProcess]) -> None:
    n0, n1, n2 = cluster
    for i in range(30):
        status, body, headers = call(n0, "PUT", f"before{i}", f"v{i}")
        assert (status, body) == (200, "OK")
        assert (headers["X-Disperse-Acks"], headers["X-Disperse-Replicas"]) in (
            ("2", "3"),
            ("3", "3"),
        )

    # Every node answers for every key, whoever took the write.
    assert call(n2, "GET", "before7")[:2] == (200, "v7")
    assert call(n1, "GET", "before7", headers={"X-Consistency": "all"})[:2] == (
        200,
        "v7",
    )

    crashed = n2
    crashed.signal(signal.SIGKILL)
    crashed.kill()
    for i in range(30):
        assert call(n1, "GET", f"before{i}")[:2] == (200, f"v{i}")
    for i in range(20):
        status, body, headers = call(n1, "PUT", f"during{i}", f"w{i}")
        assert (status, body) == (200, "OK")

    # "all" means every replica of the current table: 503 while the crashed
    # node still counts as one, success once it is known dead. Either way
    # the answer says how many replicas took the write.
    status, body, headers = call(n0, "PUT", "strict", "x", {"X-Consistency": "all"})
    if status == 200:
        assert headers["X-Disperse-Acks"] == headers["X-Disperse-Replicas"] == "2"
    else:
        assert status == 503
        assert json.loads(body) | {"error": ""} == {
            "error": "",
            "acks": 2,
            "required": 3,
            "replicas": 3,
        }

    # Restarted under the same name and address, it receives what it missed:
    # the writes of its downtime as hints, everything else by anti-entropy.
    marks = [n0.mark(), n1.mark()]
    cluster[2] = start(
        "n2",
        "--peer",
        f"127.0.0.1:{n0.gossipPort}",
        "--port",
        str(crashed.gossipPort),
    )
    for node, mark in zip((n0, n1), marks, strict=True):
        # "updated" when it came back before the others declared it dead.
        node.waitFor(member("n2", "(joined|updated)"), since=mark)
    restarted = cluster[2]
    restarted.waitFor(re.compile(r"caught up: \d+ keys pulled"))
    local = {"X-Is-Sync": "true"}
    for i in range(30):
        assert call(restarted, "GET", f"before{i}", headers=local)[:2] == (
            200,
            f"v{i}",
        )
    for i in range(20):
        assert call(restarted, "GET", f"during{i}")[:2] == (200, f"w{i}")


def test_forgedReplicaWriteRefused(cluster: list[NodeProcess]) -> None:
    n0 = cluster[0]
    request = urllib.request.Request(
        f"http://127.0.0.1:{n0.peerPort}/internal/v1/apply",
        data=b"\x91\x90",
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=10)
    assert raised.value.code == 401


def test_killUnderLoadLosesNothing(cluster: list[NodeProcess]) -> None:
    """
    Clients write and read at quorum through two nodes while the third is
    killed: the history checker finds no acknowledged write lost and no
    stale read.
    """
    n0, n1, n2 = cluster
    history = History()
    lock = threading.Lock()
    stop = threading.Event()
    keys = [f"h{i}" for i in range(10)]

    def record(client: str, op: OpKind, key: str, value: str | None) -> None:
        with lock:
            history.invoke(
                client,
                op,
                key,
                value=value,
                consistency="quorum",
                time=time.monotonic(),
            )
        status, body, _ = call(
            n0 if client.endswith("0") else n1,
            "PUT" if op == "write" else "GET",
            key,
            value,
        )
        with lock:
            now = time.monotonic()
            if op == "write" and status == 200:
                history.ok(client, time=now)
            elif op == "write":
                # A 503 or a broken connection: it may have taken effect.
                history.timeout(client, time=now)
            elif status == 200:
                history.ok(client, time=now, value=body)
            elif status == 404:
                history.ok(client, time=now, value=None)
            else:
                history.fail(client, time=now)

    def client(name: str, seed: int) -> None:
        rng = random.Random(seed)
        for n in range(400):
            if stop.is_set():
                return
            key = rng.choice(keys)
            if rng.random() < 0.5:
                record(name, "write", key, f"{name}-{n}")
            else:
                record(name, "read", key, None)

    threads = [
        threading.Thread(target=client, args=(f"c{i}{i % 2}", i)) for i in range(4)
    ]
    for thread in threads:
        thread.start()
    try:
        # The workload runs for a fixed time, with a replica crashing in the
        # middle of it.
        stop.wait(1.5)
        n2.signal(signal.SIGKILL)
        stop.wait(2.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    settled = time.monotonic()
    for key in keys:
        record("final0", "read", key, None)
        record("final1", "read", key, None)
    report = check(history, replicas=3, settledAt=settled)
    assert report.valid, report.toText()
    assert report.counts["write"]["ok"] > 20


def test_leavingNodeHandsOff() -> None:
    """
    With one copy of each key, a node stopped with SIGTERM hands its keys to
    the nodes that own them after it: every key stays readable.
    """
    nodes: list[NodeProcess] = []
    try:
        nodes.append(start("n0", "--replicas", "1"))
        seed = f"127.0.0.1:{nodes[0].gossipPort}"
        nodes.extend(start(f"n{i}", "--replicas", "1", "--peer", seed) for i in (1, 2))
        for node in nodes:
            node.waitFor(re.compile(r"partition table rebuilt for 3 members"))
        n0, n1, _ = nodes
        for i in range(60):
            assert call(n0, "PUT", f"k{i}", f"v{i}")[:2] == (200, "OK")
        # Keys written while tables were settling also reached the members
        # that owned them in an earlier table, n1 among them: what it hands
        # off is what it owns.
        partitions = json.loads(
            urllib.request.urlopen(f"{n1.url}/cluster/partitions").read()
        )["partitions"]
        owned = sum(p["entries"] for p in partitions if p["held"])
        assert owned, "n1 holds some of the keys"
        mark, mark0 = n1.mark(), n0.mark()
        assert n1.terminate() == -signal.SIGTERM
        handed = n1.waitFor(
            re.compile(r"handed off (\d+) of (\d+) records"), since=mark
        )
        assert handed.group(1) == handed.group(2) == str(owned)
        n0.waitFor(re.compile(r"partition table rebuilt for 2 members"), since=mark0)
        for i in range(60):
            assert call(n0, "GET", f"k{i}")[:2] == (200, f"v{i}")
    finally:
        for node in nodes:
            node.kill()
