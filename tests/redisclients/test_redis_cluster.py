"""
redis-py's C{RedisCluster}, unmodified, against a cluster of three real
nodes: it discovers the topology from one address (C{CLUSTER SLOTS} and
C{COMMAND}), sends each key to the first owner of its partition (the
key's slot divided by 16), pipelines across slots, survives a node's
C{kill -9} and, once it refreshes its map, sends keys to a node that
joined.

Where a command went is read from each node's own command counters, and
which node owns what from its HTTP API, independently of the Redis front
end.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from disperse.testing.cluster import LOOPBACK
from tests.redisclients.nodes import (
    RedisNode,
    firstOwners,
    redisCluster,
    startRedisNode,
    tableRebuilt,
    waitUntil,
)

pytestmark = pytest.mark.redisclients

SLOTS = 16384
SLOTS_PER_PARTITION = 16


def connect(node: RedisNode, **options: Any) -> RedisCluster:
    """
    A cluster client that knows one address to start from.
    """
    options.setdefault("socket_timeout", 10)
    return RedisCluster(
        startup_nodes=[ClusterNode(LOOPBACK, node.redisPort)],
        decode_responses=True,
        **options,
    )


def routed(rc: RedisCluster) -> dict[int, int]:
    """
    The port redis-py sends each slot's keys to.
    """
    return {
        slot: rc.nodes_manager.get_node_from_slot(slot).port for slot in range(SLOTS)
    }


def expectedRoutes(nodes: Sequence[RedisNode], asked: RedisNode) -> dict[int, int]:
    """
    The Redis port of the first owner of each slot's partition, as
    C{asked}'s HTTP API reports the partition table.
    """
    ports = {node.name: node.redisPort for node in nodes}
    owners = firstOwners(asked)
    return {slot: ports[owners[slot // SLOTS_PER_PARTITION]] for slot in range(SLOTS)}


def setCalls(node: RedisNode) -> int:
    """
    How many SETs the node has served, as the C{redis} section of its
    C{/stats} counts them.
    """
    perCommand = node.stats()["redis"]["perCommand"]
    return int(perCommand.get("set", {}).get("calls", 0))


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[RedisNode]]:
    with redisCluster(3) as nodes:
        yield nodes


def test_discoversTheTopology(cluster: list[RedisNode]) -> None:
    """
    From one address, the client finds all three nodes, each a primary
    of some slots, and maps every slot to the first owner of its
    partition.
    """
    rc = connect(cluster[1])
    try:
        ports = {node.redisPort for node in cluster}
        assert {node.port for node in rc.get_nodes()} == ports
        routes = routed(rc)
        assert routes == expectedRoutes(cluster, cluster[0])
        # Every node is the master of some slots; but redis-py takes one
        # node for "the" primary, slot 0's, since its range lists every
        # other node as a replica (see disperse.resp.topology): the one
        # node it sends keyless commands that go to every primary, such as
        # SCAN and DBSIZE, which cover the whole cluster on any node.
        assert set(routes.values()) == ports
        assert [node.port for node in rc.get_primaries()] == [routes[0]]
        # Every node answers CLUSTER SLOTS alike.
        for node in cluster:
            other = connect(node)
            try:
                assert routed(other) == routed(rc)
            finally:
                other.close()
        for key in ("a", "user:1000", "{tag}x", "{tag}y", "x{}y", "ÿ"):
            assert int(rc.cluster_keyslot(key)) == rc.keyslot(key)
        assert rc.keyslot("{tag}x") == rc.keyslot("{tag}y")
        info = rc.cluster_info()
        assert info["cluster_state"] == "ok"
        assert int(info["cluster_slots_assigned"]) == SLOTS
    finally:
        rc.close()


def test_routesEachKeyToItsSlotsOwner(cluster: list[RedisNode]) -> None:
    """
    SETs through the cluster client land on the node the slot map names,
    as each node's own SET counter shows; reads come back from any node.
    """
    rc = connect(cluster[0])
    try:
        routes = expectedRoutes(cluster, cluster[2])
        keys = [f"route:{i}" for i in range(300)]
        expected = {node.redisPort: 0 for node in cluster}
        for key in keys:
            expected[routes[rc.keyslot(key)]] += 1
        before = {node.redisPort: setCalls(node) for node in cluster}
        for key in keys:
            assert rc.set(key, key.upper()) is True
        after = {node.redisPort: setCalls(node) for node in cluster}
        assert {port: after[port] - before[port] for port in after} == expected
        assert all(count > 0 for count in expected.values())
        for key in keys:
            assert rc.get(key) == key.upper()
        # Any node serves any key: no MOVED.
        plain = cluster[1].client(decode_responses=True)
        assert plain.mget(keys[:50]) == [key.upper() for key in keys[:50]]
        plain.close()
    finally:
        rc.close()


def test_pipelinesAndMultiKeyCommands(cluster: list[RedisNode]) -> None:
    """
    A cluster pipeline spreads its commands over the nodes and answers in
    order; keys sharing a hash tag go together in MGET, MSET and DEL;
    C{mget_nonatomic} gathers keys of every slot.
    """
    rc = connect(cluster[2])
    try:
        pipe = rc.pipeline()
        for i in range(500):
            pipe.set(f"pipe:{i}", str(i))
        for i in range(500):
            pipe.incr(f"pipe:count:{i % 7}")
        replies = pipe.execute()
        assert replies[:500] == [True] * 500
        assert rc.mget_nonatomic([f"pipe:{i}" for i in range(0, 500, 50)]) == [
            str(i) for i in range(0, 500, 50)
        ]
        assert sum(int(rc.get(f"pipe:count:{i}")) for i in range(7)) == 500
        assert rc.mset({"{user}name": "ann", "{user}mail": "a@b"}) is True
        assert rc.mget("{user}name", "{user}mail", "{user}none") == [
            "ann",
            "a@b",
            None,
        ]
        assert rc.delete("{user}name", "{user}mail") == 2
        assert rc.exists("{user}name") == 0
        with pytest.raises(redis.RedisClusterException):
            rc.mget("a", "b")
    finally:
        rc.close()


def test_keylessCommandsCountEachKeyOnce(cluster: list[RedisNode]) -> None:
    """
    FLUSHALL, SCAN and DBSIZE through the cluster client (which sends
    them to every node it takes for a primary, and adds up DBSIZE's) and
    through a plain client of any node: each key counted once.
    """
    rc = connect(cluster[0])
    try:
        assert rc.flushall() is True
        # DBSIZE counts each partition on one replica, this node's own where
        # it holds one: a replica the quorum did not wait for may lag a
        # moment behind the writes (and the flush) it acknowledged.
        waitUntil(lambda: rc.dbsize() == 0, "DBSIZE 0 after FLUSHALL", 10)
        names = [f"scan:{i}" for i in range(100)]
        rc.mset_nonatomic(dict.fromkeys(names, "v"))
        assert sorted(rc.scan_iter(match="scan:*")) == sorted(names)
        for node in cluster:
            plain = node.client(decode_responses=True)
            try:
                assert sorted(plain.scan_iter(match="scan:*")) == sorted(names)
                waitUntil(partial(countIs, plain, 100), "DBSIZE 100", 10)
            finally:
                plain.close()
        assert rc.dbsize() == 100
    finally:
        rc.close()


def countIs(client: redis.Redis, keys: int) -> bool:
    return bool(client.dbsize() == keys)


def readAll(rc: RedisCluster, keys: Sequence[str]) -> list[str | None]:
    return [rc.get(key) for key in keys]


def test_survivesKillAndJoin() -> None:
    """
    A node is killed with SIGKILL: once the others have noticed, the
    same client object reads every acknowledged key again and writes go
    on, and its refreshed map no longer names the dead node. A new node
    joins: the client's old map still works (any node serves any key),
    and once it refreshes the map it sends the new node the slots the
    partition table gives it.
    """
    with redisCluster(3) as nodes:
        rc = connect(nodes[0])
        try:
            keys = [f"kill:{i}" for i in range(300)]
            for key in keys:
                assert rc.set(key, key) is True
            victim = nodes[1]
            survivors = [nodes[0], nodes[2]]
            marks = [node.process.mark() for node in survivors]
            victim.process.kill()

            def everythingReadable() -> bool:
                # Errors are expected while the map names the dead node:
                # the client refreshes it and goes on.
                try:
                    return readAll(rc, keys) == keys
                except redis.RedisError:
                    return False

            waitUntil(everythingReadable, "every key readable after the kill", 60)
            for node, mark in zip(survivors, marks, strict=True):
                node.process.waitFor(tableRebuilt(2), since=mark)
            assert victim.redisPort not in set(routed(rc).values())
            assert routed(rc) == expectedRoutes(survivors, nodes[0])
            for key in keys[:100]:
                assert rc.set(key, "after") is True
            assert readAll(rc, keys[:100]) == ["after"] * 100

            marks = [node.process.mark() for node in survivors]
            joined = startRedisNode(
                "n3",
                "--profile",
                "local",
                "--peer",
                f"{LOOPBACK}:{nodes[0].gossipPort}",
            )
            nodes.append(joined)
            for node, mark in zip(survivors, marks, strict=True):
                node.process.waitFor(tableRebuilt(3), since=mark)
            joined.process.waitFor(tableRebuilt(3))
            # The old map: no node needed to change for the client to go on.
            assert readAll(rc, keys[100:]) == keys[100:]
            rc.nodes_manager.initialize()
            everyone = [*survivors, joined]
            assert {node.port for node in rc.get_nodes()} == {
                node.redisPort for node in everyone
            }
            routes = expectedRoutes(everyone, joined)
            assert routed(rc) == routes
            mine = [k for k in keys if routes[rc.keyslot(k)] == joined.redisPort]
            assert mine
            before = setCalls(joined)
            for key in mine:
                assert rc.set(key, "joined") is True
            assert setCalls(joined) - before == len(mine)
            assert readAll(rc, mine) == ["joined"] * len(mine)
        finally:
            rc.close()
