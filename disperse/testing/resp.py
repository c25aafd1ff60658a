"""
Command handlers called in memory, without the server: a L{Context} over a
node built for tests, and L{runCommand} to resolve a command line as the
dispatcher does and call its handler.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred

from disperse.node import Node
from disperse.resp import families  # noqa: F401  (registers every handler)
from disperse.resp.commands import resolveCommand
from disperse.resp.context import HANDLERS, Context, Session
from disperse.resp.replies import Reply
from disperse.security.tokens import TokenTable


@dataclass(eq=False)
class FakeServer:
    """
    A L{disperse.resp.context.ServerState} of fixed values, whose sessions
    are those the test adds.
    """

    startedMs: int = 0
    port: int | None = 6380
    open: list[Session] = field(default_factory=list)
    tokens: TokenTable | None = None
    stats: dict[str, tuple[int, float, int]] = field(default_factory=dict)

    def sessions(self) -> Iterable[Session]:
        return list(self.open)

    def commandStats(self) -> dict[str, tuple[int, float, int]]:
        return dict(self.stats)


def handlerContext(node: Node, session: Session | None = None) -> Context:
    """
    A context for calling handlers on C{node}, with a new session (client
    1) unless one is given.
    """
    server = FakeServer()
    if session is None:
        session = Session(clientId=1, address="127.0.0.1:50000")
    server.open.append(session)
    return Context(node=node, session=session, server=server)


def runCommand(context: Context, *line: bytes) -> Reply | Deferred[Reply]:
    """
    Resolve C{line} (name first) as the dispatcher does, arity included,
    and call its handler: the reply, or a L{Deferred} of it.

    @raise disperse.resp.commands.CommandError: for an unknown command or a
        wrong arity, or as the handler raises it.
    @raise KeyError: for a command in the table without a handler yet.
    """
    arguments = list(line)
    command = resolveCommand(arguments)
    return HANDLERS[command.name](context, arguments)
