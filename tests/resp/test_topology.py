"""
Tests for L{disperse.resp.topology}: the cluster commands, called in
memory over a node whose member directory is fed as gossip would feed it.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import replace
from typing import Any, cast

import hiredis
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from disperse.cluster.members import MemberDirectory, NodeMeta
from disperse.cluster.placement import Replicas
from disperse.cluster.view import PLACEMENT_DELAY
from disperse.config import NodeConfig
from disperse.gossip.messages import NodeState
from disperse.gossip.service import Membership
from disperse.gossip.swim import Member
from disperse.resp.replies import Reply, Verbatim, encodeReply
from disperse.resp.topology import ClusterNode, Topology, nodeIdOf, topologyOf
from disperse.resp.wire import ReplyEncoder
from disperse.store.partition import PARTITION_COUNT, SLOT_COUNT, slotOf
from disperse.testing.node import makeNode
from disperse.testing.resp import handlerContext, runCommand

# Host of member "a" is 10.0.0.1, of "b" 10.0.0.2, and so on.
NAMES = ("a", "b", "c", "d")


def hostOf(name: str) -> str:
    return f"10.0.0.{ord(name) - ord('a') + 1}"


def gossiped(
    name: str,
    redis: bool = True,
    state: NodeState = NodeState.alive,
    gossipPort: int = 7946,
) -> Member:
    """
    Member C{name} as gossip announces it, with a Redis address on port
    6380 unless C{redis} is false.
    """
    host = hostOf(name)
    meta = NodeMeta(
        httpAddress=f"{host}:8000",
        httpPort=8000,
        peerAddress=f"{host}:8001",
        redisAddress=f"{host}:6380" if redis else None,
    )
    return Member(name, host, gossipPort, meta.encode(), 1, state, 0.0)


def covered(ranges: list[Any]) -> list[int]:
    """
    The first and last slots of C{CLUSTER SLOTS} ranges, checking they
    follow each other with no gap or overlap.
    """
    edges = []
    expected = 0
    for entry in ranges:
        start, end = entry[0], entry[1]
        assert start == expected, (start, expected)
        assert end >= start
        expected = end + 1
        edges.append(start)
    assert expected == SLOT_COUNT
    return edges


class TopologyCase(SynchronousTestCase):
    replicas: Replicas = 3

    def setUp(self) -> None:
        self.clock = Clock()
        self.directory = MemberDirectory()
        self.node = makeNode(
            NodeConfig(
                nodeName="a",
                advertiseAddress=hostOf("a"),
                gossipPort=7946,
                replicas=self.replicas,
            ),
            self.clock,
            directory=self.directory,
        )
        self.ctx = handlerContext(self.node)

    def join(self, *members: Member) -> None:
        for member in members:
            self.directory.memberJoined(member)
        self.clock.advance(PLACEMENT_DELAY)

    def call(self, *line: bytes) -> Any:
        reply = runCommand(self.ctx, *line)
        assert not isinstance(reply, Deferred)
        return reply

    def slots(self) -> list[Any]:
        return cast(list[Any], self.call(b"CLUSTER", b"SLOTS"))

    def ownedSlots(self) -> list[Any]:
        """
        C{CLUSTER SLOTS} without the other nodes its first range lists
        after its owners.
        """
        ranges = self.slots()
        owners = len(topologyOf(self.node, 6380).ranges[0].nodes)
        ranges[0] = ranges[0][: 2 + owners]
        return ranges

    def slotNodes(self) -> dict[int, list[str]]:
        """
        Per partition, the hosts C{CLUSTER SLOTS} gives its slots, master
        first.
        """
        nodes: dict[int, list[str]] = {}
        for entry in self.ownedSlots():
            listed = entry[2:]
            for slot in range(entry[0], entry[1] + 1):
                hosts = [node[0] for node in listed]
                nodes.setdefault(slot // 16, hosts)
                self.assertEqual(nodes[slot // 16], hosts)
        return nodes

    def nodesLines(self) -> list[str]:
        text = self.call(b"CLUSTER", b"NODES")
        self.assertIsInstance(text, Verbatim)
        self.assertTrue(text.endswith(b"\n"))
        return cast(bytes, text).decode().splitlines()

    def info(self) -> dict[str, str]:
        text = self.call(b"CLUSTER", b"INFO")
        self.assertIsInstance(text, Verbatim)
        lines = cast(bytes, text).decode().split("\r\n")
        self.assertEqual(lines[-1], "")
        return dict(line.split(":", 1) for line in lines[:-1])


class KeySlotTests(TopologyCase):
    def test_keySlot(self) -> None:
        """
        Redis's slots, hash tags included, for any bytes.
        """
        self.assertEqual(self.call(b"CLUSTER", b"KEYSLOT", b"foo"), 12182)
        self.assertEqual(self.call(b"cluster", b"keyslot", b"somekey"), 11058)
        self.assertEqual(
            self.call(b"CLUSTER", b"KEYSLOT", b"{user1000}.following"),
            self.call(b"CLUSTER", b"KEYSLOT", b"{user1000}.followers"),
        )
        # Any bytes, UTF-8 or not.
        self.assertEqual(
            self.call(b"CLUSTER", b"KEYSLOT", b"\xff{\xfe}"),
            self.call(b"CLUSTER", b"KEYSLOT", b"\xfe"),
        )
        self.assertEqual(self.call(b"CLUSTER", b"KEYSLOT", b"123456789"), 0x31C3)
        self.assertEqual(self.call(b"CLUSTER", b"KEYSLOT", b""), 0)


class AloneTests(TopologyCase):
    def test_alone(self) -> None:
        """
        A node alone serves every slot, in one range.
        """
        myId = hashlib.sha1(b"a").hexdigest()
        self.assertEqual(
            self.slots(), [[0, SLOT_COUNT - 1, ["10.0.0.1", 6380, myId, {}]]]
        )
        self.assertEqual(self.call(b"CLUSTER", b"MYID"), myId.encode())
        self.assertEqual(
            self.nodesLines(),
            [f"{myId} 10.0.0.1:6380@7946 myself,master - 0 0 1 connected 0-16383"],
        )
        info = self.info()
        self.assertEqual(info["cluster_state"], "ok")
        self.assertEqual(info["cluster_known_nodes"], "1")
        self.assertEqual(info["cluster_size"], "1")

    def test_recordedPort(self) -> None:
        """
        The port the server recorded on the node wins over the context's.
        """
        self.node.redisPort = 7000
        self.assertEqual(self.slots()[0][2][:2], ["10.0.0.1", 7000])


class ThreeReplicasTests(TopologyCase):
    def setUp(self) -> None:
        super().setUp()
        self.join(*(gossiped(name) for name in NAMES))

    def test_slotsFollowTheTable(self) -> None:
        """
        Every slot of partition p is listed with p's owners, the first as
        master, in table order; ranges cover all slots in order.
        """
        table = self.node.view.table
        nodes = self.slotNodes()
        self.assertEqual(len(nodes), PARTITION_COUNT)
        for partition in range(PARTITION_COUNT):
            self.assertEqual(
                nodes[partition], [hostOf(name) for name in table.owners(partition)]
            )
        covered(self.slots())

    def test_onePrimaryForClients(self) -> None:
        """
        Every node but slot 0's master first appears in C{CLUSTER SLOTS}
        as a replica (redis-py's primaries are the nodes it first sees as
        masters), so that cluster clients send the keyless commands they
        send to every primary to one node.
        """
        seen: dict[str, str] = {}
        for entry in self.slots():
            for position, node in enumerate(entry[2:]):
                seen.setdefault(node[0], "master" if position == 0 else "replica")
        masters = [host for host, role in seen.items() if role == "master"]
        self.assertEqual(masters, [self.slots()[0][2][0]])
        self.assertEqual(len(seen), len(self.nodesLines()))

    def test_rangesAreMerged(self) -> None:
        """
        Adjacent ranges never have the same nodes: each is as long as it
        can be.
        """
        ranges = self.slots()
        for before, after in itertools.pairwise(ranges):
            self.assertNotEqual(before[2:], after[2:])
        self.assertLess(len(ranges), PARTITION_COUNT)

    def test_nodeEntries(self) -> None:
        """
        Each node is its endpoint, port, 40-character id and an empty map
        of other addresses, as Redis 7 gives them.
        """
        for entry in self.slots():
            for host, port, nodeId, extra in entry[2:]:
                self.assertEqual(port, 6380)
                self.assertEqual(nodeId, nodeIdOf(chr(int(host[-1]) + 96)))
                self.assertRegex(nodeId, "^[0-9a-f]{40}$")
                self.assertEqual(extra, {})

    def test_keysRouteToTheirOwners(self) -> None:
        """
        A key's slot, as a client computes it, is listed with the owners
        the coordinator uses for the key.
        """
        nodes = self.slotNodes()
        for key in ("foo", "user:42", "{user1000}.following", "ключ"):
            self.assertEqual(
                nodes[slotOf(key) // 16],
                [hostOf(n) for n in self.node.view.owners(key)],
            )

    def test_nodes(self) -> None:
        """
        One line per member in Redis 7's format, all masters, this node
        flagged myself; each lists the slots it is master of in
        C{CLUSTER SLOTS}, and together they cover every slot once.
        """
        lines = self.nodesLines()
        self.assertEqual(len(lines), len(NAMES))
        pattern = re.compile(
            r"^([0-9a-f]{40}) (10\.0\.0\.\d):6380@(\d+) (myself,master|master)"
            r" - 0 0 (\d+) connected((?: \d+(?:-\d+)?)*)$"
        )
        masters: dict[str, set[int]] = {}
        for entry in self.slots():
            masters.setdefault(entry[2][2], set()).update(range(entry[0], entry[1] + 1))
        seen: set[int] = set()
        myselves = []
        for line in lines:
            match = pattern.match(line)
            assert match is not None, line
            nodeId, host, busPort, flags, epoch, slotText = match.groups()
            self.assertEqual(nodeId, nodeIdOf(chr(int(host[-1]) + 96)))
            # The in-memory node has no membership to tell others' gossip
            # ports (MembershipTests has).
            self.assertEqual(busPort, "7946" if host == "10.0.0.1" else "0")
            self.assertEqual(epoch, str(self.node.view.tableVersion))
            if flags == "myself,master":
                myselves.append(host)
            slots: set[int] = set()
            for word in slotText.split():
                first, _, last = word.partition("-")
                slots.update(range(int(first), int(last or first) + 1))
            self.assertEqual(slots, masters.get(nodeId, set()))
            self.assertFalse(slots & seen)
            seen |= slots
        self.assertEqual(myselves, ["10.0.0.1"])
        self.assertEqual(seen, set(range(SLOT_COUNT)))

    def test_myIdAgrees(self) -> None:
        """
        C{CLUSTER MYID}, the myself line of C{CLUSTER NODES} and this
        node's entries in C{CLUSTER SLOTS} and C{CLUSTER SHARDS} carry the
        same id.
        """
        myId = self.call(b"CLUSTER", b"MYID").decode()
        (mine,) = [line for line in self.nodesLines() if "myself" in line]
        self.assertEqual(mine.split()[0], myId)
        slotsIds = {
            node[2]
            for entry in self.slots()
            for node in entry[2:]
            if node[0] == "10.0.0.1"
        }
        self.assertEqual(slotsIds, {myId})
        shardIds = {
            node["id"]
            for shard in self.call(b"CLUSTER", b"SHARDS")
            for node in shard["nodes"]
            if node["ip"] == "10.0.0.1"
        }
        self.assertEqual(shardIds, {myId})

    def test_shards(self) -> None:
        """
        A shard per distinct list of nodes: its slot ranges are those
        with that list, its first node the master; node maps have Redis
        7's fields in its order.
        """
        shards = self.call(b"CLUSTER", b"SHARDS")
        byNodes: dict[tuple[str, ...], list[int]] = {}
        for entry in self.ownedSlots():
            pairs = byNodes.setdefault(tuple(n[2] for n in entry[2:]), [])
            pairs.extend(entry[:2])
        self.assertEqual(len(shards), len(byNodes))
        for shard in shards:
            self.assertEqual(list(shard), ["slots", "nodes"])
            ids = tuple(node["id"] for node in shard["nodes"])
            self.assertEqual(shard["slots"], byNodes[ids])
            roles = [node["role"] for node in shard["nodes"]]
            self.assertEqual(roles, ["master"] + ["replica"] * (len(roles) - 1))
            for node in shard["nodes"]:
                self.assertEqual(
                    list(node),
                    [
                        "id",
                        "port",
                        "ip",
                        "endpoint",
                        "role",
                        "replication-offset",
                        "health",
                    ],
                )
                self.assertEqual(node["endpoint"], node["ip"])
                self.assertEqual(node["port"], 6380)
                self.assertEqual(node["health"], "online")

    def test_info(self) -> None:
        info = self.info()
        self.assertEqual(
            list(info),
            [
                "cluster_state",
                "cluster_slots_assigned",
                "cluster_slots_ok",
                "cluster_slots_pfail",
                "cluster_slots_fail",
                "cluster_known_nodes",
                "cluster_size",
                "cluster_current_epoch",
                "cluster_my_epoch",
                "cluster_stats_messages_sent",
                "cluster_stats_messages_received",
                "total_cluster_links_buffer_limit_exceeded",
            ],
        )
        self.assertEqual(info["cluster_state"], "ok")
        self.assertEqual(info["cluster_slots_assigned"], "16384")
        self.assertEqual(info["cluster_slots_ok"], "16384")
        self.assertEqual(info["cluster_known_nodes"], "4")
        self.assertEqual(info["cluster_size"], "4")
        self.assertEqual(info["cluster_current_epoch"], "2")
        self.assertEqual(info["cluster_my_epoch"], "2")

    def test_notCoordinating(self) -> None:
        """
        C{cluster_state} is C{fail} while the node does not coordinate:
        before it joined, and on the minority side of a partition.
        """
        self.node.ready = False
        self.assertEqual(self.info()["cluster_state"], "fail")
        self.node.ready = True
        for name in ("b", "c", "d"):
            self.directory.memberFailed(gossiped(name))
        self.clock.advance(PLACEMENT_DELAY)
        self.assertEqual(self.info()["cluster_state"], "fail")

    def test_memberDies(self) -> None:
        """
        A dead member is left out at once, its slots passing to the next
        owner, before the table is rebuilt without it; then the table
        changes and the epoch with it.
        """
        table = self.node.view.table
        self.directory.memberFailed(gossiped("c"))
        self.assertIs(self.node.view.table, table)
        nodes = self.slotNodes()
        for partition in range(PARTITION_COUNT):
            self.assertEqual(
                nodes[partition],
                [hostOf(n) for n in table.owners(partition) if n != "c"],
            )
        self.assertEqual(len(self.nodesLines()), 3)
        self.clock.advance(PLACEMENT_DELAY)
        self.assertIsNot(self.node.view.table, table)
        nodes = self.slotNodes()
        self.assertNotIn(hostOf("c"), {h for hosts in nodes.values() for h in hosts})
        self.assertEqual(
            {len(hosts) for hosts in nodes.values()}, {3}, "three replicas again"
        )
        self.assertEqual(self.info()["cluster_current_epoch"], "3")

    def test_memberJoins(self) -> None:
        """
        A member that joins is shown with no slots until the table is
        rebuilt, then owns its share.
        """
        self.directory.memberJoined(gossiped("e"))
        lines = self.nodesLines()
        (newcomer,) = [line for line in lines if line.startswith(nodeIdOf("e"))]
        self.assertTrue(newcomer.endswith(" connected"), newcomer)
        self.clock.advance(PLACEMENT_DELAY)
        nodes = self.slotNodes()
        firsts = sum(hosts[0] == hostOf("e") for hosts in nodes.values())
        self.assertGreater(firsts, PARTITION_COUNT // 5 // 2)


class TLSTests(TopologyCase):
    def test_tlsPort(self) -> None:
        """
        When the Redis port speaks TLS, C{CLUSTER SHARDS} names it
        C{tls-port}, as Redis does a TLS-only port.
        """
        self.node.config = replace(
            self.node.config, redisEndpoint="ssl:6380:privateKey=node.pem"
        )
        self.join(*(gossiped(name) for name in NAMES))
        for shard in self.call(b"CLUSTER", b"SHARDS"):
            for node in shard["nodes"]:
                self.assertNotIn("port", node)
                self.assertEqual(node["tls-port"], 6380)


class WithoutRedisTests(TopologyCase):
    replicas: Replicas = 2

    def test_membersWithoutRedisAddress(self) -> None:
        """
        Members that serve no Redis port are not shown: their place in a
        partition's list passes to the next owner, and a partition none of
        whose owners has one goes to this node.
        """
        self.join(gossiped("a"), gossiped("b"), gossiped("c", redis=False))
        self.join(gossiped("d", redis=False))
        table = self.node.view.table
        nodes = self.slotNodes()
        orphans = 0
        for partition in range(PARTITION_COUNT):
            shown = [hostOf(n) for n in table.owners(partition) if n in ("a", "b")]
            if not shown:
                orphans += 1
                shown = [hostOf("a")]
            self.assertEqual(nodes[partition], shown)
        self.assertGreater(orphans, 0)
        covered(self.slots())
        self.assertEqual(len(self.nodesLines()), 2)
        self.assertEqual(self.info()["cluster_known_nodes"], "2")


class StubMembership:
    """
    The one thing the topology asks of membership: its members' states.
    """

    def __init__(self, members: list[Member]) -> None:
        self._members = members

    def members(self) -> list[Member]:
        return list(self._members)


class MembershipTests(TopologyCase):
    def test_gossipPortsAndSuspects(self) -> None:
        """
        Bus ports are members' gossip ports; a member membership suspects
        is shown failing, with no slot, its place passing to the next
        owner.
        """
        members = [gossiped(name, gossipPort=7000 + i) for i, name in enumerate(NAMES)]
        self.join(*members)
        suspect = gossiped("c", state=NodeState.suspect, gossipPort=7002)
        self.node.membership = cast(
            Membership, StubMembership([*members[:2], suspect, members[3]])
        )
        table = self.node.view.table
        nodes = self.slotNodes()
        for partition in range(PARTITION_COUNT):
            self.assertEqual(
                nodes[partition],
                [hostOf(n) for n in table.owners(partition) if n != "c"],
            )
        lines = {line.split()[1]: line for line in self.nodesLines()}
        self.assertEqual(
            sorted(lines),
            [
                # This node's own too: the port bound, where the
                # configuration may say 0.
                "10.0.0.1:6380@7000",
                "10.0.0.2:6380@7001",
                "10.0.0.3:6380@7002",
                "10.0.0.4:6380@7003",
            ],
        )
        self.assertEqual(
            lines["10.0.0.3:6380@7002"],
            f"{nodeIdOf('c')} 10.0.0.3:6380@7002 master,fail? - 0 0 2 disconnected",
        )


class SuspectTests(SynchronousTestCase):
    """
    A suspect member (from membership, which the in-memory node has not)
    is shown, failing, but given no slot.
    """

    def test_suspect(self) -> None:
        myself = ClusterNode("a", "10.0.0.1", 6380, 7946)
        b = ClusterNode("b", "10.0.0.2", 6380, 7946, suspect=True)
        c = ClusterNode("c", "10.0.0.3", 6380, 7946)
        owners = [("b", "a"), ("b", "c"), ("c", "b")] + [("a",)] * (PARTITION_COUNT - 3)
        topology = Topology.build(owners, [b, c], myself, epoch=7)
        self.assertEqual(
            [(r.start, r.end, [n.name for n in r.nodes]) for r in topology.ranges],
            [(0, 15, ["a"]), (16, 47, ["c"]), (48, SLOT_COUNT - 1, ["a"])],
        )
        lines = topology.nodesText().splitlines()
        self.assertEqual(
            lines[1],
            f"{nodeIdOf('b')} 10.0.0.2:6380@7946 master,fail? - 0 0 7 disconnected",
        )
        self.assertEqual(
            lines[0],
            f"{nodeIdOf('a')} 10.0.0.1:6380@7946 myself,master - 0 0 7 connected"
            f" 0-15 48-16383",
        )
        shards = cast(list[dict[str, Any]], topology.shards())
        self.assertEqual(
            [(s["slots"], [n["id"] for n in s["nodes"]]) for s in shards],
            [
                ([0, 15, 48, SLOT_COUNT - 1], [nodeIdOf("a")]),
                ([16, 47], [nodeIdOf("c")]),
                ([], [nodeIdOf("b")]),
            ],
        )
        self.assertEqual(shards[2]["nodes"][0]["health"], "fail")


class EncodingTests(TopologyCase):
    def setUp(self) -> None:
        super().setUp()
        self.join(*(gossiped(name) for name in NAMES))

    def encoded(self, protocol: int, reply: Reply) -> Any:
        encoder = ReplyEncoder(protocol)
        encodeReply(encoder, reply)
        reader = hiredis.Reader()
        reader.feed(encoder.take())
        return reader.gets()

    def test_slotsOnTheWire(self) -> None:
        """
        On the wire, C{CLUSTER SLOTS} is what a client of Redis 7 reads:
        integers, bulk strings and, for the other addresses, an empty map
        (an empty array in RESP2).
        """
        reply = self.slots()
        first = reply[0]
        node = [
            first[2][0].encode(),
            6380,
            first[2][2].encode(),
        ]
        for protocol, empty in ((2, []), (3, {})):
            read = self.encoded(protocol, reply)
            self.assertEqual(len(read), len(reply))
            self.assertEqual(read[0][:2], [first[0], first[1]])
            self.assertEqual(read[0][2], [*node, empty])
