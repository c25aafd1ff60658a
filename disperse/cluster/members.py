"""
Who the members of the cluster are, as far as this node is concerned.

Every member gossips a few bytes of metadata with its membership (memberlist
treats them as opaque). A Disperse node puts a small JSON object there:
where its HTTP API and its node-to-node port listen, and its zone.
L{NodeMeta} is that object, typed, and the only place it is encoded and
decoded. A member whose metadata is not ours (a Go memberlist peer sends
none, or something else) decodes to a L{NodeMeta} that holds no data.

The L{MemberDirectory} listens to membership: it decodes a member's
metadata once, when the member joins or its metadata changes, keeps which
members are alive (or suspect), and tells its watchers (the cluster view,
the node) what changed. Everything else reads decoded fields from it: the
members holding data, where to reach a member's node-to-node port, a
member's HTTP address.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from disperse.cluster.placement import MemberSpec
from disperse.gossip.messages import META_MAX_SIZE
from disperse.gossip.swim import Member
from disperse.logs import logger

MemberChange = Literal["joined", "updated", "left", "failed"]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(frozen=True, slots=True)
class NodeMeta:
    """
    The metadata a Disperse node gossips about itself.

    @ivar httpAddress: C{host:port} of its HTTP API; C{None} for a member
        that runs no Disperse (it holds no data).
    @ivar httpPort: the port of its HTTP API (the original's C{http_port}).
    @ivar httpScheme: C{https} when the HTTP API is served over TLS.
    @ivar peerAddress: C{host:port} of its node-to-node port.
    @ivar zone: the zone placement spreads replicas over.
    @ivar redisAddress: C{host:port} of its Redis protocol port, when it
        serves one (C{--redis-port}).
    """

    httpAddress: str | None = None
    httpPort: int = 0
    httpScheme: str = "http"
    peerAddress: str | None = None
    zone: str = ""
    redisAddress: str | None = None

    @property
    def holdsData(self) -> bool:
        """
        Whether the member runs Disperse: it publishes an HTTP address.
        """
        return bool(self.httpAddress)

    def encode(self) -> bytes:
        """
        The JSON bytes gossiped: keys sorted, no spaces, C{http_scheme} only
        for https and C{peer_addr} only when known, as every version of
        Disperse has sent them.

        @raise ValueError: if they would not fit memberlist's limit.
        """
        fields: dict[str, Any] = {
            "http_port": self.httpPort,
            "http_addr": self.httpAddress,
            "zone": self.zone,
        }
        if self.httpScheme == "https":
            fields["http_scheme"] = "https"
        if self.peerAddress is not None:
            fields["peer_addr"] = self.peerAddress
        if self.redisAddress is not None:
            fields["redis_addr"] = self.redisAddress
        meta = json.dumps(fields, separators=(",", ":"), sort_keys=True).encode()
        if len(meta) > META_MAX_SIZE:
            raise ValueError(
                f"node metadata is {len(meta)} bytes; at most {META_MAX_SIZE}"
            )
        return meta

    @classmethod
    def decode(cls, meta: bytes) -> NodeMeta:
        """
        A member's metadata; one that holds no data when C{meta} is not a
        JSON object (a Go memberlist peer, say).
        """
        try:
            fields = json.loads(meta)
        except ValueError:
            return NOT_OURS
        if not isinstance(fields, dict):
            return NOT_OURS
        return cls(
            httpAddress=_text(fields.get("http_addr")),
            httpPort=_int(fields.get("http_port")),
            httpScheme=_text(fields.get("http_scheme")) or "http",
            peerAddress=_text(fields.get("peer_addr")),
            zone=str(fields.get("zone", "")),
            redisAddress=_text(fields.get("redis_addr")),
        )


NOT_OURS = NodeMeta()


class Advertisement:
    """
    What this node gossips about itself. Its ports are known once bound
    (the OS may choose them): L{httpPort} and L{peerPort} are set then, and
    the metadata is encoded when membership starts.
    """

    def __init__(self, *, host: str, zone: str, https: bool = False) -> None:
        self.host = host
        self.zone = zone
        self.https = https
        self.httpPort = 0
        self.peerPort: int | None = None
        self.redisPort: int | None = None

    def meta(self) -> NodeMeta:
        return NodeMeta(
            httpAddress=f"{self.host}:{self.httpPort}",
            httpPort=self.httpPort,
            httpScheme="https" if self.https else "http",
            peerAddress=None
            if self.peerPort is None
            else f"{self.host}:{self.peerPort}",
            zone=self.zone,
            redisAddress=None
            if self.redisPort is None
            else f"{self.host}:{self.redisPort}",
        )

    def encode(self) -> bytes:
        return self.meta().encode()


class MemberWatcher(Protocol):
    """
    Told by the L{MemberDirectory} about membership, after it took the
    change in.
    """

    def memberChanged(self, change: MemberChange, member: Member) -> None:
        """
        C{member} joined, was updated (its metadata changed), left on
        purpose or failed.
        """

    def clusterJoined(self) -> None:
        """
        Membership joined the cluster, or found this node is its first
        member.
        """


class MemberDirectory:
    """
    The members this node heard of, with their decoded metadata; a
    L{disperse.gossip.swim.MembershipListener}.
    """

    log = logger()

    def __init__(self) -> None:
        self._meta: dict[str, NodeMeta] = {}
        self._raw: dict[str, bytes] = {}
        # Names of the members alive or suspect, in the order they came.
        self._live: dict[str, None] = {}
        self._watchers: list[MemberWatcher] = []

    def watch(self, watcher: MemberWatcher) -> None:
        """
        Tell C{watcher} of every change from now on, after the watchers
        before it.
        """
        self._watchers.append(watcher)

    # Reading

    def meta(self, name: str) -> NodeMeta:
        """
        The metadata of member C{name}; one that holds no data for a name
        never heard of.
        """
        return self._meta.get(name, NOT_OURS)

    def peerAddress(self, name: str) -> str | None:
        """
        Where to reach member C{name}'s node-to-node port, if it said.
        """
        meta = self._meta.get(name)
        return None if meta is None else meta.peerAddress

    def dataHolders(self) -> list[MemberSpec]:
        """
        The members alive or suspect that hold data, with their zones.
        """
        holders = []
        for name in self._live:
            meta = self._meta[name]
            if meta.holdsData:
                holders.append(MemberSpec(name, meta.zone))
        return holders

    # Membership listener

    def memberJoined(self, member: Member) -> None:
        self._take(member, live=True)
        self._tell("joined", member)

    def memberUpdated(self, member: Member) -> None:
        self._take(member, live=True)
        self._tell("updated", member)

    def memberLeft(self, member: Member) -> None:
        self._take(member, live=False)
        self._tell("left", member)

    def memberFailed(self, member: Member) -> None:
        self._take(member, live=False)
        self._tell("failed", member)

    def clusterJoined(self) -> None:
        for watcher in list(self._watchers):
            try:
                watcher.clusterJoined()
            except Exception:
                self.log.failure("member watcher failed on joining the cluster")

    def _take(self, member: Member, live: bool) -> None:
        name = member.name
        # Decoded when it changed only: gossip repeats a member's metadata
        # with every refutation and every push/pull.
        if self._raw.get(name) != member.meta:
            self._raw[name] = member.meta
            self._meta[name] = NodeMeta.decode(member.meta)
        if live:
            self._live[name] = None
        else:
            self._live.pop(name, None)

    def _tell(self, change: MemberChange, member: Member) -> None:
        # One watcher failing must not keep the change from the others.
        for watcher in list(self._watchers):
            try:
                watcher.memberChanged(change, member)
            except Exception:
                self.log.failure(
                    "member watcher failed on {member} {change}",
                    member=member.name,
                    change=change,
                )
