"""
Membership across real processes: five C{twistd disperse} nodes on
loopback find each other through one seed, detect a crash, re-admit the
crashed node when it restarts, and see a graceful leave as such.
"""

from __future__ import annotations

import json
import re
import signal
import urllib.request
from collections.abc import Iterator

import pytest

from disperse.testing.cluster import NodeProcess, startLoopbackNode

pytestmark = pytest.mark.integration

SIZE = 5


def member(name: str, change: str) -> re.Pattern[str]:
    return re.compile(rf"member {re.escape(name)} {change} ")


def clusterStates(node: NodeProcess) -> dict[str, str]:
    with urllib.request.urlopen(f"{node.url}/cluster/members", timeout=10) as r:
        return {m["name"]: m["state"] for m in json.load(r)}


def start(name: str, *args: str) -> NodeProcess:
    return startLoopbackNode("--profile", "local", "--node-name", name, *args)


@pytest.fixture
def cluster() -> Iterator[list[NodeProcess]]:
    nodes: list[NodeProcess] = []
    try:
        nodes.append(start("n0"))
        seed = f"127.0.0.1:{nodes[0].gossipPort}"
        nodes.extend(start(f"n{i}", "--peer", seed) for i in range(1, SIZE))
        yield nodes
    finally:
        for node in nodes:
            node.kill()


def test_membership(cluster: list[NodeProcess]) -> None:
    names = [f"n{i}" for i in range(SIZE)]
    for node in cluster:
        for name in names:
            node.waitFor(member(name, "joined"))
    assert all(set(clusterStates(node).values()) == {"alive"} for node in cluster)

    # A crash, with no goodbye: the others find out by probing.
    crashed = cluster[4]
    crashed.signal(signal.SIGKILL)
    crashed.kill()
    marks = [node.mark() for node in cluster[:4]]
    for node in cluster[:4]:
        node.waitFor(member("n4", "failed"))
    assert clusterStates(cluster[0])["n4"] == "dead"

    # Restarted under the same name and address, it is a member again.
    cluster[4] = start(
        "n4",
        "--peer",
        f"127.0.0.1:{cluster[0].gossipPort}",
        "--port",
        str(crashed.gossipPort),
    )
    for node, mark in zip(cluster[:4], marks, strict=True):
        node.waitFor(member("n4", "joined"), since=mark)
    assert clusterStates(cluster[1])["n4"] == "alive"

    # A graceful stop is a leave, not a failure.
    leaving = cluster[3]
    assert leaving.terminate() == -signal.SIGTERM
    for node in (cluster[0], cluster[1], cluster[2], cluster[4]):
        node.waitFor(member("n3", "left"))
    assert clusterStates(cluster[2])["n3"] == "left"
    assert not any(member("n3", "failed").search(line) for line in cluster[0].lines)
