"""
What a command handler is given, and the table of handlers.

A handler is a function of a L{Context} (the node, the connection's
L{Session}, the server's state) and the command line (name first, as
bytes), returning a L{disperse.resp.replies.Reply} or a L{Deferred} of one.
It raises L{CommandError} or L{ArgumentError} to refuse. Each family of
commands lives in a module of its own and registers its handlers with
L{handles}; L{disperse.resp.dispatch} imports them all.

Handlers never see the protocol version's encoding, the transport or other
connections except through L{ServerState}.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeAlias, TypeVar

from twisted.internet.defer import Deferred

from disperse.cluster.coordinator import Consistency, ReadOutcome, WriteOutcome
from disperse.cluster.peer.messages import MAX_KEY_SIZE
from disperse.resp.commands import CommandError
from disperse.resp.replies import Reply
from disperse.security.tokens import Grant, TokenTable

if TYPE_CHECKING:
    from disperse.node import Node


@dataclass(eq=False)
class Session:
    """
    One client connection's state.

    @ivar clientId: unique among this process's connections, from 1.
    @ivar address: the client's C{host:port}.
    @ivar localAddress: the C{host:port} the client connected to.
    @ivar fd: the connection's file descriptor, or -1 when it has none.
    @ivar protocol: 2 or 3, as chosen with C{HELLO}.
    @ivar grant: the token the connection authenticated with, or L{None}.
    @ivar authenticated: whether commands other than the no-auth ones may
        run: always when the node has no tokens.
    @ivar level: the consistency chosen with C{DISPERSE CONSISTENCY}, or
        L{None} for the node's defaults.
    @ivar readonly: C{READONLY} was sent (cluster clients reading from
        replicas); Disperse serves any key either way.
    @ivar queued: the commands queued since C{MULTI}, or L{None} outside a
        transaction.
    @ivar closing: close the connection once this reply is written
        (C{QUIT}).
    """

    clientId: int
    address: str
    localAddress: str = ""
    fd: int = -1
    createdMs: int = 0
    protocol: int = 2
    name: bytes = b""
    libName: bytes = b""
    libVersion: bytes = b""
    grant: Grant | None = None
    authenticated: bool = True
    level: Consistency | None = None
    readonly: bool = False
    queued: list[list[bytes]] | None = None
    queueFailed: bool = False
    lastCommand: str = "NULL"
    lastCommandMs: int = 0
    commands: int = 0
    closing: bool = False
    extra: dict[str, object] = field(default_factory=dict)


class ServerState(Protocol):
    """
    What the RESP server knows beyond one connection.
    """

    @property
    def startedMs(self) -> int:
        """When the server started listening, in ms since the epoch."""

    @property
    def port(self) -> int | None:
        """The TCP port it listens on, once bound."""

    @property
    def tokens(self) -> TokenTable | None:
        """
        The client tokens in force, or L{None} when the node has none (any
        client may do anything). Read at each use: the table is replaced
        whole when the token file is read again.
        """

    def sessions(self) -> Iterable[Session]:
        """The connections open now."""

    def commandStats(self) -> dict[str, tuple[int, float, int]]:
        """
        Per command name: calls, total seconds spent, failed calls.
        """


@dataclass(eq=False)
class Context:
    """
    Everything a handler may use.
    """

    node: Node
    session: Session
    server: ServerState

    def nowMs(self) -> int:
        """
        The node's time in ms since the epoch (what expiry is measured
        against).
        """
        return self.node.store.nowMs()

    @property
    def readLevel(self) -> Consistency:
        return self.session.level or self.node.readConsistency

    @property
    def writeLevel(self) -> Consistency:
        return self.session.level or self.node.writeConsistency

    def key(self, raw: bytes) -> str:
        """
        The store key of a command's key argument.

        @raise CommandError: for a key that is not UTF-8 (Disperse keys
            are text, shared with the HTTP API), too long, or outside the
            connection's token prefix.
        """
        if len(raw) > MAX_KEY_SIZE:
            raise CommandError(f"ERR key is longer than {MAX_KEY_SIZE} bytes")
        grant = self.session.grant
        if grant is not None and not grant.covers(raw):
            raise CommandError(
                "NOPERM this token does not cover the key"
                f" (its prefix is '{grant.prefix.decode('utf-8', 'replace')}')"
            )
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CommandError("ERR Disperse keys must be valid UTF-8") from None

    def value(self, raw: bytes) -> bytes:
        """
        A value to store, checked against C{--max-value-size}.

        @raise CommandError: for a value over the limit.
        """
        limit = self.node.config.maxValueSize
        if len(raw) > limit:
            raise CommandError(f"ERR value is larger than {limit} bytes")
        return raw


def requireWrite(outcome: WriteOutcome) -> WriteOutcome:
    """
    C{outcome} if enough replicas acknowledged the write for its level.

    @raise CommandError: C{NOREPLICAS}, Redis's error for a write that too
        few replicas took, with the counts.
    """
    if not outcome.ok:
        raise CommandError(
            "NOREPLICAS Not enough good replicas to write"
            f" ({outcome.acks} of {outcome.required} required acknowledged)"
        )
    return outcome


def requireRead(outcome: ReadOutcome) -> ReadOutcome:
    """
    C{outcome} if enough replicas answered the read for its level.

    @raise CommandError: C{NOREPLICAS}, with the counts.
    """
    if not outcome.ok:
        raise CommandError(
            "NOREPLICAS Not enough replicas answered the read"
            f" ({outcome.answered} of {outcome.required} required)"
        )
    return outcome


Handler: TypeAlias = Callable[[Context, list[bytes]], "Reply | Deferred[Reply]"]
_H = TypeVar("_H", bound=Handler)

HANDLERS: dict[str, Handler] = {}


def handles(*names: str) -> Callable[[_H], _H]:
    """
    Register the decorated function as the handler of the commands
    C{names} (lower case; a subcommand as C{container|sub}).
    """

    def register(function: _H) -> _H:
        for name in names:
            if name in HANDLERS:
                raise ValueError(f"two handlers for {name!r}")
            HANDLERS[name] = function
        return function

    return register
