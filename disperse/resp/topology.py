"""
The cluster commands: C{CLUSTER SLOTS}, C{SHARDS}, C{NODES}, C{INFO},
C{MYID} and C{KEYSLOT}, which show a Disperse cluster to cluster-aware
Redis clients (redis-py's C{RedisCluster}, C{redis-cli -c}) as a Redis
Cluster, so that they send each key straight to one of its replicas.

How the cluster is shown:

  - A key's partition is its slot over 16 (L{disperse.store.partition}),
    so partition M{p} is slots M{16p} to M{16p + 15}. Each partition's
    owners in this node's partition table (C{node.view.table}) are its
    slots' nodes: the first owner as master, the others as replicas, in
    table order. Adjacent slots with the same nodes make one range, so
    C{CLUSTER SLOTS} lists a range per run of partitions with the same
    owners, in slot order.
  - Only members clients can reach are shown: those that gossip a Redis
    address (C{redis_addr}, L{disperse.cluster.members.NodeMeta}), alive
    (not suspect) to this node's membership, and this node itself. An
    owner left out passes its place to the next; a partition none of whose
    owners can be shown is given to this node alone. Redis clients refuse
    a map with a slot no node covers (redis-py's C{RedisCluster} does
    unless told C{require_full_coverage=False}), and any Disperse node
    serves any key, coordinating it with its replicas: so such slots cost
    a hop, where leaving them out would stop the client.
  - A node's id is the SHA-1 of its member name in hexadecimal: 40
    characters, the same on every node and across restarts.
  - C{CLUSTER NODES} gives each node one role, as Redis does, whereas a
    Disperse member is the first owner of some partitions and a later
    owner of others: every node is shown as a C{master}, listing the slots
    it is first owner of, with no C{slave} lines and its master field
    C{-}. Which nodes hold copies of a slot is in C{CLUSTER SLOTS} and
    C{CLUSTER SHARDS} only. A suspect member is shown as C{master,fail?}
    and C{disconnected}, with no slots; a dead one is not shown.
  - C{CLUSTER SHARDS} makes a shard of each distinct list of nodes: its
    slots are the ranges with exactly those nodes, its first node the
    C{master}, the others C{replica}s. A node is therefore in several
    shards (Redis puts each in one). A node first owner of nothing has a
    shard of its own with no slots. The port is C{tls-port} when this
    node's Redis port is an C{ssl:} endpoint (members are assumed to
    share the choice, as they share certificates), C{port} otherwise.
  - Epochs: C{cluster_current_epoch}, C{cluster_my_epoch} and every
    node's config epoch are this node's partition table version (the
    number of tables it has built since it started). Nodes count their own
    tables, so they need not agree. Ping and pong times are 0, replication
    offsets 0, message counters 0; the bus port is the member's gossip
    port.
  - C{cluster_state} is C{fail} while this node does not coordinate
    requests: before it has joined, or while it reaches no majority of the
    members it knows (L{disperse.cluster.view.NoMajority}).

Clients that follow this map may still reach a node that is a replica or
no owner at all of a key (views differ for a moment after a membership
change, and clients keep their map until they refresh it): it serves the
key anyway and no C{MOVED} is ever sent. So a client refreshes its map
only after an error (redis-py after a connection error or a timeout):
after a death at once, after a join whenever that comes; until then the
old owners serve the keys the newcomer took.

Keyless commands cover the whole cluster on any node (C{SCAN}, C{KEYS},
C{DBSIZE}, C{RANDOMKEY}, C{FLUSHALL}), whereas Redis Cluster clients send
some of them to every master and add up or concatenate the answers.
redis-py marks each node primary or replica by its first appearance in
C{CLUSTER SLOTS}; it sends C{DBSIZE} and C{KEYS} to one node (its default
node), and C{SCAN}, C{FLUSHALL} and C{FLUSHDB} to every primary: so the
first range (slot 0's) lists every other node shown as one of its
replicas, after the partition's real owners. redis-py then has one
primary, slot 0's master, the same on every node's map, and a C{SCAN}
through it sees each key once rather than once per node. C{DBSIZE} counts
the whole cluster's keys wherever it is sent, as C{redis-cli dbsize}
against any node expects. Keys are routed
by each slot's master, not by that mark; a client reading from replicas
(C{READONLY}) may read slot 0's keys through a node that is no owner,
which coordinates the read like any other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from disperse.cluster.view import NoMajority
from disperse.gossip.messages import NodeState
from disperse.resp.context import Context, handles
from disperse.resp.replies import Reply, Verbatim
from disperse.store.partition import PARTITION_COUNT, keySlot, slotsOf

if TYPE_CHECKING:
    from disperse.node import Node


def nodeIdOf(name: str) -> str:
    """
    The Redis Cluster node id of member C{name}: 40 hexadecimal characters,
    as Redis's are, the same wherever and whenever it is computed.
    """
    return hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """
    A member as Redis clients see it.

    @ivar host: the address its Redis port is advertised on.
    @ivar port: its Redis port.
    @ivar busPort: its gossip port (Redis's cluster bus port), 0 if unknown.
    @ivar suspect: membership suspects it has failed: shown, given no slot.
    """

    name: str
    host: str
    port: int
    busPort: int = 0
    suspect: bool = False
    nodeId: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodeId", nodeIdOf(self.name))

    def slotsEntry(self) -> list[Reply]:
        # Endpoint, port, id, and a map of the other addresses (none: the
        # endpoint is the address, and there is no hostname).
        return [self.host, self.port, self.nodeId, {}]

    def shardsEntry(self, role: str, tls: bool) -> dict[Reply, Reply]:
        return {
            "id": self.nodeId,
            # Redis names a port that speaks only TLS so.
            "tls-port" if tls else "port": self.port,
            "ip": self.host,
            "endpoint": self.host,
            "role": role,
            "replication-offset": 0,
            "health": "fail" if self.suspect else "online",
        }


@dataclass(frozen=True, slots=True)
class SlotRange:
    """
    Slots C{start} to C{end} (included), served by C{nodes}, master first.
    """

    start: int
    end: int
    nodes: tuple[ClusterNode, ...]


@dataclass(frozen=True)
class Topology:
    """
    The cluster as this node shows it to Redis clients.

    @ivar myself: this node.
    @ivar nodes: every node shown, this one included, by name.
    @ivar ranges: the slot ranges, in slot order, covering every slot.
    @ivar epoch: the version of the partition table they come from.
    @ivar tls: whether Redis ports speak TLS (this node's does; members
        share its certificates and, it is assumed, its choice).
    """

    myself: ClusterNode
    nodes: tuple[ClusterNode, ...]
    ranges: tuple[SlotRange, ...]
    epoch: int
    tls: bool = False

    @classmethod
    def build(
        cls,
        owners: Sequence[Sequence[str]],
        members: Iterable[ClusterNode],
        myself: ClusterNode,
        epoch: int = 0,
        tls: bool = False,
    ) -> Topology:
        """
        The topology of a partition table.

        @param owners: each partition's owners, first owner first.
        @param members: the other members that have a Redis address.
        """
        byName = {member.name: member for member in members}
        byName[myself.name] = myself
        shown = {name for name, member in byName.items() if not member.suspect}
        ranges: list[SlotRange] = []
        previous: tuple[str, ...] = ()
        start = 0
        for partition, names in enumerate(owners):
            chosen = tuple(name for name in names if name in shown) or (myself.name,)
            if chosen != previous:
                if previous:
                    ranges.append(cls._range(start, partition, previous, byName))
                previous, start = chosen, partition
        if previous:
            ranges.append(cls._range(start, len(owners), previous, byName))
        nodes = tuple(byName[name] for name in sorted(byName))
        return cls(myself, nodes, tuple(ranges), epoch, tls)

    @staticmethod
    def _range(
        first: int, stop: int, names: tuple[str, ...], byName: dict[str, ClusterNode]
    ) -> SlotRange:
        return SlotRange(
            slotsOf(first).start,
            slotsOf(stop - 1).stop - 1,
            tuple(byName[name] for name in names),
        )

    # What the commands answer

    def slots(self) -> list[Reply]:
        """
        C{CLUSTER SLOTS}: per range, its first and last slot, then its
        master and replicas.

        The first range (slot 0's) also lists, after its own replicas,
        every other node shown: see the module's docstring on redis-py's
        primaries.
        """
        reply: list[Reply] = [
            [r.start, r.end, *(node.slotsEntry() for node in r.nodes)]
            for r in self.ranges
        ]
        if self.ranges:
            first = self.ranges[0]
            listed = {node.name for node in first.nodes}
            extra = [n.slotsEntry() for n in self.nodes if n.name not in listed]
            reply[0] = [*cast(list[Reply], reply[0]), *extra]
        return reply

    def shards(self) -> list[Reply]:
        """
        C{CLUSTER SHARDS}: a shard per distinct list of nodes, then one per
        node that is master of no slot.
        """
        grouped: dict[tuple[str, ...], tuple[list[Reply], tuple[ClusterNode, ...]]]
        grouped = {}
        for r in self.ranges:
            names = tuple(node.name for node in r.nodes)
            pairs, _ = grouped.setdefault(names, ([], r.nodes))
            pairs.extend((r.start, r.end))
        shards: list[Reply] = []
        for pairs, nodes in grouped.values():
            shards.append(
                {
                    "slots": pairs,
                    "nodes": [
                        node.shardsEntry("master" if i == 0 else "replica", self.tls)
                        for i, node in enumerate(nodes)
                    ],
                }
            )
        masters = self._mastersSlots()
        for node in self.nodes:
            if node.name not in masters:
                shards.append(
                    {"slots": [], "nodes": [node.shardsEntry("master", self.tls)]}
                )
        return shards

    def _mastersSlots(self) -> dict[str, list[tuple[int, int]]]:
        # Each master's slots, adjacent ranges joined.
        slots: dict[str, list[tuple[int, int]]] = {}
        for r in self.ranges:
            runs = slots.setdefault(r.nodes[0].name, [])
            if runs and runs[-1][1] + 1 == r.start:
                runs[-1] = (runs[-1][0], r.end)
            else:
                runs.append((r.start, r.end))
        return slots

    def nodesText(self) -> str:
        """
        C{CLUSTER NODES}: a line per node, in Redis 7's format.
        """
        masters = self._mastersSlots()
        lines = []
        for node in self.nodes:
            flags = "master"
            if node.name == self.myself.name:
                flags = "myself,master"
            elif node.suspect:
                flags = "master,fail?"
            words = [
                node.nodeId,
                f"{node.host}:{node.port}@{node.busPort}",
                flags,
                "-",
                "0",
                "0",
                str(self.epoch),
                "disconnected" if node.suspect else "connected",
            ]
            words.extend(
                str(start) if start == end else f"{start}-{end}"
                for start, end in masters.get(node.name, ())
            )
            lines.append(" ".join(words) + "\n")
        return "".join(lines)

    def infoText(self, ok: bool) -> str:
        """
        C{CLUSTER INFO}, C{cluster_state} as C{ok} says.
        """
        assigned = sum(r.end - r.start + 1 for r in self.ranges)
        fields = (
            ("cluster_state", "ok" if ok else "fail"),
            ("cluster_slots_assigned", assigned),
            ("cluster_slots_ok", assigned),
            ("cluster_slots_pfail", 0),
            ("cluster_slots_fail", 0),
            ("cluster_known_nodes", len(self.nodes)),
            ("cluster_size", len(self._mastersSlots())),
            ("cluster_current_epoch", self.epoch),
            ("cluster_my_epoch", self.epoch),
            ("cluster_stats_messages_sent", 0),
            ("cluster_stats_messages_received", 0),
            ("total_cluster_links_buffer_limit_exceeded", 0),
        )
        return "".join(f"{name}:{value}\r\n" for name, value in fields)


def _hostPort(address: str) -> tuple[str, int] | None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host, int(port)


def topologyOf(node: Node, port: int | None) -> Topology:
    """
    The topology C{node} shows, its own Redis port being C{port} when it
    has not recorded one.
    """
    config = node.config
    name = config.nodeName
    gossip = (
        {}
        if node.membership is None
        else {m.name: m for m in node.membership.members()}
    )
    # Membership knows the gossip port bound (the configured one may be 0).
    own = gossip.get(name)
    myself = ClusterNode(
        name,
        config.advertiseAddress,
        node.redisPort or port or 0,
        config.gossipPort if own is None else own.port,
    )
    members = []
    for spec in node.directory.dataHolders():
        if spec.name == name:
            continue
        address = node.directory.meta(spec.name).redisAddress
        hostPort = None if address is None else _hostPort(address)
        if hostPort is None:
            continue
        member = gossip.get(spec.name)
        members.append(
            ClusterNode(
                spec.name,
                *hostPort,
                busPort=0 if member is None else member.port,
                suspect=member is not None and member.state == NodeState.suspect,
            )
        )
    table = node.view.table
    return Topology.build(
        [table.owners(p) for p in range(PARTITION_COUNT)],
        members,
        myself,
        node.view.tableVersion,
        tls=(config.redisEndpoint or "").split(":", 1)[0].strip().lower() == "ssl",
    )


def _coordinating(node: Node) -> bool:
    if not node.ready:
        return False
    try:
        node.view.checkMajority()
    except NoMajority:
        return False
    return True


@handles("cluster|slots")
def clusterSlots(ctx: Context, args: list[bytes]) -> Reply:
    return topologyOf(ctx.node, ctx.server.port).slots()


@handles("cluster|shards")
def clusterShards(ctx: Context, args: list[bytes]) -> Reply:
    return topologyOf(ctx.node, ctx.server.port).shards()


@handles("cluster|nodes")
def clusterNodes(ctx: Context, args: list[bytes]) -> Reply:
    return Verbatim(topologyOf(ctx.node, ctx.server.port).nodesText().encode())


@handles("cluster|info")
def clusterInfo(ctx: Context, args: list[bytes]) -> Reply:
    topology = topologyOf(ctx.node, ctx.server.port)
    return Verbatim(topology.infoText(_coordinating(ctx.node)).encode())


@handles("cluster|myid")
def clusterMyId(ctx: Context, args: list[bytes]) -> Reply:
    return nodeIdOf(ctx.node.config.nodeName).encode()


@handles("cluster|keyslot")
def clusterKeySlot(ctx: Context, args: list[bytes]) -> Reply:
    # The bytes as sent: Redis hashes any key, text or not.
    return keySlot(args[2])
