"""
Tests for L{disperse.cluster.peer.addresses}: a node's gossip metadata
carries the address of its node-to-node port, and a member's address is read
back from its metadata, following every change of it.
"""

from __future__ import annotations

import json

from disperse.cluster.peer.addresses import peerAddresses, withPeerAddress


def test_metadataGainsThePeerAddress() -> None:
    """
    The other fields are kept; the port is read each time, since it is
    known only once the node-to-node port listens.
    """
    ports = [0]
    meta = withPeerAddress(
        lambda: b'{"zone":"a","http_port":8000}', "10.0.0.1", lambda: ports[0]
    )
    ports[0] = 7001
    assert meta() == b'{"http_port":8000,"peer_addr":"10.0.0.1:7001","zone":"a"}'
    ports[0] = 7002
    assert json.loads(meta())["peer_addr"] == "10.0.0.1:7002"


def test_metadataNotOursGainsOnlyThePeerAddress() -> None:
    meta = withPeerAddress(lambda: b"\xff not json", "::1", lambda: 9)
    assert meta() == b'{"peer_addr":"::1:9"}'


def test_addressOfAMember() -> None:
    metas: dict[str, bytes] = {
        "alpha": b'{"peer_addr":"10.0.0.1:7001"}',
        "beta": b'{"http_port":8000}',
        "gamma": b'{"peer_addr":7001}',
        "go": b"\x00\x01",
    }
    addressOf = peerAddresses(metas.get)
    assert addressOf("alpha") == "10.0.0.1:7001"
    # No address, one that is not text, metadata that is not ours, no member.
    for name in ("beta", "gamma", "go", "delta"):
        assert addressOf(name) is None


def test_addressFollowsTheMetadata() -> None:
    """
    A member that restarts on another port, or leaves, is looked up afresh.
    """
    metas: dict[str, bytes] = {"alpha": b'{"peer_addr":"10.0.0.1:7001"}'}
    addressOf = peerAddresses(metas.get)
    assert addressOf("alpha") == "10.0.0.1:7001"
    assert addressOf("alpha") == "10.0.0.1:7001"
    metas["alpha"] = b'{"peer_addr":"10.0.0.1:7002"}'
    assert addressOf("alpha") == "10.0.0.1:7002"
    del metas["alpha"]
    assert addressOf("alpha") is None
    metas["alpha"] = b'{"peer_addr":"10.0.0.9:7001"}'
    assert addressOf("alpha") == "10.0.0.9:7001"
