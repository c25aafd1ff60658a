"""
Persistence across real processes: nodes with C{--data-dir} stopped
(SIGTERM), crashed (SIGKILL, one node or every node at once, under quorum
load) and started again on the same directories give back every key they
acknowledged, with its expiry; a damaged log tail is cut, reported and
repaired from the replicas; a data directory refuses a second process and
a node of another name; C{disperse verify} finds a flipped byte.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from disperse.persist.datadir import LOG_DIR, LOG_SUFFIX
from disperse.testing.cluster import (
    LOOPBACK,
    NodeProcess,
    getJSON,
    httpRequest,
    startLoopbackNode,
    startNode,
    tool,
    waitConverged,
    waitUntil,
)
from disperse.testing.history import History, OpKind, check
from disperse.testing.resp import RespClient

pytestmark = pytest.mark.integration

# disperse.cli.main's status for a data directory with damaged files.
EXIT_DAMAGED = 6
NS_PER_S = 1_000_000_000


def start(name: str, dataDir: Path, *args: str) -> NodeProcess:
    """
    A node with a data directory and a Redis port, once it listens.
    """
    node = startLoopbackNode(
        "--profile",
        "local",
        "--node-name",
        name,
        "--data-dir",
        str(dataDir),
        "--redis-port",
        f"tcp:0:interface={LOOPBACK}",
        *args,
    )
    try:
        node.waitRedis()
    except BaseException:
        node.kill()
        raise
    return node


def persistence(node: NodeProcess) -> dict[str, Any]:
    section: dict[str, Any] = getJSON(node.httpPort, "/stats")["persistence"]
    return section


def waitLoaded(node: NodeProcess) -> dict[str, Any]:
    """
    What the node's load report says, once loading ended.
    """

    def loaded() -> dict[str, Any] | None:
        node.check()
        section = persistence(node)
        return None if section["loading"] else section["load"]

    report: dict[str, Any] = waitUntil(loaded, f"{node.name} to load its data")
    return report


def put(
    node: NodeProcess,
    key: str,
    value: str,
    ttlSeconds: int = 0,
    level: str = "quorum",
) -> int:
    document: dict[str, Any] = {"value": value}
    if ttlSeconds:
        document["duration"] = ttlSeconds * NS_PER_S
    status, _ = httpRequest(
        node.httpPort,
        "PUT",
        f"/cache/{key}",
        body=json.dumps(document).encode(),
        headers={"Content-Type": "application/json", "X-Consistency": level},
    )
    return status


def get(node: NodeProcess, key: str, level: str = "quorum") -> str | None:
    """
    The value of C{key}, or C{None} when it is not found.
    """
    status, body = httpRequest(
        node.httpPort, "GET", f"/cache/{key}", headers={"X-Consistency": level}
    )
    assert status in (200, 404), (status, body)
    return body.decode() if status == 200 else None


def refusal(args: Sequence[str]) -> tuple[int, list[str]]:
    """
    Start a node expected to refuse to start: its exit status and the
    lines it wrote.
    """
    node = startNode(args, follow=True)
    try:
        status = node.wait(30)
    finally:
        node.kill()
    return status, [line for line in node.lines if line.strip()]


# --- one node -----------------------------------------------------------------------


def writeKeys(node: NodeProcess, prefix: str) -> dict[str, tuple[str, int]]:
    """
    Keys written over HTTP and over RESP, some with a time to live: key
    to (value, TTL in seconds, 0 for none).
    """
    written: dict[str, tuple[str, int]] = {}
    for i in range(20):
        key, ttl = f"{prefix}-http-{i}", 3600 if i % 2 else 0
        assert put(node, key, f"h{i}", ttl) == 200
        written[key] = (f"h{i}", ttl)
    with RespClient(node.redisPort) as client:
        for i in range(20):
            key, ttl = f"{prefix}-resp-{i}", 7200 if i % 3 == 0 else 0
            words = [b"SET", key.encode(), f"r{i}".encode()]
            if ttl:
                words += [b"EX", str(ttl).encode()]
            assert client.call(*words) == b"OK"
            written[key] = (f"r{i}", ttl)
        # A key deleted stays deleted.
        assert client.call(b"SET", f"{prefix}-gone".encode(), b"x") == b"OK"
        assert client.call(b"DEL", f"{prefix}-gone".encode()) == 1
    return written


def checkKeys(node: NodeProcess, written: dict[str, tuple[str, int]]) -> None:
    """
    Every key written is there with its value, and its expiry: no later
    than asked, and not gone.
    """
    with RespClient(node.redisPort) as client:
        for key, (value, ttl) in written.items():
            assert get(node, key) == value, key
            remaining = client.call(b"PTTL", key.encode())
            if ttl:
                assert 0 < remaining <= ttl * 1000, (key, remaining)
            else:
                assert remaining == -1, (key, remaining)
        gone = {key.rsplit("-", 2)[0] + "-gone" for key in written}
        for key in gone:
            assert client.call(b"EXISTS", key.encode()) == 0


def test_singleNodeKeepsItsKeys(tmp_path: Path) -> None:
    """
    One node's keys, written over HTTP and RESP, come back with their
    expiry after a SIGTERM, and after a snapshot, more writes and a
    SIGKILL; meanwhile its data
    directory refuses a second process, and afterwards a node of another
    name, each with one line naming the cause.
    """
    dataDir = tmp_path / "n0"
    node = start("n0", dataDir)
    try:
        waitLoaded(node)
        written = writeKeys(node, "a")
        status, lines = refusal(
            ["--node-name", "n0", "--data-dir", str(dataDir), "--port", "0"]
        )
        assert status != 0
        assert len(lines) == 1, lines
        assert "is in use by another process" in lines[0]
        assert str(dataDir / "lock") in lines[0]

        assert node.terminate() is not None
        node = start("n0", dataDir)
        report = waitLoaded(node)
        assert report["entries"] >= len(written)
        assert report["damaged"] == []
        checkKeys(node, written)

        # A snapshot, then more writes after it, acknowledged, then killed
        # at once: the snapshot and the log after it give all back (what
        # reached the kernel is kept; a power cut is what the sync modes
        # are about).
        status, body = httpRequest(node.httpPort, "POST", "/persistence/snapshot")
        assert status == 200, body
        snapshot = json.loads(body)
        assert snapshot["entries"] >= len(written)
        written |= writeKeys(node, "b")
        node.kill()
        node = start("n0", dataDir)
        report = waitLoaded(node)
        assert report["snapshot"] == snapshot["sequence"]
        assert report["entries"] >= len(written)
        checkKeys(node, written)
    finally:
        node.kill()

    status, lines = refusal(
        ["--node-name", "other", "--data-dir", str(dataDir), "--port", "0"]
    )
    assert status != 0
    assert len(lines) == 1, lines
    assert "belongs to node 'n0', not 'other'" in lines[0]


# --- three nodes under quorum load --------------------------------------------------


class Cluster:
    """
    Three nodes holding every key (C{--replicas 3}), each with its own data
    directory, restartable on the same directories and gossip ports.
    """

    names = ("n0", "n1", "n2")

    def __init__(self, root: Path, *args: str) -> None:
        self.root = root
        self.args = ["--replicas", "3", *args]
        self.nodes: dict[str, NodeProcess] = {}
        self.gossipPorts: dict[str, int] = {}

    def start(self, name: str) -> NodeProcess:
        args = list(self.args)
        if name in self.gossipPorts:
            args += ["--port", str(self.gossipPorts[name])]
        if name != "n0":
            args += ["--peer", f"{LOOPBACK}:{self.gossipPorts['n0']}"]
        node = start(name, self.root / name, *args)
        self.nodes[name] = node
        self.gossipPorts[name] = node.gossipPort
        return node

    def startAll(self) -> None:
        for name in self.names:
            self.start(name)
        self.waitReady()

    def waitReady(self) -> None:
        for node in self.nodes.values():
            waitLoaded(node)
        waitConverged(
            {name: node.httpPort for name, node in self.nodes.items()},
            check=self.check,
        )

    def check(self) -> None:
        for node in self.nodes.values():
            node.check()

    def kill(self, names: Sequence[str]) -> None:
        # Every signal first, then the reaping: all die at the same moment.
        for name in names:
            self.nodes[name].signal(signal.SIGKILL)
        for name in names:
            self.nodes[name].kill()

    def close(self) -> None:
        for node in self.nodes.values():
            node.kill()


class QuorumLoad:
    """
    Client threads writing and reading a few keys at quorum through every
    node, each operation recorded in a L{History}; bounded in operations
    and in time.
    """

    def __init__(self, cluster: Cluster, keys: int = 8, clients: int = 4) -> None:
        self._cluster = cluster
        self.history = History()
        self.keys = [f"q{i}" for i in range(keys)]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(f"c{i}", i), daemon=True)
            for i in range(clients)
        ]
        self.acknowledged = 0

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def waitAcknowledged(self, count: int) -> None:
        waitUntil(
            lambda: self.acknowledged >= count,
            f"{count} acknowledged writes",
            deadline=30,
        )

    def perform(
        self, client: str, node: NodeProcess, op: OpKind, key: str, value: str | None
    ) -> None:
        with self._lock:
            self.history.invoke(
                client,
                op,
                key,
                value=value,
                consistency="quorum",
                time=time.monotonic(),
            )
        status: int | None
        body = b""
        try:
            if op == "write":
                assert value is not None
                status = put(node, key, value)
            else:
                status, body = httpRequest(
                    node.httpPort,
                    "GET",
                    f"/cache/{key}",
                    headers={"X-Consistency": "quorum"},
                )
        except OSError:
            status = None
        with self._lock:
            now = time.monotonic()
            if op == "read":
                if status == 200:
                    self.history.ok(client, time=now, value=body.decode())
                elif status == 404:
                    self.history.ok(client, time=now, value=None)
                else:
                    self.history.fail(client, time=now)
            elif status == 200:
                self.acknowledged += 1
                self.history.ok(client, time=now)
            else:
                # Refused, 503, or no answer: it may have taken effect.
                self.history.timeout(client, time=now)

    def _client(self, name: str, seed: int) -> None:
        rng = random.Random(seed)
        end = time.monotonic() + 60  # a bound, not a wait
        for n in range(3000):
            if self._stop.is_set() or time.monotonic() >= end:
                return
            node = rng.choice(list(self._cluster.nodes.values()))
            key = rng.choice(self.keys)
            if rng.random() < 0.7:
                self.perform(name, node, "write", key, f"{name}-{n}")
            else:
                self.perform(name, node, "read", key, None)

    def finalReads(self) -> float:
        """
        Read every key at quorum through every node; the time before the
        first, from which every acknowledged write must be seen.
        """
        settled = time.monotonic()
        for name, node in self._cluster.nodes.items():
            for key in self.keys:
                self.perform(f"final-{name}", node, "read", key, None)
        return settled


def killEveryNode(tmp_path: Path, fsync: str, victims: Sequence[str]) -> None:
    """
    Kill C{victims} at once under quorum load, start them again on their
    data directories: the history checker finds no acknowledged write
    lost (nor any other violation) in what every node reads back at
    quorum.
    """
    cluster = Cluster(tmp_path, "--fsync", fsync)
    try:
        cluster.startAll()
        load = QuorumLoad(cluster)
        load.start()
        try:
            load.waitAcknowledged(150)
            cluster.kill(victims)
        finally:
            load.stop()
        for name in victims:
            cluster.start(name)
        cluster.waitReady()
        settled = load.finalReads()
        report = check(load.history, replicas=3, settledAt=settled)
        assert report.valid, report.toText()
        assert report.counts["write"]["ok"] >= 150
        assert report.counts["read"]["ok"] >= len(load.keys) * 3
    finally:
        cluster.close()


def test_killEveryNodeUnderLoadWithFsyncAlways(tmp_path: Path) -> None:
    """
    With C{--fsync always} a quorum acknowledgment means two copies on
    disk: every node may die at once.
    """
    killEveryNode(tmp_path, "always", Cluster.names)


def test_killTwoNodesUnderLoadWithFsyncEverysec(tmp_path: Path) -> None:
    """
    With C{--fsync everysec}, while one replica of each key survives.
    """
    killEveryNode(tmp_path, "everysec", ("n1", "n2"))


def lastSegment(dataDir: Path) -> Path:
    segments = sorted((dataDir / LOG_DIR).glob(f"*{LOG_SUFFIX}"))
    assert segments, f"no log segment in {dataDir}"
    return segments[-1]


def verifyStatus(dataDir: Path) -> int:
    done = subprocess.run(
        [tool("disperse"), "verify", "--data-dir", str(dataDir)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.returncode


def test_damagedLogsAreCutAndRepaired(tmp_path: Path) -> None:
    """
    A node killed while writing, whose last log segment then loses its end
    and gains garbage, starts, says what it dropped, and gets the keys
    back from its replicas; C{disperse verify} passes a stopped node's
    directory, and fails it once a byte in its log is flipped.
    """
    cluster = Cluster(tmp_path, "--anti-entropy-interval", "1s")
    try:
        cluster.startAll()
        n0 = cluster.nodes["n0"]
        keys = {f"t{i}": f"v{i}" * 20 for i in range(60)}
        for key, value in keys.items():
            assert put(n0, key, value) == 200

        victim = cluster.nodes["n2"]
        victim.kill()
        segment = lastSegment(tmp_path / "n2")
        data = segment.read_bytes()
        cut = len(data) // 2
        segment.write_bytes(data[:cut] + random.Random(7).randbytes(300))
        victim = cluster.start("n2")
        report = waitLoaded(victim)
        assert report["damaged"], report
        assert report["droppedBytes"] > 0
        assert report["entries"] < len(keys)
        cluster.waitReady()
        for node in cluster.nodes.values():
            for key, value in keys.items():
                assert get(node, key) == value, (node.name, key)

        def repaired() -> bool:
            missing = [
                key for key, value in keys.items() if local(victim, key) != value
            ]
            return not missing

        waitUntil(repaired, "n2 to get its lost keys back from its replicas")

        stopped = cluster.nodes["n1"]
        assert stopped.terminate() is not None
        assert verifyStatus(tmp_path / "n1") == 0
        segment = max(
            (tmp_path / "n1" / LOG_DIR).glob(f"*{LOG_SUFFIX}"),
            key=lambda path: path.stat().st_size,
        )
        flipped = bytearray(segment.read_bytes())
        flipped[len(flipped) // 2] ^= 0x40
        segment.write_bytes(bytes(flipped))
        assert verifyStatus(tmp_path / "n1") == EXIT_DAMAGED
    finally:
        cluster.close()


def local(node: NodeProcess, key: str) -> str | None:
    """
    C{key} as C{node}'s own replica holds it.
    """
    status, body = httpRequest(
        node.httpPort, "GET", f"/cache/{key}", headers={"X-Is-Sync": "true"}
    )
    return body.decode() if status == 200 else None
