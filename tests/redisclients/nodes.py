"""
Real nodes serving the Redis protocol (C{--redis-port}), for the suites
that drive them with real, unmodified Redis clients: C{redis-cli}, redis-py
(plain, pipelined and C{RedisCluster}) and Django's C{RedisCache}.

Each node is a C{twistd disperse} on loopback
(L{disperse.testing.cluster.startLoopbackNode}), its Redis port chosen
free beforehand; it counts as started once that port answers C{PING}.
Every wait polls with a deadline.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from disperse.testing.cluster import (
    LOOPBACK,
    ClusterError,
    NodeProcess,
    freePorts,
    getJSON,
    startLoopbackNode,
    waitUntil,
)

# Start-up, joins and (with --profile local) failure detection take seconds
# each on a busy two-core machine; these are ceilings, not waits.
DEADLINE = 30.0


@dataclass(frozen=True)
class TLSFiles:
    """
    A node's certificate and key (PEM), and the authority that signed it,
    for a Redis port served over TLS.
    """

    certificate: Path
    key: Path
    authority: Path


@dataclass
class RedisNode:
    """
    A node process and the port it serves the Redis protocol on.
    """

    name: str
    process: NodeProcess
    redisPort: int
    # What it was started with, to start it again under the same name.
    args: tuple[str, ...] = ()
    tls: TLSFiles | None = None

    @property
    def httpPort(self) -> int:
        return self.process.httpPort

    @property
    def gossipPort(self) -> int:
        return self.process.gossipPort

    def client(self, **options: Any) -> redis.Redis:
        """
        A redis-py client of this node (C{decode_responses} and the like
        as C{options}).
        """
        options.setdefault("socket_timeout", 10)
        if self.tls is not None:
            options.setdefault("ssl", True)
            options.setdefault("ssl_ca_certs", str(self.tls.authority))
        return redis.Redis(host=LOOPBACK, port=self.redisPort, **options)

    def answers(self) -> bool:
        """
        Whether the Redis port answers C{PING} now (with C{PONG}, or with
        C{NOAUTH} on a node with tokens).
        """
        client = self.client(socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except (redis.ResponseError, redis.AuthenticationError):
            # NOAUTH is an answer too (redis-py reads it as a connection
            # error).
            return True
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stats(self) -> Any:
        return getJSON(self.httpPort, "/stats")


def emptied(client: redis.Redis) -> None:
    """
    FLUSHALL, then wait until DBSIZE says 0: keys that expired before the
    flush are not flushed but dropped by the node's sweep a moment later,
    and DBSIZE counts them until then (see L{disperse.store.Store.
    partitionKeys}). Tests that count keys start from here.
    """
    client.flushall()
    waitUntil(lambda: client.dbsize() == 0, "DBSIZE to reach 0 after FLUSHALL", 10)


def redisArgs(port: int, tls: TLSFiles | None = None) -> list[str]:
    if tls is None:
        return ["--redis-port", f"tcp:{port}:interface={LOOPBACK}"]
    return [
        "--redis-port",
        f"ssl:{port}:interface={LOOPBACK}"
        f":privateKey={tls.key}:certKey={tls.certificate}",
    ]


def startRedisNode(
    name: str,
    *args: str,
    redisPort: int | None = None,
    tls: TLSFiles | None = None,
) -> RedisNode:
    """
    A node called C{name} with flags C{args}, serving Redis on loopback
    (over TLS with C{tls}), once its Redis port answers.
    """
    port = freePorts(1)[0] if redisPort is None else redisPort
    process = startLoopbackNode("--node-name", name, *redisArgs(port, tls), *args)
    node = RedisNode(name, process, port, args, tls)
    try:

        def answers() -> bool:
            process.check()
            return node.answers()

        waitUntil(answers, f"{name} to answer PING on port {port}")
    except BaseException:
        process.kill()
        raise
    return node


def tableRebuilt(count: int) -> re.Pattern[str]:
    return re.compile(rf"partition table rebuilt for {count} members")


def startRedisCluster(count: int, *args: str) -> list[RedisNode]:
    """
    C{count} nodes called C{n0}, C{n1}... joined through the first, once
    each has built its partition table over all of them; C{args} are
    given to each.
    """
    nodes: list[RedisNode] = []
    try:
        nodes.append(startRedisNode("n0", "--profile", "local", *args))
        seed = f"{LOOPBACK}:{nodes[0].gossipPort}"
        for i in range(1, count):
            nodes.append(
                startRedisNode(f"n{i}", "--profile", "local", "--peer", seed, *args)
            )
        for node in nodes:
            node.process.waitFor(tableRebuilt(count))
    except BaseException:
        for node in nodes:
            node.process.kill()
        raise
    return nodes


@contextmanager
def redisCluster(count: int, *args: str) -> Iterator[list[RedisNode]]:
    """
    L{startRedisCluster} for the duration of a block; whatever nodes the
    list holds at its end are killed.
    """
    nodes = startRedisCluster(count, *args)
    try:
        yield nodes
    finally:
        for node in nodes:
            node.process.kill()


@contextmanager
def redisNode(
    name: str, *args: str, tls: TLSFiles | None = None
) -> Iterator[RedisNode]:
    node = startRedisNode(name, *args, tls=tls)
    try:
        yield node
    finally:
        node.process.kill()


def firstOwners(node: RedisNode) -> list[str]:
    """
    The first owner of every partition, as C{node}'s HTTP API reports its
    partition table (independently of the Redis front end).
    """
    answer = getJSON(node.httpPort, "/cluster/partitions")
    return [entry["owners"][0] for entry in answer["partitions"]]


def alive(nodes: Sequence[RedisNode]) -> list[RedisNode]:
    return [node for node in nodes if node.process.running]


__all__ = [
    "DEADLINE",
    "ClusterError",
    "RedisNode",
    "TLSFiles",
    "alive",
    "emptied",
    "firstOwners",
    "redisCluster",
    "redisNode",
    "startRedisCluster",
    "startRedisNode",
    "tableRebuilt",
    "waitUntil",
]
