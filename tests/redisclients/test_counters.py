"""
Convergent counters across a replica's C{kill -9}: redis-py clients on
every node of a three-node cluster increment the same keys at quorum
while one node is killed with SIGKILL and later started again, empty.
Every increment a node acknowledged is in the final value, read from
every node, the killed node's own acknowledged increments included: a
quorum of replicas held each of them before it was acknowledged.

What counts as acknowledged, and why the final value is checked
against a range when some increments went unanswered, is said in
L{tests.redisclients.incrementers}.
"""

from __future__ import annotations

import pytest

from disperse.testing.cluster import LOOPBACK
from tests.redisclients.incrementers import (
    Incrementer,
    agreedValues,
    checkCounts,
    increased,
    once,
    totals,
)
from tests.redisclients.nodes import redisCluster, startRedisNode, waitUntil

pytestmark = pytest.mark.redisclients

KEYS = ("counter:a", "counter:b", "{counter}c")


def test_incrementsSurviveAReplicasKill() -> None:
    with redisCluster(3) as nodes:
        nodes[0].client().delete(*KEYS)
        clients = [
            Incrementer(node.name, once(LOOPBACK, node.redisPort), KEYS)
            for node in nodes
            for _ in range(2)
        ]
        victim = nodes[2]
        try:
            waitUntil(increased(clients, 50), "50 increments from every client")
            victim.process.kill()
            waitUntil(
                increased(clients, 100), "100 more from each survivor's client", 60
            )
            # Started again under its name and ports, with nothing in
            # memory: the survivors hand it its share back.
            nodes[2] = startRedisNode(
                victim.name,
                *victim.args,
                "--port",
                str(victim.gossipPort),
                redisPort=victim.redisPort,
            )
            waitUntil(increased(clients, 50), "50 more after the restart", 60)
        finally:
            for client in clients:
                client.stop()

        acknowledged, unknown, refusals = totals(clients, KEYS)
        assert refusals == []
        killed = [c for c in clients if c.label == victim.name]
        assert all(c.acknowledged >= 50 for c in killed)
        # The victim's clients stopped at their first unanswered increment.
        assert all(sum(c.tally.unknown.values()) <= 1 for c in killed)
        readers = [once(LOOPBACK, node.redisPort) for node in nodes]
        try:
            finals = waitUntil(
                lambda: agreedValues(readers, KEYS),
                "every node to agree on every counter",
                60,
            )
        finally:
            for reader in readers:
                reader.close()
        assert checkCounts(finals, acknowledged, unknown) == []
        assert sum(finals.values()) >= 6 * 50
