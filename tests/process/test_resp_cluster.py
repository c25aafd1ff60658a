"""
Integration tests: the cluster commands of three real C{twistd disperse}
nodes with C{--redis-port}, over a bare socket. Each node learns the
others' Redis ports from gossip and shows every slot with its partition's
owners, as the HTTP API reports the partition table; a node killed with
SIGKILL drops out of the map once the others have rebuilt their table.
(redis-py's C{RedisCluster} on such a map: tests/redisclients.)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from disperse.testing.cluster import NodeProcess, getJSON, startLoopbackNode
from disperse.testing.resp import RespClient

pytestmark = pytest.mark.integration

SLOTS = 16384


def tableRebuilt(count: int) -> re.Pattern[str]:
    return re.compile(rf"partition table rebuilt for {count} members")


def start(name: str, *args: str) -> NodeProcess:
    node = startLoopbackNode(
        "--profile",
        "local",
        "--node-name",
        name,
        "--redis-port",
        "tcp:0:interface=127.0.0.1",
        *args,
    )
    try:
        node.waitRedis()
    except BaseException:
        node.kill()
        raise
    return node


@pytest.fixture
def cluster() -> Iterator[dict[str, NodeProcess]]:
    nodes: dict[str, NodeProcess] = {}
    try:
        nodes["n0"] = start("n0")
        seed = f"127.0.0.1:{nodes['n0'].gossipPort}"
        for name in ("n1", "n2"):
            nodes[name] = start(name, "--peer", seed)
        for node in nodes.values():
            node.waitFor(tableRebuilt(3))
        yield nodes
    finally:
        for node in nodes.values():
            node.kill()


def nodeId(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def call(node: NodeProcess, *words: bytes) -> Any:
    with RespClient(node.redisPort) as client:
        return client.call(*words)


def owners(node: NodeProcess) -> list[list[str]]:
    """
    Each partition's owners as C{node}'s HTTP API reports its table.
    """
    partitions = getJSON(node.httpPort, "/cluster/partitions")["partitions"]
    return [list(entry["owners"]) for entry in partitions]


def checkSlots(node: NodeProcess, expected: Mapping[str, NodeProcess]) -> list[Any]:
    """
    C{node}'s C{CLUSTER SLOTS}: it covers every slot in order, and gives
    each slot its partition's owners, master first, at their Redis ports,
    with ids derived from their names.
    """
    reply = call(node, b"CLUSTER", b"SLOTS")
    table = owners(node)
    nextSlot = 0
    for entry in reply:
        start, end, *listed = entry
        assert start == nextSlot
        nextSlot = end + 1
        names = table[start // 16]
        assert all(table[slot // 16] == names for slot in range(start, end + 1))
        assert listed == [
            [
                b"127.0.0.1",
                expected[name].redisPort,
                nodeId(name).encode(),
                [],
            ]
            for name in names
        ]
    assert nextSlot == SLOTS
    return list(reply)


def checkNodes(
    node: NodeProcess, name: str, members: Mapping[str, NodeProcess]
) -> None:
    """
    C{node}'s C{CLUSTER NODES}: a line per member, at its Redis and gossip
    ports, C{node} itself flagged myself under the id C{CLUSTER MYID}
    gives; their slots cover every slot once.
    """
    lines = call(node, b"CLUSTER", b"NODES").decode().splitlines()
    assert call(node, b"CLUSTER", b"MYID").decode() == nodeId(name)
    byId = {line.split()[0]: line.split()[1:] for line in lines}
    assert set(byId) == {nodeId(member) for member in members}
    covered = 0
    for member, process in members.items():
        address, flags, master, ping, pong, epoch, link, *slots = byId[nodeId(member)]
        assert address == f"127.0.0.1:{process.redisPort}@{process.gossipPort}"
        assert flags == ("myself,master" if member == name else "master")
        assert (master, ping, pong, link) == ("-", "0", "0", "connected")
        assert epoch.isdigit()
        for word in slots:
            first, _, last = word.partition("-")
            covered += int(last or first) - int(first) + 1
    assert covered == SLOTS


def test_slotsFromGossip(cluster: dict[str, NodeProcess]) -> None:
    """
    Every node shows the same map, each slot with its partition's owners
    at the Redis ports they gossiped; C{CLUSTER NODES}, C{MYID} and
    C{INFO} agree. After a SIGKILL, the survivors leave the dead node out
    once they have rebuilt their table.
    """
    replies = [checkSlots(node, cluster) for node in cluster.values()]
    assert replies[0] == replies[1] == replies[2]
    for name, node in cluster.items():
        checkNodes(node, name, cluster)
    info = call(cluster["n1"], b"CLUSTER", b"INFO").decode()
    assert "cluster_state:ok\r\n" in info
    assert "cluster_known_nodes:3\r\n" in info

    victim = cluster.pop("n2")
    marks = {name: node.mark() for name, node in cluster.items()}
    victim.kill()
    for name, node in cluster.items():
        node.waitFor(tableRebuilt(2), since=marks[name])
    for name, node in cluster.items():
        reply = checkSlots(node, cluster)
        assert all(len(entry) == 4 for entry in reply)
        checkNodes(node, name, cluster)
