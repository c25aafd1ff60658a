"""
Where to reach each member's node-to-node port.

Every node adds the address of its node-to-node port to the metadata it
gossips (C{peer_addr}, L{withPeerAddress}); callers look a member's up by
name (L{peerAddresses}). The public API's address travels beside it
(C{http_addr}, C{http_port}) but is not this package's concern.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from disperse.gossip.service import decodeMeta


def withPeerAddress(
    meta: Callable[[], bytes], host: str, port: Callable[[], int]
) -> Callable[[], bytes]:
    """
    Wrap a node's gossip metadata to add the address of its node-to-node
    port.
    """

    def metaWithPeer() -> bytes:
        fields = decodeMeta(meta())
        fields["peer_addr"] = f"{host}:{port()}"
        return json.dumps(fields, separators=(",", ":"), sort_keys=True).encode("utf-8")

    return metaWithPeer


def peerAddresses(
    memberMeta: Callable[[str], bytes | None],
) -> Callable[[str], str | None]:
    """
    Where to reach a member's node-to-node port, from its metadata; a
    member that gossips none cannot be reached.
    """
    # Asked on every call to a peer: decode a member's metadata only when it
    # changed.
    known: dict[str, tuple[bytes, str | None]] = {}

    def addressOf(name: str) -> str | None:
        meta = memberMeta(name)
        if meta is None:
            known.pop(name, None)
            return None
        cached = known.get(name)
        if cached is not None and cached[0] == meta:
            return cached[1]
        address: Any = decodeMeta(meta).get("peer_addr")
        found = address if isinstance(address, str) else None
        known[name] = (meta, found)
        return found

    return addressOf
