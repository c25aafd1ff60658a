"""
Tests for L{disperse.cluster.members}: the metadata a node gossips, byte
for byte as every version sent it, and the member directory the membership
callbacks keep current.
"""

from __future__ import annotations

from dataclasses import replace

from twisted.trial.unittest import SynchronousTestCase

from disperse.cluster.members import (
    Advertisement,
    MemberChange,
    MemberDirectory,
    NodeMeta,
)
from disperse.cluster.placement import MemberSpec
from disperse.gossip.messages import NodeState
from disperse.gossip.swim import Member


def member(
    name: str, meta: bytes, state: NodeState = NodeState.alive, incarnation: int = 1
) -> Member:
    return Member(name, "127.0.0.1", 7946, meta, incarnation, state, 0.0)


def disperseMeta(port: int, zone: str = "") -> bytes:
    return NodeMeta(
        httpAddress=f"127.0.0.1:{port}",
        httpPort=port,
        peerAddress=f"127.0.0.1:{port + 1000}",
        zone=zone,
    ).encode()


class NodeMetaTests(SynchronousTestCase):
    def test_bytesOnTheWire(self) -> None:
        """
        The JSON every version of Disperse gossips: keys sorted, no spaces,
        C{http_scheme} only for https, C{peer_addr} only when known.
        """
        self.assertEqual(
            NodeMeta(httpAddress="10.0.0.1:8000", httpPort=8000, zone="eu-1").encode(),
            b'{"http_addr":"10.0.0.1:8000","http_port":8000,"zone":"eu-1"}',
        )
        self.assertEqual(
            NodeMeta(
                httpAddress="10.0.0.1:8443",
                httpPort=8443,
                httpScheme="https",
                peerAddress="10.0.0.1:9443",
            ).encode(),
            b'{"http_addr":"10.0.0.1:8443","http_port":8443,"http_scheme":"https",'
            b'"peer_addr":"10.0.0.1:9443","zone":""}',
        )

    def test_redisAddressOnlyWhenServed(self) -> None:
        """
        C{redis_addr} is sent only by a node serving the Redis protocol, so
        the bytes of others are those every earlier version sent.
        """
        self.assertEqual(
            NodeMeta(
                httpAddress="10.0.0.1:8000",
                httpPort=8000,
                redisAddress="10.0.0.1:6380",
            ).encode(),
            b'{"http_addr":"10.0.0.1:8000","http_port":8000,'
            b'"redis_addr":"10.0.0.1:6380","zone":""}',
        )

    def test_roundTrip(self) -> None:
        meta = NodeMeta(
            httpAddress="10.0.0.1:8443",
            httpPort=8443,
            httpScheme="https",
            peerAddress="10.0.0.1:9443",
            zone="eu-1",
            redisAddress="10.0.0.1:6380",
        )
        self.assertEqual(NodeMeta.decode(meta.encode()), meta)
        self.assertTrue(meta.holdsData)
        plain = NodeMeta.decode(
            b'{"http_addr":"10.0.0.1:8000","http_port":8000,"zone":"eu-1"}'
        )
        self.assertEqual(
            plain,
            NodeMeta(httpAddress="10.0.0.1:8000", httpPort=8000, zone="eu-1"),
        )
        self.assertEqual(plain.httpScheme, "http")

    def test_foreignMetaHoldsNoData(self) -> None:
        """
        A Go memberlist peer gossips empty metadata (or its own bytes): it
        decodes to metadata that holds no data, whatever the bytes.
        """
        for foreign in (b"", b"\x00binary", b"[1]", b"{}", b'{"http_port":"x"}'):
            meta = NodeMeta.decode(foreign)
            self.assertFalse(meta.holdsData, foreign)
            self.assertEqual((meta.peerAddress, meta.httpPort), (None, 0))

    def test_tooLarge(self) -> None:
        meta = NodeMeta(httpAddress="10.0.0.1:8000", httpPort=8000, zone="z" * 600)
        self.assertRaises(ValueError, meta.encode)

    def test_advertisement(self) -> None:
        """
        A node's own metadata carries its ports once they are bound.
        """
        advertised = Advertisement(host="10.0.0.1", zone="z1", https=True)
        advertised.httpPort = 8443
        self.assertIsNone(NodeMeta.decode(advertised.encode()).peerAddress)
        advertised.peerPort = 9443
        self.assertEqual(
            NodeMeta.decode(advertised.encode()),
            NodeMeta(
                httpAddress="10.0.0.1:8443",
                httpPort=8443,
                httpScheme="https",
                peerAddress="10.0.0.1:9443",
                zone="z1",
            ),
        )


class _Watcher:
    def __init__(self, seen: list[str], fail: bool = False) -> None:
        self.seen = seen
        self.fail = fail

    def memberChanged(self, change: MemberChange, member: Member) -> None:
        self.seen.append(f"{change} {member.name}")
        if self.fail:
            raise RuntimeError("watcher failed")

    def clusterJoined(self) -> None:
        self.seen.append("clusterJoined")
        if self.fail:
            raise RuntimeError("watcher failed")


class MemberDirectoryTests(SynchronousTestCase):
    def test_dataHolders(self) -> None:
        """
        The members alive (or suspect) that run Disperse hold data, with
        their zones; a Go peer and the members gone do not.
        """
        directory = MemberDirectory()
        directory.memberJoined(member("a", disperseMeta(8000, "z1")))
        directory.memberJoined(member("b", disperseMeta(8001, "z2")))
        directory.memberJoined(member("go", b""))
        directory.memberJoined(member("c", disperseMeta(8002)))
        self.assertEqual(
            set(directory.dataHolders()),
            {MemberSpec("a", "z1"), MemberSpec("b", "z2"), MemberSpec("c")},
        )
        directory.memberFailed(member("b", disperseMeta(8001, "z2"), NodeState.dead))
        directory.memberLeft(member("c", disperseMeta(8002), NodeState.left))
        self.assertEqual(directory.dataHolders(), [MemberSpec("a", "z1")])
        # Back from the dead, in another zone.
        directory.memberJoined(member("b", disperseMeta(8001, "z3"), incarnation=2))
        self.assertEqual(
            set(directory.dataHolders()), {MemberSpec("a", "z1"), MemberSpec("b", "z3")}
        )

    def test_addresses(self) -> None:
        """
        A member's addresses follow its metadata; a member never heard of,
        or one gossiping none of ours, has none.
        """
        directory = MemberDirectory()
        directory.memberJoined(member("a", disperseMeta(8000)))
        directory.memberJoined(member("go", b"\x01\x02"))
        self.assertEqual(directory.peerAddress("a"), "127.0.0.1:9000")
        self.assertEqual(directory.meta("a").httpAddress, "127.0.0.1:8000")
        self.assertIsNone(directory.peerAddress("go"))
        self.assertIsNone(directory.peerAddress("nobody"))
        self.assertFalse(directory.meta("nobody").holdsData)
        directory.memberUpdated(member("a", disperseMeta(8100), incarnation=2))
        self.assertEqual(directory.peerAddress("a"), "127.0.0.1:9100")
        # Known still once failed: it may be back soon, at the same place.
        directory.memberFailed(member("a", disperseMeta(8100), NodeState.dead))
        self.assertEqual(directory.peerAddress("a"), "127.0.0.1:9100")

    def test_decodedOnce(self) -> None:
        directory = MemberDirectory()
        directory.memberJoined(member("a", disperseMeta(8000)))
        first = directory.meta("a")
        directory.memberFailed(member("a", disperseMeta(8000), NodeState.dead))
        directory.memberJoined(member("a", disperseMeta(8000), incarnation=2))
        self.assertIs(directory.meta("a"), first)

    def test_watchersInOrder(self) -> None:
        """
        Watchers hear of every change after the directory took it in, in
        the order they started watching; one that fails does not keep the
        change from the others.
        """
        directory = MemberDirectory()
        seen: list[str] = []
        holders: list[list[MemberSpec]] = []

        class Reader(_Watcher):
            def memberChanged(self, change: MemberChange, member: Member) -> None:
                holders.append(directory.dataHolders())
                super().memberChanged(change, member)

        directory.watch(_Watcher(seen, fail=True))
        directory.watch(Reader(seen))
        a = member("a", disperseMeta(8000))
        directory.memberJoined(a)
        directory.memberUpdated(replace(a, meta=disperseMeta(8001), incarnation=2))
        directory.memberLeft(replace(a, state=NodeState.left))
        directory.clusterJoined()
        self.assertEqual(
            seen,
            [
                "joined a",
                "joined a",
                "updated a",
                "updated a",
                "left a",
                "left a",
                "clusterJoined",
                "clusterJoined",
            ],
        )
        self.assertEqual(holders, [[MemberSpec("a")], [MemberSpec("a")], []])
        self.flushLoggedErrors(RuntimeError)
