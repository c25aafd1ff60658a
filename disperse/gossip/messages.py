"""
The gossip messages Disperse exchanges with HashiCorp memberlist peers.

This module owns the data shapes only: one frozen dataclass per memberlist
message, the numeric message-type and node-state codes memberlist puts on the
wire, and the protocol version range we speak.  It does no encoding (that is
L{disperse.gossip.wire}) and no I/O.

Attributes mirror memberlist's Go struct fields in camelCase (C{SeqNo} is
C{seqNo}); the Go field C{From} becomes C{fromNode} because C{from} is a
Python keyword.  Addresses are raw packed IP bytes (4 bytes for IPv4, 16 for
IPv6) as memberlist sends them, not text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final, TypeAlias

# memberlist can understand protocol versions 1..5; Disperse speaks 2..5 and,
# like memberlist's default configuration, talks at 2 unless told otherwise.
PROTOCOL_VERSION_MIN: Final = 2
PROTOCOL_VERSION_MAX: Final = 5
PROTOCOL_VERSION_DEFAULT: Final = 2

# Delegate (application) protocol versions; Disperse has none of its own yet.
DELEGATE_VERSION_MIN: Final = 0
DELEGATE_VERSION_MAX: Final = 0
DELEGATE_VERSION_DEFAULT: Final = 0

# The six-entry version vector carried by Alive and PushNodeState, in
# memberlist's order: protocol min, max, current; delegate min, max, current.
DEFAULT_VSN: Final[tuple[int, ...]] = (
    PROTOCOL_VERSION_MIN,
    PROTOCOL_VERSION_MAX,
    PROTOCOL_VERSION_DEFAULT,
    DELEGATE_VERSION_MIN,
    DELEGATE_VERSION_MAX,
    DELEGATE_VERSION_DEFAULT,
)

# memberlist refuses node metadata larger than this.
META_MAX_SIZE: Final = 512


class MessageType(IntEnum):
    """
    The leading type byte of every memberlist message, with Go's values.
    """

    ping = 0
    indirectPing = 1
    ack = 2
    suspect = 3
    alive = 4
    dead = 5
    pushPull = 6
    compound = 7
    user = 8
    compress = 9
    encrypt = 10
    nack = 11
    hasCrc = 12
    err = 13
    # Chosen by memberlist to be far from the contiguous codes above.
    hasLabel = 244


class NodeState(IntEnum):
    """
    A member's state as memberlist numbers it in push/pull exchanges.
    """

    alive = 0
    suspect = 1
    dead = 2
    left = 3


class CompressionAlgorithm(IntEnum):
    """
    The C{Algo} codes of memberlist's compress envelope.
    """

    lzw = 0


@dataclass(frozen=True, slots=True)
class Ping:
    """
    A direct probe; C{node} names the intended target so a restarted node
    under a new name does not answer for the old one.  The source fields ask
    for a reply to that address instead of the packet's origin (empty/zero
    when absent).
    """

    seqNo: int
    node: str
    sourceAddr: bytes = b""
    sourcePort: int = 0
    sourceNode: str = ""


@dataclass(frozen=True, slots=True)
class IndirectPing:
    """
    A request to probe C{target}:C{port} (named C{node}) on our behalf.
    """

    seqNo: int
    target: bytes
    port: int
    node: str
    nack: bool = False
    sourceAddr: bytes = b""
    sourcePort: int = 0
    sourceNode: str = ""


@dataclass(frozen=True, slots=True)
class Ack:
    """
    The answer to a ping, echoing its sequence number.
    """

    seqNo: int
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Nack:
    """
    Sent by an indirect prober that got no answer from the target in time.
    """

    seqNo: int


@dataclass(frozen=True, slots=True)
class Suspect:
    """
    Gossip that C{fromNode} suspects C{node} at C{incarnation} of failure.
    """

    incarnation: int
    node: str
    fromNode: str


@dataclass(frozen=True, slots=True)
class Alive:
    """
    Gossip that C{node} is alive at C{incarnation}; also how nodes join.
    """

    incarnation: int
    node: str
    addr: bytes
    port: int
    meta: bytes = b""
    vsn: tuple[int, ...] = DEFAULT_VSN


@dataclass(frozen=True, slots=True)
class Dead:
    """
    Gossip that C{node} is dead at C{incarnation}; when C{fromNode} equals
    C{node} the node is leaving gracefully.
    """

    incarnation: int
    node: str
    fromNode: str


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """
    A stream peer's report that it could not handle what we sent.
    """

    error: str


@dataclass(frozen=True, slots=True)
class UserMessage:
    """
    An opaque application (delegate) payload carried by memberlist.
    """

    payload: bytes


@dataclass(frozen=True, slots=True)
class PushPullHeader:
    """
    Opens a push/pull state exchange: how many node states follow, the size
    of the user state after them, and whether this is a join.
    """

    nodes: int
    userStateLen: int
    join: bool


@dataclass(frozen=True, slots=True)
class PushNodeState:
    """
    One member's state in a push/pull exchange.
    """

    name: str
    addr: bytes
    port: int
    meta: bytes
    incarnation: int
    state: NodeState
    vsn: tuple[int, ...] = DEFAULT_VSN


@dataclass(frozen=True, slots=True)
class PushPull:
    """
    A whole push/pull exchange as one value: the header's counts are derived
    from C{nodes} and C{userState}.
    """

    join: bool
    nodes: tuple[PushNodeState, ...] = field(default=())
    userState: bytes = b""

    @property
    def header(self) -> PushPullHeader:
        return PushPullHeader(
            nodes=len(self.nodes), userStateLen=len(self.userState), join=self.join
        )


# Everything that can travel in a (possibly compound) packet.
PacketMessage: TypeAlias = (
    Ping | IndirectPing | Ack | Nack | Suspect | Alive | Dead | UserMessage
)

# Every message this module defines.
Message: TypeAlias = (
    PacketMessage | ErrorResponse | PushPullHeader | PushNodeState | PushPull
)
